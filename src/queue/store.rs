//! The spool's synchronous core: directory layout, durable writes and state moves; recovery
//! (`store/recover.rs`) and the in-memory index of claims (`store/index.rs`) sit beside it.
//!
//! Every function here blocks on the filesystem; `Spool` (mod.rs) runs them in
//! `spawn_blocking`. Claims live only in memory, so a crash releases them: after a restart every
//! active or deferred mail is unclaimed again. This module knows nothing about SMTP or records
//! beyond "some JSON value".
//!
//! Layout under `<data>/spool/`:
//! ```text
//! lock                        flock'd by the owning process
//! journal, journal.<n>        final outcomes not yet written into meta.json (store/journal.rs)
//! tmp/<id>/                   mails being enqueued (removed by recovery)
//! active/<id>/message.eml     the message, exactly as it will be sent
//! active/<id>/meta.json       MailMeta: state, attempts, recipients, record
//! deferred/<id>/ delivered/<id>/ failed/<id>/   same shape
//! ```
//! Commit point of an enqueue: the single `rename(tmp/<id>, active/<id>)`, done only after both
//! files and the mail directory are fsync'd, and followed by an fsync of `active/` (shared by
//! concurrent enqueues through `GroupSync`). A state change first rewrites `meta.json`
//! atomically (tmp file, fsync, rename, fsync of the mail dir) — that is its commit point, the
//! state in `meta.json` is authoritative — then moves the directory; recovery finishes a move
//! cut short by a crash. Completions (final states, not fsync'd) are appended to the journal
//! instead and reach `meta.json` in batches; recovery replays the journal first.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::private_fs;

use super::config::QueueConfig;
use super::error::QueueError;
use super::failpoint;
use super::group_sync::GroupSync;
use super::id::MailId;
use super::meta::{MailMeta, MailState};

mod index;
mod journal;
mod recover;
use index::{Entry, Index};
use journal::Journal;
#[doc(hidden)]
pub use journal::{decode as journal_decode, encode as journal_encode};
pub use recover::RecoveryReport;

/// File name of the message inside a mail directory.
pub const MESSAGE_FILE: &str = "message.eml";
/// File name of the metadata inside a mail directory.
pub const META_FILE: &str = "meta.json";
const META_TMP: &str = "meta.json.tmp";
/// Most attempts at finding a mail whose directory moves under a concurrent reader.
const READ_RETRIES: usize = 3;

/// A mail as read from disk: metadata, message bytes (if asked for), and its directory.
pub type ReadMail<R> = (MailMeta<R>, Option<Vec<u8>>, PathBuf);

/// How a state change is committed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// `meta.json` rewritten atomically and fsync'd, directories fsync'd: survives power loss.
    Durable,
    /// For final states: appended to the journal (one write, no fsync) and moved; survives a
    /// process crash, may be lost with the machine (the mail is then found as before).
    Journal,
}

/// How a state change may treat the claim.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The caller must hold the claim (complete, defer); the claim is released afterwards.
    Claimer,
    /// Allowed with or without a claim; a claim held before is released afterwards (fail).
    AnyRelease,
    /// Allowed with or without a claim; a claim held before is kept (update_record).
    AnyKeep,
}

/// The synchronous spool. See the module docs for the layout and the commit points.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    dirs: [GroupSync; 4],
    config: QueueConfig,
    index: Mutex<Index>,
    journal: Mutex<Journal>,
    recovery: RecoveryReport,
    /// Set once recovery succeeded; until then closing must not touch the journal.
    recovered: bool,
    _lock: File,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |e| QueueError::io(op, path, e)
}

fn sync_dir(path: &Path) -> Result<(), QueueError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", path))
}

fn read_meta<R: DeserializeOwned>(path: &Path) -> Result<MailMeta<R>, QueueError> {
    let bytes = fs::read(path).map_err(io_err("read metadata", path))?;
    parse_meta(&bytes, path)
}

/// Parses metadata bytes that belong to `path` (named in the error).
fn parse_meta<R: DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<MailMeta<R>, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Json {
        op: "parse metadata",
        path: path.to_path_buf(),
        source,
    })
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/spool`, takes its lock, and recovers: removes
    /// uncommitted enqueues from `tmp/`, finishes interrupted moves, and loads every mail with
    /// no claims. Fails with `Locked` if the spool is open elsewhere — another process, or
    /// another `Store` in this process (the `flock` belongs to the open file).
    pub fn open(data_dir: &Path, config: QueueConfig) -> Result<Store, QueueError> {
        config.validate()?;
        let root = data_dir.join("spool");
        let tmp = root.join("tmp");
        // Owner-only (the spool holds people's mail): created so, and a spool an older version
        // left open is tightened; with `spool/` at 0700 nothing below it is reachable by others.
        // (The subdirectories are tightened quietly: behind `spool/` they are out of reach.)
        for d in [&root, &tmp] {
            private_fs::create_dir_all(d).map_err(io_err("create directory", d))?;
        }
        private_fs::tighten_logged(&root, "the spool directory");
        let _ = private_fs::tighten(&tmp);
        for s in MailState::ALL {
            let d = root.join(s.dir_name());
            private_fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
            let _ = private_fs::tighten(&d);
        }
        sync_dir(&root)?;
        sync_dir(data_dir)?;
        let lock_path = root.join("lock");
        let lock = private_fs::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match crate::sys::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => return Err(QueueError::Locked { path: lock_path }),
            Err(e) => return Err(QueueError::io("lock spool", lock_path, e)),
        }
        let open_dir = |s: MailState| {
            let d = root.join(s.dir_name());
            GroupSync::open(&d).map_err(io_err("open directory", &d))
        };
        let dirs = [
            open_dir(MailState::Active)?,
            open_dir(MailState::Deferred)?,
            open_dir(MailState::Delivered)?,
            open_dir(MailState::Failed)?,
        ];
        let journal = Journal::open(&root)?;
        let mut store = Store {
            root,
            tmp,
            dirs,
            config,
            index: Mutex::new(Index::default()),
            journal: Mutex::new(journal),
            recovery: RecoveryReport::default(),
            recovered: false,
            _lock: lock,
        };
        store.recovery = store.recover()?;
        store.recovered = true;
        Ok(store)
    }

    /// The `spool/` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The retry policy in force.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// What recovery did when this store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is updated in single assignments after disk work, never half; ignore poison.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        // Appends and applies either finish or leave the journal for recovery; ignore poison.
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir_of(&self, state: MailState, id: &MailId) -> PathBuf {
        self.dirs[state.index()].path().join(id.as_str())
    }

    /// Whether the spool knows a mail with this id (from memory).
    pub fn contains(&self, id: &MailId) -> bool {
        self.index().entries.contains_key(id)
    }

    /// A fresh id for a mail enqueued at `now` (no disk access).
    pub fn new_id(&self, now: DateTime<Utc>) -> MailId {
        MailId::new(now)
    }

    /// Durably stores a new mail and makes it claimable; returns only after the commit rename
    /// and the fsync of `active/` have completed. `meta_json` must be a serialised `MailMeta`
    /// for `id` in state active. On error nothing becomes visible outside `tmp/`.
    pub fn write_new(
        &self,
        id: &MailId,
        created: DateTime<Utc>,
        meta_json: &[u8],
        message: &[u8],
    ) -> Result<(), QueueError> {
        let staging = self.tmp.join(id.as_str());
        let res = self.write_new_inner(&staging, id, meta_json, message);
        if res.is_err() && staging.exists() {
            if let Err(e) = fs::remove_dir_all(&staging) {
                tracing::warn!(path = %staging.display(), error = %e, "could not remove failed enqueue");
            }
        }
        res?;
        self.index().insert(
            id.clone(),
            Entry {
                state: MailState::Active,
                created,
                attempts: 0,
                next_attempt: created,
                claimed: false,
            },
        );
        Ok(())
    }

    fn write_new_inner(
        &self,
        staging: &Path,
        id: &MailId,
        meta_json: &[u8],
        message: &[u8],
    ) -> Result<(), QueueError> {
        private_fs::create_dir(staging).map_err(io_err("create staging directory", staging))?;
        failpoint::hit("mkdir");
        let eml_path = staging.join(MESSAGE_FILE);
        let mut eml = private_fs::options()
            .write(true)
            .create_new(true)
            .open(&eml_path)
            .map_err(io_err("create message", &eml_path))?;
        // The crash tests cut the process between two halves of the message; a normal build
        // writes it in one piece.
        #[cfg(test)]
        let message = {
            let (first, rest) = message.split_at(message.len() / 2);
            eml.write_all(first)
                .map_err(io_err("write message", &eml_path))?;
            failpoint::hit("eml-partial");
            rest
        };
        eml.write_all(message)
            .map_err(io_err("write message", &eml_path))?;
        failpoint::hit("eml-written");
        let meta_path = staging.join(META_FILE);
        let mut meta = private_fs::options()
            .write(true)
            .create_new(true)
            .open(&meta_path)
            .map_err(io_err("create metadata", &meta_path))?;
        meta.write_all(meta_json)
            .map_err(io_err("write metadata", &meta_path))?;
        failpoint::hit("meta-written");
        // The three fsyncs are independent of each other (file contents, and the directory
        // entries naming them); running them concurrently lets the filesystem journal merge
        // them into fewer commits. All three finish before the commit rename.
        let dir_sync = std::thread::scope(|s| {
            // A thread the OS refuses (thread or mapping limit) is no error: that fsync runs
            // here instead (`Scope::spawn` would panic).
            let eml_job = std::thread::Builder::new().spawn_scoped(s, || eml.sync_all());
            let meta_job = std::thread::Builder::new().spawn_scoped(s, || meta.sync_all());
            let dir_res = File::open(staging).and_then(|d| d.sync_all());
            let joined = |h: io::Result<std::thread::ScopedJoinHandle<'_, io::Result<()>>>,
                          file: &File| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked"))),
                Err(_) => file.sync_all(),
            };
            let eml_res = joined(eml_job, &eml);
            let meta_res = joined(meta_job, &meta);
            eml_res
                .map_err(io_err("fsync message", &eml_path))
                .and(meta_res.map_err(io_err("fsync metadata", &meta_path)))
                .and(dir_res.map_err(io_err("fsync staging directory", staging)))
        });
        dir_sync?;
        failpoint::hit("synced");
        let dst = self.dir_of(MailState::Active, id);
        fs::rename(staging, &dst).map_err(io_err("rename into active", staging))?;
        failpoint::hit("renamed");
        let active = &self.dirs[MailState::Active.index()];
        active
            .sync()
            .map_err(io_err("fsync active directory", active.path()))?;
        failpoint::hit("dir-synced");
        Ok(())
    }

    /// Reads the metadata and message of `id`, retrying if its directory moves meanwhile.
    /// Returns the mail directory it was read from.
    pub fn read<R: DeserializeOwned>(
        &self,
        id: &MailId,
        with_message: bool,
    ) -> Result<ReadMail<R>, QueueError> {
        let mut last = None;
        for _ in 0..READ_RETRIES {
            let state = self
                .index()
                .entries
                .get(id)
                .map(|e| e.state)
                .ok_or_else(|| QueueError::NotFound(id.clone()))?;
            let dir = self.dir_of(state, id);
            match self.read_at(id, &dir, with_message) {
                Ok((m, msg)) => return Ok((m, msg, dir)),
                Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    last = Some(QueueError::Corrupt {
                        path: dir,
                        reason: "mail directory moved while being read".into(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| QueueError::NotFound(id.clone())))
    }

    /// Reads `id` from `dir`: metadata from the journal when a change is pending there, else
    /// `meta.json` — whose bytes are kept for the change that ends a claim (`Index::meta`).
    fn read_at<R: DeserializeOwned>(
        &self,
        id: &MailId,
        dir: &Path,
        with_message: bool,
    ) -> Result<(MailMeta<R>, Option<Vec<u8>>), QueueError> {
        let pending = self.journal().lookup(id);
        let meta_path = dir.join(META_FILE);
        let json = match pending {
            Some(json) => json,
            None => Arc::new(fs::read(&meta_path).map_err(io_err("read metadata", &meta_path))?),
        };
        let meta: MailMeta<R> = parse_meta(&json, &meta_path)?;
        if with_message {
            // Only the claimer's own read (right after claim_ids) fills the slot.
            if let Some(slot @ None) = self.index().meta.get_mut(id) {
                *slot = Some(json);
            }
        }
        let msg = if with_message {
            let p = dir.join(MESSAGE_FILE);
            let mut f = File::open(&p).map_err(io_err("open message", &p))?;
            let mut buf = Vec::with_capacity(usize::try_from(meta.message_bytes).unwrap_or(0));
            f.read_to_end(&mut buf)
                .map_err(io_err("read message", &p))?;
            Some(buf)
        } else {
            None
        };
        Ok((meta, msg))
    }

    /// Changes a mail: applies `change` to its metadata, commits the new `meta.json`, moves the
    /// directory if the state changed, then updates the index (releasing the claim as `access`
    /// says). `change` also learns whether the mail was claimed before the call. `Finished` for
    /// delivered/failed mails. On error the mail keeps its old state on disk (or the new one,
    /// if the metadata commit happened; recovery then finishes the move).
    pub fn change(
        &self,
        id: &MailId,
        access: Access,
        commit: Commit,
        change: impl FnOnce(&mut MailMeta<serde_json::Value>, bool),
    ) -> Result<MailState, QueueError> {
        let (before, was_claimed) = {
            let mut idx = self.index();
            let e = idx
                .entries
                .get(id)
                .cloned()
                .ok_or_else(|| QueueError::NotFound(id.clone()))?;
            if e.state.is_final() {
                return Err(QueueError::Finished(id.clone()));
            }
            if access == Access::Claimer && !e.claimed {
                return Err(QueueError::NotClaimed(id.clone()));
            }
            if !e.claimed {
                // Hold the claim for the duration, so no worker claims it meanwhile.
                let st = e.state;
                idx.insert(id.clone(), Entry { claimed: true, ..e });
                (st, false)
            } else {
                (e.state, true)
            }
        };
        let keep_claim = was_claimed && access == Access::AnyKeep;
        let res = self.change_on_disk(id, before, commit, |m| change(m, was_claimed));
        let mut idx = self.index();
        match res {
            Ok(meta) => {
                idx.insert(
                    id.clone(),
                    Entry {
                        state: meta.state,
                        created: meta.created,
                        attempts: meta.attempts,
                        next_attempt: meta.next_attempt,
                        claimed: keep_claim && !meta.state.is_final(),
                    },
                );
                Ok(meta.state)
            }
            Err(e) => {
                if !was_claimed {
                    if let Some(cur) = idx.entries.get(id).cloned() {
                        idx.insert(
                            id.clone(),
                            Entry {
                                claimed: false,
                                ..cur
                            },
                        );
                    }
                }
                Err(e)
            }
        }
    }

    /// Applies `change` to the metadata on disk and commits it as `commit` says
    /// ([`Commit::Journal`] only for a final new state; otherwise the durable path).
    fn change_on_disk(
        &self,
        id: &MailId,
        before: MailState,
        commit: Commit,
        change: impl FnOnce(&mut MailMeta<serde_json::Value>),
    ) -> Result<MailMeta<serde_json::Value>, QueueError> {
        let dir = self.dir_of(before, id);
        let cached = self.index().meta.remove(id).flatten();
        let mut meta: MailMeta<serde_json::Value> = match cached {
            Some(json) => parse_meta(&json, &dir.join(META_FILE))?,
            None => read_meta(&dir.join(META_FILE))?,
        };
        change(&mut meta);
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| QueueError::Json {
            op: "serialise metadata",
            path: dir.join(META_FILE),
            source,
        })?;
        if commit == Commit::Journal && meta.state.is_final() {
            self.journal_change(id, before, meta.state, json)?;
            return Ok(meta);
        }
        journal::write_meta_atomic(&dir, &json)?;
        if meta.state != before {
            let dst = self.dir_of(meta.state, id);
            fs::rename(&dir, &dst).map_err(io_err("move mail directory", &dir))?;
            // Both directories changed. Each sync is shared with concurrent state changes
            // (group commit), so doing them one after the other costs little; a helper thread
            // per change cost more CPU than it saved.
            let (dst_dir, src_dir) = (&self.dirs[meta.state.index()], &self.dirs[before.index()]);
            let dst_res = dst_dir.sync();
            let src_res = src_dir.sync();
            dst_res.map_err(io_err("fsync state directory", dst_dir.path()))?;
            src_res.map_err(io_err("fsync state directory", src_dir.path()))?;
        }
        Ok(meta)
    }

    /// Removes up to `max` delivered/failed mails created before `cutoff` (oldest first) from
    /// disk, the index and the journal's pending changes (a journal record of a removed mail is
    /// skipped when applied or replayed). Returns how many were removed; a mail that cannot be
    /// removed is logged and kept.
    pub fn purge_finished(&self, cutoff: DateTime<Utc>, max: usize) -> usize {
        let mut old: Vec<(DateTime<Utc>, MailId, MailState)> = self
            .index()
            .entries
            .iter()
            .filter(|(_, e)| e.state.is_final() && e.created < cutoff)
            .map(|(id, e)| (e.created, id.clone(), e.state))
            .collect();
        old.sort();
        let mut removed = 0;
        for (_, id, state) in old {
            if removed == max {
                break;
            }
            // Out of the state directories in one rename, then deleted: a crash in between
            // leaves it in tmp/, which recovery empties, never half a mail in delivered/.
            let dir = self.dir_of(state, &id);
            let doomed = self.tmp.join(format!("purge-{}", id.as_str()));
            if let Err(e) = fs::rename(&dir, &doomed) {
                tracing::warn!(path = %dir.display(), error = %e, "could not remove a finished mail");
                continue;
            }
            self.journal().forget(&id);
            self.index().remove(&id);
            removed += 1;
            if let Err(e) = fs::remove_dir_all(&doomed) {
                tracing::warn!(path = %doomed.display(), error = %e, "removed mail left in tmp/ until restart");
            }
        }
        removed
    }

    /// The journal path of a change into a final state: record first, then the directory
    /// move (a crash in between leaves a record that recovery applies wherever the mail is).
    fn journal_change(
        &self,
        id: &MailId,
        before: MailState,
        after: MailState,
        json: Vec<u8>,
    ) -> Result<(), QueueError> {
        // Held across the move so that an apply never sees a pending change whose directory
        // has not arrived yet.
        let mut j = self.journal();
        j.append(id, after, json)?;
        if after != before {
            let (src, dst) = (self.dir_of(before, id), self.dir_of(after, id));
            if let Err(e) = fs::rename(&src, &dst) {
                // The record stays in the file (recovery applies it where the mail is); in
                // this run the mail keeps its old state.
                j.forget(id);
                return Err(QueueError::io("move mail directory", src, e));
            }
        }
        if j.is_full() {
            if let Err(e) = self.apply_journal_soon(&mut j) {
                tracing::warn!(error = %e, "spool: could not apply the journal; will retry");
            }
        }
        Ok(())
    }
}
