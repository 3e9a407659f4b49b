//! Helpers for tests against the built-in SMTP server: start/stop on 127.0.0.1:0 with a temp
//! mailbox, a client config and session for it, and a raw line-level client.
//!
//! Owns only test plumbing; the server under test is `mailtap::smtp::BuiltinServer`.
#![allow(dead_code)]

use mailtap::smtp::{
    BuiltinServer, BuiltinSmtpConfig, ClientConfig, ConnectOptions, Envelope, Session, Timeouts,
    TlsMode, VecTranscript,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub struct Running {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub cert_pem: Option<String>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn mailbox(&self) -> PathBuf {
        self.dir.path().join("mailbox")
    }
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .expect("server task");
    }
}

pub async fn start(cfg: BuiltinSmtpConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BuiltinSmtpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        command_timeout_secs: 5,
        data_timeout_secs: 5,
        ..cfg
    };
    let server = BuiltinServer::bind(cfg, dir.path().join("mailbox"))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let cert_pem = server.certificate_pem().map(str::to_string);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        dir,
        cert_pem,
        stop: Some(tx),
        task,
    }
}

pub fn client_cfg(tls: TlsMode) -> ClientConfig {
    ClientConfig {
        host: "localhost".into(),
        tls,
        timeouts: Timeouts::uniform(5),
        ..Default::default()
    }
}

pub fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "sender@example.test".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
    }
}

pub async fn connect(srv: &Running, t: &mut VecTranscript) -> Session {
    let o = ConnectOptions {
        addr: Some(srv.addr),
        ..Default::default()
    };
    Session::connect(&client_cfg(TlsMode::None), &o, t)
        .await
        .unwrap()
}

/// Sends each chunk in its own write (waiting briefly between), returns all server output.
pub async fn raw(addr: SocketAddr, chunks: &[&str]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    for ch in chunks {
        c.write_all(ch.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
