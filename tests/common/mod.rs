//! Test helpers: start mailtap on 127.0.0.1:0, fake origins (hyper and raw TCP), an echo
//! server, and raw-socket clients. Every server binds port 0 and every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mailtap::app::App;
use mailtap::config::Config;
use mailtap::proxy::Interceptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running mailtap.
pub struct Running {
    pub addr: SocketAddr,
    /// Data and logs directory (`data/`, `logs/` inside), removed when dropped.
    pub dir: tempfile::TempDir,
    pub spool: mailtap::queue::Spool<mailtap::mail::MailRecord>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Signals shutdown and waits (bounded) for `run` to return.
    pub async fn shutdown(self) {
        self.stop_keep_dir().await;
    }

    /// Stops mailtap and hands back its data directory (for a restart on the same spool).
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT * 3, &mut self.task)
            .await
            .expect("mailtap did not stop in time")
            .expect("mailtap task panicked");
        drop(self.spool);
        self.dir
    }

    /// Messages the built-in SMTP server stored.
    pub fn mailbox(&self) -> Vec<mailtap::smtp::mailbox::StoredMail> {
        mailtap::smtp::mailbox::Mailbox::list(&self.dir.path().join("data/mailbox"))
            .unwrap_or_default()
    }

    /// Waits (bounded by [`WAIT`]) until the built-in mailbox holds `n` messages; returns them.
    pub async fn mailbox_with(&self, n: usize) -> Vec<mailtap::smtp::mailbox::StoredMail> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mail = self.mailbox();
            if mail.len() >= n {
                return mail;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mailbox has {} of {n} messages",
                mail.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Log-*.txt transcripts written so far, sorted by name.
    pub fn transcripts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(self.dir.path().join("logs"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        (name, std::fs::read_to_string(e.path()).unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Signals shutdown without waiting; returns the task to await.
    pub fn begin_shutdown(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        std::mem::replace(&mut self.task, tokio::spawn(async {}))
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts mailtap with `[proxy].listen = 127.0.0.1:0`, data and logs in a temp dir, plus
/// `extra` TOML; `interceptor` replaces the webmail interceptor when given.
pub async fn start(extra: &str, interceptor: Option<Arc<dyn Interceptor>>) -> Running {
    start_in(tempfile::tempdir().unwrap(), extra, interceptor).await
}

/// Like [`start`], with data and logs in `dir` (to restart on the same spool).
pub async fn start_in(
    dir: tempfile::TempDir,
    extra: &str,
    interceptor: Option<Arc<dyn Interceptor>>,
) -> Running {
    let text = format!("{extra}\n");
    let mut config = Config::parse(&text).expect("test config parses");
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.paths.data = dir.path().join("data");
    config.paths.logs = dir.path().join("logs");
    config.builtin_smtp.listen = "127.0.0.1:0".parse().unwrap();
    let app = match interceptor {
        Some(i) => App::start_with(&config, i).await,
        None => App::start(&config).await,
    }
    .expect("mailtap starts");
    let addr = app.proxy_addr();
    let spool = app.spool().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        dir,
        spool,
        stop: Some(tx),
        task,
    }
}

/// Waits (bounded) until no mail is active or being retried, then returns every mail of origin `Webmail` in any
/// state, with its spool id and state.
pub async fn settled_mails(
    spool: &mailtap::queue::Spool<mailtap::mail::MailRecord>,
) -> Vec<(
    mailtap::queue::MailId,
    mailtap::queue::MailState,
    mailtap::mail::MailRecord,
)> {
    use mailtap::queue::MailState;
    let deadline = std::time::Instant::now() + WAIT;
    // Settled: nothing active and no deferred mail in a worker's hands.
    while !spool.list(MailState::Active).is_empty()
        || spool.list(MailState::Deferred).iter().any(|m| m.claimed)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "mail still in flight after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    for state in [MailState::Deferred, MailState::Delivered, MailState::Failed] {
        for summary in spool.list(state) {
            if let Some(meta) = spool.get(&summary.id).await.unwrap() {
                if meta.record.origin == mailtap::mail::record::Origin::Webmail {
                    out.push((summary.id, meta.state, meta.record));
                }
            }
        }
    }
    out
}

/// What a hyper origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub peer: SocketAddr,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A hyper origin. Paths: `/1k` (1 KiB of 'a'), `/echo` (echoes the body), `/slow` (answers after
/// 1 s), `/len` (answers with the body length), anything else `hello`.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<Mutex<usize>>,
}

pub async fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let connections: Arc<Mutex<usize>> = Arc::default();
    let (seen2, conns2) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            *conns2.lock().unwrap() += 1;
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, hyper::Error>(origin_answer(req, peer, seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Origin {
        addr,
        seen,
        connections,
    }
}

async fn origin_answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: body.len(),
        peer,
    });
    match parts.uri.path() {
        "/1k" => Response::new(Full::new(Bytes::from(vec![b'a'; 1024]))),
        "/echo" => Response::new(Full::new(body)),
        "/len" => Response::new(Full::new(Bytes::from(body.len().to_string()))),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Response::new(Full::new(Bytes::from_static(b"slow done")))
        }
        _ => Response::new(Full::new(Bytes::from_static(b"hello"))),
    }
}

/// A raw origin: reads one request head, stores it verbatim, and answers with `response`.
pub async fn raw_origin(response: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let heads2 = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let head = read_head(&mut stream).await;
            heads2.lock().unwrap().push(head);
            let _ = stream.write_all(response).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, heads)
}

/// An origin that accepts connections and never answers (for timeouts).
pub async fn silent_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            if held.len() > 100 {
                return;
            }
        }
    });
    addr
}

/// A TCP echo server.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A port on which nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads up to and including the blank line ending a head (bounded to 1 MiB and `WAIT`).
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let _ = tokio::time::timeout(WAIT, async {
        while head.len() < 1 << 20 && !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    head
}

/// The `Content-Length` of a raw HTTP head, when it has a valid one.
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })
}

/// Sends `CONNECT target` through `proxy`; returns the stream and the proxy's answer head.
pub async fn connect_tunnel(
    proxy: SocketAddr,
    target: impl std::fmt::Display,
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = String::from_utf8_lossy(&read_head(&mut s).await).into_owned();
    (s, head)
}

/// A blind tunnel to `target` through `proxy` (asserts the proxy answered 200).
pub async fn open_tunnel(proxy: SocketAddr, target: impl std::fmt::Display) -> TcpStream {
    let (s, head) = connect_tunnel(proxy, target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

/// Sends raw bytes to `addr` and reads one response: its head and a `Content-Length` body, or
/// everything until the peer closes when there is no length (bounded by `WAIT`).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let head = read_head(&mut stream).await;
    let text = String::from_utf8_lossy(&head).into_owned();
    let length = content_length(&text);
    let mut body = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        match length {
            Some(n) => {
                body.resize(n, 0);
                stream.read_exact(&mut body).await.map(|_| ())
            }
            None => stream.read_to_end(&mut body).await.map(|_| ()),
        }
    })
    .await;
    text + &String::from_utf8_lossy(&body)
}

/// Runs curl with `args` (bounded by `WAIT`); returns (exit status, stdout, stderr).
pub async fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = tokio::time::timeout(
        WAIT * 3,
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output(),
    )
    .await
    .expect("curl did not finish")
    .expect("curl runs (is it installed?)");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod samples;

/// Logs a browser in to the webmail at `host` through the proxy at `proxy`, the way mailtap
/// needs to see it before it relays that webmail's sends (`[intercept].require_session`): a GET
/// through mailtap to a one-shot loopback origin (reached as `host`, which the test's
/// `[resolve]` maps to 127.0.0.1) whose answer sets each `name=value` of `cookie`.
pub async fn log_in(proxy: SocketAddr, host: &str, cookie: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut response = String::from("HTTP/1.1 200 OK\r\n");
    for pair in cookie.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        response.push_str(&format!("Set-Cookie: {pair}; Path=/; HttpOnly\r\n"));
    }
    response.push_str("Content-Length: 9\r\nConnection: close\r\n\r\nlogged in");
    let server = tokio::spawn(async move {
        let Ok(Ok((mut s, _))) = tokio::time::timeout(WAIT, listener.accept()).await else {
            return;
        };
        let _ = read_head(&mut s).await;
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.shutdown().await;
    });
    let answer = raw_exchange(
        proxy,
        format!("GET http://{host}:{port}/?_task=login HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        answer.contains("logged in"),
        "login through mailtap: {answer}"
    );
    let _ = server.await;
}
