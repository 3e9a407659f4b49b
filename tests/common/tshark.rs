//! Test helper: a bounded tshark capture on loopback, and reading the capture file back.
//!
//! Owns spawning `tshark -i lo` with a capture filter and an auto-stop duration, waiting until
//! dumpcap really captures, stopping it with SIGINT so the file is flushed, and running
//! `tshark -r` with "decode as" rules. Whether a test may skip without tshark is `gate.rs`'s
//! rule (never under `CI=true`); every test crate that includes this file also declares
//! `mod gate`. It asserts nothing about what was captured: the tests do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::gate;

/// Cap on any capture, whatever happens to the test (tshark's own `-a duration:`).
pub const CAPTURE_SECS: u64 = 60;
/// Bound on tshark starting, stopping, and reading a file back.
pub const TSHARK_WAIT: Duration = Duration::from_secs(60);

/// tshark's path, `None` to skip; panics under CI when tshark or capture rights are missing.
pub fn require() -> Option<PathBuf> {
    let found = gate::find_executable(&gate::search_dirs(), "tshark")
        .ok_or_else(|| "no executable `tshark` (install the `tshark` package)".to_string());
    gate::act(gate::gate(
        gate::ci_env(),
        found,
        gate::is_root(),
        "capturing on lo",
    ))
}

/// A running capture into a pcapng file; killed if dropped without [`Capture::stop`].
pub struct Capture {
    child: Child,
    drain: JoinHandle<()>,
    pub pcap: PathBuf,
}

impl Capture {
    /// Starts capturing on `lo` with capture filter `filter` into `pcap`, and returns once
    /// dumpcap reports the capture running (bounded by [`TSHARK_WAIT`]), so no packet sent
    /// after this returns is missed. Panics when tshark does not start.
    pub async fn start(tshark: &Path, filter: &str, pcap: &Path) -> Capture {
        let mut child = Command::new(tshark)
            .args(["-i", "lo", "-f", filter])
            .args(["-a", &format!("duration:{CAPTURE_SECS}")])
            .arg("-w")
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tshark");
        let stderr = child.stderr.take().expect("tshark stderr");
        let mut lines = BufReader::new(stderr).lines();
        let started = tokio::time::timeout(TSHARK_WAIT, async {
            let mut seen = Vec::new();
            // Bounded by the timeout and by tshark's own output ending.
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("Capture started") || l.starts_with("Capturing on") {
                    return Ok(());
                }
                seen.push(l);
            }
            Err(seen)
        })
        .await;
        match started {
            Ok(Ok(())) => {}
            other => panic!("tshark did not start capturing: {other:?}"),
        }
        // Keep draining stderr so tshark never blocks on a full pipe.
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // dumpcap's "started" precedes the first poll of the socket by a hair; a short margin.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Capture {
            child,
            drain,
            pcap: pcap.to_path_buf(),
        }
    }

    /// Lets the last segments (replies, FINs) arrive, stops tshark with SIGINT so it flushes
    /// the file, and waits (bounded) for it to exit. Returns the capture file.
    pub async fn stop(mut self) -> PathBuf {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with SIGINT on the tshark child this helper spawned.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
        }
        let status = tokio::time::timeout(TSHARK_WAIT, self.child.wait())
            .await
            .expect("tshark stops after SIGINT")
            .expect("wait tshark");
        self.drain.abort();
        assert!(self.pcap.exists(), "capture file written (tshark {status})");
        self.pcap.clone()
    }
}

/// Runs `tshark -r file` with one `-d tcp.port==P,proto` per `decode_as` entry, then `args`;
/// returns its stdout. Panics when tshark fails or overruns [`TSHARK_WAIT`].
pub async fn read(tshark: &Path, file: &Path, decode_as: &[(u16, &str)], args: &[&str]) -> String {
    let mut cmd = Command::new(tshark);
    cmd.arg("-r").arg(file);
    for (port, proto) in decode_as {
        cmd.args(["-d", &format!("tcp.port=={port},{proto}")]);
    }
    let out = tokio::time::timeout(
        TSHARK_WAIT,
        cmd.args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("tshark -r finishes")
    .expect("run tshark -r");
    assert!(
        out.status.success(),
        "tshark -r {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Splits `-T fields -E occurrence=a -E aggregator=|` output into one list per column: every
/// non-empty value of column `i` across all lines, in order.
pub fn columns(fields: &str, n: usize) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); n];
    for line in fields.lines() {
        for (i, col) in line.split('\t').take(n).enumerate() {
            out[i].extend(col.split('|').filter(|s| !s.is_empty()).map(str::to_string));
        }
    }
    out
}

#[test]
fn columns_splits_tabs_and_aggregated_occurrences() {
    // Guards the field parser: tabs separate columns, `|` separates occurrences, empties vanish.
    let cases: [(&str, usize, Vec<Vec<&str>>); 4] = [
        ("", 2, vec![vec![], vec![]]),
        (
            "EHLO\t\n\t250|250\n",
            2,
            vec![vec!["EHLO"], vec!["250", "250"]],
        ),
        (
            "MAIL|RCPT|RCPT\t250\n",
            2,
            vec![vec!["MAIL", "RCPT", "RCPT"], vec!["250"]],
        ),
        ("a\tb\tc\n", 2, vec![vec!["a"], vec!["b"]]),
    ];
    for (input, n, want) in cases {
        let got = columns(input, n);
        let want: Vec<Vec<String>> = want
            .into_iter()
            .map(|c| c.into_iter().map(str::to_string).collect())
            .collect();
        assert_eq!(got, want, "{input:?}");
    }
}
