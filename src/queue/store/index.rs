//! The spool's in-memory index: which mail is in which state, when it is due, who holds a
//! claim — and the operations that only touch it (claim, release, listings, next due time).
//!
//! Owns the claim bookkeeping. Claims live only here, never on disk, so a crash or restart
//! releases them all. No filesystem access happens in this file.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Store;
use crate::queue::error::QueueError;
use crate::queue::id::MailId;
use crate::queue::meta::{MailState, MailSummary};

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) state: MailState,
    pub(super) created: DateTime<Utc>,
    pub(super) attempts: u32,
    pub(super) next_attempt: DateTime<Utc>,
    pub(super) claimed: bool,
}

#[derive(Default)]
pub(super) struct Index {
    pub(super) entries: HashMap<MailId, Entry>,
    /// Unclaimed active/deferred mails by due time.
    pub(super) schedule: BTreeSet<(DateTime<Utc>, MailId)>,
    /// Mails per state (active, deferred, delivered, failed), kept by `insert`.
    pub(super) counts: [usize; 4],
    /// The `meta.json` bytes read for a claim, so that the change ending the claim need not
    /// read them again. The slot is opened (`None`) by `claim_ids`, filled by the claim's read,
    /// and closed by any `insert` — so bytes read before a change are never kept after it.
    pub(super) meta: HashMap<MailId, Option<Arc<Vec<u8>>>>,
}

impl Index {
    /// Adds or replaces the entry of `id`; the only way entries change state.
    pub(super) fn insert(&mut self, id: MailId, e: Entry) {
        if let Some(old) = self.entries.get(&id) {
            self.schedule.remove(&(old.next_attempt, id.clone()));
            self.counts[old.state.index()] -= 1;
        }
        self.counts[e.state.index()] += 1;
        self.meta.remove(&id);
        if !e.claimed && !e.state.is_final() {
            self.schedule.insert((e.next_attempt, id.clone()));
        }
        self.entries.insert(id, e);
    }
}

impl Index {
    /// Forgets `id` entirely (its mail is gone from disk).
    pub(super) fn remove(&mut self, id: &MailId) {
        if let Some(old) = self.entries.remove(id) {
            self.schedule.remove(&(old.next_attempt, id.clone()));
            self.counts[old.state.index()] -= 1;
        }
        self.meta.remove(id);
    }
}

impl Store {
    /// Claims up to `max` unclaimed mails due at `now` (active, or deferred with
    /// `next_attempt <= now`), earliest due first. Claimed mails are not returned again until
    /// a state change releases them, `release` is called, or the process restarts.
    pub fn claim_ids(&self, now: DateTime<Utc>, max: usize) -> Vec<MailId> {
        let mut idx = self.index();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((due, id)) = idx.schedule.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            idx.schedule.remove(&(due, id.clone()));
            if let Some(e) = idx.entries.get_mut(&id) {
                e.claimed = true;
            }
            idx.meta.insert(id.clone(), None);
            out.push(id);
        }
        out
    }

    /// Makes a claimed mail claimable again without changing it. `NotClaimed` if unclaimed.
    pub fn release(&self, id: &MailId) -> Result<(), QueueError> {
        self.release_until(id, None)
    }

    /// Like [`Store::release`], and the mail is not due again before `not_before` (in memory
    /// only: on disk it keeps its recorded `next_attempt`).
    pub fn release_until(
        &self,
        id: &MailId,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<(), QueueError> {
        let mut idx = self.index();
        let e = idx
            .entries
            .get(id)
            .cloned()
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        if !e.claimed {
            return Err(QueueError::NotClaimed(id.clone()));
        }
        let next_attempt = not_before.map_or(e.next_attempt, |t| t.max(e.next_attempt));
        idx.insert(
            id.clone(),
            Entry {
                claimed: false,
                next_attempt,
                ..e
            },
        );
        Ok(())
    }

    /// Summaries of every mail in `state`, earliest `next_attempt` first (from memory).
    pub fn list(&self, state: MailState) -> Vec<MailSummary> {
        let idx = self.index();
        let mut v: Vec<MailSummary> = idx
            .entries
            .iter()
            .filter(|(_, e)| e.state == state)
            .map(|(id, e)| MailSummary {
                id: id.clone(),
                state: e.state,
                created: e.created,
                attempts: e.attempts,
                next_attempt: e.next_attempt,
                claimed: e.claimed,
            })
            .collect();
        v.sort_by(|a, b| (a.next_attempt, &a.id).cmp(&(b.next_attempt, &b.id)));
        v
    }

    /// How many mails are in each state: active, deferred, delivered, failed (from memory).
    pub fn counts(&self) -> [usize; 4] {
        self.index().counts
    }

    /// How many unclaimed mails are due at `now`, counting no further than `limit`.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> usize {
        self.index()
            .schedule
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .count()
    }

    /// Earliest due time among unclaimed active/deferred mails; `None` if there are none.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.index().schedule.first().map(|(t, _)| *t)
    }

    /// The current directory of `id`, if known.
    pub fn mail_dir(&self, id: &MailId) -> Option<PathBuf> {
        let state = self.index().entries.get(id).map(|e| e.state)?;
        Some(self.dir_of(state, id))
    }
}
