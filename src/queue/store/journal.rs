//! The completion journal: final outcomes (delivered / failed) of relayed mails, appended to
//! one file instead of rewriting each mail's `meta.json` at once.
//!
//! Rewriting `meta.json` atomically costs a new inode (tmp file + rename) and frees the old one
//! per delivery; on ext4 without a journal, allocating inodes near many recently freed ones is
//! what made the relay slow on disk. A completion is instead one `write(2)` of the new metadata
//! to `spool/journal` plus the directory move; the pending metadata is kept in memory (readers
//! see it at once) and written into the mails' `meta.json` files in batches ("apply"): when the
//! journal reaches [`APPLY_AT`] bytes, when the store is dropped, and at recovery.
//!
//! Only final states are journaled. A final mail never changes again, so a record is always
//! newer than the mail's `meta.json` and replay is order-free. Applying writes each `meta.json`
//! in place (no new inode); that is safe because the journal is fsync'd before and truncated
//! only after a `syncfs` has made every rewritten file durable — a file torn by a crash in
//! between is restored from the journal at recovery. Appends are not fsync'd (see
//! `Spool::complete`: at-least-once), and a record torn by a crash is ignored.
//!
//! Record format: `R <length>\n<length bytes of pretty JSON metadata>\n`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{io_err, sync_dir, Store, META_FILE, META_TMP};
use crate::queue::error::QueueError;
use crate::queue::id::MailId;
use crate::queue::meta::{MailMeta, MailState};

/// File name of the journal inside `spool/`.
pub(super) const JOURNAL_FILE: &str = "journal";
/// Journal size at which pending changes are applied to the `meta.json` files.
pub(super) const APPLY_AT: u64 = 1 << 20;

/// A change waiting in the journal: the state the mail moved to and its new `meta.json`.
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) state: MailState,
    pub(super) json: Arc<Vec<u8>>,
}

/// The open journal and the changes it holds that are not yet in `meta.json` files.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    pub(super) pending: HashMap<MailId, Pending>,
}

/// One journal record: header line, JSON, newline.
fn encode(json: &[u8]) -> Vec<u8> {
    let mut rec = format!("R {}\n", json.len()).into_bytes();
    rec.reserve(json.len() + 1);
    rec.extend_from_slice(json);
    rec.push(b'\n');
    rec
}

/// The complete records of `data`, in order; a torn or unparsable tail ends the list (with the
/// offset where it starts, for the log).
fn decode(data: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let parsed = rest.iter().position(|&b| b == b'\n').and_then(|nl| {
            let len: usize = std::str::from_utf8(rest[..nl].strip_prefix(b"R ")?)
                .ok()?
                .parse()
                .ok()?;
            let body = rest.get(nl + 1..nl + 1 + len)?;
            (rest.get(nl + 1 + len) == Some(&b'\n')).then_some((body, nl + len + 2))
        });
        match parsed {
            Some((body, used)) => {
                out.push(body);
                at += used;
            }
            None => return (out, Some(at)),
        }
    }
    (out, None)
}

/// Writes `json` as `dir/meta.json` atomically (tmp file, fsync, rename, fsync of `dir`).
pub(super) fn write_meta_atomic(dir: &Path, json: &[u8]) -> Result<(), QueueError> {
    let tmp = dir.join(META_TMP);
    let mut f = File::create(&tmp).map_err(io_err("create metadata tmp", &tmp))?;
    f.write_all(json)
        .map_err(io_err("write metadata tmp", &tmp))?;
    f.sync_all().map_err(io_err("fsync metadata tmp", &tmp))?;
    let final_path = dir.join(META_FILE);
    fs::rename(&tmp, &final_path).map_err(io_err("commit metadata", &final_path))?;
    sync_dir(dir)
}

/// Overwrites the file at `path` with `json` without truncating it: a shorter `json` is padded
/// with spaces (valid trailing JSON whitespace) to the old length. Truncation would free blocks
/// (a synchronous discard on disks mounted with `discard`) and, to length 0, makes ext4 flush
/// the file on close (`auto_da_alloc`) — each of which cost more than the whole completion.
fn overwrite_in_place(path: &Path, json: &[u8]) -> Result<(), QueueError> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open metadata", path))?;
    let old = f.metadata().map_err(io_err("stat metadata", path))?.len();
    let mut padded;
    let data = match usize::try_from(old) {
        Ok(old) if old > json.len() => {
            padded = json.to_vec();
            padded.resize(old, b' ');
            &padded[..]
        }
        _ => json,
    };
    f.write_all_at(data, 0)
        .map_err(io_err("write metadata", path))
}

impl Journal {
    /// Opens (creating) the journal at `path`, which recovery has emptied.
    pub(super) fn open(path: &Path) -> Result<Journal, QueueError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("open journal", path))?;
        let len = file.metadata().map_err(io_err("stat journal", path))?.len();
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            len,
            pending: HashMap::new(),
        })
    }

    /// Appends the new metadata of `id` (one write) and remembers it as pending.
    pub(super) fn append(
        &mut self,
        id: &MailId,
        state: MailState,
        json: Vec<u8>,
    ) -> Result<(), QueueError> {
        let rec = encode(&json);
        self.file
            .write_all(&rec)
            .map_err(io_err("append to journal", &self.path))?;
        self.len += rec.len() as u64;
        self.pending.insert(
            id.clone(),
            Pending {
                state,
                json: Arc::new(json),
            },
        );
        Ok(())
    }

    /// Whether the journal has grown enough to be applied.
    pub(super) fn is_full(&self) -> bool {
        self.len >= APPLY_AT
    }
}

impl Store {
    /// Writes every pending change into its mail's `meta.json` (in place), makes them durable
    /// with one `syncfs`, then empties the journal. On error the journal is kept (a later
    /// apply, or recovery, finishes the work).
    pub(super) fn apply_journal(&self, j: &mut Journal) -> Result<(), QueueError> {
        if j.pending.is_empty() && j.len == 0 {
            return Ok(());
        }
        j.file
            .sync_data()
            .map_err(io_err("fsync journal", &j.path))?;
        for (id, p) in &j.pending {
            let path = self.dir_of(p.state, id).join(META_FILE);
            overwrite_in_place(&path, &p.json)?;
        }
        // SAFETY: syncfs on a descriptor we own; it only flushes the filesystem holding it.
        if unsafe { libc::syncfs(j.file.as_raw_fd()) } != 0 {
            return Err(QueueError::io(
                "syncfs spool",
                &self.root,
                io::Error::last_os_error(),
            ));
        }
        j.file
            .set_len(0)
            .map_err(io_err("truncate journal", &j.path))?;
        j.len = 0;
        j.pending.clear();
        Ok(())
    }

    /// Recovery step before the directories are scanned: writes each journaled metadata into
    /// its mail's `meta.json` (atomically, wherever the mail's directory is), then empties the
    /// journal. Returns how many records were applied.
    pub(super) fn replay_journal(&self) -> Result<usize, QueueError> {
        let path = self.root.join(JOURNAL_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(QueueError::io("read journal", path, e)),
        };
        let (records, torn) = decode(&data);
        if let Some(at) = torn {
            tracing::warn!(path = %path.display(), offset = at, "spool recovery: ignored a torn journal record");
        }
        let mut applied = 0;
        for json in records {
            let meta: MailMeta<serde_json::Value> = match serde_json::from_slice(json) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "spool recovery: unreadable journal record skipped");
                    continue;
                }
            };
            let Some(dir) = MailState::ALL
                .iter()
                .map(|&s| self.dir_of(s, &meta.id))
                .find(|d| d.is_dir())
            else {
                tracing::warn!(id = %meta.id, "spool recovery: journal names a mail that is not in the spool");
                continue;
            };
            write_meta_atomic(&dir, json)?;
            applied += 1;
        }
        let mut j = self.journal();
        j.file
            .set_len(0)
            .map_err(io_err("truncate journal", &path))?;
        j.file.sync_all().map_err(io_err("fsync journal", &path))?;
        j.len = 0;
        Ok(applied)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let this: &Store = self;
        let mut j = this.journal();
        if let Err(e) = this.apply_journal(&mut j) {
            tracing::warn!(error = %e, "spool: journal not applied at close; recovery will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_tails_are_dropped() {
        // Guards the framing: whole records come back in order; any cut inside the last record
        // (header, body or final newline) and garbage after good records end the list there.
        let a = br#"{"a":1}"#.to_vec();
        let b = b"{\n  \"b\": \"x\\ny\"\n}".to_vec();
        let mut data = encode(&a);
        let first = data.len();
        data.extend(encode(&b));
        let (recs, torn) = decode(&data);
        assert_eq!(recs, vec![&a[..], &b[..]]);
        assert_eq!(torn, None);
        for cut in first + 1..data.len() {
            let (recs, torn) = decode(&data[..cut]);
            assert_eq!(recs, vec![&a[..]], "cut at {cut}");
            assert_eq!(torn, Some(first), "cut at {cut}");
        }
        let mut junk = data.clone();
        junk.extend_from_slice(b"R 99999\n{}");
        assert_eq!(decode(&junk).0.len(), 2);
        assert_eq!(decode(b"X 2\n{}\n"), (vec![], Some(0)));
        assert_eq!(decode(b"R 2\n{}x"), (vec![], Some(0)));
    }

    #[test]
    fn overwrite_keeps_the_file_length_and_stays_valid_json() {
        // Guards overwrite_in_place: a shorter document is padded (never truncated) and still
        // parses; a longer one replaces the file whole.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_FILE);
        fs::write(
            &path,
            br#"{"long": "a much longer document than the next"}"#,
        )
        .unwrap();
        let before = fs::metadata(&path).unwrap().len();
        overwrite_in_place(&path, br#"{"short": 1}"#).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), before);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"short": 1}));
        let longer = format!(r#"{{"x": "{}"}}"#, "y".repeat(200));
        overwrite_in_place(&path, longer.as_bytes()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), longer.as_bytes());
    }
}
