//! Durable spool: mailtap's durability line between interception and relay.
//!
//! Owns the on-disk queue under `<data>/spool/` (layout and commit points: `queue/store.rs`), the
//! retry policy ([`QueueConfig`]), the claim protocol between relay workers, and the wake-up of
//! sleeping workers. It does not build messages, talk SMTP, or decide *whether* an error is
//! transient — callers say complete / defer / fail.
//!
//! API style: [`Spool::open`], [`Spool::list`], [`Spool::next_due`], [`Spool::release`] are
//! synchronous and cheap except `open` (which scans the spool; call it at startup). Every other
//! method is `async` and runs its blocking filesystem work on tokio's blocking pool
//! (`spawn_blocking`), so it needs a tokio runtime.
//!
//! Worker pattern (no polling):
//! ```text
//! loop {
//!     let wake = spool.notified();            // register interest first, then look
//!     let mails = spool.claim_due(Utc::now(), n).await?;
//!     if mails.is_empty() {
//!         select! { _ = wake => {}, _ = sleep_until(spool.next_due()) => {} }
//!     }
//!     ... deliver, then complete / defer / fail each claimed mail ...
//! }
//! ```

mod config;
#[cfg(test)]
mod crash_tests;
mod error;
mod failpoint;
mod group_sync;
mod id;
mod meta;
mod store;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

pub use config::QueueConfig;
pub use error::QueueError;
pub use id::MailId;
pub use meta::{MailMeta, MailState, MailSummary, RcptStatus};
pub use store::RecoveryReport;
/// The journal's record framing, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub use store::{journal_decode, journal_encode};

use store::{Access, Commit, Store};

/// Most finished mails one sweep removes.
pub const PURGE_BATCH: usize = 500;

/// A mail handed to one worker by [`Spool::claim_due`]; nobody else gets it until the worker
/// calls complete / defer / fail / release, or the process restarts.
#[derive(Debug)]
pub struct Claimed<R> {
    pub id: MailId,
    /// Metadata as committed at claim time (record, attempts, per-recipient status).
    pub meta: MailMeta<R>,
    /// The message bytes, exactly as enqueued.
    pub message: Vec<u8>,
    /// The mail's directory at claim time (for logs and the UI).
    pub dir: PathBuf,
}

/// Handle to the spool; cheap to clone, shareable between tasks. `R` is the record type stored
/// with each message (the interception side's `MailRecord`).
pub struct Spool<R> {
    store: Arc<Store>,
    notify: Arc<Notify>,
    /// Signalled after each journaled completion (see [`Spool::settle_when_quiet`]).
    journaled: Arc<Notify>,
    _record: PhantomData<fn() -> R>,
}

impl<R> Clone for Spool<R> {
    fn clone(&self) -> Self {
        Spool {
            store: Arc::clone(&self.store),
            notify: Arc::clone(&self.notify),
            journaled: Arc::clone(&self.journaled),
            _record: PhantomData,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    // The crate's pool, not tokio's: a refused thread must not panic (see `blocking`).
    crate::blocking::run(f)
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
}

impl<R: Serialize + DeserializeOwned + Send + 'static> Spool<R> {
    /// Opens `<data_dir>/spool` (created if missing), locks it against other processes, and
    /// recovers it: uncommitted enqueues are removed, interrupted state moves finished, and
    /// every active/deferred mail is unclaimed (claims lost by a crash become due again).
    /// Synchronous and blocking; see [`Spool::recovery_report`] for what it found. Fails with
    /// [`QueueError::Locked`] while another `Spool` (any process) has the same spool open.
    pub fn open(data_dir: impl AsRef<Path>, config: QueueConfig) -> Result<Spool<R>, QueueError> {
        let store = Store::open(data_dir.as_ref(), config)?;
        let rep = store.recovery();
        tracing::info!(
            spool = %store.root().display(),
            active = rep.loaded[0], deferred = rep.loaded[1],
            delivered = rep.loaded[2], failed = rep.loaded[3],
            tmp_removed = rep.tmp_removed, journaled = rep.journaled, moved = rep.moved,
            corrupt = rep.corrupt.len(),
            "spool opened"
        );
        Ok(Spool {
            store: Arc::new(store),
            notify: Arc::new(Notify::new()),
            journaled: Arc::new(Notify::new()),
            _record: PhantomData,
        })
    }

    /// What recovery found and repaired when the spool was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.store.recovery()
    }

    /// The `spool/` directory.
    pub fn dir(&self) -> &Path {
        self.store.root()
    }

    /// The retry policy in force.
    pub fn config(&self) -> &QueueConfig {
        self.store.config()
    }

    /// [`Spool::enqueue_at`] with the current time.
    pub async fn enqueue(&self, record: &R, message: &[u8]) -> Result<MailId, QueueError> {
        self.enqueue_at(record, message, Utc::now()).await
    }

    /// Stores `message` and `record` as a new active mail created (and due) at `now`.
    ///
    /// Returns only once the mail is durable: both files and the mail directory fsync'd, the
    /// commit rename done, and `active/` fsync'd (that last fsync is shared between concurrent
    /// enqueues). On error nothing is visible in the spool. Wakes one waiting worker.
    pub async fn enqueue_at(
        &self,
        record: &R,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<MailId, QueueError> {
        self.enqueue_as(self.store.new_id(now), record, message, now)
            .await
    }

    /// Like [`Spool::enqueue_at`], under the id the mail already has (its record's, made by
    /// [`MailId::new`]), so the spool, the Message-ID and the transcript name it alike. Fails
    /// (nothing stored) if a mail with this id is already in the spool.
    pub async fn enqueue_as(
        &self,
        id: MailId,
        record: &R,
        message: &[u8],
        now: DateTime<Utc>,
    ) -> Result<MailId, QueueError> {
        if self.store.contains(&id) {
            return Err(QueueError::Duplicate(id));
        }
        let meta = MailMeta::new(id.clone(), record, message.len() as u64, now);
        let created = meta.created;
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| QueueError::Json {
            op: "serialise record",
            path: self.store.root().join("tmp").join(id.as_str()),
            source,
        })?;
        let message = message.to_vec();
        let store = Arc::clone(&self.store);
        let id2 = id.clone();
        blocking(move || store.write_new(&id2, created, &json, &message)).await?;
        tracing::debug!(%id, bytes = meta.message_bytes, "enqueued");
        self.notify.notify_one();
        Ok(id)
    }

    /// Like [`Spool::enqueue_as`] for a caller that gives up the record and message: nothing
    /// is copied, the metadata is serialised on the blocking pool (not the async runtime), and
    /// both are freed as soon as they are on disk. For large intercepted mail.
    pub async fn enqueue_owned_as(
        &self,
        id: MailId,
        record: R,
        message: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<MailId, QueueError> {
        if self.store.contains(&id) {
            return Err(QueueError::Duplicate(id));
        }
        let store = Arc::clone(&self.store);
        let id2 = id.clone();
        let bytes = blocking(move || {
            let meta = MailMeta::new(id2.clone(), &record, message.len() as u64, now);
            let json = serde_json::to_vec_pretty(&meta).map_err(|source| QueueError::Json {
                op: "serialise record",
                path: store.root().join("tmp").join(id2.as_str()),
                source,
            })?;
            let created = meta.created;
            drop(meta);
            drop(record);
            store.write_new(&id2, created, &json, &message)?;
            Ok(message.len())
        })
        .await?;
        tracing::debug!(%id, bytes, "enqueued");
        self.notify.notify_one();
        Ok(id)
    }

    /// Claims up to `max` mails due at `now`, earliest due first, and reads them. A mail whose
    /// files cannot be read is logged and left claimed (so it is not retried in a tight loop)
    /// until restart; the others are returned.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<Claimed<R>>, QueueError> {
        let ids = self.store.claim_ids(now, max);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let store = Arc::clone(&self.store);
        blocking(move || {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                match store.read::<R>(&id, true) {
                    Ok((meta, message, dir)) => out.push(Claimed {
                        id,
                        meta,
                        message: message.unwrap_or_default(),
                        dir,
                    }),
                    Err(e) => {
                        tracing::error!(%id, error = %e, "claimed mail unreadable; left claimed");
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Finishes a claimed mail as delivered (failed when every recipient was refused),
    /// recording `per_rcpt`. `NotClaimed` if the caller holds no claim.
    ///
    /// The change is atomic but not fsync'd: after a crash the mail may be found as it was
    /// before and delivered again (at-least-once) — never lost. Everything else is durable.
    pub async fn complete(
        &self,
        id: &MailId,
        per_rcpt: &[(String, RcptStatus)],
    ) -> Result<(), QueueError> {
        let per_rcpt = per_rcpt.to_vec();
        // Syncing (or even rewriting meta.json for) every delivery cost most of the relay's
        // time on disk: completions go through the spool's journal.
        let res = self
            .change(id, Access::Claimer, Commit::Journal, move |m, _| {
                m.apply_complete(&per_rcpt)
            })
            .await
            .map(|_| ());
        self.journaled.notify_one();
        res
    }

    /// Writes journaled completions into the mails' `meta.json` files once no completion came
    /// for `quiet`, so what a person reads on disk agrees with mailtap shortly after the relay
    /// goes idle (under load the journal is still applied in batches of 1 MiB). Runs until
    /// `stop` turns true.
    pub async fn settle_when_quiet(
        &self,
        quiet: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = self.journaled.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Quiet: a whole `quiet` with no further completion.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(quiet) => break,
                    _ = self.journaled.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let store = Arc::clone(&self.store);
            if let Err(e) = blocking(move || store.apply_journal_idle()).await {
                tracing::warn!(error = %e, "spool: could not apply the journal; will retry");
            }
        }
    }

    /// Records a temporary failure of a claimed mail at `now`: the next attempt is scheduled by
    /// the retry policy (state deferred), or — once the mail is older than the give-up age —
    /// it fails. Returns the new state ([`MailState::Deferred`] or [`MailState::Failed`]).
    pub async fn defer(
        &self,
        id: &MailId,
        per_rcpt: &[(String, RcptStatus)],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<MailState, QueueError> {
        let per_rcpt = per_rcpt.to_vec();
        let error = error.to_string();
        let policy = self.store.config().clone();
        let st = self
            .change(id, Access::Claimer, Commit::Durable, move |m, _| {
                m.apply_defer(&per_rcpt, &error, now, &policy)
            })
            .await?;
        // A new due time may be earlier than what sleeping workers wait for.
        self.notify.notify_one();
        Ok(st)
    }

    /// Fails a mail permanently with `reason` (open recipients fail too). Allowed for a claimed
    /// mail (by its claimer; counts as an attempt) or an unclaimed one (e.g. from the UI).
    pub async fn fail(&self, id: &MailId, reason: &str) -> Result<(), QueueError> {
        let reason = reason.to_string();
        self.change(
            id,
            Access::AnyRelease,
            Commit::Durable,
            move |m, claimed| m.apply_fail(&reason, claimed),
        )
        .await
        .map(|_| ())
    }

    /// Replaces the stored record of an active or deferred mail; state, attempts and claim are
    /// unchanged. `Finished` for delivered/failed mails.
    pub async fn update_record(&self, id: &MailId, record: &R) -> Result<(), QueueError> {
        let value = serde_json::to_value(record).map_err(|source| QueueError::Json {
            op: "serialise record",
            path: self.store.mail_dir(id).unwrap_or_default(),
            source,
        })?;
        self.change(id, Access::AnyKeep, Commit::Durable, move |m, _| {
            m.record = value
        })
        .await
        .map(|_| ())
    }

    /// Reads the current metadata of `id` (any state); `Ok(None)` if the spool has no such
    /// mail. The message itself is at [`Spool::message_path`].
    pub async fn get(&self, id: &MailId) -> Result<Option<MailMeta<R>>, QueueError> {
        let store = Arc::clone(&self.store);
        let id = id.clone();
        blocking(move || match store.read::<R>(&id, false) {
            Ok((meta, _, _)) => Ok(Some(meta)),
            Err(QueueError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Where the `.eml` of `id` is right now (it moves with state changes).
    pub fn message_path(&self, id: &MailId) -> Option<PathBuf> {
        self.store.mail_dir(id).map(|d| d.join(store::MESSAGE_FILE))
    }

    /// Gives up a claim without changing the mail (e.g. on shutdown); it is due again at its
    /// recorded `next_attempt`. Wakes one waiting worker.
    pub fn release(&self, id: &MailId) -> Result<(), QueueError> {
        self.store.release(id)?;
        self.notify.notify_one();
        Ok(())
    }

    /// Gives up a claim after the spool could not record an outcome: the mail is not due
    /// again before `not_before` (kept in memory; on disk it keeps its recorded time), so a
    /// spool that cannot be written is not retried in a tight loop.
    pub fn release_until(&self, id: &MailId, not_before: DateTime<Utc>) -> Result<(), QueueError> {
        self.store.release_until(id, Some(not_before))?;
        self.notify.notify_one();
        Ok(())
    }

    /// Removes finished (delivered/failed) mail older than `[queue].keep_finished_secs` at
    /// `now`, at most `max` of them (oldest first); returns how many. Nothing when finished
    /// mail is kept forever.
    pub async fn purge_finished(
        &self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<usize, QueueError> {
        let Some(cutoff) = self.store.config().finished_cutoff(now) else {
            return Ok(0);
        };
        let store = Arc::clone(&self.store);
        blocking(move || Ok(store.purge_finished(cutoff, max))).await
    }

    /// Removes expired finished mail every `every` until `stop` turns true, in batches of at
    /// most [`PURGE_BATCH`] a second apart: deleting thousands of files at once slows file
    /// creation nearby on some filesystems (ext4 without a journal) for minutes.
    pub async fn sweep_finished(
        &self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            // A full batch means more may be waiting: the next one follows after a second.
            let pause = match self.purge_finished(Utc::now(), PURGE_BATCH).await {
                Ok(0) => every,
                Ok(n) => {
                    tracing::info!(removed = n, "spool: removed expired finished mail");
                    if n == PURGE_BATCH {
                        Duration::from_secs(1)
                    } else {
                        every
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "spool: could not remove expired mail");
                    every
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// A snapshot of the mails in `state`, earliest `next_attempt` first. From memory; cheap.
    pub fn list(&self, state: MailState) -> Vec<MailSummary> {
        self.store.list(state)
    }

    /// How many mails are in `state` (from memory; no sorting or copying, unlike `list`).
    pub fn count(&self, state: MailState) -> usize {
        self.store.counts()[state.index()]
    }

    /// How many unclaimed mails are due at `now`, counting no further than `limit`. From
    /// memory.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> usize {
        self.store.due(now, limit)
    }

    /// The earliest due time among unclaimed active/deferred mails, for a worker to sleep
    /// until; `None` when nothing waits.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.store.next_due()
    }

    /// A future completing on the next wake-up (enqueue, defer, release). Create it *before*
    /// calling `claim_due` so a wake-up in between is not lost; a wake-up with no waiter is
    /// stored and completes the next `notified()` at once.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The shared `Notify`, for workers that need an owned handle.
    pub fn notify_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    async fn change(
        &self,
        id: &MailId,
        access: Access,
        commit: Commit,
        f: impl FnOnce(&mut MailMeta<serde_json::Value>, bool) + Send + 'static,
    ) -> Result<MailState, QueueError> {
        let store = Arc::clone(&self.store);
        let id = id.clone();
        blocking(move || store.change(&id, access, commit, f)).await
    }
}
