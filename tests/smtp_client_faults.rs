//! SMTP client against a scripted server that fails: 4yz/5yz at every stage, partial and total
//! recipient rejection, a drop mid-DATA, a stall past the timeout, garbage, smuggling inputs.

#[path = "common/smtp_script.rs"]
mod smtp_script;

use mailtap::smtp::{
    ClientConfig, ConnectOptions, Envelope, Error, RcptStatus, Session, Stage, Timeouts, TlsMode,
    VecTranscript,
};
use smtp_script::{e, r, rs, ScriptServer, Step};
use std::time::Duration;

const MSG: &[u8] = b"Subject: t\r\n\r\nbody\r\n";

fn cfg(secs: u64) -> ClientConfig {
    ClientConfig {
        host: "localhost".into(),
        tls: TlsMode::None,
        helo_name: Some("client.test".into()),
        timeouts: Timeouts::uniform(secs),
        ..Default::default()
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "a@x.test".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
    }
}

fn hello() -> Vec<Step> {
    vec![r("220 x"), e("EHLO client.test"), r("250 x")]
}

/// The greeting and EHLO, `MAIL FROM:<a@x.test>` accepted, then one RCPT per recipient with
/// the server's answer to it: the prefix most scripts here share.
fn mail_and_rcpts(rcpts: &[(&str, &str)]) -> Vec<Step> {
    let mut steps = hello();
    steps.extend([e("MAIL FROM:<a@x.test>"), r("250 ok")]);
    for (rcpt, answer) in rcpts {
        steps.extend([e(&format!("RCPT TO:<{rcpt}>")), r(answer)]);
    }
    steps
}

async fn connect(srv: &ScriptServer, t: &mut VecTranscript) -> Result<Session, Error> {
    let o = ConnectOptions {
        addr: Some(srv.addr),
        ..Default::default()
    };
    Session::connect(&cfg(5), &o, t).await
}

#[tokio::test]
async fn connect_stage_failures_table() {
    // Guards: 4yz/5yz at greeting and EHLO surface with the right stage, reply and class.
    let cases: Vec<(Vec<Step>, Stage, u16, bool)> = vec![
        (vec![r("554 5.3.2 no service")], Stage::Greeting, 554, false),
        (vec![r("421 4.3.2 busy")], Stage::Greeting, 421, true),
        (
            vec![r("220 x"), e("EHLO client.test"), r("550 5.7.1 go away")],
            Stage::Ehlo,
            550,
            false,
        ),
        (
            vec![r("220 x"), e("EHLO client.test"), r("421 4.4.5 later")],
            Stage::Ehlo,
            421,
            true,
        ),
        (
            vec![
                r("220 x"),
                e("EHLO client.test"),
                r("500 what"),
                e("HELO client.test"),
                r("550 no"),
            ],
            Stage::Ehlo,
            550,
            false,
        ),
    ];
    for (steps, stage, code, transient) in cases {
        let srv = ScriptServer::start(steps, None).await;
        let err = connect(&srv, &mut VecTranscript::new()).await.unwrap_err();
        assert_eq!(err.stage(), stage, "{err}");
        assert_eq!(err.reply().map(|r| r.code), Some(code), "{err}");
        assert_eq!(err.is_transient(), transient, "{err}");
        assert_eq!(srv.finish().await.error, None);
    }
}

#[tokio::test]
async fn mail_stage_failures() {
    // Guards: a refused MAIL fails the whole mail with stage Mail; the session stays usable.
    for (code, transient) in [(451u16, true), (550, false)] {
        let mut steps = hello();
        steps.extend([
            e("MAIL FROM:<a@x.test>"),
            r(&format!("{code} {}.1.0 no", code / 100)),
            e("QUIT"),
            r("221 bye"),
        ]);
        let srv = ScriptServer::start(steps, None).await;
        let mut t = VecTranscript::new();
        let mut s = connect(&srv, &mut t).await.unwrap();
        let err = s.send(&env(&["b@y.test"]), MSG, &mut t).await.unwrap_err();
        assert_eq!(err.stage(), Stage::Mail);
        assert_eq!(err.command(), Some("MAIL FROM:<a@x.test>"));
        assert_eq!(err.is_transient(), transient);
        assert_eq!(
            err.reply().and_then(|r| r.enhanced).map(|e| e.class),
            Some((code / 100) as u8)
        );
        assert!(s.is_usable());
        s.quit(&mut t).await.unwrap();
        assert_eq!(srv.finish().await.error, None);
    }
}

#[tokio::test]
async fn rcpt_failures_are_per_recipient() {
    // Guards: one RCPT 550 among three → DATA still goes to the other two.
    let mut steps = mail_and_rcpts(&[
        ("b@y.test", "250 ok"),
        ("nobody@y.test", "550 5.1.1 unknown user"),
        ("d@w.test", "450 4.2.1 mailbox busy"),
    ]);
    steps.extend([e("DATA"), r("354 go"), Step::ExpectData, r("250 queued")]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await.unwrap();
    let d = s
        .send(
            &env(&["b@y.test", "nobody@y.test", "d@w.test"]),
            MSG,
            &mut t,
        )
        .await
        .unwrap();
    assert!(matches!(d.per_rcpt[0].1, RcptStatus::Accepted(_)));
    assert!(matches!(&d.per_rcpt[1].1, RcptStatus::Rejected(r) if r.code == 550));
    assert!(d.per_rcpt[2].1.is_transient());
    assert_eq!(d.delivered().collect::<Vec<_>>(), vec!["b@y.test"]);
    assert!(d.data_error().is_none());
    drop(s);
    assert_eq!(srv.finish().await.error, None);
}

#[tokio::test]
async fn all_recipients_rejected_means_no_data() {
    // Guards: when every RCPT fails the client sends RSET, never DATA.
    let mut steps = mail_and_rcpts(&[
        ("b@y.test", "550 5.1.1 no"),
        ("c@y.test", "451 4.3.0 later"),
    ]);
    steps.extend([e("RSET"), r("250 ok"), e("QUIT"), r("221 bye")]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await.unwrap();
    let d = s
        .send(&env(&["b@y.test", "c@y.test"]), MSG, &mut t)
        .await
        .unwrap();
    assert_eq!(d.data_reply, None);
    assert!(!d.per_rcpt[0].1.is_transient() && d.per_rcpt[1].1.is_transient());
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    assert!(!rec.text().contains("DATA"));
}

#[tokio::test]
async fn data_stage_failures_apply_to_accepted_recipients() {
    // Guards: a 4yz/5yz to DATA or after the final dot applies to every accepted recipient.
    let cases: Vec<(bool, u16, Stage, bool)> = vec![
        (false, 451, Stage::Data, true),
        (false, 554, Stage::Data, false),
        (true, 452, Stage::DataEnd, true),
        (true, 552, Stage::DataEnd, false),
    ];
    for (after_dot, code, stage, transient) in cases {
        let mut steps = mail_and_rcpts(&[("b@y.test", "250 ok"), ("c@y.test", "550 5.1.1 no")]);
        steps.push(e("DATA"));
        if after_dot {
            steps.extend([r("354 go"), Step::ExpectData]);
        }
        steps.push(r(&format!("{code} {}.0.0 refused", code / 100)));
        let srv = ScriptServer::start(steps, None).await;
        let mut t = VecTranscript::new();
        let mut s = connect(&srv, &mut t).await.unwrap();
        let d = s
            .send(&env(&["b@y.test", "c@y.test"]), MSG, &mut t)
            .await
            .unwrap();
        let err = d.data_error().unwrap();
        assert_eq!(
            (err.stage(), err.is_transient()),
            (stage, transient),
            "{err}"
        );
        assert_eq!(err.command(), Some(if after_dot { "." } else { "DATA" }));
        assert_eq!(d.per_rcpt[0].1.reply().code, code);
        assert_eq!(d.per_rcpt[0].1.is_transient(), transient);
        assert_eq!(d.per_rcpt[1].1.reply().code, 550, "RCPT outcome kept");
        assert_eq!(d.delivered().count(), 0);
        drop(s);
        assert_eq!(srv.finish().await.error, None);
    }
}

#[tokio::test]
async fn drop_mid_data_is_transient_and_breaks_session() {
    // Guards: the server vanishing during DATA gives a transient error and an unusable session.
    let mut steps = mail_and_rcpts(&[("b@y.test", "250 ok")]);
    steps.extend([e("DATA"), r("354 go"), e("Subject: t"), Step::Drop]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await.unwrap();
    let mut big = b"Subject: t\r\n\r\n".to_vec();
    big.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 200_000).flatten(),
    );
    let err = s.send(&env(&["b@y.test"]), &big, &mut t).await.unwrap_err();
    assert!(matches!(err.stage(), Stage::Data | Stage::DataEnd), "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(!s.is_usable());
    assert!(matches!(
        s.send(&env(&["b@y.test"]), MSG, &mut t).await,
        Err(Error::Unusable)
    ));
    let _ = srv.finish().await;
}

/// Where a scripted server stops answering, and the stage whose timeout must fire.
fn stall_cases() -> Vec<(&'static str, Vec<Step>, Stage, bool)> {
    let stall = || Step::Stall(Duration::from_secs(3600));
    let mut after_mail = hello();
    after_mail.extend([e("MAIL FROM:<a@x.test>"), stall()]);
    let mut after_rcpt = mail_and_rcpts(&[]);
    after_rcpt.extend([e("RCPT TO:<b@y.test>"), stall()]);
    let mut after_dot = mail_and_rcpts(&[("b@y.test", "250 ok")]);
    after_dot.extend([e("DATA"), r("354 go"), Step::ExpectData, stall()]);
    vec![
        ("greeting", vec![stall()], Stage::Greeting, false),
        (
            "EHLO",
            vec![r("220 x"), e("EHLO client.test"), stall()],
            Stage::Ehlo,
            false,
        ),
        ("MAIL", after_mail, Stage::Mail, true),
        ("RCPT", after_rcpt, Stage::Rcpt, true),
        ("end of DATA", after_dot, Stage::DataEnd, true),
    ]
}

#[tokio::test(start_paused = true)]
async fn stalled_server_times_out_at_every_stage() {
    // Guards: a server that stops answering yields a Timeout at that stage after the configured
    // limit (1 s, on paused time over an in-memory pipe), not a hang.
    for (name, steps, stage, sending) in stall_cases() {
        let (srv, pipe) = ScriptServer::over_duplex(steps);
        let mut t = VecTranscript::new();
        let start = tokio::time::Instant::now();
        let ends = (srv.addr, srv.addr);
        let opts = ConnectOptions::default();
        let err = match Session::over(pipe, ends, &cfg(1), &opts, &mut t).await {
            Err(e) => e,
            Ok(_) if !sending => panic!("{name}: setup succeeded against a stalled server"),
            Ok(mut s) => s.send(&env(&["b@y.test"]), MSG, &mut t).await.unwrap_err(),
        };
        let took = start.elapsed();
        assert!(
            matches!(&err, Error::Timeout { stage: s, .. } if *s == stage),
            "{name}: {err}"
        );
        assert!(err.is_transient(), "{name}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(2),
            "{name}: took {took:?} of paused time"
        );
        drop(srv);
    }
}

#[tokio::test]
async fn garbage_and_oversized_replies_are_protocol_errors() {
    // Guards: non-SMTP replies and replies past the caps fail with a protocol error.
    let long: Vec<String> = (0..200).map(|i| format!("250-line {i}")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let cases: Vec<Vec<Step>> = vec![
        vec![r("HTTP/1.1 400 Bad Request")],
        vec![r("220 x"), e("EHLO client.test"), rs(&["250-x", "251 y"])],
        vec![r("220 x"), e("EHLO client.test"), rs(&long)],
        vec![r(&format!("220 {}", "x".repeat(20_000)))],
    ];
    for steps in cases {
        let srv = ScriptServer::start(steps, None).await;
        let err = connect(&srv, &mut VecTranscript::new()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
        let _ = srv.finish().await;
    }
}

#[tokio::test]
async fn smuggling_inputs_are_normalised_on_the_wire() {
    // Guards: bare LF/CR dots and "." lines cannot end DATA early; the wire payload is exact.
    let msg: &[u8] = b"Subject: s\n\na\n.\nb\r.\rc\r\n.\nd\n.\r\n.\r\n..x\n.";
    let want_data =
        "Subject: s\r\n\r\na\r\n..\r\nb\r\n..\r\nc\r\n..\r\nd\r\n..\r\n..\r\n...x\r\n..\r\n.\r\n";
    let mut steps = mail_and_rcpts(&[("b@y.test", "250 ok")]);
    steps.extend([e("DATA"), r("354 go"), Step::ExpectData, r("250 ok")]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    t.log_body = true;
    let mut s = connect(&srv, &mut t).await.unwrap();
    s.send(&env(&["b@y.test"]), msg, &mut t).await.unwrap();
    drop(s);
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let text = rec.text();
    let data = text.split_once("DATA\r\n").map(|x| x.1).unwrap();
    assert_eq!(data, want_data);
    assert!(
        t.lines.iter().any(|l| l.starts_with("* body ")),
        "log_body emits the payload"
    );
}

#[tokio::test]
async fn reply_421_mid_pipeline_ends_the_session() {
    // Guards: a 421 among pipelined replies surfaces as a transient RCPT error with the
    // server's reply (not a bare "closed"), and the session is marked unusable.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 PIPELINING"]),
            e("MAIL FROM:<a@x.test>"),
            e("RCPT TO:<b@y.test>"),
            e("RCPT TO:<c@y.test>"),
            rs(&["250 ok", "421 4.3.2 shutting down"]),
            Step::Drop,
        ],
        None,
    )
    .await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await.unwrap();
    let err = s
        .send(&env(&["b@y.test", "c@y.test"]), MSG, &mut t)
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Rcpt);
    assert_eq!(err.command(), Some("RCPT TO:<b@y.test>"));
    assert_eq!(err.reply().map(|r| r.code), Some(421));
    assert!(err.is_transient());
    assert!(!s.is_usable());
    assert_eq!(srv.finish().await.error, None);
}

#[tokio::test]
async fn noop_detects_a_dead_pooled_session() {
    // Guards: NOOP succeeds on a live session and marks a closed one unusable.
    let mut steps = hello();
    steps.extend([e("NOOP"), r("250 2.0.0 ok"), Step::Drop]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await.unwrap();
    s.noop(&mut t).await.unwrap();
    assert_eq!(srv.finish().await.error, None);
    let err = s.noop(&mut t).await.unwrap_err();
    assert!(err.is_transient() && err.stage() == Stage::Noop, "{err}");
    assert!(!s.is_usable());
}
