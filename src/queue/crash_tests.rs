//! Crash tests of the enqueue path: it is cut (`std::process::abort`) at each failpoint step in
//! a child process that re-executes this test binary; the parent then opens the spool and
//! checks that every returned mail is there, the interrupted one is either whole or absent, and
//! nothing is half.
//!
//! They live in the library's unit tests because the failpoints exist only in its `cfg(test)`
//! build (see `failpoint.rs`); the crash test of the completion journal, which needs no
//! failpoint, is in `tests/queue_crash.rs`.

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::failpoint::{ENV as CRASH_ENV, STEPS};
use super::{MailMeta, MailState, QueueConfig, Spool};

/// Tells the child process which data directory to use.
const CHILD_DIR_ENV: &str = "MAILTAP_TEST_CRASH_DIR";
/// Mails the child enqueues; the failpoint fires during the last one.
const MAILS: u32 = 4;
/// The child's own name, as the test harness filters it.
const CHILD_TEST: &str = "queue::crash_tests::crash_child";
/// Longest a child may run (it enqueues four small mails).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    n: u32,
}

fn message(n: u32) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: crash {n}\r\n\r\n").into_bytes();
    m.extend(vec![b'a' + (n % 26) as u8; 2000]);
    m.extend_from_slice(b"\r\n");
    m
}

/// Child body: enqueue `MAILS` mails, appending each returned id to `returned.txt` (fsync'd)
/// before the next. Runs only when re-executed by `crash_at_each_step` (hence ignored).
#[test]
#[ignore = "child process of crash_at_each_step; needs MAILTAP_TEST_CRASH_DIR"]
fn crash_child() {
    // Guards: (child side) enqueue returns only durable mails; aborts where the failpoint says.
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        // Run directly (e.g. `--include-ignored`): there is no parent to report to.
        eprintln!("crash_child: {CHILD_DIR_ENV} unset; nothing to do outside crash_at_each_step");
        return;
    };
    // The abort to come must not leave core files.
    crate::sys::no_core_dumps().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let spool = Spool::<Rec>::open(&dir, QueueConfig::default()).unwrap();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&dir).join("returned.txt"))
            .unwrap();
        for n in 0..MAILS {
            let id = spool.enqueue(&Rec { n }, &message(n)).await.unwrap();
            writeln!(log, "{id} {n}").unwrap();
            log.sync_all().unwrap();
        }
    });
}

/// Runs `crash_child` on `dir` with the failpoint `crash_at` armed; waits at most
/// [`CHILD_LIMIT`] (then kills it and fails).
fn run_child(dir: &Path, crash_at: Option<String>) -> ExitStatus {
    let exe = std::env::current_exe().unwrap();
    let out_path = dir.join("child.out");
    let out = fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        CHILD_TEST,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DIR_ENV, dir)
    .env_remove(CRASH_ENV)
    .stdin(Stdio::null())
    .stdout(out.try_clone().unwrap())
    .stderr(out);
    if let Some(at) = crash_at {
        cmd.env(CRASH_ENV, at);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child still running after {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    fs::remove_file(&out_path).unwrap();
    if !status.success() && status.signal().is_none() {
        panic!("child failed without abort: {output}");
    }
    assert!(
        output.contains("1 passed") || status.signal().is_some(),
        "the child test did not run: {output}"
    );
    status
}

/// Opens the spool after the child died and checks every invariant; returns the mail count.
fn check_spool(dir: &Path) -> usize {
    let returned = fs::read_to_string(dir.join("returned.txt")).unwrap_or_default();
    let spool = Spool::<Rec>::open(dir, QueueConfig::default()).unwrap();
    let rep = spool.recovery_report();
    assert!(rep.corrupt.is_empty(), "{:?}", rep.corrupt);
    assert_eq!(fs::read_dir(dir.join("spool/tmp")).unwrap().count(), 0);
    let active = spool.list(MailState::Active);
    for s in &active {
        let mail_dir = dir.join("spool/active").join(s.id.as_str());
        let meta: MailMeta<Rec> =
            serde_json::from_slice(&fs::read(mail_dir.join("meta.json")).unwrap()).unwrap();
        let eml = fs::read(mail_dir.join("message.eml")).unwrap();
        assert_eq!(eml, message(meta.record.n), "mail {} is half", s.id);
        assert_eq!(meta.message_bytes, eml.len() as u64);
    }
    for line in returned.lines() {
        let (id, _) = line.split_once(' ').unwrap();
        assert!(
            active.iter().any(|s| s.id.as_str() == id),
            "returned mail {id} lost"
        );
    }
    assert_eq!(returned.lines().count(), MAILS as usize - 1);
    active.len()
}

#[test]
fn crash_at_each_step() {
    // Guards: a crash at any enqueue step loses no returned mail and leaves no half mail.
    // (abort() keeps data already written to files, so this proves the atomic renames and the
    // recovery, not that each fsync is there.)
    for (i, step) in STEPS.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let status = run_child(tmp.path(), Some(format!("{step}:{MAILS}")));
        assert_eq!(
            status.signal(),
            Some(crate::sys::SIGABRT),
            "step {step} did not abort"
        );
        let count = check_spool(tmp.path());
        let committed = i >= STEPS.iter().position(|s| *s == "renamed").unwrap();
        let want = if committed { MAILS } else { MAILS - 1 };
        assert_eq!(count, want as usize, "step {step}");
    }
}

#[test]
fn child_without_failpoint_enqueues_everything() {
    // Guards: the crash harness really runs the child (otherwise the crash test proves nothing).
    let tmp = tempfile::tempdir().unwrap();
    let status = run_child(tmp.path(), None);
    assert!(status.success());
    let returned = fs::read_to_string(tmp.path().join("returned.txt")).unwrap();
    assert_eq!(returned.lines().count(), MAILS as usize);
    let spool = Spool::<Rec>::open(tmp.path(), QueueConfig::default()).unwrap();
    assert_eq!(spool.list(MailState::Active).len(), MAILS as usize);
}
