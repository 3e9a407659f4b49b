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
    let banner: Vec<String> = (0..7).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(banner[0].contains("listening on 127.0.0.1:"), "{banner:?}");
    let has = |s: &str| banner.iter().any(|l| l.contains(s));
    assert!(has("/proxy.pac"), "{banner:?}");
    let config_line = format!("config file: {}", dir.path().join("m.toml").display());
    assert!(has(&config_line), "{banner:?}");
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

/// Runs mailtap with `args` in `cwd` and waits (bounded) for it to exit on its own.
fn run_to_exit(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let started = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "mailtap {args:?} did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out.stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut out.stderr)
        .unwrap();
    out
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_start_on_a_busy_port_fails_clearly_and_creates_nothing() {
    // Guards the first run: a taken proxy or SMTP port → non-zero exit naming the address and
    // the option to change it, and no data/ or logs/ left behind in the working directory.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--listen", &busy_addr, "--smtp-listen", "127.0.0.1:0"],
            "--listen",
        ),
        (
            &["--listen", "127.0.0.1:0", "--smtp-listen", &busy_addr],
            "--smtp-listen",
        ),
    ];
    for (args, option) in cases {
        let cwd = tempfile::tempdir().unwrap();
        let out = run_to_exit(cwd.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(err.contains(&busy_addr), "{args:?}: {err}");
        assert!(
            err.contains("in use") || err.contains("in Use"),
            "{args:?}: {err}"
        );
        assert!(err.contains(option), "{args:?}: {err}");
        assert_eq!(entries(cwd.path()), Vec::<String>::new(), "{args:?}: {err}");
    }
    drop(busy);
}

#[test]
fn data_and_logs_go_where_the_options_say_and_the_banner_shows_absolute_paths() {
    // Guards --data/--logs/--smtp-listen: nothing is written into the working directory, and
    // every path the banner prints is absolute.
    let cwd = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let data = elsewhere.path().join("d");
    let logs = elsewhere.path().join("l");
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .arg("--logs")
        .arg(&logs)
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    // The banner ends with the CA line (bounded: at most 12 lines, or the end of output).
    for _ in 0..12 {
        match lines.next() {
            Some(Ok(l)) => {
                let last = l.contains("CA (HTTPS)");
                banner.push(l);
                if last {
                    break;
                }
            }
            _ => break,
        }
    }
    let text = banner.join("\n");
    assert!(
        text.contains(&format!("{}/Log-*.txt", logs.display())),
        "{text}"
    );
    assert!(
        text.contains(&data.join("mailbox").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&data.join("ca/mailtap-ca.pem").display().to_string()),
        "{text}"
    );
    assert!(data.join("spool").is_dir(), "spool not under --data");
    assert_eq!(entries(cwd.path()), Vec::<String>::new(), "{text}");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(15), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mailtap_ca_names_its_absolute_path_and_says_loudly_when_it_creates_one() {
    // Guards `mailtap ca` from another directory: the path printed is absolute, a new CA is
    // announced with where it is, and the same directory (or --data) gives the same CA.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let run = |cwd: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["ca"];
        args.extend_from_slice(extra);
        let out = run_to_exit(cwd, &args);
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fingerprint = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("SHA-256 fingerprint:"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no fingerprint: {out}"))
    };
    let cert_a = a
        .path()
        .join("data/ca/mailtap-ca.pem")
        .display()
        .to_string();
    let (first, first_err) = run(a.path(), &[]);
    assert!(first.contains(&cert_a), "{first}");
    assert!(
        first_err.contains("NEW") && first_err.contains(&cert_a),
        "no loud notice of a new CA: {first_err}"
    );
    let (again, again_err) = run(a.path(), &[]);
    assert_eq!(fingerprint(&again), fingerprint(&first));
    assert!(!again_err.contains("NEW"), "{again_err}");
    // From another directory: a second CA, announced as such, at its own absolute path.
    let cert_b = b
        .path()
        .join("data/ca/mailtap-ca.pem")
        .display()
        .to_string();
    let (other, other_err) = run(b.path(), &[]);
    assert!(other.contains(&cert_b), "{other}");
    assert!(
        other_err.contains("NEW") && other_err.contains(&cert_b),
        "{other_err}"
    );
    assert_ne!(fingerprint(&other), fingerprint(&first));
    // --data points at the first one from anywhere.
    let data_a = a.path().join("data").display().to_string();
    let (via_data, via_err) = run(b.path(), &["--data", &data_a]);
    assert_eq!(fingerprint(&via_data), fingerprint(&first));
    assert!(!via_err.contains("NEW"), "{via_err}");
}

#[test]
fn help_has_examples_paths_and_rust_log_and_check_config_has_no_config_option() {
    // Guards --help: examples, where data and logs go, RUST_LOG; and `check-config --help`
    // offers only its positional file.
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Examples",
        "RUST_LOG",
        "--data",
        "--logs",
        "--smtp-listen",
        "./data",
        "./logs",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
    let out = Command::new(BIN)
        .args(["check-config", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(help.contains("<FILE>"), "{help}");
    assert!(!help.contains("--config"), "{help}");
}

#[test]
fn check_config_says_file_line_key_value_and_what_is_expected() {
    // Guards check-config's errors: each names the file, the line, the key and the value, says
    // what is expected in words (no Rust type names), and conflicting addresses are refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let cases: &[(&str, &[&str])] = &[
        (
            "[proxy]\nlisten = \"127.0.0.1:2525\"\n",
            &[
                "line 2",
                "proxy.listen",
                "127.0.0.1:2525",
                "builtin_smtp.listen",
            ],
        ),
        (
            "[builtin_smtp]\nlisten = \"127.0.0.1:8800\"\n",
            &[
                "line 2",
                "builtin_smtp.listen",
                "127.0.0.1:8800",
                "proxy.listen",
            ],
        ),
        (
            "[proxy]\nallow = [\"127.0.0.0/8\", \"127.0.0.0/33\"]\n",
            &["line 2", "proxy.allow", "127.0.0.0/33", "CIDR", "32", "128"],
        ),
        (
            "[proxy]\nmax_connections = -1\n",
            &["line 2", "proxy.max_connections", "-1", "whole number"],
        ),
        (
            "[proxy]\nmax_connections = \"many\"\n",
            &[
                "line 2",
                "proxy.max_connections",
                "\"many\"",
                "whole number",
            ],
        ),
        (
            "[proxy]\nshutdown_grace_secs = 1.5\n",
            &["line 2", "proxy.shutdown_grace_secs", "1.5", "whole number"],
        ),
        (
            "[proxy]\n\nmax_connections = 0\n",
            &["line 3", "proxy.max_connections", "0", "greater than 0"],
        ),
        (
            "[builtin_smtp]\nlisten = \"localhost:2525\"\n",
            &[
                "line 2",
                "builtin_smtp.listen",
                "localhost:2525",
                "IP address",
                "127.0.0.1:2525",
            ],
        ),
        (
            "[limits]\nmax_message_bytes = 0\n",
            &["line 2", "limits.max_message_bytes", "0", "greater than 0"],
        ),
        (
            "# retries\n[queue]\nfirst_retry_secs = 0\n",
            &["line 3", "queue.first_retry_secs", "0"],
        ),
        ("[smtp]\nhost = \"\"\n", &["line 2", "smtp.host", "\"\""]),
        (
            "[resolve]\n\"x.test\" = \"nope\"\n",
            &["line 2", "x.test", "nope", "IP address"],
        ),
        (
            "[senders]\n\"h.test\" = \"bad@\"\n",
            &["line 2", "senders", "h.test", "bad@"],
        ),
        (
            "[relay]\nconsole = \"yes\"\n",
            &["line 2", "relay.console", "\"yes\"", "true or false"],
        ),
        (
            "[proxy]\nconect_timeout_secs = 3\n",
            &[
                "line 2",
                "proxy.conect_timeout_secs",
                "connect_timeout_secs",
            ],
        ),
    ];
    let rust_words = [
        "usize",
        "u64",
        "u32",
        "u16",
        "i64",
        "f64",
        "invalid IP address syntax",
        "invalid socket address syntax",
    ];
    for (text, wants) in cases {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} accepted");
        assert!(
            err.contains(&file.display().to_string()),
            "{text:?}: no file in {err}"
        );
        for want in *wants {
            assert!(err.contains(want), "{text:?}: {want:?} missing in {err}");
        }
        for word in rust_words {
            assert!(!err.contains(word), "{text:?}: {word:?} in {err}");
        }
    }
}

#[test]
fn the_readme_quick_start_works_as_written() {
    // Guards the README's quick start: its own commands (config, the two curl replays) run
    // against the real binary deliver the mail and queue one report naming both bad recipients.
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme
        .find("## Quick start")
        .expect("README has a quick start")..];
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .take(2)
        .map(|b| &b[..b.find("```").expect("closed code block")])
        .collect();
    assert!(
        blocks[0].contains("--config samples/quickstart.toml"),
        "{:?}",
        blocks[0]
    );
    let repo = std::env::current_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(repo.join("samples/quickstart.toml"))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    // Keep reading the console so mailtap never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    // The README's commands, with the port mailtap got and the repository's samples.
    let script = blocks[1]
        .replace("127.0.0.1:8800", &format!("127.0.0.1:{port}"))
        .replace("f=samples/", &format!("f={}/samples/", repo.display()));
    let out = Command::new("bash")
        .args(["-euc", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let answers = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{answers}");
    assert_eq!(
        answers.matches("Message sent successfully").count(),
        2,
        "{answers}"
    );
    // Two mails and one report reach the built-in server's mailbox (bounded wait).
    let mailbox = dir.path().join("data/mailbox");
    let started = Instant::now();
    let emls = loop {
        let emls: Vec<String> = std::fs::read_dir(&mailbox)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if emls.len() >= 3 || started.elapsed() > Duration::from_secs(20) {
            break emls;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let reports: Vec<&String> = emls
        .iter()
        .filter(|e| e.contains("report-type=delivery-status"))
        .collect();
    assert_eq!((emls.len(), reports.len()), (3, 1), "{emls:#?}");
    assert!(reports[0].contains("alice@localhost"), "{}", reports[0]);
    assert!(reports[0].contains("nobody@example.org"), "{}", reports[0]);
    assert!(
        std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("Log-")),
        "no transcript"
    );
}
