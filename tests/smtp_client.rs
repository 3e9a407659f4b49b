//! SMTP client against a scripted server: byte-exact dialogues for the happy paths (plain,
//! STARTTLS, implicit TLS, AUTH PLAIN/LOGIN, HELO fallback, pipelining) and local refusals.

#[path = "common/smtp_script.rs"]
mod smtp_script;

use mailtap::smtp::{
    ClientConfig, ConnectOptions, Envelope, Error, Secret, Session, Stage, Timeouts, TlsMode,
    VecTranscript,
};
use smtp_script::{e, r, rs, test_identity, ScriptServer, Step};
use std::net::SocketAddr;

const MSG: &str = "From: a@x.test\r\nTo: b@y.test\r\nSubject: hi\r\n\r\nHello\r\n";

fn cfg(tls: TlsMode) -> ClientConfig {
    ClientConfig {
        host: "localhost".into(),
        tls,
        helo_name: Some("client.test".into()),
        timeouts: Timeouts::uniform(5),
        ..Default::default()
    }
}

fn opts(addr: SocketAddr) -> ConnectOptions {
    ConnectOptions {
        addr: Some(addr),
        ..Default::default()
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "a@x.test".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
    }
}

fn wire(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

/// The server side of one accepted message (lockstep, no PIPELINING).
fn one_mail(mail_line: &str) -> Vec<Step> {
    vec![
        e(mail_line),
        r("250 2.1.0 Ok"),
        e("RCPT TO:<b@y.test>"),
        r("250 2.1.5 Ok"),
        e("DATA"),
        r("354 go ahead"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued"),
        e("QUIT"),
        r("221 2.0.0 Bye"),
    ]
}

fn client_mail_bytes(mail_line: &str) -> Vec<&str> {
    vec![
        mail_line,
        "RCPT TO:<b@y.test>",
        "DATA",
        "From: a@x.test",
        "To: b@y.test",
        "Subject: hi",
        "",
        "Hello",
        ".",
        "QUIT",
    ]
}

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
async fn starttls_upgrades_and_re_ehlos() {
    // Guards: RFC 3207 — STARTTLS, verified handshake via extra roots, EHLO again inside TLS.
    let (id, cert, _) = test_identity();
    let mail = format!("MAIL FROM:<a@x.test> SIZE={}", MSG.len());
    let mut steps = vec![
        r("220 mx.test ESMTP"),
        e("EHLO client.test"),
        rs(&["250-mx.test", "250-STARTTLS", "250 SIZE 1000"]),
        e("STARTTLS"),
        r("220 2.0.0 Ready"),
        Step::Tls,
        e("EHLO client.test"),
        rs(&["250-mx.test", "250 SIZE 1000"]),
    ];
    steps.extend(one_mail(&mail));
    let srv = ScriptServer::start(steps, Some(id)).await;
    let mut o = opts(srv.addr);
    o.extra_roots = vec![cert];
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::Starttls), &o, &mut t)
        .await
        .unwrap();
    let info = s.tls_info().cloned().unwrap();
    assert_eq!(info.verified_name, "localhost");
    assert!(info.peer_cert_hash.is_some());
    assert!(
        !s.capabilities().starttls,
        "capabilities come from the post-TLS EHLO"
    );
    s.send(&env(&["b@y.test"]), MSG.as_bytes(), &mut t)
        .await
        .unwrap();
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let mut want = vec!["EHLO client.test", "STARTTLS", "EHLO client.test"];
    want.extend(client_mail_bytes(&mail));
    assert_eq!(rec.text(), wire(&want));
    assert!(t.lines.iter().any(|l| l.starts_with("* tls ")));
}

#[tokio::test]
async fn implicit_tls_from_first_byte() {
    // Guards: implicit TLS handshakes before the greeting and verifies the configured name.
    let (id, cert, _) = test_identity();
    let mail = "MAIL FROM:<a@x.test>";
    let mut steps = vec![
        Step::Tls,
        r("220 mx.test ESMTP"),
        e("EHLO client.test"),
        r("250 mx.test"),
    ];
    steps.extend(one_mail(mail));
    let srv = ScriptServer::start(steps, Some(id)).await;
    let mut o = opts(srv.addr);
    o.extra_roots = vec![cert];
    let mut t = VecTranscript::new();
    let mut s = Session::connect(&cfg(TlsMode::Implicit), &o, &mut t)
        .await
        .unwrap();
    assert!(s.tls_info().is_some());
    s.send(&env(&["b@y.test"]), MSG.as_bytes(), &mut t)
        .await
        .unwrap();
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    let mut want = vec!["EHLO client.test"];
    want.extend(client_mail_bytes(mail));
    assert_eq!(rec.text(), wire(&want));
}

#[tokio::test]
async fn untrusted_certificate_is_a_permanent_tls_error() {
    // Guards: verification is never skipped — an unknown issuer fails the handshake.
    let (id, _cert, _) = test_identity();
    let srv = ScriptServer::start(vec![Step::Tls, r("220 x")], Some(id)).await;
    let mut t = VecTranscript::new();
    let err = Session::connect(&cfg(TlsMode::Implicit), &opts(srv.addr), &mut t)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls {
                stage: Stage::Tls,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(t.lines.iter().any(|l| l.starts_with("* error")));
    let _ = srv.finish().await;
}

#[tokio::test]
async fn starttls_missing_is_refused_not_downgraded() {
    // Guards: tls = starttls never silently continues in clear text.
    let srv = ScriptServer::start(vec![r("220 x"), e("EHLO client.test"), r("250 x")], None).await;
    let err = Session::connect(
        &cfg(TlsMode::Starttls),
        &opts(srv.addr),
        &mut VecTranscript::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls {
                stage: Stage::StartTls,
                ..
            }
        ),
        "{err}"
    );
    let rec = srv.finish().await;
    assert_eq!(rec.text(), wire(&["EHLO client.test"]));
}

#[tokio::test]
async fn starttls_injection_is_refused() {
    // Guards: bytes sent with the STARTTLS 220 (pre-TLS injection) abort the session.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 STARTTLS"]),
            e("STARTTLS"),
            rs(&["220 go", "250 injected"]),
        ],
        None,
    )
    .await;
    let err = Session::connect(
        &cfg(TlsMode::Starttls),
        &opts(srv.addr),
        &mut VecTranscript::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                stage: Stage::StartTls,
                ..
            }
        ),
        "{err}"
    );
    let _ = srv.finish().await;
}

fn auth_cfg() -> ClientConfig {
    ClientConfig {
        username: Some("user".into()),
        password_env: Some("UNUSED_IN_TEST".into()),
        allow_plaintext_auth: true,
        ..cfg(TlsMode::None)
    }
}

#[tokio::test]
async fn auth_plain_is_exact_and_redacted() {
    // Guards: RFC 4616 PLAIN on the wire; the transcript shows only `AUTH PLAIN <redacted>`.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 AUTH LOGIN PLAIN"]),
            e("AUTH PLAIN AHVzZXIAczNjcmV0"),
            r("235 2.7.0 ok"),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut o = opts(srv.addr);
    o.password = Some(Secret::new("s3cret"));
    let mut t = VecTranscript::new();
    let s = Session::connect(&auth_cfg(), &o, &mut t).await.unwrap();
    s.quit(&mut t).await.unwrap();
    let rec = srv.finish().await;
    assert_eq!(rec.error, None);
    assert!(t.dialogue().contains(&"C: AUTH PLAIN <redacted>"));
    let all = t.lines.join("\n");
    assert!(!all.contains("AHVzZXIAczNjcmV0") && !all.contains("s3cret"));
}

#[tokio::test]
async fn auth_login_is_exact_and_redacted() {
    // Guards: LOGIN exchange on the wire; username and password lines are `<redacted>`.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 AUTH LOGIN"]),
            e("AUTH LOGIN"),
            r("334 VXNlcm5hbWU6"),
            e("dXNlcg=="),
            r("334 UGFzc3dvcmQ6"),
            e("czNjcmV0"),
            r("235 2.7.0 ok"),
            e("QUIT"),
            r("221 bye"),
        ],
        None,
    )
    .await;
    let mut o = opts(srv.addr);
    o.password = Some(Secret::new("s3cret"));
    let mut t = VecTranscript::new();
    let s = Session::connect(&auth_cfg(), &o, &mut t).await.unwrap();
    s.quit(&mut t).await.unwrap();
    assert_eq!(srv.finish().await.error, None);
    let sent: Vec<&str> = t
        .dialogue()
        .into_iter()
        .filter(|l| l.starts_with("C:"))
        .collect();
    assert_eq!(
        sent,
        vec![
            "C: EHLO client.test",
            "C: AUTH LOGIN",
            "C: <redacted>",
            "C: <redacted>",
            "C: QUIT"
        ]
    );
}

#[tokio::test]
async fn auth_failures() {
    // Guards: 535 is a permanent AUTH error; AUTH in clear text is refused unless allowed.
    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 AUTH PLAIN"]),
            e("AUTH PLAIN AHVzZXIAczNjcmV0"),
            r("535 5.7.8 bad credentials"),
        ],
        None,
    )
    .await;
    let mut o = opts(srv.addr);
    o.password = Some(Secret::new("s3cret"));
    let err = Session::connect(&auth_cfg(), &o, &mut VecTranscript::new())
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Stage::Auth);
    assert_eq!(err.reply().map(|r| r.code), Some(535));
    assert!(!err.is_transient());
    let _ = srv.finish().await;

    let srv = ScriptServer::start(
        vec![
            r("220 x"),
            e("EHLO client.test"),
            rs(&["250-x", "250 AUTH PLAIN"]),
        ],
        None,
    )
    .await;
    let c = ClientConfig {
        allow_plaintext_auth: false,
        ..auth_cfg()
    };
    o.addr = Some(srv.addr);
    let err = Session::connect(&c, &o, &mut VecTranscript::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(srv.finish().await.text(), wire(&["EHLO client.test"]));
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
