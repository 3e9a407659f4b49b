//! The built-in SMTP server spoken to with raw bytes: every verb's reply, sequencing errors,
//! line caps, SMTP smuggling, STARTTLS injection, AUTH-needs-TLS, connection limit, idle timeout.

#[path = "common/smtp_builtin.rs"]
mod smtp_builtin;

use mailtap::smtp::mailbox::Mailbox;
use mailtap::smtp::server::BuiltinAuth;
use mailtap::smtp::{BuiltinServer, BuiltinSmtpConfig};
use smtp_builtin::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

#[tokio::test]
async fn raw_dialogue_commands_and_errors() {
    // Guards: the server's replies to each verb, sequencing errors and AUTH requirement.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let out = raw(
        srv.addr,
        &[
            "MAIL FROM:<a@b>\r\nHELO raw\r\nVRFY x\r\nNOOP\r\nFOO\r\nRCPT TO:<c@d>\r\nDATA\r\n\
           MAIL FROM:<é@b>\r\nMAIL FROM:<a@b> BOGUS=1\r\nRSET\r\nQUIT\r\n",
        ],
    )
    .await;
    let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        vec!["220", "503", "250", "252", "250", "500", "503", "503", "553", "555", "250", "221"],
        "{out}"
    );
    let out = raw(srv.addr, &[&format!("EHLO {}\r\n", "x".repeat(5000))]).await;
    assert!(out.contains("500 5.5.2 Line too long"), "{out}");
    srv.stop().await;

    let var = "MAILTAP_TEST_BUILTIN_SMTP_PW_2";
    std::env::set_var(var, "pw");
    let srv = start(BuiltinSmtpConfig {
        auth: Some(BuiltinAuth {
            username: "u".into(),
            password_env: var.into(),
        }),
        ..Default::default()
    })
    .await;
    // AUTH LOGIN with base64 "u" / "pw".
    let out = raw(
        srv.addr,
        &[
            "EHLO r\r\nMAIL FROM:<a@b>\r\n",
            "AUTH LOGIN\r\n",
            "dQ==\r\n",
            "cHc=\r\n",
            "MAIL FROM:<a@b>\r\nQUIT\r\n",
        ],
    )
    .await;
    assert!(out.contains("530 5.7.0"), "{out}");
    assert!(
        out.contains("334 VXNlcm5hbWU6") && out.contains("235 2.7.0"),
        "{out}"
    );
    assert!(out.contains("250 2.1.0 Ok"), "{out}");
    srv.stop().await;
}

#[tokio::test]
async fn server_resists_smuggling_and_unstuffs() {
    // Guards: only CRLF.CRLF ends DATA; bare-LF dots stay message content; pipelined
    // commands after the terminator are processed as commands.
    let srv = start(BuiltinSmtpConfig::default()).await;
    let out = raw(
        srv.addr,
        &[
            "EHLO r\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
            "Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@e>\r\n..dot\r\n.\r\nNOOP\r\nQUIT\r\n",
        ],
    )
    .await;
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    assert!(out.ends_with("250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"), "{out}");
    let mails = Mailbox::list(&srv.mailbox()).unwrap();
    assert_eq!(mails.len(), 1);
    let eml = std::fs::read(&mails[0].eml_path).unwrap();
    assert_eq!(
        eml,
        b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@e>\r\n.dot\r\n"
    );
    srv.stop().await;
}

#[tokio::test]
async fn auth_needs_tls_when_starttls_is_on() {
    // Guards: with STARTTLS configured, AUTH is not offered or accepted in clear text.
    let var = "MAILTAP_TEST_BUILTIN_SMTP_PW_3";
    std::env::set_var(var, "pw");
    let srv = start(BuiltinSmtpConfig {
        starttls: true,
        auth: Some(BuiltinAuth {
            username: "u".into(),
            password_env: var.into(),
        }),
        ..Default::default()
    })
    .await;
    let out = raw(srv.addr, &["EHLO r\r\nAUTH PLAIN AHUAcHc=\r\nQUIT\r\n"]).await;
    assert!(out.contains("250 STARTTLS\r\n"), "{out}");
    assert!(!out.contains("AUTH PLAIN LOGIN"), "{out}");
    assert!(out.contains("538 5.7.11"), "{out}");
    srv.stop().await;
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    // Guards: connections over max_connections get 421; an idle client is dropped with 421.
    let dir = tempfile::tempdir().unwrap();
    let cfg = BuiltinSmtpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: 1,
        command_timeout_secs: 1,
        ..Default::default()
    };
    let server = BuiltinServer::bind(cfg, dir.path().join("mailbox"))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220 "));
    let second = raw(addr, &[]).await;
    assert!(second.starts_with("421 4.7.0"), "{second}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "idle connection closed by the server");
    assert!(String::from_utf8_lossy(&rest).starts_with("421 4.4.2"));
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn server_discards_commands_pipelined_before_tls() {
    // Guards: STARTTLS injection — commands sent with STARTTLS in clear are never answered.
    let srv = start(BuiltinSmtpConfig {
        starttls: true,
        ..Default::default()
    })
    .await;
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    c.write_all(b"EHLO r\r\nSTARTTLS\r\nNOOP\r\nNOOP\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(700), async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = c.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");
    drop(c);
    srv.stop().await;
}
