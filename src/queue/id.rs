//! `MailId`: the spool's name for one mail, also the name of its directory on disk.
//!
//! Owns id syntax (validation of untrusted strings, e.g. from the web UI) and id generation.
//! One id names a mail everywhere (console, tracing, spool directory, transcript, Message-ID
//! local part, reports): it is made once, with the record, by [`MailId::new`]. Ids sort by
//! creation time; the time in them is UTC and says so (`Z`), so the order does not depend on
//! the `TZ` a process ran with. Uniqueness across processes comes from a random per-process
//! nonce plus a per-process counter. It does not own any filesystem access.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// Longest accepted id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A validated mail id: 1–64 bytes of `[A-Za-z0-9_.-]`, not starting with `.` — so it is always a
/// single, harmless path component (never `..`, never contains `/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailId(String);

impl MailId {
    /// Validates `s` as a mail id; the error carries the rejected string.
    pub fn parse(s: &str) -> Result<MailId, QueueError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ID_LEN
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(MailId(s.to_string()))
        } else {
            Err(QueueError::InvalidId(s.chars().take(80).collect()))
        }
    }

    /// A new id for a mail taken at `now`: unique in this process (a counter) and, through a
    /// random per-process nonce, across processes sharing a spool.
    pub fn new(now: DateTime<Utc>) -> MailId {
        static NONCE: OnceLock<u32> = OnceLock::new();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nonce = *NONCE.get_or_init(process_nonce);
        MailId::generate(now, nonce, SEQ.fetch_add(1, Ordering::Relaxed))
    }

    /// Builds the id for the `seq`-th mail of the process with nonce `nonce`, created at `at`:
    /// `YYYYmmddTHHMMSS.ffffffZ-<nonce hex>-<seq>` (UTC), always valid.
    pub(crate) fn generate(at: DateTime<Utc>, nonce: u32, seq: u64) -> MailId {
        MailId(format!(
            "{}Z-{nonce:08x}-{seq}",
            at.format("%Y%m%dT%H%M%S%.6f")
        ))
    }

    /// The id as a string (also the directory name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A random 32-bit value for this process (process id and start time, hashed with a random key).
fn process_nonce() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MailId {
    type Error = QueueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MailId::parse(&s)
    }
}

impl From<MailId> for String {
    fn from(id: MailId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parse_accepts_only_single_safe_path_components() {
        // Guards: hostile strings (traversal, separators, control chars) never become an id.
        let long = "a".repeat(MAX_ID_LEN + 1);
        let max = "a".repeat(MAX_ID_LEN);
        let cases: &[(&str, bool)] = &[
            ("20261123T101530.123456Z-0000abcd-1", true),
            ("abc_DEF-1.2", true),
            (max.as_str(), true),
            ("", false),
            (".", false),
            ("..", false),
            (".hidden", false),
            ("../etc", false),
            ("a/b", false),
            ("a\\b", false),
            ("a b", false),
            ("a\0b", false),
            ("a\r\nb", false),
            ("é", false),
            (long.as_str(), false),
        ];
        for (s, ok) in cases {
            assert_eq!(MailId::parse(s).is_ok(), *ok, "input {s:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_distinct_and_time_ordered() {
        // Guards: generated ids are always parseable, differ by seq, and sort by time.
        let t1 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 15, 30).unwrap();
        let t2 = t1 + chrono::TimeDelta::microseconds(1);
        let a = MailId::generate(t1, 0xdead, 1);
        let b = MailId::generate(t1, 0xdead, 2);
        let c = MailId::generate(t2, 0xdead, 0);
        assert_eq!(a.as_str(), "20261123T101530.000000Z-0000dead-1");
        for id in [&a, &b, &c] {
            assert_eq!(MailId::parse(id.as_str()).unwrap(), *id);
        }
        assert_ne!(a, b);
        assert!(a < c && b < c);
    }

    #[test]
    fn serde_round_trip_rejects_invalid() {
        // Guards: an id read back from JSON is validated, not trusted.
        let id = MailId::parse("x-1").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"x-1\"");
        assert_eq!(serde_json::from_str::<MailId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<MailId>("\"../x\"").is_err());
    }
}
