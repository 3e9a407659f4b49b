//! mailtap's files hold people's mail: the spool, the built-in mailbox and the transcripts are
//! owner-only (files 0600, directories 0700), whatever the umask, what an older version left
//! world-readable is tightened at startup, and secrets with non-standard names never reach them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;

/// Every file and directory under `root` (bounded), with its permission bits.
fn modes_under(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        assert!(out.len() < 10_000, "unexpectedly many files under {root:?}");
        let meta = std::fs::metadata(&dir).unwrap();
        out.push((dir.clone(), meta.permissions().mode() & 0o7777, true));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                out.push((entry.path(), meta.permissions().mode() & 0o7777, false));
            }
        }
    }
    out
}

/// The session cookie of the Roundcube sample; the browser logs in with it first (mailtap
/// relays only sends carrying a cookie the webmail set through it).
const SAMPLE_COOKIE: &str = "roundcube_sessid=77aa; roundcube_sessauth=secret";

/// The sample Roundcube send with its target on `port`.
fn roundcube_send(port: u16) -> Vec<u8> {
    let bytes = std::fs::read("samples/webmail/roundcube-plain.http").unwrap();
    let host = "POST http://webmail.example.test/";
    assert!(bytes.starts_with(host.as_bytes()));
    let mut out = format!("POST http://webmail.example.test:{port}/").into_bytes();
    out.extend_from_slice(&bytes[host.len()..]);
    out
}

#[tokio::test]
async fn spool_mailbox_and_logs_are_owner_only() {
    // Guards issue 10.9: after a mail went through (spool, built-in mailbox, Log-*.txt), no file
    // or directory mailtap wrote is readable by group or others, under the common umask 022;
    // directories and files an older version left open are tightened when mailtap starts.
    // SAFETY: umask only sets this process's file-creation mask (every test in this binary
    // sets the same value).
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    // Left by an older mailtap: open spool and mailbox directories, an open transcript.
    let (data, logs) = (dir.path().join("data"), dir.path().join("logs"));
    for d in [data.join("spool"), data.join("mailbox"), logs.clone()] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_log = logs.join("Log-20250101000000.txt");
    std::fs::write(&old_log, "an old transcript\n").unwrap();
    std::fs::set_permissions(&old_log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unrelated = logs.join("notes.txt");
    std::fs::write(&unrelated, "not mailtap's\n").unwrap();
    std::fs::set_permissions(&unrelated, std::fs::Permissions::from_mode(0o644)).unwrap();

    let origin = origin().await;
    let mt = start_in(
        dir,
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         [senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n",
        None,
    )
    .await;
    log_in(mt.addr, "webmail.example.test", SAMPLE_COOKIE).await;
    let answer = raw_exchange(mt.addr, &roundcube_send(origin.addr.port())).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let deadline = Instant::now() + WAIT;
    while mt.mailbox().is_empty() || mt.transcripts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the mail never reached the mailbox"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let root = mt.dir.path().to_path_buf();
    let mut checked = 0;
    for sub in ["data/spool", "data/mailbox", "logs"] {
        for (path, mode, is_dir) in modes_under(&root.join(sub)) {
            if path == root.join("logs") || path == unrelated {
                continue;
            }
            let want = if is_dir { 0o700 } else { 0o600 };
            assert_eq!(
                mode & 0o077,
                0,
                "{} is {mode:o}, want {want:o}",
                path.display()
            );
            checked += 1;
        }
    }
    // A spool dir, its state dirs, journal, lock, the mail's files, the mailbox's files and
    // both transcripts at least. (The CA's directory is 0700; its certificate is public.)
    assert!(checked > 12, "only {checked} paths checked");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // A directory the user may share (logs) and files that are not mailtap's keep their mode.
    assert_eq!(mode(&root.join("logs")), 0o755);
    assert_eq!(mode(&unrelated), 0o644);
    assert_eq!(mode(&old_log), 0o600);
    mt.shutdown().await;
}

#[tokio::test]
async fn directories_mailtap_creates_are_owner_only() {
    // Guards issue 10.9 for a first start: the data and logs directories mailtap creates itself
    // (not only its files) are 0700, so nobody else can even list the mail ids.
    // SAFETY: as above.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let mt = start_in(dir, "", None).await;
    let root = mt.dir.path().to_path_buf();
    // A transcript is written on the first mail; the logs directory is created then.
    let log = mailtap::translog::TransLog::create(&root.join("logs"), chrono::Utc::now()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["data", "data/spool", "data/mailbox", "data/ca", "logs"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(log.path()), 0o600);
    drop(log);
    mt.shutdown().await;
}

#[tokio::test]
async fn secrets_with_non_standard_names_reach_no_file() {
    // Guards issue 10.7 end to end: X-Api-Key, X-Session-Id and api_key= values of an
    // intercepted send appear in neither the transcript nor the spool's meta.json, while
    // look-alike names (Keep-Alive, keyword=) stay readable there.
    let origin = origin().await;
    let mt = start(
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         [senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n",
        None,
    )
    .await;
    log_in(mt.addr, "webmail.example.test", SAMPLE_COOKIE).await;
    let send = roundcube_send(origin.addr.port());
    let text = String::from_utf8(send).unwrap();
    let text = text.replacen(
        "&_framed=1 HTTP/1.1\r\n",
        "&_framed=1&api_key=S3CR3T-Q&keyword=visible-q HTTP/1.1\r\n\
         X-Api-Key: S3CR3T-H1\r\nX-Session-Id: S3CR3T-H2\r\nX-Keep-Alive-Hint: visible-h\r\n",
        1,
    );
    assert!(text.contains("S3CR3T-H2"));
    let answer = raw_exchange(mt.addr, text.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mails = settled_mails(&mt.spool).await;
    assert_eq!(mails.len(), 1);
    let root = mt.dir.path().to_path_buf();
    let mut texts = String::new();
    for sub in ["data/spool", "logs"] {
        for (path, _, is_dir) in modes_under(&root.join(sub)) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !is_dir && (name == "meta.json" || name.starts_with("Log-")) {
                texts.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(
        texts.contains("visible-q") && texts.contains("visible-h"),
        "{texts}"
    );
    assert!(!texts.contains("S3CR3T"), "{texts}");
    mt.shutdown().await;
}
