//! Benchmark: the relay delivering queued mail to Postfix's `smtp-sink`, against Python's
//! smtplib over one reused connection in the same run; and intercept → delivered latency on the
//! built-in SMTP server.
//!
//! `cargo bench --bench relay` (env `MAILS`, `WORKERS`; `BENCH_DIR` places the spool and the
//! transcripts, default `target/bench-relay/`; `BENCH_LOGS` the transcripts alone — e.g.
//! `BENCH_DIR=/dev/shm/x` shows what the filesystem costs). Needs `smtp-sink` (Debian package
//! postfix) and python3. Everything runs on 127.0.0.1.
//!
//! Each run's data stays in `BENCH_DIR/run-<time>-<pid>/` (remove it with `rm -rf`; `cargo
//! clean` does for the default). Deleting thousands of files at the end of a run would slow the
//! next run: ext4 without a journal (this machine's disk) skips inodes freed in the last minutes
//! when it allocates new ones, and that scan made file creation ~20× slower for minutes after
//! a mass delete. mailtap never deletes in bulk, so a bench run that does would measure the
//! benchmark rather than the relay. The first line printed is the raw file-creation rate in the
//! run's directory, for comparison.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use mailtap::app::App;
use mailtap::config::Config;
use mailtap::mail::record::{MailRecord, Mailbox, Origin, SenderSource, Source};
use mailtap::queue::{MailState, QueueConfig, Spool};
use mailtap::relay::{Relay, RelayConfig};
use mailtap::report::ReportConfig;
use mailtap::smtp::{ClientConfig, ConnectOptions, TlsMode};
use mailtap::translog::LogConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// User + system CPU time of this process so far, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> (Sink, u16) {
    let port = free_port();
    let child = Command::new("smtp-sink")
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (apt-get install postfix)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Sink(child), port)
}

/// A fresh directory for this run's data under `BENCH_DIR` (see the module docs: not deleted).
fn run_dir() -> std::path::PathBuf {
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-relay").into());
    let dir = base.join(format!(
        "run-{}-{}",
        chrono::Local::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

/// Files created per second in `dir` (1,000 files of 3 KiB: what a Log-*.txt costs at least).
fn create_rate(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let dir = dir.join("calibrate");
    std::fs::create_dir_all(&dir).expect("calibration directory");
    let body = vec![b'x'; 3072];
    let started = Instant::now();
    for i in 0..1000 {
        let mut f = std::fs::File::create_new(dir.join(format!("f{i}"))).expect("create");
        f.write_all(&body).expect("write");
    }
    1000.0 / started.elapsed().as_secs_f64()
}

fn record(i: usize) -> MailRecord {
    MailRecord {
        id: format!("bench-{i}"),
        origin: Origin::Webmail,
        sender: "lilei@example.com".into(),
        sender_source: SenderSource::Request,
        from_name: Some("Li Lei".into()),
        to: vec![Mailbox::bare("bob@a.test"), Mailbox::bare("carol@b.test")],
        cc: vec![Mailbox::bare("dave@c.test")],
        bcc: vec![],
        reply_to: None,
        subject: format!("bench mail {i}"),
        text: Some("Hello,\r\nthis is a benchmark mail of about two kilobytes.\r\n".repeat(25)),
        html: None,
        attachments: vec![],
        source: Source {
            rule: "bench".into(),
            webmail_host: "webmail.example.test".into(),
            client: "127.0.0.1:50000".parse().expect("addr"),
            proxy: "127.0.0.1:8800".parse().expect("addr"),
        },
        received: Utc::now(),
        http_head: "POST http://webmail.example.test/ HTTP/1.1\n".into(),
        http_response_head: String::new(),
        transcript: None,
        rejected: None,
        invalid_recipients: Vec::new(),
    }
}

async fn relay_run(
    dir: &std::path::Path,
    mails: usize,
    workers: usize,
    port: u16,
) -> (f64, u64, f64) {
    let spool: Spool<MailRecord> = Spool::open(dir, QueueConfig::default()).expect("spool");
    let mut enqueues = Vec::new();
    for i in 0..mails {
        let spool = spool.clone();
        enqueues.push(tokio::spawn(async move {
            let r = record(i);
            let message = mailtap::mail::render(&r).expect("render");
            spool.enqueue(&r, &message).await.expect("enqueue");
        }));
    }
    for e in enqueues {
        e.await.expect("enqueue task");
    }
    let rss_before = rss_kib();
    let relay = Arc::new(Relay {
        spool: spool.clone(),
        smtp: ClientConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: TlsMode::None,
            ..ClientConfig::default()
        },
        connect: ConnectOptions::default(),
        // BENCH_LOGS: put the transcripts elsewhere (e.g. on tmpfs) to see what they cost.
        logs_dir: std::env::var_os("BENCH_LOGS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| dir.join("logs")),
        log: LogConfig::default(),
        report: ReportConfig::default(),
        config: RelayConfig {
            workers,
            console: false,
        },
        in_flight: Arc::new(tokio::sync::Semaphore::new(mailtap::relay::IN_FLIGHT)),
        spool_trouble: Default::default(),
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let cpu_before = cpu_us();
    let started = Instant::now();
    let task = tokio::spawn(relay.run(stop_rx));
    let deadline = Instant::now() + Duration::from_secs(300);
    while spool.count(MailState::Delivered) < mails {
        assert!(Instant::now() < deadline, "relay did not finish");
        assert_eq!(spool.count(MailState::Failed), 0, "mail failed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_per_mail = (cpu_us() - cpu_before) as f64 / mails as f64;
    let _ = stop.send(true);
    let _ = task.await;
    (
        mails as f64 / elapsed,
        rss_kib().saturating_sub(rss_before),
        cpu_per_mail,
    )
}

fn smtplib_run(mails: usize, port: u16) -> f64 {
    let script = format!(
        r#"
import smtplib, time
msg = ("From: lilei@example.com\r\nTo: bob@a.test, carol@b.test\r\nCc: dave@c.test\r\nSubject: bench\r\n\r\n"
       + "Hello,\r\nthis is a benchmark mail of about two kilobytes.\r\n" * 25)
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.ehlo("bench")
t = time.time()
for i in range({mails}):
    s.sendmail("lilei@example.com", ["bob@a.test", "carol@b.test", "dave@c.test"], msg)
print({mails} / (time.time() - t))
s.quit()
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("smtplib rate")
}

/// Sequential intercepted sends through the proxy; time until each is in the built-in mailbox.
async fn end_to_end(dir: &std::path::Path, count: usize) -> (f64, f64) {
    let mut config = Config::parse(
        "[resolve]\n\"mail.qq.com\" = \"127.0.0.1\"\n[relay]\nconsole = false\n[builtin_smtp]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
    config.paths.data = dir.join("data");
    config.paths.logs = dir.join("logs");
    let app = App::start(&config).await.expect("start");
    let proxy: SocketAddr = app.proxy_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let request = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/webmail/qqmail-gbk.http"
    ))
    .expect("sample");
    let mailbox = dir.join("data/mailbox");
    let mut lat = Vec::new();
    let mut s = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let mut buf = vec![0u8; 16384];
    for i in 0..count {
        let t = Instant::now();
        s.write_all(&request).await.expect("send");
        let n = s.read(&mut buf).await.expect("answer");
        assert!(
            n > 0 && buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Wait for message i to be stored (each message is a .eml + .json pair).
        loop {
            let stored = std::fs::read_dir(&mailbox)
                .map(|d| {
                    d.filter(|e| {
                        e.as_ref()
                            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
                    })
                    .count()
                })
                .unwrap_or(0);
            if stored > i {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "mail {i} not delivered"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let _ = stop.send(());
    let _ = server.await;
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

fn main() {
    let mails = env_usize("MAILS", 2000);
    let workers = env_usize("WORKERS", RelayConfig::default().workers);
    let dir = run_dir();
    println!(
        "filesystem: {:.0} file creations/s in {} (data kept there)",
        create_rate(&dir),
        dir.display()
    );
    let (_sink, port) = start_sink();
    // The runtime mailtap itself starts with the default configuration.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(Config::default().proxy.effective_worker_threads())
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .expect("runtime");
    let (rate, rss_growth, cpu_per_mail) =
        runtime.block_on(relay_run(&dir.join("relay"), mails, workers, port));
    let py = smtplib_run(mails, port);
    println!(
        "relay: {mails} queued mails × 3 recipients to smtp-sink with {workers} workers: {rate:.0} mails/s \
         ({cpu_per_mail:.0} µs CPU per mail; RSS +{} KiB while relaying)",
        rss_growth
    );
    println!(
        "python smtplib, one reused connection, same sink: {py:.0} mails/s → mailtap {:.2}×",
        rate / py
    );
    let (p50, p99) = runtime.block_on(end_to_end(&dir.join("end-to-end"), 200));
    println!("intercept → delivered on the built-in server (fsync on), sequential: p50 {p50:.2} ms, p99 {p99:.2} ms");
    println!("targets: ≥ 2,500 mails/s and ≥ 2.3× smtplib; memory flat in mail count; p50 ≤ 10 ms");
}
