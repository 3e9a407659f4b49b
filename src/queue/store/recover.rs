//! Startup recovery of the spool: removes uncommitted enqueues, finishes interrupted state
//! moves, and rebuilds the in-memory index with every claim released.
//!
//! Owns the repair rules only (what is trusted on disk: `meta.json`'s state; what is removed:
//! everything in `tmp/`, stale `meta.json.tmp` files). It never deletes a committed mail: an
//! unreadable entry is left in place and reported.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{io_err, read_meta, sync_dir, Entry, Index, Store, MESSAGE_FILE, META_FILE, META_TMP};
use crate::queue::error::QueueError;
use crate::queue::id::MailId;
use crate::queue::meta::{MailMeta, MailState};

/// What `open` found and repaired on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Mails loaded per state: active, deferred, delivered, failed.
    pub loaded: [usize; 4],
    /// Uncommitted enqueues (entries of `tmp/`) removed.
    pub tmp_removed: usize,
    /// Journal records written into their mails' `meta.json` (completions not yet applied).
    pub journaled: usize,
    /// Mail directories moved to the state their `meta.json` names (interrupted moves).
    pub moved: usize,
    /// Entries left untouched because they are unreadable, with the reason.
    pub corrupt: Vec<(PathBuf, String)>,
}

impl Store {
    pub(super) fn recover(&self) -> Result<RecoveryReport, QueueError> {
        let mut rep = RecoveryReport {
            journaled: self.replay_journal()?,
            ..RecoveryReport::default()
        };
        let rd = fs::read_dir(&self.tmp).map_err(io_err("list tmp", &self.tmp))?;
        for ent in rd {
            let ent = ent.map_err(io_err("list tmp", &self.tmp))?;
            let p = ent.path();
            let res = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            res.map_err(io_err("remove uncommitted enqueue", &p))?;
            tracing::info!(path = %p.display(), "spool recovery: removed uncommitted enqueue");
            rep.tmp_removed += 1;
        }
        // List everything first: recovery moves entries between the directories it scans.
        let mut found = Vec::new();
        for state in MailState::ALL {
            let dir = self.dirs[state.index()].path().to_path_buf();
            let rd = fs::read_dir(&dir).map_err(io_err("list state directory", &dir))?;
            for ent in rd {
                let ent = ent.map_err(io_err("list state directory", &dir))?;
                found.push((state, ent.path()));
            }
        }
        let mut index = Index::default();
        for (state, path) in found {
            if let Err(e) = self.recover_one(state, &path, &mut index, &mut rep) {
                tracing::error!(path = %path.display(), error = %e, "spool recovery: entry skipped");
                rep.corrupt.push((path, e.to_string()));
            }
        }
        rep.loaded = index.counts;
        *self.index() = index;
        Ok(rep)
    }

    fn recover_one(
        &self,
        state: MailState,
        path: &Path,
        index: &mut Index,
        rep: &mut RecoveryReport,
    ) -> Result<(), QueueError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let id = MailId::parse(name)?;
        if !path.is_dir() {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let leftover = path.join(META_TMP);
        match fs::remove_file(&leftover) {
            Ok(()) => sync_dir(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(QueueError::io("remove stale meta tmp", leftover, e)),
        }
        let meta: MailMeta<serde_json::Value> = read_meta(&path.join(META_FILE))?;
        if meta.id != id {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("meta.json names id {}", meta.id),
            });
        }
        let eml = path.join(MESSAGE_FILE);
        fs::metadata(&eml).map_err(io_err("stat message", &eml))?;
        if index.entries.contains_key(&id) {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                reason: "the same id exists in another state directory".into(),
            });
        }
        if meta.state != state {
            let dst = self.dir_of(meta.state, &id);
            if dst.exists() {
                return Err(QueueError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("also present as {}", dst.display()),
                });
            }
            fs::rename(path, &dst).map_err(io_err("move to recorded state", path))?;
            sync_dir(self.dirs[meta.state.index()].path())?;
            sync_dir(self.dirs[state.index()].path())?;
            tracing::info!(%id, from = %state, to = %meta.state, "spool recovery: finished interrupted move");
            rep.moved += 1;
        }
        index.insert(
            id,
            Entry {
                state: meta.state,
                created: meta.created,
                attempts: meta.attempts,
                next_attempt: meta.next_attempt,
                claimed: false,
            },
        );
        Ok(())
    }
}
