//! Measurement (run explicitly): extraction speed and peak memory for a 25 MiB multipart
//! compose POST. `cargo test --release --test intercept_throughput -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use mailtap::intercept::{Extracted, HeadView, RuleSet};

const MIB: usize = 1024 * 1024;

/// A SquirrelMail-style send: text fields plus one attachment filling the body to `size`.
fn compose_body(size: usize) -> (String, Vec<u8>, usize) {
    let boundary = "----WebKitFormBoundaryBenchBenchBench1";
    let mut body = Vec::with_capacity(size + 4096);
    for (k, v) in [
        ("send_to", "bob@example.org"),
        ("subject", "bench"),
        ("body", "hello\r\nworld"),
        ("send", "Send"),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attachfile\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let fill = size - body.len() - tail.len();
    // Pseudo-random bytes (xorshift) so no boundary prefix repeats by accident.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    body.extend((0..fill).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    body.extend_from_slice(tail.as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        body,
        fill,
    )
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
#[ignore = "measurement; run with --release --ignored"]
fn extract_25mib_multipart() {
    // Guards the budget: ≥ 300 MB/s (release) and peak RSS ≤ 3× the body.
    let set = RuleSet::builtin()
        .unwrap()
        .with_named_hosts(vec!["webmail.example.test".parse().unwrap()]);
    let (ct, body, fill) = compose_body(25 * MIB);
    let head = HeadView {
        method: "POST",
        host: "webmail.example.test",
        path: "/squirrelmail/src/compose.php",
        query: None,
        content_type: Some(&ct),
        cookie: None,
    };
    // Reset the peak-RSS mark (Linux: writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base_rss = status_kib("VmRSS:").unwrap_or(0);
    let mut best = Duration::MAX;
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..5 {
        let t = Instant::now();
        let m = set.match_head(&head).expect("head matches");
        let (_, x) = set.extract(&m, &head, &body).expect("extracts");
        let took = t.elapsed();
        match x {
            Extracted::Send(d) => assert_eq!(d.attachments[0].data.len(), fill),
            other => panic!("not a send: {other:?}"),
        }
        best = best.min(took);
        if Instant::now() > deadline {
            break;
        }
    }
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let mbps = body.len() as f64 / best.as_secs_f64() / 1e6;
    let body_kib = (body.len() / 1024) as u64;
    println!(
        "25 MiB multipart extract: best {:.1} ms = {mbps:.0} MB/s; RSS before {base_rss} KiB (body {body_kib} KiB), peak {peak} KiB = {:.2}x body",
        best.as_secs_f64() * 1e3,
        peak as f64 / body_kib as f64
    );
    assert!(peak <= 3 * body_kib, "peak RSS {peak} KiB over 3x body");
    if !cfg!(debug_assertions) {
        assert!(mbps >= 300.0, "{mbps:.0} MB/s under 300");
    }
}
