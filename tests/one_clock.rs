//! One clock: with `TZ=Asia/Shanghai` every time a person reads — console, tracing lines,
//! Log file name and lines, the mail's `Date:` — is local time with its offset.

#[path = "common/webmail.rs"]
mod webmail;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, Utc};

const BIN: &str = env!("CARGO_BIN_EXE_mailtap");

/// Kills the child when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The files under `dir` whose names end with `suffix`.
fn files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn with_tz_set_everything_a_person_reads_is_local_time_with_its_offset() {
    // Guards the one clock: console, tracing, Log name and lines, Date: all in UTC+08:00.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        format!(
            "{}[builtin_smtp]\nlisten = \"127.0.0.1:0\"\n[paths]\ndata = \"data\"\nlogs = \"logs\"\n",
            webmail::webmail_config("lilei@example.com", &[]).replace("console = false", "console = true")
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--config", "m.toml"])
        .current_dir(dir.path())
        .env("TZ", "Asia/Shanghai")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let shanghai = FixedOffset::east_opt(8 * 3600).unwrap();
    let before = Utc::now().with_timezone(&shanghai);
    webmail::log_in_blocking(&addr);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&webmail::roundcube_send(
        "bob@example.org",
        "",
        "clock",
        "x",
    ))
    .unwrap();
    let mut buf = [0u8; 4096];
    assert!(s.read(&mut buf).unwrap() > 0);
    let after = Utc::now().with_timezone(&shanghai);
    // Bounded wait for the delivery: the mailbox's .eml and the console's transcript line.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut console = String::new();
    while !console.contains("=> transcript ") {
        assert!(Instant::now() < deadline, "no console summary: {console}");
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        console.push_str(&line);
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();

    let summary = console
        .lines()
        .find(|l| l.contains("] mail "))
        .unwrap_or_else(|| panic!("{console}"));
    assert!(summary.contains(" +08:00] mail "), "{summary}");
    let traced = stderr
        .lines()
        .find(|l| l.contains("webmail send intercepted"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(traced.contains("+08:00"), "{traced}");
    let logs = files(&dir.path().join("logs"), ".txt");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let name = logs[0].file_name().unwrap().to_string_lossy().into_owned();
    let stamp = &name["Log-".len().."Log-".len() + 14];
    let allowed = [
        before.format("%Y%m%d%H%M%S").to_string(),
        after.format("%Y%m%d%H%M%S").to_string(),
    ];
    assert!(
        stamp >= &allowed[0][..] && stamp <= &allowed[1][..],
        "{name} not within {allowed:?}"
    );
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(text.contains("(UTC+08:00)"), "{text}");
    assert!(
        text.contains(&format!("{} ", before.format("%Y-%m-%d"))),
        "{text}"
    );
    let eml = files(&dir.path().join("data/mailbox"), ".eml");
    let eml = std::fs::read_to_string(&eml[0]).unwrap();
    let date = eml
        .lines()
        .find(|l| l.starts_with("Date: "))
        .unwrap_or_else(|| panic!("{eml}"));
    assert!(date.ends_with(" +0800"), "{date}");
}
