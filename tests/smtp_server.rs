//! The mailtap SMTP client against the built-in SMTP server: storage with envelope, configured
//! rejections, size limit, temp-fail, STARTTLS + AUTH, null sender, startup errors, mailbox.

#[path = "common/smtp_builtin.rs"]
mod smtp_builtin;

use mailtap::smtp::mailbox::Mailbox;
use mailtap::smtp::server::BuiltinAuth;
use mailtap::smtp::{
    BuiltinServer, BuiltinSmtpConfig, ClientConfig, ConnectOptions, Envelope, Error, RcptStatus,
    Secret, Session, Stage, TlsMode, VecTranscript,
};
use smtp_builtin::*;

#[tokio::test]
async fn delivery_is_stored_with_envelope() {
    // Guards: an accepted mail is stored as .eml (unstuffed, CRLF) plus its .json envelope.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    assert!(s.capabilities().pipelining && s.capabilities().smtputf8);
    let msg = b"Subject: hi\n\n.hidden\nend\n";
    let d = s
        .send(&env(&["a@x.test", "b@y.test"]), msg, &mut t)
        .await
        .unwrap();
    assert!(d.all_delivered());
    let (local, _) = s.addrs();
    s.quit(&mut t).await.unwrap();
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.envelope.sender, "sender@example.test");
    assert_eq!(m.envelope.recipients, vec!["a@x.test", "b@y.test"]);
    assert_eq!(m.envelope.client_addr, local.to_string());
    assert!(!m.envelope.tls);
    let eml = std::fs::read(&m.eml_path).unwrap();
    assert_eq!(eml, b"Subject: hi\r\n\r\n.hidden\r\nend\r\n");
    assert_eq!(m.envelope.size, eml.len() as u64);
    assert!(d.data_reply.unwrap().one_line().contains(&m.envelope.id));
    srv.stop().await;
}

#[tokio::test]
async fn nobody_is_rejected_others_delivered() {
    // Guards: reject_recipients default `nobody@*` → 550 5.1.1; the rest still get the mail.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    let d = s
        .send(
            &env(&["a@x.test", "nobody@x.test", "c@z.test"]),
            b"Subject: x\r\n\r\nx",
            &mut t,
        )
        .await
        .unwrap();
    match &d.per_rcpt[1].1 {
        RcptStatus::Rejected(r) => {
            assert_eq!(r.code, 550);
            assert_eq!(r.enhanced.map(|e| e.to_string()).as_deref(), Some("5.1.1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.delivered().collect::<Vec<_>>(),
        vec!["a@x.test", "c@z.test"]
    );
    // A second mail on the same session (RSET first) where everyone is rejected: no DATA.
    let d = s
        .send(&env(&["nobody@y.test"]), b"x", &mut t)
        .await
        .unwrap();
    assert!(d.data_reply.is_none());
    s.quit(&mut t).await.unwrap();
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].envelope.recipients, vec!["a@x.test", "c@z.test"]);
    srv.stop().await;
}

#[tokio::test]
async fn size_limit_enforced_on_both_sides() {
    // Guards: the advertised SIZE makes the client refuse; the server itself refuses too.
    let srv = start(BuiltinSmtpConfig {
        max_message_bytes: 100,
        ..Default::default()
    })
    .await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    let big = vec![b'x'; 500];
    let err = s.send(&env(&["a@x.test"]), &big, &mut t).await.unwrap_err();
    assert!(
        matches!(err, Error::SizeExceeded { limit: 100, .. }),
        "{err}"
    );
    s.quit(&mut t).await.unwrap();
    // Raw client that lies about / omits SIZE.
    let out = raw(
        srv.addr,
        &[
            "EHLO raw\r\nMAIL FROM:<a@b> SIZE=1000\r\n",
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
            &format!("{}\r\n.\r\nQUIT\r\n", "y".repeat(300)),
        ],
    )
    .await;
    assert!(
        out.contains("552 5.3.4 Message size exceeds fixed maximum\r\n"),
        "{out}"
    );
    assert!(out.contains("354 "), "{out}");
    assert!(
        out.contains("552 5.3.4 Message size exceeds fixed maximum message size"),
        "{out}"
    );
    assert!(Mailbox::list(&srv.mailbox()).unwrap().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn temp_fail_then_success() {
    // Guards: temp_fail_first_n → the first MAIL gets 451 (transient), a later try delivers.
    let srv = start(BuiltinSmtpConfig {
        temp_fail_first_n: 1,
        ..Default::default()
    })
    .await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    let err = s.send(&env(&["a@x.test"]), b"x", &mut t).await.unwrap_err();
    assert_eq!(err.stage(), Stage::Mail);
    assert!(err.is_transient());
    assert_eq!(err.reply().map(|r| r.code), Some(451));
    let d = s.send(&env(&["a@x.test"]), b"x", &mut t).await.unwrap();
    assert!(d.all_delivered());
    s.quit(&mut t).await.unwrap();
    assert_eq!(Mailbox::list(&srv.mailbox()).unwrap().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn starttls_and_auth_against_builtin() {
    // Guards: STARTTLS with the minted certificate plus AUTH; the envelope records both.
    let var = "MAILTAP_TEST_BUILTIN_SMTP_PW_1";
    std::env::set_var(var, "pw-123");
    let srv = start(BuiltinSmtpConfig {
        starttls: true,
        auth: Some(BuiltinAuth {
            username: "lab".into(),
            password_env: var.into(),
        }),
        ..Default::default()
    })
    .await;
    let pem = srv.cert_pem.clone().unwrap();
    let cert = native_tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    let cfg = ClientConfig {
        username: Some("lab".into()),
        password_env: Some(var.into()),
        ..client_cfg(TlsMode::Starttls)
    };
    for (mech, want_ok) in [("right", true), ("wrong", false)] {
        let o = ConnectOptions {
            addr: Some(srv.addr),
            extra_roots: vec![cert.clone()],
            password: Some(Secret::new(if want_ok { "pw-123" } else { mech })),
        };
        let mut t = VecTranscript::new();
        let r = Session::connect(&cfg, &o, &mut t).await;
        if !want_ok {
            let err = r.unwrap_err();
            assert_eq!(
                (err.stage(), err.reply().map(|r| r.code)),
                (Stage::Auth, Some(535))
            );
            continue;
        }
        let mut s = r.unwrap();
        assert!(s.tls_info().is_some());
        assert!(s.capabilities().has_auth("PLAIN"));
        s.send(&env(&["a@x.test"]), b"Subject: tls\r\n\r\nx", &mut t)
            .await
            .unwrap();
        s.quit(&mut t).await.unwrap();
        assert!(t.dialogue().contains(&"C: AUTH PLAIN <redacted>"));
    }
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].envelope.tls);
    assert_eq!(mails[0].envelope.auth_user.as_deref(), Some("lab"));
    srv.stop().await;
}

#[tokio::test]
async fn bind_errors_are_reported() {
    // Guards: a missing AUTH password variable and a busy port are clear startup errors.
    let dir = tempfile::tempdir().unwrap();
    let cfg = BuiltinSmtpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Some(BuiltinAuth {
            username: "u".into(),
            password_env: "MAILTAP_TEST_SURELY_UNSET_VAR".into(),
        }),
        ..Default::default()
    };
    let err = BuiltinServer::bind(cfg, dir.path().join("m"))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("MAILTAP_TEST_SURELY_UNSET_VAR"),
        "{err}"
    );
    let first = BuiltinServer::bind(
        BuiltinSmtpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        dir.path().join("m"),
    )
    .await
    .unwrap();
    let busy = BuiltinSmtpConfig {
        listen: first.local_addr().unwrap(),
        ..Default::default()
    };
    let err = BuiltinServer::bind(busy, dir.path().join("m"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot listen"), "{err}");
}

#[test]
fn mailbox_list_skips_incomplete_and_rejects_corrupt() {
    // Guards: temp files and envelopes without .eml are ignored; a corrupt envelope is an error.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join(".x.eml.tmp"), b"partial").unwrap();
    std::fs::write(p.join("orphan.json"), b"{}").unwrap();
    std::fs::write(p.join("notes.txt"), b"hi").unwrap();
    assert!(Mailbox::list(p).unwrap().is_empty());
    std::fs::write(p.join("bad.eml"), b"x").unwrap();
    std::fs::write(p.join("bad.json"), b"{not json").unwrap();
    let err = Mailbox::list(p).unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
}

#[tokio::test]
async fn smuggling_inputs_round_trip_through_client_and_server() {
    // Guards: what the client sends for hostile line endings is stored as the CRLF-normalised
    // message — one mail, nothing split off, no dot lost or gained.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    let msg: &[u8] = b"Subject: s\n\na\n.\nMAIL FROM:<x@y>\r.\r..\r\n.\n.";
    s.send(&env(&["a@x.test"]), msg, &mut t).await.unwrap();
    s.quit(&mut t).await.unwrap();
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails.len(), 1);
    let eml = std::fs::read(&mails[0].eml_path).unwrap();
    assert_eq!(
        eml,
        b"Subject: s\r\n\r\na\r\n.\r\nMAIL FROM:<x@y>\r\n.\r\n..\r\n.\r\n.\r\n".to_vec()
    );
    srv.stop().await;
}

#[tokio::test]
async fn null_sender_is_accepted_and_stored() {
    // Guards: the null reverse-path `<>` (used by error reports) goes through end to end.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let mut t = VecTranscript::new();
    let mut s = connect(&srv, &mut t).await;
    let e = Envelope {
        from: String::new(),
        rcpts: vec!["a@x.test".into()],
    };
    s.send(&e, b"Subject: report\r\n\r\nx", &mut t)
        .await
        .unwrap();
    s.quit(&mut t).await.unwrap();
    assert!(t
        .dialogue()
        .iter()
        .any(|l| l.starts_with("C: MAIL FROM:<> SIZE=")));
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails[0].envelope.sender, "");
    srv.stop().await;
}

#[tokio::test]
async fn session_runs_in_a_spawned_task() {
    // Guards: Session futures are Send, so the relay can run sessions in tokio tasks.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let addr = srv.addr;
    let handle = tokio::spawn(async move {
        let mut t = VecTranscript::new();
        let o = ConnectOptions {
            addr: Some(addr),
            ..Default::default()
        };
        let mut s = Session::connect(&client_cfg(TlsMode::None), &o, &mut t).await?;
        let d = s.send(&env(&["a@x.test"]), b"x", &mut t).await?;
        s.noop(&mut t).await?;
        s.quit(&mut t).await?;
        Ok::<_, Error>(d)
    });
    let d = handle.await.unwrap().unwrap();
    assert!(d.all_delivered());
    srv.stop().await;
}
