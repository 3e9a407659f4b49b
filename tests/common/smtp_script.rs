//! A scripted SMTP server for client tests: expects exact client lines, sends canned replies.
//!
//! Owns one-connection scripts on 127.0.0.1:0 with optional TLS upgrade, stall and drop steps,
//! and records exactly the bytes (and read chunks) it received. It knows nothing of mailtap's
//! client; tests compare its record with the expected wire bytes.
#![allow(dead_code)]

use mailtap::smtp::io::{trim_eol, Line, LineBuf, Stream, Tapped};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these reply lines, each followed by CRLF, in one write.
    Reply(Vec<String>),
    /// Read one line; it must equal this text (without CRLF).
    Expect(String),
    /// Read DATA lines up to and including the `.` CRLF terminator.
    ExpectData,
    /// Server-side TLS handshake with the script's identity.
    Tls,
    /// Do nothing for this long.
    Stall(Duration),
    /// Close the connection.
    Drop,
}

/// Shorthand for a single-line reply.
pub fn r(line: &str) -> Step {
    Step::Reply(vec![line.to_string()])
}
/// Shorthand for a multi-line reply.
pub fn rs(lines: &[&str]) -> Step {
    Step::Reply(lines.iter().map(|s| s.to_string()).collect())
}
/// Shorthand for an expected client line.
pub fn e(line: &str) -> Step {
    Step::Expect(line.to_string())
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Every byte received (plaintext inside TLS), in order.
    pub bytes: Vec<u8>,
    /// The size of each successful read, in order (one write usually arrives as one read).
    pub chunks: Vec<Vec<u8>>,
    /// The first mismatch or error, if any.
    pub error: Option<String>,
    /// Index of the step that was running when the script stopped.
    pub steps_done: usize,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A running scripted server.
pub struct ScriptServer {
    pub addr: SocketAddr,
    handle: JoinHandle<Record>,
}

/// A reader that records everything read through it.
struct Recording<'a> {
    inner: &'a mut Stream,
    rec: &'a mut Record,
}

impl AsyncRead for Recording<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let p = std::pin::Pin::new(&mut *me.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &p {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                me.rec.bytes.extend_from_slice(new);
                me.rec.chunks.push(new.to_vec());
            }
        }
        p
    }
}

impl ScriptServer {
    /// Starts a server that runs `steps` on the first connection; `identity` is used by TLS
    /// steps. The whole script is bounded by 20 s.
    pub async fn start(steps: Vec<Step>, identity: Option<native_tls::Identity>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = tokio::spawn(async move {
            let mut rec = Record::default();
            let run = async {
                let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
                run_script(Stream::Plain(tcp), steps, identity, &mut rec).await
            };
            match tokio::time::timeout(Duration::from_secs(20), run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => rec.error = Some(e),
                Err(_) => rec.error = Some("script timed out".into()),
            }
            rec
        });
        ScriptServer { addr, handle }
    }

    /// Runs `steps` (no TLS steps) on one end of an in-memory `tokio::io::duplex` pipe and
    /// returns the other end, for the client's `Session::over`: no socket, so tests can pause
    /// time. `addr` is unspecified. Bounded like [`ScriptServer::start`].
    pub fn over_duplex(steps: Vec<Step>) -> (Self, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let handle = tokio::spawn(async move {
            let mut rec = Record::default();
            let run = run_script(Stream::Other(Box::new(server)), steps, None, &mut rec);
            match tokio::time::timeout(Duration::from_secs(20), run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => rec.error = Some(e),
                Err(_) => rec.error = Some("script timed out".into()),
            }
            rec
        });
        let addr = SocketAddr::from(([0, 0, 0, 0], 0));
        (ScriptServer { addr, handle }, client)
    }

    /// Waits for the script to end and returns what it saw.
    pub async fn finish(self) -> Record {
        match tokio::time::timeout(Duration::from_secs(25), self.handle).await {
            Ok(Ok(rec)) => rec,
            Ok(Err(e)) => panic!("script task failed: {e}"),
            Err(_) => panic!("script did not finish"),
        }
    }
}

async fn run_script(
    stream: Stream,
    steps: Vec<Step>,
    identity: Option<native_tls::Identity>,
    rec: &mut Record,
) -> Result<(), String> {
    let mut stream = Some(stream);
    let mut lines = LineBuf::new();
    for (i, step) in steps.into_iter().enumerate() {
        rec.steps_done = i;
        let s = stream.as_mut().ok_or("no stream")?;
        match step {
            Step::Reply(ls) => {
                let mut out = Vec::new();
                for l in ls {
                    out.extend_from_slice(l.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                s.write_all(&out)
                    .await
                    .map_err(|e| format!("step {i}: {e}"))?;
            }
            Step::Expect(want) => {
                let mut rd = Recording { inner: s, rec };
                let got = match lines.read_line(&mut rd, 100_000).await {
                    Ok(Line::Full(l)) => String::from_utf8_lossy(trim_eol(&l)).into_owned(),
                    other => return Err(format!("step {i}: expected {want:?}, got {other:?}")),
                };
                if got != want {
                    return Err(format!("step {i}: expected {want:?}, got {got:?}"));
                }
            }
            Step::ExpectData => {
                let mut rd = Recording { inner: s, rec };
                // Bounded by the 20 s script timeout and the 1 MiB line cap.
                loop {
                    match lines.read_line(&mut rd, 1 << 20).await {
                        Ok(Line::Full(l)) if l == b".\r\n" => break,
                        Ok(Line::Full(_)) => {}
                        other => return Err(format!("step {i}: during data: {other:?}")),
                    }
                }
            }
            Step::Tls => {
                if lines.pending() > 0 {
                    return Err(format!("step {i}: bytes pending before TLS"));
                }
                let id = identity.clone().ok_or("no identity")?;
                let acc = native_tls::TlsAcceptor::new(id).map_err(|e| e.to_string())?;
                let acc = tokio_native_tls::TlsAcceptor::from(acc);
                let Some(Stream::Plain(tcp)) = stream.take() else {
                    return Err("TLS twice, or over a duplex pipe".into());
                };
                let tls = acc
                    .accept(Tapped::new(tcp, false))
                    .await
                    .map_err(|e| format!("step {i}: {e}"))?;
                stream = Some(Stream::Tls(Box::new(tls)));
            }
            Step::Stall(d) => tokio::time::sleep(d).await,
            Step::Drop => {
                drop(stream.take());
                rec.steps_done = i + 1;
                return Ok(());
            }
        }
    }
    rec.steps_done += 1;
    // Drain what the client still sends (e.g. nothing after QUIT) until it closes, briefly.
    if let Some(mut s) = stream {
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                rec.bytes.extend_from_slice(&buf[..n]);
            }
        })
        .await;
    }
    Ok(())
}

/// A fresh self-signed certificate for `localhost`: the server identity and the PEM that a
/// client must trust.
pub fn test_identity() -> (native_tls::Identity, native_tls::Certificate, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let id = native_tls::Identity::from_pkcs8(cert_pem.as_bytes(), key_pem.as_bytes())
        .expect("identity");
    let cert = native_tls::Certificate::from_pem(cert_pem.as_bytes()).expect("cert");
    (id, cert, cert_pem)
}
