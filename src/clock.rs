//! The one clock people read: local time with its UTC offset, the same in the console, the
//! transcripts, the `Date:` of mail mailtap writes, and the tracing lines.
//!
//! Owns the formats of human-read times only. Local time is the process's (`TZ` when set,
//! else the system's zone). Machine-read times stay UTC: the spool's `meta.json` times and
//! the mail ids (which say so with `Z`, and sort the same whatever zone a process ran in).

use chrono::{DateTime, Local, Utc};

/// `t` in local time.
pub fn local(t: DateTime<Utc>) -> DateTime<Local> {
    t.with_timezone(&Local)
}

/// The local zone's offset at `t`, as `+08:00`.
pub fn offset(t: DateTime<Utc>) -> String {
    local(t).format("%:z").to_string()
}

/// Seconds precision with the offset, for the console: `2026-12-05 07:47:45 +08:00`.
pub fn console(t: DateTime<Utc>) -> String {
    local(t).format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// Microsecond precision with the offset, for section headings in transcripts:
/// `2026-12-05 07:47:45.123456 +08:00`.
pub fn precise(t: DateTime<Utc>) -> String {
    local(t).format("%Y-%m-%d %H:%M:%S%.6f %:z").to_string()
}

/// RFC 5322 §3.3 date-time in local time with its offset: `Sat, 5 Dec 2026 07:47:45 +0800`.
pub fn rfc5322(t: DateTime<Utc>) -> String {
    local(t).to_rfc2822()
}

/// The tracing timer: local time with microseconds and the offset
/// (`2026-12-05T07:47:45.123456+08:00`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTimer;

impl tracing_subscriber::fmt::time::FormatTime for LocalTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", Local::now().format("%Y-%m-%dT%H:%M:%S%.6f%:z"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_format_shows_the_offset_of_the_local_zone() {
        // Guards: human-read times carry the local offset (whatever TZ the test runs with).
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 23, 47, 45).unwrap();
        let off = offset(t);
        assert!(console(t).ends_with(&format!(" {off}")), "{}", console(t));
        assert!(
            precise(t).ends_with(&format!(".000000 {off}")),
            "{}",
            precise(t)
        );
        assert!(
            rfc5322(t).ends_with(&off.replace(':', "")),
            "{}",
            rfc5322(t)
        );
        assert_eq!(
            DateTime::parse_from_rfc2822(&rfc5322(t)).unwrap(),
            t,
            "the Date: names the same instant"
        );
    }
}
