//! The `mailtap` binary as a user runs it: the sample config, check-config, banner and signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailtap::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_mailtap");

#[test]
fn the_sample_config_documents_the_defaults() {
    // Guards samples/mailtap.toml: it parses, and every value it shows is the real default.
    let sample = Config::load(std::path::Path::new("samples/mailtap.toml")).unwrap();
    assert_eq!(sample, Config::default());
}

#[test]
fn check_config_reports_the_bad_key() {
    // Guards `mailtap check-config`: exit 0 for a good file, non-zero naming the key otherwise.
    let ok = Command::new(BIN)
        .args(["check-config", "samples/mailtap.toml"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[proxy]\nlisten = \"127.0.0.1:1\"\nconect_timeout_secs = 3\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conect_timeout_secs") && err.contains("line 3"),
        "{err}"
    );
    std::fs::write(&bad, "[proxy]\nmax_connections = 0\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy.max_connections"));
}

#[test]
fn banner_then_clean_exit_on_sigterm() {
    // Guards the zero-config start: banner with listen address and PAC URL; SIGTERM exits 0.
    let dir = tempfile::tempdir().unwrap();
    // Default everything, except that the built-in SMTP server takes a free port.
    std::fs::write(
        dir.path().join("m.toml"),
        "[builtin_smtp]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--config", "m.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let banner: Vec<String> = (0..5).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(banner[0].contains("listening on 127.0.0.1:"), "{banner:?}");
    let has = |s: &str| banner.iter().any(|l| l.contains(s));
    assert!(has("/proxy.pac"), "{banner:?}");
    assert!(has("config file: m.toml"), "{banner:?}");
    assert!(
        has("SMTP relay:  built-in SMTP server on 127.0.0.1:"),
        "{banner:?}"
    );
    assert!(has("Log-*.txt"), "{banner:?}");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "mailtap did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_commented_smtp_example_is_valid() {
    // Guards the [smtp] block documented (commented out) in samples/mailtap.toml.
    let text = std::fs::read_to_string("samples/mailtap.toml").unwrap();
    let start = text.find("# [smtp]").expect("sample documents [smtp]");
    let block: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
        .collect();
    let config = Config::parse(&block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let smtp = config.smtp.expect("[smtp] parsed");
    assert_eq!(smtp.host, "smtp.example.com");
    assert_eq!(smtp.effective_port(), 587);
    assert_eq!(smtp.timeouts.data_end_secs, 600);
}
