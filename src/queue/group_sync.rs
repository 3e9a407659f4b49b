//! Group commit for directory fsyncs: many threads that renamed entries into one directory share
//! a single `fsync` of that directory, and each still returns only after a sync that *started
//! after its own rename* has completed.
//!
//! Owns one open directory handle and the ticket bookkeeping. Blocking (std Mutex + Condvar):
//! call it only from blocking threads (`spawn_blocking`), never on an async executor thread.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Tickets {
    /// Next ticket to hand out; a caller takes one *after* its rename.
    next: u64,
    /// Every ticket below this is covered by a successful, completed fsync.
    synced_below: u64,
    /// True while some thread (the leader) runs an fsync.
    running: bool,
}

/// A directory whose fsyncs are shared between concurrent callers.
#[derive(Debug)]
pub struct GroupSync {
    path: PathBuf,
    dir: File,
    tickets: Mutex<Tickets>,
    done: Condvar,
}

impl GroupSync {
    /// Opens `path` (a directory) for syncing.
    pub fn open(path: &Path) -> io::Result<GroupSync> {
        Ok(GroupSync {
            path: path.to_path_buf(),
            dir: File::open(path)?,
            tickets: Mutex::new(Tickets::default()),
            done: Condvar::new(),
        })
    }

    /// The directory this syncs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Tickets> {
        // A panic while holding this lock leaves only counters behind; they stay consistent
        // (the leader resets `running` before any code that could panic), so poison is ignored.
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every directory change made by this thread before the call durable.
    ///
    /// Either becomes the leader and fsyncs the directory (covering every ticket taken before
    /// the fsync started), or waits for a leader whose fsync started after this call's ticket.
    /// If the leader's fsync fails, the leader returns the error and the waiters retry with a
    /// new leader; each caller runs at most one fsync itself, so the loop is bounded.
    pub fn sync(&self) -> io::Result<()> {
        let mut t = self.lock();
        let mine = t.next;
        t.next += 1;
        loop {
            if t.synced_below > mine {
                return Ok(());
            }
            if !t.running {
                t.running = true;
                let covers = t.next;
                drop(t);
                let res = self.dir.sync_all();
                let mut t2 = self.lock();
                t2.running = false;
                if res.is_ok() && covers > t2.synced_below {
                    t2.synced_below = covers;
                }
                drop(t2);
                self.done.notify_all();
                return res;
            }
            t = self.done.wait(t).unwrap_or_else(|p| p.into_inner());
        }
    }
}
