//! `UploadStore`: attachments captured from upload requests, waiting for their send.
//!
//! Owns: keeping captured files keyed by (upload group, correlation key, file id), assigning
//! ids from the upload's response, handing them to the send in the send's list order, expiry
//! after a configurable age and a bound on total bytes (oldest evicted first). Pure: the caller
//! passes the time in; no I/O, no tokio.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::extract::{MailDraft, UploadedFile};
use super::rules::Rule;

/// Handle linking a captured upload request to its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// Why a capture was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadError {
    /// The files alone exceed the store's byte bound.
    TooLarge { size: u64, limit: u64 },
    /// The files alone exceed the store's file-count bound.
    TooManyFiles { count: usize, limit: usize },
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::TooLarge { size, limit } => {
                write!(
                    f,
                    "upload of {size} bytes exceeds the upload store limit of {limit} bytes"
                )
            }
            UploadError::TooManyFiles { count, limit } => write!(
                f,
                "upload of {count} files exceeds the upload store limit of {limit} files"
            ),
        }
    }
}

impl std::error::Error for UploadError {}

#[derive(Debug)]
struct Entry {
    group: String,
    key: String,
    id: Option<String>,
    ticket: Ticket,
    at: Instant,
    file: UploadedFile,
}

/// Files a send asked for: found ones in the send's order, and the ids not found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub files: Vec<UploadedFile>,
    pub missing: Vec<String>,
    /// The upload requests the files came from, in the order taken (a ticket repeats only
    /// when its files were asked for between another upload's), so the send's transcript can
    /// show them.
    pub tickets: Vec<Ticket>,
}

/// (group, key): the scope an upload belongs to.
type Scope = (String, String);

/// Captured uploads. Invariants: `total` is the sum of the stored files' sizes and never
/// exceeds `max_bytes`; `entries` holds at most `max_files`; every index names only stored
/// entries. Entries are keyed by a sequence number in capture order, so "oldest first" is the
/// map's order and every operation costs O(log n) per file touched (a list searched per id
/// was quadratic in the number of files).
#[derive(Debug)]
pub struct UploadStore {
    ttl: Duration,
    max_bytes: u64,
    max_files: usize,
    total: u64,
    next_ticket: u64,
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    /// Files of one upload request, in order (for assigning the ids of its response).
    by_ticket: HashMap<Ticket, BTreeSet<u64>>,
    /// Files with an id, per scope and id, oldest first.
    by_id: HashMap<Scope, HashMap<String, BTreeSet<u64>>>,
    /// Every file of a scope, in capture order.
    by_scope: HashMap<Scope, BTreeSet<u64>>,
}

impl UploadStore {
    pub fn new(ttl: Duration, max_bytes: u64) -> UploadStore {
        UploadStore {
            ttl,
            max_bytes,
            max_files: usize::MAX,
            total: 0,
            next_ticket: 0,
            next_seq: 0,
            entries: BTreeMap::new(),
            by_ticket: HashMap::new(),
            by_id: HashMap::new(),
            by_scope: HashMap::new(),
        }
    }

    /// Bounds the number of stored files (oldest evicted first); at least 1.
    pub fn with_max_files(mut self, max_files: usize) -> UploadStore {
        self.max_files = max_files.max(1);
        self
    }

    /// Removes entry `seq` from the map and every index.
    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.total -= e.file.data.len() as u64;
        let scope = (e.group.clone(), e.key.clone());
        if let Some(set) = self.by_scope.get_mut(&scope) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_scope.remove(&scope);
            }
        }
        if let Some(id) = &e.id {
            if let Some(ids) = self.by_id.get_mut(&scope) {
                if let Some(set) = ids.get_mut(id) {
                    set.remove(&seq);
                    if set.is_empty() {
                        ids.remove(id);
                    }
                }
                if ids.is_empty() {
                    self.by_id.remove(&scope);
                }
            }
        }
        if let Some(list) = self.by_ticket.get_mut(&e.ticket) {
            list.remove(&seq);
            if list.is_empty() {
                self.by_ticket.remove(&e.ticket);
            }
        }
        Some(e)
    }

    /// Stores `files` under (group, key), evicting the oldest entries when the byte or file
    /// bound would be exceeded. The returned ticket is passed to `note_response` with the
    /// upload's reply.
    pub fn capture(
        &mut self,
        group: &str,
        key: &str,
        files: Vec<UploadedFile>,
        now: Instant,
    ) -> Result<Ticket, UploadError> {
        let size: u64 = files.iter().map(|f| f.data.len() as u64).sum();
        if size > self.max_bytes {
            return Err(UploadError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        if files.len() > self.max_files {
            return Err(UploadError::TooManyFiles {
                count: files.len(),
                limit: self.max_files,
            });
        }
        let mut evicted = 0usize;
        while self.total + size > self.max_bytes
            || self.entries.len() + files.len() > self.max_files
        {
            let Some(oldest) = self.entries.keys().next().copied() else {
                break;
            };
            if let Some(e) = self.remove(oldest) {
                if evicted == 0 {
                    tracing::warn!(group = %e.group, file = %e.file.filename, "upload evicted: store full");
                }
                evicted += 1;
            }
        }
        if evicted > 1 {
            tracing::warn!(evicted, "uploads evicted: store full");
        }
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.total += size;
        let scope = (group.to_string(), key.to_string());
        let mut seqs = BTreeSet::new();
        for file in files {
            self.next_seq += 1;
            let seq = self.next_seq;
            seqs.insert(seq);
            self.by_scope.entry(scope.clone()).or_default().insert(seq);
            self.entries.insert(
                seq,
                Entry {
                    group: scope.0.clone(),
                    key: scope.1.clone(),
                    id: None,
                    ticket,
                    at: now,
                    file,
                },
            );
        }
        self.by_ticket.insert(ticket, seqs);
        Ok(ticket)
    }

    /// Reads file ids from an upload response (per the rule's upload sub-rule) and assigns them
    /// to that upload's files in order. Returns how many files got an id.
    pub fn note_response(&mut self, ticket: Ticket, rule: &Rule, body: &[u8]) -> usize {
        let ids = rule.upload_ids_from_response(body);
        self.assign_ids(ticket, ids)
    }

    /// Assigns `ids` in order to the files captured under `ticket` that have none yet; returns
    /// how many.
    pub fn assign_ids(&mut self, ticket: Ticket, ids: Vec<String>) -> usize {
        let Some(seqs) = self.by_ticket.get(&ticket) else {
            return 0;
        };
        let mut ids = ids.into_iter();
        let mut n = 0;
        for seq in seqs {
            let Some(e) = self.entries.get_mut(seq) else {
                continue;
            };
            let Some(id) = ids.next() else { break };
            let scope = (e.group.clone(), e.key.clone());
            if let Some(old) = e.id.replace(id.clone()) {
                if let Some(set) = self.by_id.get_mut(&scope).and_then(|m| m.get_mut(&old)) {
                    set.remove(seq);
                }
            }
            self.by_id
                .entry(scope)
                .or_default()
                .entry(id)
                .or_default()
                .insert(*seq);
            n += 1;
        }
        n
    }

    /// Removes and returns the files with these ids under (group, key), in `ids` order (the
    /// oldest file when an id repeats).
    pub fn take(&mut self, group: &str, key: &str, ids: &[String]) -> Taken {
        let mut out = Taken::default();
        let scope = (group.to_string(), key.to_string());
        for id in ids {
            let seq = self
                .by_id
                .get(&scope)
                .and_then(|m| m.get(id))
                .and_then(|set| set.first().copied());
            match seq.and_then(|seq| self.remove(seq)) {
                Some(e) => {
                    if out.tickets.last() != Some(&e.ticket) {
                        out.tickets.push(e.ticket);
                    }
                    out.files.push(e.file);
                }
                None => out.missing.push(id.clone()),
            }
        }
        out
    }

    /// Removes and returns every file under (group, key), in upload order.
    pub fn take_all(&mut self, group: &str, key: &str) -> Vec<UploadedFile> {
        self.take_all_with_tickets(group, key).files
    }

    /// [`UploadStore::take_all`], with the tickets of the uploads the files came from.
    fn take_all_with_tickets(&mut self, group: &str, key: &str) -> Taken {
        let scope = (group.to_string(), key.to_string());
        let seqs = self.by_scope.get(&scope).cloned().unwrap_or_default();
        let mut out = Taken::default();
        for e in seqs.into_iter().filter_map(|seq| self.remove(seq)) {
            if out.tickets.last() != Some(&e.ticket) {
                out.tickets.push(e.ticket);
            }
            out.files.push(e.file);
        }
        out
    }

    /// The uploads a send refers to: by id when the draft lists ids, else every upload for
    /// its key (rules without an id list). Empty when the rule has no upload sub-rule.
    pub fn take_for(&mut self, rule: &Rule, draft: &MailDraft) -> Taken {
        let Some(key) = draft.upload_key.as_deref() else {
            return Taken::default();
        };
        if rule.config.fields.attachment_ids.is_some() {
            self.take(rule.upload_group(), key, &draft.attachment_ids)
        } else {
            self.take_all_with_tickets(rule.upload_group(), key)
        }
    }

    /// Drops entries older than the TTL; returns how many. Entries are checked oldest first
    /// and the scan stops at the first one still fresh (capture times only grow), so this
    /// costs O(expired), not O(stored).
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let mut gone = 0;
        while let Some((&seq, e)) = self.entries.iter().next() {
            if now.saturating_duration_since(e.at) <= ttl {
                break;
            }
            self.remove(seq);
            gone += 1;
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, n: usize) -> UploadedFile {
        UploadedFile {
            filename: name.into(),
            content_type: "text/plain".into(),
            data: vec![b'x'; n],
        }
    }

    #[test]
    fn take_in_send_order_and_report_missing() {
        // Files come back in the send's id order; unknown ids are reported, not invented.
        let mut s = UploadStore::new(Duration::from_secs(60), 1000);
        let now = Instant::now();
        let t1 = s
            .capture("g", "k", vec![file("a", 1), file("b", 2)], now)
            .unwrap();
        let t2 = s.capture("g", "k", vec![file("c", 3)], now).unwrap();
        assert_eq!(s.assign_ids(t1, vec!["1".into(), "2".into()]), 2);
        assert_eq!(s.assign_ids(t2, vec!["3".into(), "extra".into()]), 1);
        let t = s.take("g", "k", &["3".into(), "1".into(), "9".into()]);
        let names: Vec<_> = t.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
        assert_eq!(t.missing, ["9"]);
        assert_eq!(s.total_bytes(), 2);
        assert!(s.take("other", "k", &["2".into()]).files.is_empty());
        assert_eq!(s.take_all("g", "k").len(), 1);
        assert!(s.is_empty() && s.total_bytes() == 0);
    }

    #[test]
    fn expiry_and_byte_bound() {
        // Old uploads expire; the byte bound evicts oldest first and refuses oversize captures.
        let mut s = UploadStore::new(Duration::from_secs(10), 10);
        let t0 = Instant::now();
        s.capture("g", "k", vec![file("old", 4)], t0).unwrap();
        s.capture("g", "k", vec![file("new", 4)], t0 + Duration::from_secs(8))
            .unwrap();
        assert_eq!(s.expire(t0 + Duration::from_secs(10)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(11)), 1);
        assert_eq!(s.len(), 1);
        s.capture("g", "k", vec![file("big", 6)], t0 + Duration::from_secs(12))
            .unwrap();
        assert_eq!(s.total_bytes(), 10);
        s.capture(
            "g",
            "k",
            vec![file("more", 5)],
            t0 + Duration::from_secs(12),
        )
        .unwrap();
        let names: Vec<_> = s
            .take_all("g", "k")
            .into_iter()
            .map(|f| f.filename)
            .collect();
        assert_eq!(names, ["more"]);
        assert_eq!(
            s.capture("g", "k", vec![file("huge", 11)], t0),
            Err(UploadError::TooLarge {
                size: 11,
                limit: 10
            })
        );
    }

    #[test]
    fn file_count_bound_evicts_oldest() {
        // Guards [intercept].max_upload_files: zero-byte files cannot pile up without limit.
        let mut s = UploadStore::new(Duration::from_secs(60), 1000).with_max_files(3);
        let now = Instant::now();
        for name in ["a", "b", "c", "d"] {
            s.capture("g", "k", vec![file(name, 0)], now).unwrap();
        }
        assert_eq!(s.len(), 3);
        let names: Vec<_> = s
            .take_all("g", "k")
            .into_iter()
            .map(|f| f.filename)
            .collect();
        assert_eq!(names, ["b", "c", "d"]);
        assert_eq!(
            s.capture("g", "k", vec![file("x", 0); 4], now),
            Err(UploadError::TooManyFiles { count: 4, limit: 3 })
        );
    }

    #[test]
    fn lookup_and_eviction_stay_linear_for_attacker_sized_lists() {
        // Guards Medium 5: 100,000 files captured one by one under a bound that evicts on each
        // capture, then 100,000 ids taken, finish far inside a bound a quadratic store
        // (~10^10 steps) cannot meet.
        let n = 100_000usize;
        let started = Instant::now();
        let mut s = UploadStore::new(Duration::from_secs(60), n as u64 / 2);
        let now = Instant::now();
        let mut tickets = Vec::with_capacity(n);
        for i in 0..n {
            tickets.push(
                s.capture("g", "k", vec![file(&i.to_string(), 1)], now)
                    .unwrap(),
            );
        }
        assert_eq!(s.len(), n / 2);
        for (i, t) in tickets.iter().enumerate() {
            s.assign_ids(*t, vec![i.to_string()]);
        }
        let ids: Vec<String> = (0..n).rev().map(|i| i.to_string()).collect();
        let taken = s.take("g", "k", &ids);
        assert_eq!(taken.files.len(), n / 2);
        assert_eq!(taken.missing.len(), n / 2);
        assert_eq!(taken.files[0].filename, (n - 1).to_string());
        assert!(s.is_empty() && s.total_bytes() == 0);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
