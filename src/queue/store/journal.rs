//! The completion journal: final outcomes (delivered / failed) of relayed mails, appended to
//! one file instead of rewriting each mail's `meta.json` at once.
//!
//! Rewriting `meta.json` atomically costs a new inode (tmp file + rename) and frees the old one
//! per delivery; on ext4 without a journal, allocating inodes near many recently freed ones is
//! what made the relay slow on disk. A completion is instead one `write(2)` of the new metadata
//! to `spool/journal` plus the directory move; the pending metadata is kept in memory (readers
//! see it at once) and written into the mails' `meta.json` files in batches ("apply"): in the
//! background when the journal reaches [`APPLY_AT`] bytes, when the store is dropped, and at
//! recovery.
//!
//! Only final states are journaled. A final mail never changes again, so a record is always
//! newer than the mail's `meta.json` and replay is order-free. Applying writes each `meta.json`
//! in place (no new inode); that is safe because the sealed journal segment is fsync'd before
//! and deleted only after a `syncfs` has made every rewritten file durable — a file torn by a
//! crash in between is restored from the segment at recovery. Appends are not fsync'd (see
//! `Spool::complete`: at-least-once), and a record torn by a crash is ignored.
//!
//! Record format: `R <length>\n<length bytes of pretty JSON metadata>\n`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
///
/// Applying runs in the background: the full journal is sealed (renamed `journal.<n>`), a fresh
/// one takes the appends, and a thread writes the sealed changes into `meta.json`, syncs, and
/// deletes the segment. Readers keep getting those changes from memory until it has finished.
pub(super) struct Journal {
    file: File,
    root: PathBuf,
    len: u64,
    pending: HashMap<MailId, Pending>,
    /// Changes handed to the running (or last failed) background apply.
    applying: Arc<HashMap<MailId, Pending>>,
    job: Option<std::thread::JoinHandle<Result<(), QueueError>>>,
    /// Sealed segments on disk not yet applied by a successful apply.
    sealed: Vec<PathBuf>,
    next_segment: u64,
}

/// One journal record: header line, JSON, newline.
pub fn encode(json: &[u8]) -> Vec<u8> {
    let mut rec = format!("R {}\n", json.len()).into_bytes();
    rec.reserve(json.len() + 1);
    rec.extend_from_slice(json);
    rec.push(b'\n');
    rec
}

/// The complete records of `data`, in order; a torn or unparsable tail ends the list (with the
/// offset where it starts, for the log).
pub fn decode(data: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let parsed = rest.iter().position(|&b| b == b'\n').and_then(|nl| {
            let len: usize = std::str::from_utf8(rest[..nl].strip_prefix(b"R ")?)
                .ok()?
                .parse()
                .ok()?;
            // Checked: a garbage length near usize::MAX must end the list, not overflow.
            let end = nl.checked_add(1)?.checked_add(len)?;
            let body = rest.get(nl + 1..end)?;
            (rest.get(end) == Some(&b'\n')).then_some((body, end + 1))
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
/// A failed write removes its tmp file (a full disk must not stay full of halves).
pub(super) fn write_meta_atomic(dir: &Path, json: &[u8]) -> Result<(), QueueError> {
    let tmp = dir.join(META_TMP);
    let mut f = crate::private_fs::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create metadata tmp", &tmp))?;
    let written = f
        .write_all(json)
        .map_err(io_err("write metadata tmp", &tmp))
        .and_then(|_| f.sync_all().map_err(io_err("fsync metadata tmp", &tmp)));
    drop(f);
    if let Err(e) = written {
        if let Err(rm) = fs::remove_file(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %rm, "could not remove a failed metadata write");
        }
        return Err(e);
    }
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
    let f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        // Removed meanwhile (expired finished mail): nothing left to update.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(QueueError::io("open metadata", path, e)),
    };
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

/// The work of one apply: the sealed segments it covers, and each `meta.json` with its content.
struct ApplyWork {
    segments: Vec<PathBuf>,
    files: Vec<(PathBuf, Arc<Vec<u8>>)>,
}

/// What one apply does, in the caller's thread or in the background: make the sealed segments
/// durable (their records are the only copy until the `meta.json` files are), write every
/// change in place, `syncfs`, then delete the segments.
fn run_apply(root: &Path, work: &ApplyWork) -> Result<(), QueueError> {
    for seg in &work.segments {
        match File::open(seg).and_then(|f| f.sync_data()) {
            // Deleted by an earlier apply that failed after it: its records are applied.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(io_err("fsync journal segment", seg))?,
        }
    }
    for (path, json) in &work.files {
        overwrite_in_place(path, json)?;
    }
    let dir = File::open(root).map_err(io_err("open spool", root))?;
    crate::sys::sync_filesystem(&dir, work.files.iter().map(|(p, _)| p.as_path()))
        .map_err(io_err("syncfs spool", root))?;
    for seg in &work.segments {
        match fs::remove_file(seg) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(io_err("remove applied journal segment", seg))?,
        }
    }
    Ok(())
}

/// The sealed segments in `root` (`journal.<n>`), oldest first.
fn segments_in(root: &Path) -> Result<Vec<(u64, PathBuf)>, QueueError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(root).map_err(io_err("list spool", root))? {
        let ent = ent.map_err(io_err("list spool", root))?;
        let name = ent.file_name();
        let n = name.to_str().and_then(|n| {
            n.strip_prefix(JOURNAL_FILE)?
                .strip_prefix('.')?
                .parse()
                .ok()
        });
        if let Some(n) = n {
            out.push((n, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl Journal {
    /// Opens (creating) the journal in the spool directory `root`; recovery empties it.
    pub(super) fn open(root: &Path) -> Result<Journal, QueueError> {
        let path = root.join(JOURNAL_FILE);
        let file = crate::private_fs::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open journal", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat journal", &path))?
            .len();
        // Never seal over a segment already on disk (one recovery has not replayed yet).
        let next_segment = segments_in(root)?.last().map_or(1, |(n, _)| n + 1);
        Ok(Journal {
            file,
            root: root.to_path_buf(),
            len,
            pending: HashMap::new(),
            applying: Arc::new(HashMap::new()),
            job: None,
            sealed: Vec::new(),
            next_segment,
        })
    }

    fn path(&self) -> PathBuf {
        self.root.join(JOURNAL_FILE)
    }

    /// Appends the new metadata of `id` (one write) and remembers it as pending.
    pub(super) fn append(
        &mut self,
        id: &MailId,
        state: MailState,
        json: Vec<u8>,
    ) -> Result<(), QueueError> {
        let rec = encode(&json);
        if let Err(e) = self.file.write_all(&rec) {
            // A short write (disk full) must not leave half a record in the middle of the
            // file: recovery stops reading at the first bad record.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::warn!(error = %cut, "spool: could not cut a partial journal record");
            }
            return Err(QueueError::io("append to journal", self.path(), e));
        }
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

    /// Forgets the pending change of `id` (its record stays in the file; recovery applies it).
    pub(super) fn forget(&mut self, id: &MailId) {
        self.pending.remove(id);
    }

    /// The journaled metadata of `id`, if a change of it is not yet in its `meta.json`.
    pub(super) fn lookup(&self, id: &MailId) -> Option<Arc<Vec<u8>>> {
        self.pending
            .get(id)
            .or_else(|| self.applying.get(id))
            .map(|p| p.json.clone())
    }

    /// Whether the journal has grown enough to be applied.
    pub(super) fn is_full(&self) -> bool {
        self.len >= APPLY_AT
    }

    /// Collects a finished background apply: on success its changes are in `meta.json`; on
    /// failure they become pending again (their segment stays on disk for the next apply or
    /// recovery). With `wait`, waits for a running one; otherwise leaves it running and
    /// returns false.
    fn reap(&mut self, wait: bool) -> bool {
        let Some(job) = self.job.take() else {
            return true;
        };
        if !wait && !job.is_finished() {
            self.job = Some(job);
            return false;
        }
        let res = job
            .join()
            .unwrap_or_else(|_| Err(QueueError::Task("journal apply panicked".into())));
        self.finish_apply(&res);
        true
    }

    /// Takes the outcome of an apply: on success its segments are gone and its changes are in
    /// `meta.json`; on failure its changes become pending again (their segments stay on disk
    /// and are covered by the next apply).
    fn finish_apply(&mut self, res: &Result<(), QueueError>) {
        let applied = std::mem::take(&mut self.applying);
        match res {
            Ok(()) => self.sealed.clear(),
            Err(e) => {
                tracing::warn!(error = %e, "spool: applying the journal failed; will retry");
                for (id, p) in applied.iter() {
                    self.pending.entry(id.clone()).or_insert_with(|| p.clone());
                }
            }
        }
    }

    /// Seals the journal into a segment and returns the apply work for it (plus any segment
    /// a failed apply left), with the changes moved to `applying`. `None` if nothing is
    /// pending or an apply is still running.
    fn seal(
        &mut self,
        dir_of: impl Fn(MailState, &MailId) -> PathBuf,
        wait: bool,
    ) -> Result<Option<ApplyWork>, QueueError> {
        if !self.reap(wait) || (self.pending.is_empty() && self.len == 0) {
            return Ok(None);
        }
        let segment = self
            .root
            .join(format!("{JOURNAL_FILE}.{}", self.next_segment));
        self.next_segment += 1;
        let path = self.path();
        fs::rename(&path, &segment).map_err(io_err("seal journal", &path))?;
        let fresh = match Journal::open(&self.root) {
            Ok(f) => f,
            Err(e) => {
                // Keep appending to the old file under its old name.
                if let Err(back) = fs::rename(&segment, &path) {
                    tracing::error!(error = %back, "spool: could not restore the journal name");
                }
                return Err(e);
            }
        };
        self.sealed.push(segment);
        self.file = fresh.file;
        self.len = 0;
        let changes = std::mem::take(&mut self.pending);
        let files = changes
            .iter()
            .map(|(id, p)| (dir_of(p.state, id).join(META_FILE), p.json.clone()))
            .collect();
        self.applying = Arc::new(changes);
        Ok(Some(ApplyWork {
            segments: self.sealed.clone(),
            files,
        }))
    }
}

impl Store {
    /// Starts applying the journal in the background (unless an apply is still running).
    pub(super) fn apply_journal_soon(&self, j: &mut Journal) -> Result<(), QueueError> {
        let Some(work) = j.seal(|s, id| self.dir_of(s, id), false)? else {
            return Ok(());
        };
        let work = Arc::new(work);
        let (root, job_work) = (self.root.clone(), Arc::clone(&work));
        match std::thread::Builder::new()
            .name("spool-apply".into())
            .spawn(move || run_apply(&root, &job_work))
        {
            Ok(job) => j.job = Some(job),
            Err(e) => {
                // No thread to be had: apply here, holding the journal lock meanwhile.
                tracing::warn!(error = %e, "spool: applying the journal inline");
                let res = run_apply(&self.root, &work);
                j.finish_apply(&res);
            }
        }
        Ok(())
    }

    /// Applies everything pending now, in the caller's thread (waiting for a running apply
    /// first): used when the relay has gone quiet.
    pub(in crate::queue) fn apply_journal_idle(&self) -> Result<(), QueueError> {
        let mut j = self.journal();
        self.apply_journal_now(&mut j)
    }

    /// Applies everything now (waiting for a running apply first): used when the store closes.
    fn apply_journal_now(&self, j: &mut Journal) -> Result<(), QueueError> {
        let Some(work) = j.seal(|s, id| self.dir_of(s, id), true)? else {
            return Ok(());
        };
        let res = run_apply(&self.root, &work);
        j.finish_apply(&res);
        res
    }

    /// Recovery step before the directories are scanned: writes each journaled metadata (of
    /// sealed segments, oldest first, then the journal) into its mail's `meta.json`
    /// atomically, wherever the mail's directory is; then deletes the segments and empties
    /// the journal. Returns how many records were applied.
    pub(super) fn replay_journal(&self) -> Result<usize, QueueError> {
        let mut files: Vec<PathBuf> = segments_in(&self.root)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        files.push(self.root.join(JOURNAL_FILE));
        let mut applied = 0;
        for path in &files {
            let data = match fs::read(path) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(QueueError::io("read journal", path, e)),
            };
            applied += self.replay_records(path, &data)?;
        }
        let mut j = self.journal();
        let path = j.path();
        j.file
            .set_len(0)
            .map_err(io_err("truncate journal", &path))?;
        j.file.sync_all().map_err(io_err("fsync journal", &path))?;
        j.len = 0;
        drop(j);
        for seg in &files[..files.len() - 1] {
            fs::remove_file(seg).map_err(io_err("remove journal segment", seg))?;
        }
        Ok(applied)
    }

    fn replay_records(&self, path: &Path, data: &[u8]) -> Result<usize, QueueError> {
        let (records, torn) = decode(data);
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
        Ok(applied)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.recovered {
            // Recovery failed: the journal on disk is the only copy of its records, and
            // applying (which seals and deletes) would lose the ones not replayed.
            return;
        }
        let this: &Store = self;
        let mut j = this.journal();
        if let Err(e) = this.apply_journal_now(&mut j) {
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
    fn huge_record_length_is_a_torn_tail_not_an_overflow() {
        // Guards decode against a length near usize::MAX (garbage or a hostile journal): the
        // offset arithmetic must not overflow (a panic in builds with overflow checks).
        // The `journal` fuzz target reproduces it (fuzz/regressions/journal/huge-length).
        let good = encode(br#"{"a":1}"#);
        for len in [u64::MAX, u64::MAX - 1, u64::MAX - 8] {
            let mut data = good.clone();
            data.extend_from_slice(format!("R {len}\n{{}}\n").as_bytes());
            assert_eq!(decode(&data), (vec![&br#"{"a":1}"#[..]], Some(good.len())));
        }
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
