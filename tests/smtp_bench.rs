//! Throughput measurement (not a pass/fail timing test): the mailtap client relaying to the
//! built-in server over loopback, many mails on one reused session. Run in release with
//! `cargo test --release --test smtp_bench -- --ignored --nocapture`.

use mailtap::smtp::mailbox::Mailbox;
use mailtap::smtp::{
    BuiltinServer, BuiltinSmtpConfig, ClientConfig, ConnectOptions, Envelope, NullTranscript,
    Session, Timeouts, TlsMode,
};
use std::time::{Duration, Instant};

const MAILS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn reused_session_throughput_fsync() {
    // Guards: nothing timed — it reports mails/s and checks every mail was stored once.
    run(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn reused_session_throughput_no_fsync() {
    // Guards: nothing timed — it reports mails/s with the server's fsync off.
    run(false).await;
}

async fn run(fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BuiltinSmtpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fsync,
        ..Default::default()
    };
    let server = BuiltinServer::bind(cfg, dir.path().join("mailbox"))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let client = ClientConfig {
        host: "localhost".into(),
        tls: TlsMode::None,
        timeouts: Timeouts::uniform(30),
        ..Default::default()
    };
    let opts = ConnectOptions {
        addr: Some(addr),
        ..Default::default()
    };
    let env = Envelope {
        from: "sender@example.test".into(),
        rcpts: vec![
            "a@one.test".into(),
            "b@two.test".into(),
            "c@three.test".into(),
        ],
    };
    let mut body =
        String::from("From: sender@example.test\r\nTo: a@one.test\r\nSubject: bench\r\n\r\n");
    for i in 0..30 {
        body.push_str(&format!(
            "line {i} of a typical short message body, about sixty chars\r\n"
        ));
    }
    let mut t = NullTranscript;
    let mut s = Session::connect(&client, &opts, &mut t).await.unwrap();
    let start = Instant::now();
    for _ in 0..MAILS {
        let d = s.send(&env, body.as_bytes(), &mut t).await.unwrap();
        assert!(d.all_delivered());
    }
    let took = start.elapsed();
    s.quit(&mut t).await.unwrap();
    let rate = MAILS as f64 / took.as_secs_f64();
    println!(
        "smtp bench (server fsync={fsync}): {MAILS} mails x 3 rcpts, {} bytes each, one session: {:.3} s = {rate:.0} mails/s",
        body.len(),
        took.as_secs_f64()
    );
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Mailbox::list(&dir.path().join("mailbox")).unwrap().len(),
        MAILS
    );
}
