//! `UploadStore`: attachments captured from upload requests, waiting for their send.
//!
//! Owns: keeping captured files keyed by (upload group, correlation key, file id), assigning
//! ids from the upload's response, handing them to the send in the send's list order, expiry
//! after a configurable age and a bound on total bytes (oldest evicted first). Pure: the caller
//! passes the time in; no I/O, no tokio.

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

/// Captured uploads. Invariant: `total` is the sum of the stored files' sizes and never
/// exceeds `max_bytes`.
#[derive(Debug)]
pub struct UploadStore {
    ttl: Duration,
    max_bytes: u64,
    total: u64,
    next: u64,
    entries: Vec<Entry>,
}

impl UploadStore {
    pub fn new(ttl: Duration, max_bytes: u64) -> UploadStore {
        UploadStore {
            ttl,
            max_bytes,
            total: 0,
            next: 0,
            entries: Vec::new(),
        }
    }

    /// Stores `files` under (group, key), evicting the oldest entries when the byte bound would
    /// be exceeded. The returned ticket is passed to `note_response` with the upload's reply.
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
        while self.total + size > self.max_bytes && !self.entries.is_empty() {
            let e = self.entries.remove(0);
            self.total -= e.file.data.len() as u64;
            tracing::warn!(group = %e.group, file = %e.file.filename, "upload evicted: store full");
        }
        self.next += 1;
        let ticket = Ticket(self.next);
        self.total += size;
        for file in files {
            self.entries.push(Entry {
                group: group.into(),
                key: key.into(),
                id: None,
                ticket,
                at: now,
                file,
            });
        }
        Ok(ticket)
    }

    /// Reads file ids from an upload response (per the rule's upload sub-rule) and assigns them
    /// to that upload's files in order. Returns how many files got an id.
    pub fn note_response(&mut self, ticket: Ticket, rule: &Rule, body: &[u8]) -> usize {
        let ids = rule.upload_ids_from_response(body);
        self.assign_ids(ticket, ids)
    }

    /// Assigns `ids` in order to the files captured under `ticket`; returns how many.
    pub fn assign_ids(&mut self, ticket: Ticket, ids: Vec<String>) -> usize {
        let mut ids = ids.into_iter();
        let mut n = 0;
        for e in self.entries.iter_mut().filter(|e| e.ticket == ticket) {
            match ids.next() {
                Some(id) => {
                    e.id = Some(id);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Removes and returns the files with these ids under (group, key), in `ids` order.
    pub fn take(&mut self, group: &str, key: &str, ids: &[String]) -> Taken {
        let mut out = Taken::default();
        for id in ids {
            let pos = self.entries.iter().position(|e| {
                e.group == group && e.key == key && e.id.as_deref() == Some(id.as_str())
            });
            match pos {
                Some(i) => {
                    let e = self.entries.remove(i);
                    self.total -= e.file.data.len() as u64;
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
        let (mine, rest): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.group == group && e.key == key);
        self.entries = rest;
        self.total -= mine.iter().map(|e| e.file.data.len() as u64).sum::<u64>();
        let mut out = Taken::default();
        for e in mine {
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

    /// Drops entries older than the TTL; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let before = self.entries.len();
        let (keep, gone): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| now.saturating_duration_since(e.at) <= ttl);
        self.entries = keep;
        self.total -= gone.iter().map(|e| e.file.data.len() as u64).sum::<u64>();
        before - self.entries.len()
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
}
