//! Wireshark check: tshark captures loopback while mailtap's client delivers to the built-in
//! SMTP server with `tls = "none"`, then decodes the capture and must see every SMTP command
//! and reply (and the mail's headers) with no malformed packets.
//!
//! Needs tshark and capture rights (root). Without them the test skips with a message, except
//! under `CI=true`, where it fails. The proxy's HTTP POST is covered end to end in
//! tests/wireshark_e2e.rs.

#[path = "common/gate.rs"]
mod gate;
#[path = "common/smtp_builtin.rs"]
mod smtp_builtin;
#[path = "common/tshark.rs"]
mod tshark;

use mailtap::smtp::{BuiltinSmtpConfig, TlsMode, VecTranscript};

#[tokio::test]
async fn tshark_decodes_the_smtp_dialogue() {
    // Guards: a plain-SMTP relay is what Wireshark users see — tshark decodes EHLO, MAIL,
    // RCPT, DATA, QUIT and the 220/250/354/221 replies, the mail's Subject, and no packet of
    // the conversation is malformed.
    let Some(tshark) = tshark::require() else {
        return;
    };
    let srv = smtp_builtin::start(BuiltinSmtpConfig::default()).await;
    let port = srv.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let capture = tshark::Capture::start(
        &tshark,
        &format!("tcp port {port}"),
        &dir.path().join("smtp.pcapng"),
    )
    .await;

    let mut t = VecTranscript::new();
    let mut s = smtp_builtin::connect(&srv, &mut t).await;
    assert!(s.tls_info().is_none(), "tls = none: plain SMTP on the wire");
    let msg = "From: sender@example.test\r\nTo: a@one.test, b@two.test\r\n\
               Subject: wireshark check\r\n\r\nhello\r\n.\r\nbye\r\n";
    let d = s
        .send(
            &smtp_builtin::env(&["a@one.test", "b@two.test"]),
            msg.as_bytes(),
            &mut t,
        )
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:?}");
    s.quit(&mut t).await.unwrap();
    assert_eq!(smtp_builtin::client_cfg(TlsMode::None).tls, TlsMode::None);

    let pcap = capture.stop().await;
    srv.stop().await;
    let decode = [(port, "smtp")];

    let fields = tshark::read(
        &tshark,
        &pcap,
        &decode,
        &[
            "-Y",
            "smtp",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-e",
            "smtp.req.command",
            "-e",
            "smtp.response.code",
        ],
    )
    .await;
    println!("tshark smtp fields (command, reply code):\n{fields}");
    let cols = tshark::columns(&fields, 2);
    let (commands, codes) = (&cols[0], &cols[1]);
    for want in ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] {
        assert!(
            commands.iter().any(|c| c.eq_ignore_ascii_case(want)),
            "tshark did not decode {want}: commands {commands:?}\n{fields}"
        );
    }
    let rcpts = commands.iter().filter(|c| c.eq_ignore_ascii_case("RCPT"));
    assert_eq!(rcpts.count(), 2, "{commands:?}");
    for want in ["220", "250", "354", "221"] {
        assert!(
            codes.iter().any(|c| c == want),
            "no {want} reply: {codes:?}"
        );
    }

    let subject = tshark::read(
        &tshark,
        &pcap,
        &decode,
        &["-Y", "imf", "-T", "fields", "-e", "imf.subject"],
    )
    .await;
    assert_eq!(subject.trim(), "wireshark check", "IMF decoded from DATA");

    let malformed = tshark::read(&tshark, &pcap, &decode, &["-Y", "_ws.malformed"]).await;
    assert!(
        malformed.trim().is_empty(),
        "malformed packets:\n{malformed}"
    );
    let all = tshark::read(&tshark, &pcap, &decode, &[]).await;
    assert!(
        all.lines().count() >= 10,
        "capture holds the conversation:\n{all}"
    );
}
