//! The built-in server's mailbox directory: one `<id>.eml` plus one `<id>.json` per message.
//!
//! Owns the on-disk format and its durability (write temp file → fsync → rename → fsync dir,
//! the `.json` envelope last so it marks a complete message) and a reader for tests and the
//! web UI. It does not speak SMTP and never deletes anything.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The envelope stored next to each message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnvelope {
    pub id: String,
    /// Reverse-path as given in MAIL FROM (empty for `<>`).
    pub sender: String,
    pub recipients: Vec<String>,
    /// Arrival time, RFC 3339 UTC with microseconds.
    pub received: String,
    /// The SMTP client's `ip:port`.
    pub client_addr: String,
    /// Name given in EHLO/HELO.
    pub helo: String,
    /// Bytes of the stored message (after dot-unstuffing).
    pub size: u64,
    pub tls: bool,
    /// The AUTH identity, when the client authenticated.
    pub auth_user: Option<String>,
    /// The message's `Message-ID` (without `<>`), when it has one. For mail relayed by mailtap
    /// its local part is the mail's id — the one its console, spool and Log-*.txt show.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// The first `Message-ID` field of `message`'s header section, without `<>` and whitespace;
/// `None` when there is none or it is not one line of at most 998 bytes.
pub fn message_id_of(message: &[u8]) -> Option<String> {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"message-id") || line.len() > 998 {
            continue;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
        let value = value.trim_start_matches('<').trim_end_matches('>').trim();
        let clean = !value.is_empty() && !value.chars().any(|c| c.is_control());
        return clean.then(|| value.to_string());
    }
    None
}

/// One message found by [`Mailbox::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    pub envelope: StoredEnvelope,
    pub eml_path: PathBuf,
}

/// Mailbox failures, naming the file involved.
#[derive(Debug)]
pub enum MailboxError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    BadEnvelope {
        path: PathBuf,
        detail: String,
    },
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            MailboxError::BadEnvelope { path, detail } => {
                write!(f, "{}: bad envelope: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for MailboxError {}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MailboxError + '_ {
    move |source| MailboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A writer for one mailbox directory.
#[derive(Debug)]
pub struct Mailbox {
    dir: PathBuf,
    counter: AtomicU64,
    fsync: bool,
}

impl Mailbox {
    /// Opens (creating if needed) the directory. With `fsync` false, [`Mailbox::store`] skips
    /// the fsyncs (renames stay atomic, but a crash may lose recent messages).
    pub fn open(dir: impl Into<PathBuf>, fsync: bool) -> Result<Self, MailboxError> {
        let dir = dir.into();
        // Owner-only: the mailbox holds people's mail. One an older version left open is
        // tightened (its files are then out of reach of other users).
        crate::private_fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        crate::private_fs::tighten_logged(&dir, "the built-in mailbox");
        remove_stale_tmp(&dir);
        Ok(Mailbox {
            dir,
            counter: AtomicU64::new(0),
            fsync,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new unique id: UTC time to the microsecond, process id and a counter.
    pub fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{n:06}",
            Utc::now().format("%Y%m%dT%H%M%S%6fZ"),
            std::process::id()
        )
    }

    /// Durably stores `message` and then `env` (whose `id` names both files). Blocking: call
    /// from `spawn_blocking`. When this returns `Ok`, both files are on disk under final names.
    pub fn store(&self, env: &StoredEnvelope, message: &[u8]) -> Result<(), MailboxError> {
        let json = serde_json::to_vec_pretty(env).map_err(|e| MailboxError::BadEnvelope {
            path: self.dir.join(&env.id),
            detail: e.to_string(),
        })?;
        self.write_atomic(&format!("{}.eml", env.id), message)?;
        self.write_atomic(&format!("{}.json", env.id), &json)?;
        if !self.fsync {
            return Ok(());
        }
        // fsync the directory so both renames survive a crash.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), MailboxError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let fin = self.dir.join(name);
        let mut f = crate::private_fs::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let written = f
            .write_all(bytes)
            .and_then(|_| if self.fsync { f.sync_all() } else { Ok(()) })
            .map_err(io_err(&tmp))
            .and_then(|_| {
                drop(f);
                fs::rename(&tmp, &fin).map_err(io_err(&fin))
            });
        if written.is_err() {
            // A full disk must not fill up further with the halves of failed writes.
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Every complete message in `dir` (a `.json` with its `.eml`), sorted by id (= arrival
    /// order). Temporary and unrelated files are ignored; an unreadable envelope is an error.
    pub fn list(dir: &Path) -> Result<Vec<StoredMail>, MailboxError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(dir).map_err(io_err(dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let eml_path = path.with_extension("eml");
            if !eml_path.is_file() {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let envelope: StoredEnvelope =
                serde_json::from_slice(&bytes).map_err(|e| MailboxError::BadEnvelope {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            out.push(StoredMail { envelope, eml_path });
        }
        out.sort_by(|a, b| a.envelope.id.cmp(&b.envelope.id));
        Ok(out)
    }
}

/// Removes `.*.tmp` files a crash or a failed write left in `dir` (they never hold a complete
/// message: the rename to the final name is the commit). Failures are logged, not fatal.
fn remove_stale_tmp(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale mailbox temp file")
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "mailbox: removed temp files of unfinished writes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_read_from_the_header_section_only() {
        // Guards the envelope's message_id: first Message-ID field, any case, brackets off;
        // none from the body, none with control characters.
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"Subject: x\r\nMessage-ID: <id-1@example.com>\r\n\r\nbody",
                Some("id-1@example.com"),
            ),
            (b"message-id:   <a@b>  \r\n\r\n", Some("a@b")),
            (b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n", None),
            (b"Message-ID: <>\r\n\r\n", None),
            (b"Message-ID: <a\x01b@x>\r\n\r\n", None),
            (b"", None),
        ];
        for (msg, want) in cases {
            assert_eq!(
                message_id_of(msg).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn opening_removes_temp_files_of_unfinished_writes() {
        // Guards the startup clean-up: `.*.tmp` left by a failed write or a crash are removed,
        // complete messages are kept.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".x.eml.tmp"), b"").unwrap();
        fs::write(dir.path().join(".x.json.tmp"), b"{").unwrap();
        fs::write(dir.path().join("y.eml"), b"kept").unwrap();
        Mailbox::open(dir.path(), false).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["y.eml"]);
    }

    #[test]
    fn ids_are_unique_and_file_safe() {
        // Guards: ids never collide within a process and contain only file-name-safe characters.
        let dir = std::env::temp_dir();
        let m = Mailbox {
            dir,
            counter: AtomicU64::new(0),
            fsync: false,
        };
        let ids: Vec<String> = (0..100).map(|_| m.new_id()).collect();
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        for id in ids {
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{id}"
            );
        }
    }
}
