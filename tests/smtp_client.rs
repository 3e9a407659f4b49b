//! SMTP client against a scripted server: byte-exact dialogues for plain sends, HELO fallback,
//! pipelining, and the local refusals (SIZE, SMTPUTF8, unsafe addresses). TLS and AUTH paths
//! are in `smtp_client_tls.rs`.

#[path = "common/smtp_dialogue.rs"]
mod smtp_dialogue;
#[path = "common/smtp_script.rs"]
mod smtp_script;

use mailtap::smtp::{Error, Session, TlsMode, VecTranscript};
use smtp_dialogue::*;
use smtp_script::{e, r, rs, ScriptServer, Step};

#[tokio::test]
async fn plain_send_is_byte_exact() {
    // Guards: a plain session sends exactly EHLO, MAIL with SIZE, RCPT, DATA, payload, QUIT.
    let mail = format!("MAIL FROM:<a@x.test> SIZE={}", MSG.len());
    let mut steps = vec![
        r("220 mx.test ESMTP"),
        e("EHLO client.test"),
        rs(&["250-mx.test", "250-SIZE 1000000", "250 ENHANCEDSTATUSCODES"]),
    ];
    steps.extend(one_mail(&mail));
    let srv = ScriptServer::start(steps, None).await;
    let srv_addr = srv.addr;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    let d = s
        .send(&env(&["b@y.test"]), MSG.as_bytes(), &mut t)
        .await
        .unwrap();
    assert!(d.all_delivered());
    assert_eq!(d.data_reply.as_ref().map(|r| r.code), Some(250));
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let mut want = vec!["EHLO client.test"];
    want.extend(client_mail_bytes(&mail));
    assert_eq!(rec.text(), wire(&want));
    // The transcript shows the connection, commands and replies, and summarises the data.
    assert!(
        t.lines[0].starts_with("* connected 127.0.0.1:"),
        "{:?}",
        t.lines[0]
    );
    assert!(t.lines[0].ends_with(&format!("-> {} (localhost)", srv_addr)));
    assert_eq!(t.lines.last().map(String::as_str), Some("* closed"));
    let dia = t.dialogue();
    assert_eq!(dia[0], "S: 220 mx.test ESMTP");
    assert!(dia.contains(&"C: RCPT TO:<b@y.test>"));
    assert!(dia.contains(&"S: 250 2.0.0 Ok: queued"));
    assert!(
        !dia.iter().any(|l| l.contains("Hello")),
        "body not logged by default"
    );
    assert!(t.lines.iter().any(|l| l.contains("body_bytes=7")));
}

#[tokio::test]
async fn helo_fallback_on_502() {
    // Guards: EHLO refused with 502 → HELO, and no ESMTP parameters are used afterwards.
    let mail = "MAIL FROM:<a@x.test>";
    let mut steps = vec![
        r("220 old.test SMTP"),
        e("EHLO client.test"),
        r("502 5.5.1 command not implemented"),
        e("HELO client.test"),
        r("250 old.test"),
    ];
    steps.extend(one_mail(mail));
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    s.send(&env(&["b@y.test"]), MSG.as_bytes(), &mut t)
        .await
        .unwrap();
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let mut want = vec!["EHLO client.test", "HELO client.test"];
    want.extend(client_mail_bytes(mail));
    assert_eq!(rec.text(), wire(&want));
}

#[tokio::test]
async fn pipelining_sends_mail_and_rcpts_in_one_write() {
    // Guards: RFC 2920 — MAIL + all RCPTs in one write; on reuse RSET joins the same write.
    let rcpts = ["b@y.test", "c@z.test", "d@w.test"];
    let mut steps = vec![
        r("220 x"),
        e("EHLO client.test"),
        rs(&["250-x", "250 PIPELINING"]),
    ];
    for i in 0..2 {
        if i == 1 {
            steps.push(e("RSET"));
        }
        steps.push(e("MAIL FROM:<a@x.test>"));
        for rc in rcpts {
            steps.push(e(&format!("RCPT TO:<{rc}>")));
        }
        let mut replies = if i == 1 { vec!["250 reset"] } else { vec![] };
        replies.extend(["250 ok", "250 ok", "250 ok", "250 ok"]);
        steps.push(rs(&replies));
        steps.extend([e("DATA"), r("354 go"), Step::ExpectData, r("250 queued")]);
    }
    steps.extend([e("QUIT"), r("221 bye")]);
    let srv = ScriptServer::start(steps, None).await;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    for _ in 0..2 {
        let d = s.send(&env(&rcpts), MSG.as_bytes(), &mut t).await.unwrap();
        assert_eq!(d.delivered().count(), 3);
    }
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let group = wire(&[
        "MAIL FROM:<a@x.test>",
        "RCPT TO:<b@y.test>",
        "RCPT TO:<c@z.test>",
        "RCPT TO:<d@w.test>",
    ]);
    let chunks: Vec<String> = rec
        .chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(chunks.contains(&group), "{chunks:?}");
    assert!(chunks.contains(&format!("RSET\r\n{group}")), "{chunks:?}");
}

#[tokio::test]
async fn size_limit_refused_before_mail() {
    // Guards: RFC 1870 — a message over the announced SIZE is refused locally, nothing sent.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 SIZE 20"]),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    let err = s
        .send(&env(&["b@y.test"]), MSG.as_bytes(), &mut t)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SizeExceeded { limit: 20, size } if size == MSG.len()),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(s.is_usable());
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.text(), wire(&["EHLO client.test", "QUIT"]));
}

#[tokio::test]
async fn smtputf8_and_8bitmime_parameters() {
    // Guards: non-ASCII addresses need SMTPUTF8 (clear error without it); 8-bit bodies get
    // BODY=8BITMIME when offered.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250-8BITMIME", "250 SMTPUTF8"]),
            e("MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8"),
            r("250 ok"),
            e("RCPT TO:<张三@例子.中国>"),
            r("250 ok"),
            e("DATA"),
            r("354 go"),
            Step::ExpectData,
            r("250 ok"),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    s.send(
        &env(&["张三@例子.中国"]),
        "Subject: 你好\r\n\r\nx".as_bytes(),
        &mut t,
    )
    .await
    .unwrap();
    s.quit(&mut t).await.unwrap();
    assert_eq!(srv.finish().await.error, None);

    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            r("250 x"),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    let err = s
        .send(&env(&["张三@例子.中国"]), b"x", &mut t)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Smtputf8Unsupported { .. }), "{err}");
    s.quit(&mut t).await.unwrap();
    assert_eq!(srv.finish().await.error, None);
}

#[tokio::test]
async fn injected_addresses_are_refused_locally() {
    // Guards: an address carrying CRLF + another command never reaches the wire.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            r("250 x"),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::None), &opts(srv.addr), &mut t)
        .await
        .unwrap();
    for bad in ["b@y.test>\r\nRCPT TO:<evil@x", "", "a b@c"] {
        let err = s.send(&env(&[bad]), b"x", &mut t).await.unwrap_err();
        assert!(matches!(err, Error::InvalidAddress { .. }), "{err}");
    }
    s.quit(&mut t).await.unwrap();
    assert_eq!(
        srv.finish().await.text(),
        wire(&["EHLO client.test", "QUIT"])
    );
}
