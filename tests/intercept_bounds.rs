//! Bounds on intercepted request bodies, attacked the way a hostile page or client would:
//! multipart bodies with tens of thousands of tiny parts (against the `mailtap` binary, watching
//! its memory mappings), bodies that stall or drip (raw sockets), attacker-sized id lists, and
//! the global budget for bodies in flight.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or `MAILTAP_TEST_BIN` (to check that these tests fail
/// against an older build).
fn bin() -> String {
    std::env::var("MAILTAP_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mailtap").to_string())
}

/// Upper bound for one exchange with the child process.
const EXCHANGE: Duration = Duration::from_secs(120);

/// A fake webmail on 127.0.0.1:0 (blocking threads): answers every request `200 webmail ok`
/// and counts the requests that reached it.
struct FakeWebmail {
    port: u16,
    requests: Arc<AtomicUsize>,
}

fn fake_webmail() -> FakeWebmail {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        // Bounded: a test makes a handful of connections.
        for stream in listener.incoming().take(100) {
            let Ok(mut s) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read the head and its Content-Length body, then answer once.
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nwebmail ok\n",
                );
            });
        }
    });
    FakeWebmail { port, requests }
}

/// The `mailtap` binary running in a temp dir; killed when dropped.
struct Mailtap {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Mailtap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mailtap {
    fn start(extra: &str) -> Mailtap {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.toml"),
            format!("[builtin_smtp]\nlisten = \"127.0.0.1:0\"\n{extra}\n"),
        )
        .unwrap();
        let mut child = Command::new(bin())
            .args(["--listen", "127.0.0.1:0", "--config", "m.toml"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr: SocketAddr = first
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        // Keep draining stdout (the console summary of every mail) so the child never blocks.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Mailtap { child, addr, dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Mails delivered (to the built-in SMTP server).
    fn delivered(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("data/spool/delivered")).map_or(0, |d| d.count())
    }

    /// Mails in the spool, in any state (a mail being moved may be counted twice or not at
    /// all: only exact when nothing moves, e.g. 0 when nothing was ever queued).
    fn spooled(&self) -> usize {
        ["active", "deferred", "delivered", "failed"]
            .iter()
            .map(|s| {
                std::fs::read_dir(self.dir.path().join("data/spool").join(s))
                    .map(|rd| rd.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// The number of memory mappings of process `pid`.
fn maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// Runs `f` while sampling `pid`'s mapping count every 10 ms; returns f's result and the peak.
fn peak_maps<T>(pid: u32, f: impl FnOnce() -> T) -> (T, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(maps(pid)));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < EXCHANGE * 2 {
                let n = maps(pid);
                let mut p = peak.lock().unwrap();
                *p = (*p).max(n);
                drop(p);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let out = f();
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let p = *peak.lock().unwrap();
    (out, p)
}

/// A `/proc/<pid>/status` figure in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::to_string))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Sends `request` and reads the whole response (the proxy closes or sends Content-Length).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(EXCHANGE)).unwrap();
    s.set_write_timeout(Some(EXCHANGE)).unwrap();
    // The proxy may answer (e.g. 413) before reading everything: a failed write is fine.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(str::trim))
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|n| got.len() >= end + 4 + n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A SquirrelMail 1.5 send carrying `files` one-byte file parts.
fn squirrelmail_send(port: u16, files: usize) -> Vec<u8> {
    let b = "----WebKitFormBoundaryBounds";
    let mut body = String::new();
    for (name, value) in [
        ("send_to", "bob@example.org"),
        ("subject", "many parts"),
        ("body", "hello"),
        ("send1", "Send"),
    ] {
        body.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    for i in 0..files {
        body.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"attachfile\"; filename=\"f{i}.txt\"\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        ));
    }
    body.push_str(&format!("--{b}--\r\n"));
    let mut out = format!(
        "POST http://webmail.example.test:{port}/sm/src/compose.php HTTP/1.1\r\nHost: webmail.example.test\r\n\
         Content-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Sends webmail.example.test to 127.0.0.1 and names its sender (which also names it as a
/// webmail host).
/// The test webmail, named and resolved. These tests guard body bounds (applied before
/// mailtap decides whether to take a send), so the session binding is off: their hand-made
/// sends carry no cookie of a login through mailtap (tests/send_guard.rs covers that). The
/// `[intercept]` table is last, so `slow_config` can add keys to it.
fn webmail_config() -> String {
    "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
     [senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n\
     [intercept]\nrequire_session = false\n"
        .to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    // Bounded by EXCHANGE.
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < EXCHANGE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn many_tiny_file_parts_are_refused_clearly_and_the_process_survives() {
    // Guards the parts cap: 66,000 one-byte file parts (~6 MB, far under the body cap) get a
    // clear refusal naming the key, reach neither the webmail nor the spool, cost no memory
    // mapping per part, and the next send still works.
    let web = fake_webmail();
    let mut mt = Mailtap::start(&webmail_config());
    let base = maps(mt.pid());
    let request = squirrelmail_send(web.port, 66_000);
    assert!(request.len() > 5_000_000 && request.len() < 10_000_000);
    let (response, peak) = peak_maps(mt.pid(), || exchange(mt.addr, &request));
    assert!(peak < base + 1_000, "{peak} mappings at peak (from {base})");
    assert!(mt.alive(), "mailtap died");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("max_parts"), "{response}");
    assert!(response.contains("nothing was sent"), "{response}");
    assert_eq!(web.requests.load(Ordering::SeqCst), 0, "forwarded half");
    assert_eq!(mt.spooled(), 0);
    assert!(mt.alive(), "mailtap died");
    let ok = exchange(mt.addr, &squirrelmail_send(web.port, 2));
    assert!(ok.starts_with("HTTP/1.1 302"), "{ok}");
    wait_until("the mail delivered", || mt.delivered() == 1);
    assert!(mt.alive());
}

#[test]
fn tiny_file_parts_under_a_raised_cap_cost_no_mapping_each() {
    // Guards allocation proportional to what is read: 20,000 one-byte file parts accepted under
    // a raised cap are queued whole without one memory mapping per part.
    let web = fake_webmail();
    let config = format!("{}max_parts = 30000\n", webmail_config());
    let mut mt = Mailtap::start(&config);
    let base = maps(mt.pid());
    let request = squirrelmail_send(web.port, 20_000);
    let (response, peak) = peak_maps(mt.pid(), || exchange(mt.addr, &request));
    assert!(response.starts_with("HTTP/1.1 302"), "{response}");
    assert!(peak < base + 1_000, "{peak} mappings at peak (from {base})");
    wait_until("the mail delivered", || mt.delivered() == 1);
    assert!(mt.alive(), "mailtap died");
}

/// A Roundcube send whose `_message` is one line of `len` bytes.
fn roundcube_line(port: u16, len: usize) -> Vec<u8> {
    let (head, body) = roundcube(port, len);
    [head, body].concat()
}

#[test]
fn a_large_single_line_body_leaves_no_memory_behind() {
    // Guards Medium 6 (allocator retention): after a 9 MiB single-line send is answered, the
    // process gives the memory back (it kept 104 MiB resident for good).
    let web = fake_webmail();
    let mt = Mailtap::start(&format!(
        "{}\n[limits]\nmax_message_bytes = 104857600\n",
        webmail_config()
    ));
    std::thread::sleep(Duration::from_millis(300));
    let before = status_bytes(mt.pid(), "VmRSS");
    let response = exchange(mt.addr, &roundcube_line(web.port, 9 << 20));
    assert!(response.starts_with("HTTP/1.1 200"), "{response:.300}");
    // Delivered to the built-in SMTP server, so no stage still holds the mail.
    wait_until("the mail delivered", || mt.delivered() == 1);
    std::thread::sleep(Duration::from_secs(1));
    let after = status_bytes(mt.pid(), "VmRSS");
    let peak = status_bytes(mt.pid(), "VmHWM");
    eprintln!(
        "RSS {} MiB before, {} MiB peak, {} MiB after",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        after < before + (20 << 20),
        "{} MiB resident after, {} MiB before",
        after >> 20,
        before >> 20
    );
}

#[test]
fn six_large_sends_at_once_stay_within_the_budget() {
    // Guards Medium 6 (global budget): six 20 MiB sends at once are all answered — queued, or
    // 503 naming the key when the budget stayed spent for budget_wait_secs — and the process
    // peaks well under six times one send's memory (1.4 GiB for six 45 MiB sends before).
    let web = fake_webmail();
    let mt = Mailtap::start(&format!(
        "{}max_inflight_bytes = 41943040\nbudget_wait_secs = 20\n[limits]\nmax_message_bytes = 209715200\n",
        webmail_config()
    ));
    std::thread::sleep(Duration::from_millis(300));
    let before = status_bytes(mt.pid(), "VmRSS");
    let request = Arc::new(squirrelmail_big(web.port, 20 << 20));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (addr, request) = (mt.addr, request.clone());
            std::thread::spawn(move || exchange(addr, &request))
        })
        .collect();
    let mut sent = 0;
    for c in clients {
        let r = c.join().unwrap();
        if r.starts_with("HTTP/1.1 302") {
            sent += 1;
        } else {
            // Told plainly that it was not sent (the browser may send it again).
            assert!(
                r.starts_with("HTTP/1.1 503") && r.contains("max_inflight_bytes"),
                "{r:.300}"
            );
        }
    }
    assert!(sent >= 2, "only {sent} of 6 sent");
    let peak = status_bytes(mt.pid(), "VmHWM");
    eprintln!("peak {} MiB (from {} MiB)", peak >> 20, before >> 20);
    // One 20 MiB send costs several times its size at its peak; two fit in the budget.
    assert!(
        peak < before + (400 << 20),
        "peak {} MiB for six 20 MiB sends",
        peak >> 20
    );
    wait_until(&format!("{sent} mails delivered"), || {
        mt.delivered() == sent
    });
}

/// A SquirrelMail send with one attachment of `len` bytes.
fn squirrelmail_big(port: u16, len: usize) -> Vec<u8> {
    let b = "----WebKitFormBoundaryBig";
    let mut body = Vec::new();
    for (name, value) in [
        ("send_to", "bob@example.org"),
        ("subject", "big"),
        ("body", "hello"),
        ("send1", "Send"),
    ] {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"attachfile\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    // Not compressible into anything shorter, like a real attachment.
    let mut x: u32 = 0x1234_5678;
    body.extend((0..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let mut out = format!(
        "POST http://webmail.example.test:{port}/sm/src/compose.php HTTP/1.1\r\nHost: webmail.example.test\r\n\
         Content-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

// ---- in-process mailtap: slow bodies, the budget, attacker-sized id lists ----

use common::{start, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Roundcube send head (relay mode) for a body of `len` bytes, and such a body.
fn roundcube(port: u16, len: usize) -> (Vec<u8>, Vec<u8>) {
    let prefix = "_token=t&_task=mail&_action=send&_id=42&_from=1&_to=bob%40example.org&_subject=slow&_is_html=0&_message=";
    assert!(len > prefix.len());
    let mut body = prefix.as_bytes().to_vec();
    body.resize(len, b'a');
    let head = format!(
        "POST http://webmail.example.test:{port}/roundcube/?_task=mail&_unlock=loading7&_framed=1 HTTP/1.1\r\n\
         Host: webmail.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"
    );
    (head.into_bytes(), body)
}

/// Reads until the peer closes or `within` passes; returns what arrived and whether it closed.
async fn read_until_close(s: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

fn slow_config(extra: &str) -> String {
    format!("{}{extra}\n", webmail_config())
}

async fn queued_count(mt: &Running) -> usize {
    common::settled_mails(&mt.spool).await.len()
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_its_connection_closes() {
    // Guards the body deadline: a head whose body stops after 10 bytes is answered 408 and
    // closed within body_timeout_secs (plus slack), not held forever; nothing is queued.
    let mt = start(
        &slow_config("body_timeout_secs = 1\nbody_min_rate = 100"),
        None,
    )
    .await;
    let (head, body) = roundcube(1, 1000);
    let mut s = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    let started = Instant::now();
    let (response, closed) = read_until_close(&mut s, Duration::from_secs(8)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert!(response.contains("body_timeout_secs"), "{response}");
    assert!(closed, "connection still open");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queued_count(&mt).await, 0);
    mt.shutdown().await;
}

#[tokio::test]
async fn a_dripping_body_gets_408_an_honest_slow_one_is_sent() {
    // Guards the minimum rate: 1 byte every 250 ms (4 B/s, under 100 B/s) is cut off after
    // about body_timeout_secs; a body trickling at 2,000 B/s (over the rate) is read whole and
    // the mail queued.
    let mt = start(
        &slow_config("body_timeout_secs = 1\nbody_min_rate = 100"),
        None,
    )
    .await;
    let (head, body) = roundcube(1, 1000);
    let mut s = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    let started = Instant::now();
    let mut response = String::new();
    for b in body.iter().take(40) {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        let (got, closed) = read_until_close(&mut s, Duration::from_millis(250)).await;
        response.push_str(&got);
        if closed || !response.is_empty() {
            break;
        }
    }
    if !response.contains("\r\n\r\n") {
        response.push_str(&read_until_close(&mut s, Duration::from_secs(3)).await.0);
    }
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // 3,000 bytes at ~2,000 B/s: slower than one read, faster than the minimum rate.
    let (head, body) = roundcube(1, 3000);
    let mut s = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
    s.write_all(&head).await.unwrap();
    for chunk in body.chunks(200) {
        s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (response, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert_eq!(queued_count(&mt).await, 1);
    mt.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_budget_wait_then_get_503() {
    // Guards [intercept].max_inflight_bytes: while one 60 KB body holds most of a 64 KiB
    // budget, a second body waits budget_wait_secs and gets 503 (nothing queued or
    // forwarded); once the first is done, the next one goes through.
    let mt = start(
        &slow_config("max_inflight_bytes = 65536\nbudget_wait_secs = 1\nbody_timeout_secs = 10"),
        None,
    )
    .await;
    let (head_a, body_a) = roundcube(1, 60_000);
    let mut a = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
    a.write_all(&head_a).await.unwrap();
    a.write_all(&body_a[..100]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (head_b, body_b) = roundcube(1, 20_000);
    let started = Instant::now();
    let b = common::raw_exchange(mt.addr, &[head_b.clone(), body_b.clone()].concat()).await;
    assert!(b.starts_with("HTTP/1.1 503"), "{b}");
    assert!(b.contains("max_inflight_bytes"), "{b}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait"
    );
    a.write_all(&body_a[100..]).await.unwrap();
    let (ra, _) = read_until_close(&mut a, Duration::from_secs(2)).await;
    assert!(ra.starts_with("HTTP/1.1 200"), "{ra}");
    let c = common::raw_exchange(mt.addr, &[head_b, body_b].concat()).await;
    assert!(c.starts_with("HTTP/1.1 200"), "{c}");
    assert_eq!(queued_count(&mt).await, 2);
    mt.shutdown().await;
}

/// A RainLoop send naming `ids` attachment ids (`Attachments[idN]=...`), none uploaded.
fn rainloop_send(port: u16, ids: usize) -> Vec<u8> {
    let mut body = String::from(
        "Action=SendMessage&IdentityID=0&To=bob%40example.org&Subject=ids&TextIsHtml=0&Text=hi",
    );
    for i in 0..ids {
        body.push_str(&format!("&Attachments%5Bid{i}%5D=f{i}.txt"));
    }
    let mut out = format!(
        "POST http://webmail.example.test:{port}/rainloop/?/Ajax/&q[]=/0/ HTTP/1.1\r\nHost: webmail.example.test\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_sized_attachment_id_lists_cost_linear_work() {
    // Guards Medium 5: 200,000 RainLoop attachment ids are refused by the parts cap at once;
    // under a raised cap they are de-duplicated in linear time (the quadratic search took 44
    // CPU-seconds) and, being unknown, the send goes to the webmail unchanged.
    let web = fake_webmail();
    let request = rainloop_send(web.port, 200_000);
    let mt = start(&webmail_config(), None).await;
    let r = common::raw_exchange(mt.addr, &request).await;
    assert!(
        r.starts_with("HTTP/1.1 413") && r.contains("max_parts"),
        "{r:.300}"
    );
    mt.shutdown().await;
    let mt = start(&slow_config("max_parts = 300000"), None).await;
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || exchange(mt.addr, &request)),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert!(r.contains("webmail ok"), "{r:.300}");
    assert_eq!(web.requests.load(Ordering::SeqCst), 1);
    eprintln!("200,000 ids answered in {:?}", started.elapsed());
}
