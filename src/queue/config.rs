//! `[queue]` configuration: the retry policy (first retry, doubling, cap, give-up age) and how
//! long finished mail is kept.
//!
//! Owns the policy arithmetic as pure functions (unit-tested here). It does not own the clock:
//! every function takes the times it needs, so callers (and tests) control time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// The `[queue]` section. All durations are whole seconds in TOML.
///
/// ```toml
/// [queue]
/// first_retry_secs = 60          # first retry one minute after the first failed attempt
/// max_retry_interval_secs = 3600 # the interval doubles up to this cap
/// give_up_after_secs = 172800    # a mail still undelivered 2 days after enqueue fails
/// keep_finished_secs = 2592000   # delivered/failed mail is removed 30 days after enqueue
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Delay before the first retry, in seconds (default 60).
    pub first_retry_secs: u64,
    /// Upper bound of the doubling retry interval, in seconds (default 3600).
    pub max_retry_interval_secs: u64,
    /// Age (since enqueue) after which a deferred mail is failed instead, in seconds
    /// (default 172800 = 2 days).
    pub give_up_after_secs: u64,
    /// Age (since enqueue) after which a delivered or failed mail is removed from the spool, in
    /// seconds (default 2592000 = 30 days); 0 keeps finished mail forever.
    pub keep_finished_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            first_retry_secs: 60,
            max_retry_interval_secs: 3600,
            give_up_after_secs: 2 * 24 * 3600,
            keep_finished_secs: 30 * 24 * 3600,
        }
    }
}

/// Longest accepted duration setting (100 years), so time arithmetic can never overflow.
const MAX_SECS: u64 = 100 * 365 * 24 * 3600;

impl QueueConfig {
    /// Checks the settings: every duration in 1 s ..= 100 years and first retry ≤ cap.
    /// The error names the offending key.
    pub fn validate(&self) -> Result<(), QueueError> {
        for (key, v) in [
            ("first_retry_secs", self.first_retry_secs),
            ("max_retry_interval_secs", self.max_retry_interval_secs),
            ("give_up_after_secs", self.give_up_after_secs),
        ] {
            if v == 0 || v > MAX_SECS {
                return Err(QueueError::Config(format!(
                    "{key} = {v}: must be between 1 and {MAX_SECS} seconds"
                )));
            }
        }
        if self.keep_finished_secs > MAX_SECS {
            return Err(QueueError::Config(format!(
                "keep_finished_secs = {}: must be 0 (keep forever) or at most {MAX_SECS} seconds",
                self.keep_finished_secs
            )));
        }
        if self.keep_finished_secs != 0 && self.keep_finished_secs < self.give_up_after_secs {
            // Age counts from enqueue: a mail failing at give-up time must not vanish at once.
            return Err(QueueError::Config(format!(
                "keep_finished_secs = {} is shorter than give_up_after_secs = {}",
                self.keep_finished_secs, self.give_up_after_secs
            )));
        }
        if self.first_retry_secs > self.max_retry_interval_secs {
            return Err(QueueError::Config(format!(
                "first_retry_secs = {} exceeds max_retry_interval_secs = {}",
                self.first_retry_secs, self.max_retry_interval_secs
            )));
        }
        Ok(())
    }

    /// The time before which finished mail created is removed at `now`; `None` when finished
    /// mail is kept forever.
    pub fn finished_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.keep_finished_secs == 0 {
            return None;
        }
        // Bounded by MAX_SECS (validate), so the conversion cannot fail.
        let keep = TimeDelta::seconds(i64::try_from(self.keep_finished_secs).unwrap_or(i64::MAX));
        now.checked_sub_signed(keep)
    }

    /// Delay after the `failed_attempts`-th failed attempt (1-based): `first · 2^(n-1)`, capped
    /// at `max_retry_interval_secs`. `0` is treated as `1`. Never overflows.
    pub fn retry_delay(&self, failed_attempts: u32) -> Duration {
        let n = failed_attempts.max(1) - 1;
        let factor = 1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX);
        let secs = self
            .first_retry_secs
            .saturating_mul(factor)
            .min(self.max_retry_interval_secs)
            .min(MAX_SECS);
        Duration::from_secs(secs)
    }

    /// When to try again after the `failed_attempts`-th failure at `now`, for a mail enqueued at
    /// `created`: `Some(now + retry_delay)`, or `None` ("give up") once `now - created` has
    /// reached `give_up_after_secs`. The give-up check uses the time of the failure, so the last
    /// attempt happens before the give-up age and the mail fails at the first failure after it.
    pub fn next_attempt(
        &self,
        created: DateTime<Utc>,
        failed_attempts: u32,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let give_up = TimeDelta::seconds(self.give_up_after_secs.min(MAX_SECS) as i64);
        if now.signed_duration_since(created) >= give_up {
            return None;
        }
        let delay = TimeDelta::seconds(self.retry_delay(failed_attempts).as_secs() as i64);
        now.checked_add_signed(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_schedule_doubles_from_one_minute_to_one_hour() {
        // Guards: the documented default policy (60 s, doubling, 1 h cap).
        let c = QueueConfig::default();
        let table = [
            (0, 60),
            (1, 60),
            (2, 120),
            (3, 240),
            (4, 480),
            (5, 960),
            (6, 1920),
            (7, 3600),
            (8, 3600),
            (64, 3600),
            (u32::MAX, 3600),
        ];
        for (n, secs) in table {
            assert_eq!(c.retry_delay(n), Duration::from_secs(secs), "attempt {n}");
        }
    }

    #[test]
    fn huge_settings_never_overflow() {
        // Guards: saturating arithmetic with extreme (but valid) settings.
        let c = QueueConfig {
            first_retry_secs: MAX_SECS,
            max_retry_interval_secs: MAX_SECS,
            give_up_after_secs: MAX_SECS,
            keep_finished_secs: MAX_SECS,
        };
        c.validate().unwrap();
        assert!(c.finished_cutoff(Utc::now()).is_some());
        assert_eq!(c.retry_delay(200), Duration::from_secs(MAX_SECS));
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(c.next_attempt(t, 200, t).is_some());
    }

    #[test]
    fn give_up_age_is_measured_from_creation() {
        // Guards: deferral before the give-up age schedules; at or after it gives up.
        let c = QueueConfig::default();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let cases = [
            (0, Some(60)),
            (3600, Some(3600 + 60)),
            (172_799, Some(172_799 + 60)),
            (172_800, None),
            (500_000, None),
        ];
        for (age, next) in cases {
            let now = t0 + TimeDelta::seconds(age);
            let got = c.next_attempt(t0, 1, now);
            assert_eq!(got, next.map(|s| t0 + TimeDelta::seconds(s)), "age {age}");
        }
    }

    #[test]
    fn finished_mail_is_kept_thirty_days_or_forever() {
        // Guards keep_finished_secs: the default cutoff is 30 days back, 0 means no cutoff.
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        assert_eq!(
            QueueConfig::default().finished_cutoff(now),
            Some(now - TimeDelta::days(30))
        );
        let forever = QueueConfig {
            keep_finished_secs: 0,
            ..Default::default()
        };
        forever.validate().unwrap();
        assert_eq!(forever.finished_cutoff(now), None);
    }

    #[test]
    fn validate_names_the_bad_key() {
        // Guards: invalid settings are refused with the key named.
        let bad = [
            (
                QueueConfig {
                    first_retry_secs: 0,
                    ..Default::default()
                },
                "first_retry_secs",
            ),
            (
                QueueConfig {
                    give_up_after_secs: 0,
                    ..Default::default()
                },
                "give_up_after_secs",
            ),
            (
                QueueConfig {
                    max_retry_interval_secs: u64::MAX,
                    ..Default::default()
                },
                "max_retry_interval_secs",
            ),
            (
                QueueConfig {
                    first_retry_secs: 7200,
                    ..Default::default()
                },
                "first_retry_secs",
            ),
            (
                QueueConfig {
                    keep_finished_secs: MAX_SECS + 1,
                    ..Default::default()
                },
                "keep_finished_secs",
            ),
            (
                QueueConfig {
                    keep_finished_secs: 3600,
                    ..Default::default()
                },
                "keep_finished_secs",
            ),
        ];
        for (c, key) in bad {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        QueueConfig::default().validate().unwrap();
    }

    #[test]
    fn toml_keys_are_checked() {
        // Guards: deny_unknown_fields and defaults for missing keys.
        let c: QueueConfig = toml::from_str("first_retry_secs = 5").unwrap();
        assert_eq!(c.first_retry_secs, 5);
        assert_eq!(c.give_up_after_secs, 172_800);
        let err = toml::from_str::<QueueConfig>("first_retry = 5").unwrap_err();
        assert!(err.to_string().contains("first_retry"));
    }
}
