//! Wireshark check: tshark captures loopback while mailtap's client delivers to the built-in
//! SMTP server with `tls = "none"`, then decodes the capture and must see every SMTP command
//! and reply (and the mail's headers) with no malformed packets.
//!
//! Needs tshark and capture rights (root). Without them the test skips with a message, except
//! under `CI=true`, where it fails. The lead extends this to the proxy's HTTP POST later.

#[path = "common/gate.rs"]
mod gate;
#[path = "common/smtp_builtin.rs"]
mod smtp_builtin;

use mailtap::smtp::{BuiltinSmtpConfig, TlsMode, VecTranscript};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Cap on the capture, whatever happens to the test.
const CAPTURE_SECS: u64 = 60;

/// tshark's path, `None` to skip; panics under CI when tshark or capture rights are missing.
fn require_tshark() -> Option<PathBuf> {
    let found = gate::find_executable(&gate::search_dirs(), "tshark")
        .ok_or_else(|| "no executable `tshark` (install the `tshark` package)".to_string());
    gate::act(gate::gate(
        gate::ci_env(),
        found,
        gate::is_root(),
        "capturing on lo",
    ))
}

/// Runs `tshark -r file -d tcp.port==P,smtp <args>` and returns its stdout.
async fn read_capture(tshark: &Path, file: &Path, port: u16, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(tshark)
            .arg("-r")
            .arg(file)
            .args(["-d", &format!("tcp.port=={port},smtp")])
            .args(args)
            .stdin(Stdio::null())
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

#[tokio::test]
async fn tshark_decodes_the_smtp_dialogue() {
    // Guards: a plain-SMTP relay is what Wireshark users see — tshark decodes EHLO, MAIL,
    // RCPT, DATA, QUIT and the 220/250/354/221 replies, the mail's Subject, and no packet of
    // the conversation is malformed.
    let Some(tshark) = require_tshark() else {
        return;
    };
    let srv = smtp_builtin::start(BuiltinSmtpConfig::default()).await;
    let port = srv.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("smtp.pcapng");
    let mut cap = Command::new(&tshark)
        .args(["-i", "lo", "-f", &format!("tcp port {port}")])
        .args(["-a", &format!("duration:{CAPTURE_SECS}")])
        .arg("-w")
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tshark");
    // Wait (bounded) until dumpcap reports the capture running, so no packet is missed.
    let stderr = cap.stderr.take().expect("tshark stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
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

    let mut t = VecTranscript::new();
    let mut s = smtp_builtin::connect(&srv, &mut t).await;
    assert!(s.tls_info().is_none(), "tls = none: plain SMTP on the wire");
    let msg = "From: sender@example.test\r\nTo: a@one.test, b@two.test\r\n\
               Subject: wireshark check\r\n\r\nhello\r\n.\r\nbye\r\n";
    let d = s
        .send(
            &smtp_builtin::env(&["a@one.test", "b@two.test"]),
            msg.as_bytes(),
            &mut t,
        )
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:?}");
    s.quit(&mut t).await.unwrap();
    assert_eq!(smtp_builtin::client_cfg(TlsMode::None).tls, TlsMode::None);

    // Let the last segments (QUIT/221, FIN) reach the capture, then stop tshark with SIGINT so
    // it flushes the file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(pid) = cap.id() {
        // SAFETY: kill(2) with SIGINT on the tshark child this test spawned.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
    let status = tokio::time::timeout(Duration::from_secs(20), cap.wait())
        .await
        .expect("tshark stops after SIGINT")
        .expect("wait tshark");
    drain.abort();
    assert!(pcap.exists(), "capture file written (tshark {status})");
    srv.stop().await;

    let fields = read_capture(
        &tshark,
        &pcap,
        port,
        &[
            "-Y",
            "smtp",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-e",
            "smtp.req.command",
            "-e",
            "smtp.response.code",
        ],
    )
    .await;
    println!("tshark smtp fields (command, reply code):\n{fields}");
    let mut commands = Vec::new();
    let mut codes = Vec::new();
    for line in fields.lines() {
        let mut cols = line.split('\t');
        let split = |c: Option<&str>| -> Vec<String> {
            c.unwrap_or("")
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        commands.extend(split(cols.next()));
        codes.extend(split(cols.next()));
    }
    for want in ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] {
        assert!(
            commands.iter().any(|c| c.eq_ignore_ascii_case(want)),
            "tshark did not decode {want}: commands {commands:?}\n{fields}"
        );
    }
    let rcpts = commands.iter().filter(|c| c.eq_ignore_ascii_case("RCPT"));
    assert_eq!(rcpts.count(), 2, "{commands:?}");
    for want in ["220", "250", "354", "221"] {
        assert!(
            codes.iter().any(|c| c == want),
            "no {want} reply: {codes:?}"
        );
    }

    let subject = read_capture(
        &tshark,
        &pcap,
        port,
        &["-Y", "imf", "-T", "fields", "-e", "imf.subject"],
    )
    .await;
    assert_eq!(subject.trim(), "wireshark check", "IMF decoded from DATA");

    let malformed = read_capture(&tshark, &pcap, port, &["-Y", "_ws.malformed"]).await;
    assert!(
        malformed.trim().is_empty(),
        "malformed packets:\n{malformed}"
    );
    let all = read_capture(&tshark, &pcap, port, &[]).await;
    assert!(
        all.lines().count() >= 10,
        "capture holds the conversation:\n{all}"
    );
}
