//! SMTP client security paths against a scripted server: STARTTLS, implicit TLS, certificate
//! verification, STARTTLS downgrade and injection, AUTH PLAIN/LOGIN with redaction.

#[path = "common/smtp_dialogue.rs"]
mod smtp_dialogue;
#[path = "common/smtp_script.rs"]
mod smtp_script;

use mailtap::smtp::{ClientConfig, Error, Secret, Session, Stage, TlsMode, VecTranscript};
use smtp_dialogue::*;
use smtp_script::{e, r, rs, test_identity, ScriptServer, Step};

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
    // Version and cipher are read from the ServerHello (native-tls does not expose them).
    let version = info.version.as_deref().unwrap_or("none");
    let cipher = info.cipher.as_deref().unwrap_or("none");
    println!("negotiated {version} {cipher}");
    assert!(matches!(version, "TLSv1.2" | "TLSv1.3"), "{version}");
    assert!(cipher.starts_with("TLS_"), "{cipher}");
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
    assert_eq!(err.command(), Some("AUTH PLAIN <redacted>"));
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
