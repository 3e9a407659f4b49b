//! The queue's error type: every failure names the operation and the path or mail it concerns.
//!
//! Owns `QueueError` only; classification of delivery errors belongs to the relay/smtp modules,
//! not here. A `QueueError` always means the spool itself could not do what was asked.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::id::MailId;

/// Why a spool operation failed, with the evidence (operation, path, mail id, cause).
#[derive(Debug)]
pub enum QueueError {
    /// A filesystem call failed; `op` names the step (e.g. "fsync message", "rename into active").
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A record or metadata could not be (de)serialised as JSON.
    Json {
        op: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A committed mail directory on disk does not have the expected shape.
    Corrupt { path: PathBuf, reason: String },
    /// No mail with this id is known to the spool.
    NotFound(MailId),
    /// The operation requires the caller to hold the claim on the mail, and nobody does.
    NotClaimed(MailId),
    /// The mail is claimed by a worker, so it cannot be changed by someone else right now.
    AlreadyClaimed(MailId),
    /// The mail is already delivered or failed; it can no longer change state.
    Finished(MailId),
    /// A mail with this id is already in the spool (an id is never reused).
    Duplicate(MailId),
    /// Another process holds the spool lock (`spool/lock`).
    Locked { path: PathBuf },
    /// A string that is not a valid mail id (wrong characters or length).
    InvalidId(String),
    /// The `[queue]` configuration is inconsistent.
    Config(String),
    /// The blocking task running the filesystem work panicked or was cancelled.
    Task(String),
}

impl QueueError {
    /// Builds an `Io` error for step `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        QueueError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Io { op, path, source } => {
                write!(f, "spool: {op} failed on {}: {source}", path.display())
            }
            QueueError::Json { op, path, source } => {
                write!(f, "spool: {op} failed on {}: {source}", path.display())
            }
            QueueError::Corrupt { path, reason } => {
                write!(f, "spool: corrupt entry {}: {reason}", path.display())
            }
            QueueError::NotFound(id) => write!(f, "spool: no mail with id {id}"),
            QueueError::NotClaimed(id) => write!(f, "spool: mail {id} is not claimed"),
            QueueError::AlreadyClaimed(id) => write!(f, "spool: mail {id} is claimed by a worker"),
            QueueError::Finished(id) => {
                write!(f, "spool: mail {id} is already delivered or failed")
            }
            QueueError::Duplicate(id) => write!(f, "spool: a mail with id {id} already exists"),
            QueueError::Locked { path } => write!(
                f,
                "spool: {} is locked by another mailtap process",
                path.display()
            ),
            QueueError::InvalidId(s) => write!(f, "spool: invalid mail id {s:?}"),
            QueueError::Config(s) => write!(f, "[queue] config: {s}"),
            QueueError::Task(s) => write!(f, "spool: blocking task failed: {s}"),
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Io { source, .. } => Some(source),
            QueueError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}
