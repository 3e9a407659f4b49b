//! The per-mail metadata file (`meta.json`): queue state, attempts, recipients, the record.
//!
//! Owns the on-disk JSON shape and the pure state-change rules (merging per-recipient results,
//! deferral/give-up, failing). It does not touch the filesystem; `store` reads and writes it.
//! Times are RFC 3339 UTC strings with microsecond precision, so the file is readable by eye.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::config::QueueConfig;
use super::id::MailId;

/// Version of the `meta.json` layout written by this code.
pub const META_VERSION: u32 = 1;

/// Where a mail is in its life; also the name of the spool sub-directory holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailState {
    /// Enqueued and due (never attempted, or released); claimable now.
    Active,
    /// Waiting for a retry; claimable once `next_attempt` has passed.
    Deferred,
    /// Finished: every recipient got a final answer (some may have been refused).
    Delivered,
    /// Finished without delivery (permanent error or gave up).
    Failed,
}

impl MailState {
    /// All states, in directory-creation order.
    pub const ALL: [MailState; 4] = [
        MailState::Active,
        MailState::Deferred,
        MailState::Delivered,
        MailState::Failed,
    ];

    /// The spool sub-directory name of this state.
    pub fn dir_name(self) -> &'static str {
        match self {
            MailState::Active => "active",
            MailState::Deferred => "deferred",
            MailState::Delivered => "delivered",
            MailState::Failed => "failed",
        }
    }

    /// True for delivered and failed: such a mail never changes state again.
    pub fn is_final(self) -> bool {
        matches!(self, MailState::Delivered | MailState::Failed)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MailState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The outcome for one recipient so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not attempted yet (also the status of recipients absent from the map).
    Pending,
    /// Accepted by the server after DATA.
    Delivered,
    /// Permanently refused; the reason quotes the server's reply or the local check.
    Failed(String),
    /// Temporarily refused; retried later. The reason quotes the reply.
    Deferred(String),
}

impl RcptStatus {
    /// True for pending and deferred: this recipient still needs an attempt.
    pub fn is_open(&self) -> bool {
        matches!(self, RcptStatus::Pending | RcptStatus::Deferred(_))
    }
}

/// Contents of `meta.json`: the record plus everything the queue knows about the mail.
///
/// `recipients` holds what callers reported via `complete`/`defer`/`fail`, keyed by address;
/// a recipient not in the map is pending.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MailMeta<R> {
    pub version: u32,
    pub id: MailId,
    /// Authoritative state: when the directory sits elsewhere after a crash, recovery moves it.
    pub state: MailState,
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    /// Number of finished delivery attempts (complete/defer/fail after a claim).
    pub attempts: u32,
    /// When the mail is due (enqueue time for new mail; the retry time for deferred mail).
    #[serde(with = "ts")]
    pub next_attempt: DateTime<Utc>,
    pub recipients: BTreeMap<String, RcptStatus>,
    pub last_error: Option<String>,
    /// Size of `message.eml` in bytes.
    pub message_bytes: u64,
    pub record: R,
}

/// Truncates `t` to whole microseconds, the precision stored on disk, so in-memory and
/// re-read times compare equal.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

impl<R> MailMeta<R> {
    /// Metadata of a freshly enqueued mail: active, due at `now`, no attempts.
    pub fn new(id: MailId, record: R, message_bytes: u64, now: DateTime<Utc>) -> Self {
        let now = to_micros(now);
        MailMeta {
            version: META_VERSION,
            id,
            state: MailState::Active,
            created: now,
            attempts: 0,
            next_attempt: now,
            recipients: BTreeMap::new(),
            last_error: None,
            message_bytes,
            record,
        }
    }

    /// Overwrites the statuses of the recipients named in `per_rcpt`; others keep theirs.
    pub fn merge_recipients(&mut self, per_rcpt: &[(String, RcptStatus)]) {
        for (addr, st) in per_rcpt {
            self.recipients.insert(addr.clone(), st.clone());
        }
    }

    /// Marks every still-open recipient failed with `reason`.
    fn close_open_recipients(&mut self, reason: &str) {
        for st in self.recipients.values_mut() {
            if st.is_open() {
                *st = RcptStatus::Failed(reason.to_string());
            }
        }
    }

    /// Applies a finished attempt that delivered or finally refused every recipient: the mail
    /// is delivered when at least one recipient got it, failed when every one was refused.
    pub fn apply_complete(&mut self, per_rcpt: &[(String, RcptStatus)]) {
        self.attempts = self.attempts.saturating_add(1);
        self.merge_recipients(per_rcpt);
        let refused: Vec<&str> = self
            .recipients
            .values()
            .filter_map(|s| match s {
                RcptStatus::Failed(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        if !self.recipients.is_empty() && refused.len() == self.recipients.len() {
            self.last_error = Some(refused.join("; "));
            self.state = MailState::Failed;
        } else {
            self.state = MailState::Delivered;
        }
    }

    /// Applies a temporary failure at `now`: schedules the next attempt by `policy`, or fails
    /// the mail (open recipients failed too) when the give-up age is reached.
    pub fn apply_defer(
        &mut self,
        per_rcpt: &[(String, RcptStatus)],
        error: &str,
        now: DateTime<Utc>,
        policy: &QueueConfig,
    ) {
        self.attempts = self.attempts.saturating_add(1);
        self.merge_recipients(per_rcpt);
        match policy.next_attempt(self.created, self.attempts, now) {
            Some(next) => {
                self.state = MailState::Deferred;
                self.next_attempt = to_micros(next);
                self.last_error = Some(error.to_string());
            }
            None => {
                let reason = format!(
                    "gave up after {} attempts over {} s; last error: {error}",
                    self.attempts,
                    now.signed_duration_since(self.created).num_seconds()
                );
                self.close_open_recipients(&reason);
                self.state = MailState::Failed;
                self.last_error = Some(reason);
            }
        }
    }

    /// Applies a permanent failure of the whole mail.
    pub fn apply_fail(&mut self, reason: &str, counts_as_attempt: bool) {
        if counts_as_attempt {
            self.attempts = self.attempts.saturating_add(1);
        }
        self.close_open_recipients(reason);
        self.state = MailState::Failed;
        self.last_error = Some(reason.to_string());
    }
}

/// A cheap, in-memory view of one mail (no record), for listings and the UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailSummary {
    pub id: MailId,
    pub state: MailState,
    pub created: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    /// True while a worker holds the claim.
    pub claimed: bool,
}

/// serde helpers: `DateTime<Utc>` as an RFC 3339 string with microseconds and `Z`.
pub(crate) mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn meta() -> MailMeta<String> {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        MailMeta::new(MailId::parse("m1").unwrap(), "rec".into(), 10, t0)
    }

    fn rc(a: &str, s: RcptStatus) -> (String, RcptStatus) {
        (a.to_string(), s)
    }

    #[test]
    fn json_shape_round_trips_and_is_readable() {
        // Guards: the meta.json layout (state names, tagged statuses, RFC 3339 times).
        let mut m = meta();
        m.merge_recipients(&[
            rc("a@x.org", RcptStatus::Delivered),
            rc(
                "b@y.org",
                RcptStatus::Deferred("451 4.3.0 try later".into()),
            ),
        ]);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"state\":\"active\""), "{json}");
        assert!(
            json.contains("\"created\":\"2026-11-23T10:00:00.000000Z\""),
            "{json}"
        );
        assert!(json.contains(r#""b@y.org":{"status":"deferred","reason":"451 4.3.0 try later"}"#));
        assert!(
            json.contains(r#""a@x.org":{"status":"delivered"}"#),
            "{json}"
        );
        let back: MailMeta<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn hostile_meta_json_is_rejected() {
        // Guards: bad ids, bad times, unknown states never load as valid metadata.
        let good = serde_json::to_value(meta()).unwrap();
        let edits: [(&str, serde_json::Value); 4] = [
            ("id", "../../etc".into()),
            ("created", "yesterday".into()),
            ("state", "limbo".into()),
            ("attempts", (-1).into()),
        ];
        for (key, val) in edits {
            let mut v = good.clone();
            v[key] = val;
            assert!(
                serde_json::from_value::<MailMeta<String>>(v).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn defer_schedules_then_gives_up_and_closes_recipients() {
        // Guards: deferral uses the policy; past give-up the mail and open recipients fail.
        let policy = QueueConfig::default();
        let mut m = meta();
        let t0 = m.created;
        m.apply_defer(
            &[rc("a@x.org", RcptStatus::Deferred("421".into()))],
            "421",
            t0,
            &policy,
        );
        assert_eq!(m.state, MailState::Deferred);
        assert_eq!(m.next_attempt, t0 + TimeDelta::seconds(60));
        let later = t0 + TimeDelta::seconds(60);
        m.apply_defer(
            &[rc("b@x.org", RcptStatus::Delivered)],
            "451",
            later,
            &policy,
        );
        assert_eq!(m.next_attempt, later + TimeDelta::seconds(120));
        assert_eq!(m.attempts, 2);
        m.apply_defer(&[], "451 again", t0 + TimeDelta::days(2), &policy);
        assert_eq!(m.state, MailState::Failed);
        assert!(matches!(&m.recipients["a@x.org"], RcptStatus::Failed(r) if r.contains("gave up")));
        assert_eq!(m.recipients["b@x.org"], RcptStatus::Delivered);
        assert!(m.last_error.as_deref().unwrap_or("").contains("451 again"));
    }

    #[test]
    fn complete_and_fail_transitions() {
        // Guards: complete → delivered keeping refusals; fail closes only open recipients.
        let mut m = meta();
        m.apply_complete(&[
            rc("a@x.org", RcptStatus::Delivered),
            rc("z@x.org", RcptStatus::Failed("550 5.1.1 unknown".into())),
        ]);
        assert_eq!(m.state, MailState::Delivered);
        assert_eq!(m.attempts, 1);
        let mut all_refused = meta();
        all_refused.apply_complete(&[rc(
            "z@x.org",
            RcptStatus::Failed("550 5.1.1 unknown".into()),
        )]);
        assert_eq!(all_refused.state, MailState::Failed);
        assert!(all_refused
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("550 5.1.1"));
        let mut f = meta();
        f.merge_recipients(&[
            rc("a@x.org", RcptStatus::Delivered),
            rc("p@x.org", RcptStatus::Pending),
        ]);
        f.apply_fail("invalid sender", false);
        assert_eq!(f.state, MailState::Failed);
        assert_eq!(f.attempts, 0);
        assert_eq!(f.recipients["a@x.org"], RcptStatus::Delivered);
        assert_eq!(
            f.recipients["p@x.org"],
            RcptStatus::Failed("invalid sender".into())
        );
    }

    #[test]
    fn times_are_truncated_to_stored_precision() {
        // Guards: in-memory times equal what a re-read of meta.json yields.
        let t = Utc.timestamp_nanos(1_700_000_000_123_456_789);
        let m = MailMeta::new(MailId::parse("m").unwrap(), 0u8, 0, t);
        let back: MailMeta<u8> = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.created, m.created);
        assert_eq!(m.created.timestamp_subsec_nanos(), 123_456_000);
    }
}
