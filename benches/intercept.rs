//! Benchmark: webmail send requests intercepted by a running mailtap and durably queued, against
//! a bare write + fsync + rename baseline measured in the same run.
//!
//! `cargo bench --bench intercept` (env `MAILS`, `CLIENTS` to change the load). Everything runs
//! on 127.0.0.1 with data in a temp dir.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailtap::app::App;
use mailtap::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The same durability work one small mail needs, done the plain way, one after another.
fn baseline(dir: &std::path::Path, count: usize) -> f64 {
    let payload = vec![b'x'; 2048];
    let started = Instant::now();
    for i in 0..count {
        let tmp = dir.join(format!("{i}.tmp"));
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(&payload).expect("write");
        f.sync_all().expect("fsync");
        std::fs::rename(&tmp, dir.join(format!("{i}.eml"))).expect("rename");
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("fsync dir");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// A QQ Mail send (relay mode: mailtap answers it without the origin).
fn qq_request() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/webmail/qqmail-gbk.http"
    );
    std::fs::read(path).expect("sample")
}

/// The browser's login to QQ Mail through mailtap (which relays only sends carrying a cookie
/// the webmail set through it): a one-shot loopback origin, reached as set1.mail.qq.com via
/// `[resolve]`, sets the sample's `qm_username` cookie.
async fn log_in(proxy: SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let origin = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "login request cut short");
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: qm_username=lilei.example; Path=/\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\nok",
        )
        .await
        .expect("answer");
    });
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(
        format!("GET http://set1.mail.qq.com:{port}/ HTTP/1.1\r\nHost: set1.mail.qq.com\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("login request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("login answered in time")
        .expect("login answer");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "login through mailtap");
    origin.await.expect("origin");
}

async fn client(proxy: SocketAddr, request: Vec<u8>, count: usize, latencies: &mut Vec<Duration>) {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&request).await.expect("send");
        // Read one response: head, then Content-Length bytes.
        let mut got = Vec::new();
        let (head_end, length) = loop {
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "proxy closed the connection");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while got.len() < head_end + length {
            let n = s.read(&mut buf).await.expect("read body");
            assert!(n > 0, "short body");
            got.extend_from_slice(&buf[..n]);
        }
        latencies.push(t.elapsed());
    }
}

fn main() {
    let mails = env_usize("MAILS", 4000);
    let clients = env_usize("CLIENTS", 64).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let base_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&base_dir).expect("mkdir");
    let base = baseline(&base_dir, 2000.min(mails));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut config = Config::parse(
            "[resolve]\n\"mail.qq.com\" = \"127.0.0.1\"\n\"set1.mail.qq.com\" = \"127.0.0.1\"\n",
        )
        .expect("config");
        config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
        config.paths.data = dir.path().join("data");
        config.paths.logs = dir.path().join("logs");
        let app = App::start(&config).await.expect("start");
        let proxy = app.proxy_addr();
        let spool = app.spool().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        log_in(proxy).await;
        let request = qq_request();
        let per_client = mails / clients;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_client);
                client(proxy, request, per_client, &mut lat).await;
                lat
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("client"));
        }
        let elapsed = started.elapsed();
        let total = per_client * clients;
        latencies.sort();
        let p50 = latencies[latencies.len() / 2];
        let p99 = latencies[latencies.len() * 99 / 100];
        let queued = spool.list(mailtap::queue::MailState::Active).len()
            + spool.list(mailtap::queue::MailState::Delivered).len()
            + spool.list(mailtap::queue::MailState::Deferred).len()
            + spool.list(mailtap::queue::MailState::Failed).len();
        let rate = total as f64 / elapsed.as_secs_f64();
        println!("baseline: bare write+fsync+rename+fsync(dir), 1 writer: {base:.0} files/s");
        println!(
            "mailtap: {total} QQ sends from {clients} keep-alive clients intercepted and durably queued \
             in {:.2} s: {rate:.0} mails/s ({:.2}× baseline); p50 {:.1} ms, p99 {:.1} ms; {queued} in the spool",
            elapsed.as_secs_f64(),
            rate / base,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        println!("target: ≥ 1,000 mails/s");
        let _ = stop.send(());
        let _ = server.await;
    });
}
