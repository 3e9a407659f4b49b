//! Enqueue throughput measurement (no timed asserts): small (~2 KB) mails with 1 and 64
//! concurrent producers, next to a bare write+fsync+rename baseline measured in the same run.
//!
//! Run: `cargo test --release --test queue_bench -- --ignored --nocapture`
//! (`MAILTAP_BENCH_DIR` picks the filesystem; default: the system temp dir).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailtap::queue::{MailState, QueueConfig, Spool};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rec {
    from: String,
    to: Vec<String>,
    subject: String,
}

fn bench_root() -> PathBuf {
    std::env::var_os("MAILTAP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn message() -> Vec<u8> {
    let mut m = b"From: lilei@example.com\r\nTo: a@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    while m.len() < 2048 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog 0123456789.\r\n");
    }
    m
}

/// Bare baseline: write a file under a tmp name, fsync it, rename it into place.
fn baseline_rate(dir: &Path, n: usize, msg: &[u8]) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let tmp = dir.join(format!("{i}.tmp"));
        let mut f = File::create(&tmp).unwrap();
        f.write_all(msg).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, dir.join(format!("{i}.eml"))).unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn queue_rate(dir: &Path, producers: usize, per_producer: usize, msg: &[u8]) -> f64 {
    let spool = Spool::<Rec>::open(dir, QueueConfig::default()).unwrap();
    let rec = Rec {
        from: "lilei@example.com".into(),
        to: vec!["a@example.org".into()],
        subject: "bench".into(),
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (s, r, m) = (spool.clone(), rec.clone(), msg.to_vec());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_producer {
                s.enqueue(&r, &m).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (producers * per_producer) as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        spool.list(MailState::Active).len(),
        producers * per_producer
    );
    rate
}

/// Claims everything in the spool at `dir` and completes it from `workers` concurrent tasks;
/// returns completions per second (each one a durable state change into delivered/).
async fn complete_rate(dir: &Path, workers: usize) -> f64 {
    let spool = Spool::<Rec>::open(dir, QueueConfig::default()).unwrap();
    let far = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let claimed = spool.claim_due(far, usize::MAX).await.unwrap();
    let total = claimed.len();
    let mut chunks: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, c) in claimed.into_iter().enumerate() {
        chunks[i % workers].push(c.id);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let s = spool.clone();
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                s.complete(&id, &[]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    assert_eq!(spool.list(MailState::Delivered).len(), total);
    rate
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn enqueue_throughput() {
    // Guards: nothing timed; prints enqueue rates and their ratio to the bare baseline.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let msg = message();
    let root = bench_root();
    println!(
        "bench dir: {} (message {} bytes)",
        root.display(),
        msg.len()
    );
    // Several short interleaved rounds: the disk is shared, so fsync cost drifts over minutes;
    // ratios within one round compare like with like, and the median resists outliers.
    let (mut r1, mut r64) = (Vec::new(), Vec::new());
    for round in 1..=5 {
        let base_dir = tempfile::tempdir_in(&root).unwrap();
        let base = baseline_rate(base_dir.path(), 500, &msg);
        let d1 = tempfile::tempdir_in(&root).unwrap();
        let one = rt.block_on(queue_rate(d1.path(), 1, 500, &msg));
        let d64 = tempfile::tempdir_in(&root).unwrap();
        let many = rt.block_on(queue_rate(d64.path(), 64, 16, &msg));
        let c1 = rt.block_on(complete_rate(d1.path(), 1));
        let c64 = rt.block_on(complete_rate(d64.path(), 64));
        println!(
            "round {round}: baseline write+fsync+rename {base:.0}/s | enqueue 1 producer {one:.0}/s \
             ({:.2}x) | enqueue 64 producers {many:.0}/s ({:.2}x) | complete 1 worker {c1:.0}/s, \
             64 workers {c64:.0}/s",
            one / base,
            many / base
        );
        r1.push(one / base);
        r64.push(many / base);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "median ratio to baseline: 1 producer {:.2}x, 64 producers {:.2}x",
        median(&mut r1),
        median(&mut r64)
    );
}
