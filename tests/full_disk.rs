//! A full data disk: mailtap backs off instead of looping, leaves no temp files behind, says
//! once that the spool cannot be written, and delivers once the disk has room again.
//!
//! Runs on a 2 MiB tmpfs the test mounts and unmounts itself (root needed; outside CI the test
//! skips without it, under `CI=true` it fails). One test in this binary, so the process's CPU
//! time is this test's.

mod common;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/webmail.rs"]
mod webmail;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mailtap::queue::MailState;
use webmail::{roundcube_send, webmail_config};

/// Unmounts the tmpfs when the test ends, passed or failed.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Mounts a tmpfs of `size` at `dir`, or says why not.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mounted, String> {
    let mount = gate::find_executable(&gate::search_dirs(), "mount")
        .ok_or_else(|| "no mount(8)".to_string())?;
    let status = std::process::Command::new(mount)
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .map_err(|e| format!("mount: {e}"))?;
    if !status.success() {
        return Err(format!("mount -t tmpfs failed: {status}"));
    }
    Ok(Mounted(dir.to_path_buf()))
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Files under `dir` (recursively) whose names satisfy `pred`.
fn count_files(dir: &Path, pred: &dyn Fn(&str) -> bool) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p, pred)
            } else {
                usize::from(pred(&e.file_name().to_string_lossy()))
            }
        })
        .sum()
}

/// Fills the filesystem holding `dir` until a write fails; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    for _ in 0..10_000 {
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            return path;
        }
    }
    panic!("the 2 MiB disk never filled up");
}

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_backs_off_cleans_up_and_recovers() {
    // Guards issue 10.3: no hot loop, no temp-file litter, one "disk full" message, delivery
    // once there is room again.
    let dir = tempfile::tempdir().unwrap();
    let mounted = match gate::act(gate::gate(
        gate::ci_env(),
        Ok(()),
        gate::is_root(),
        "mounting a tmpfs",
    )) {
        Some(()) => mount_tmpfs(dir.path(), "2m").unwrap(),
        None => return,
    };
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let config = format!(
        "{}[builtin_smtp]\ntemp_fail_first_n = 1\n[queue]\nfirst_retry_secs = 1\n",
        webmail_config("lilei@example.com", &[])
    );
    let mt = start_in(dir, &config, None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, webmail::SESSION_COOKIE).await;
    raw_exchange(mt.addr, &roundcube_send("bob@example.org", "", "full", "x")).await;
    let deadline = Instant::now() + WAIT;
    while mt.spool.list(MailState::Deferred).is_empty() {
        assert!(Instant::now() < deadline, "mail never deferred");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let root = mt.dir.path().to_path_buf();
    let filler = fill(&root);
    let is_log = |n: &str| n.starts_with("Log-");
    let is_tmp = |n: &str| n.ends_with(".tmp");
    let logs_before = count_files(&root.join("logs"), &is_log);
    let cpu_before = cpu_time();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cpu = cpu_time() - cpu_before;
    let new_logs = count_files(&root.join("logs"), &is_log) - logs_before;
    let tmp = count_files(&root.join("data"), &is_tmp);
    eprintln!("full disk, 6 s: {new_logs} new Log files, {tmp} temp files, CPU {cpu:?}");
    assert!(new_logs <= 1, "{new_logs} new Log files on a full disk");
    assert_eq!(tmp, 0, "temp files left behind on a full disk");
    assert!(
        cpu < Duration::from_millis(1500),
        "{cpu:?} CPU in 6 s on a full disk"
    );
    let said = logs.text();
    assert_eq!(
        said.matches("the spool cannot be written").count(),
        1,
        "not said exactly once:\n{said}"
    );
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mt.mailbox().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not delivered after the disk was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = mt.stop_keep_dir().await;
    drop(mounted);
    drop(dir);
}
