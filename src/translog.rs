//! Transcript writer: one plain-text `Log-YYYYmmddHHMMSS.txt` per mail.
//!
//! Owns the file naming (local time of the transaction start — the time users see on their
//! clock — with `-2`, `-3`, … on same-second collisions, created with `create_new` so an
//! existing file is never overwritten), the line format, and applying [`crate::redact`] to every line (Cookie /
//! Set-Cookie / Authorization / Proxy-Authorization values, AUTH payloads) as `<redacted>`.
//! It does not talk SMTP or HTTP: the proxy and SMTP client call these methods as things happen.
//! An I/O error on the log is logged with `tracing`, remembered (see [`TransLog::finish`]) and
//! stops further writes to this log — it never fails the delivery it observes.
//!
//! Format: section lines start with `===` and end with the local time and its UTC offset;
//! every conversation line starts with a local microsecond timestamp and a direction marker —
//! `C:` sent by mailtap (the SMTP client) to the server, `S:` received from the server, `--` a
//! note (outcome, sender choice, errors). One file per mail (see `translog/mail.rs`):
//! ```text
//! mail 20261123T021530.101000Z-0a1b2c3d-0, taken 2026-11-23 10:15:30.101000 +08:00
//! === HTTP request (browser 127.0.0.1:50311 -> mailtap 127.0.0.1:8800), head received 2026-11-23 10:15:30.100900 +08:00
//! POST /?_task=mail&_action=send HTTP/1.1
//! Cookie: <redacted>
//! 2026-11-23 10:15:30.101000 -- request body complete: 1234 bytes
//! === SMTP attempt 1: 127.0.0.1:50312 -> smtp.example.com (127.0.0.1:2525) at 2026-11-23 10:15:30.123400 +08:00
//! 2026-11-23 10:15:30.123456 S: 220 smtp.example.com ESMTP
//! 2026-11-23 10:15:30.123501 C: EHLO mailtap
//! 2026-11-23 10:15:30.124010 C: AUTH PLAIN <redacted>
//! 2026-11-23 10:15:30.130000 C: Subject: hello
//! 2026-11-23 10:15:30.130001 C: [body: 1234 bytes]
//! 2026-11-23 10:15:30.140002 -- delivered to a@example.org
//! === final outcome 2026-11-23 10:15:30.140100 +08:00
//! ```
//! Control characters inside a line (CR, LF, NUL, ...) are written escaped (`\r`, `\n`,
//! `\x00`), so a hostile reply cannot forge extra log lines.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use serde::{Deserialize, Serialize};

mod mail;
use crate::redact::{redact_auth, redact_head, sanitize_line};
pub use mail::{http_written, HttpPending, HttpTimes};

/// `[log]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Write the whole DATA content instead of its headers plus `[body: N bytes]`
    /// (default false).
    pub log_body: bool,
}

/// Most `-N` suffixes tried for one second before giving up.
const MAX_SUFFIX: u32 = 10_000;

/// Formats a transcript timestamp: `2026-11-23 10:15:30.123456` (local time, microseconds).
pub fn format_timestamp(t: DateTime<Local>) -> String {
    use chrono::{Datelike, Timelike};
    // By hand: every transcript line has one, and chrono's `format` parses its pattern anew
    // each call. chrono's leap-second form (nanosecond ≥ 1e9) is clamped to .999999.
    let micros = (t.nanosecond() / 1_000).min(999_999);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The file name for a transaction started at `now` (local time) with collision number `n`
/// (1 = no suffix): `Log-20261123101530.txt`, `Log-20261123101530-2.txt`, …
pub fn file_name(now: DateTime<Utc>, n: u32) -> String {
    let stamp = now.with_timezone(&Local).format("%Y%m%d%H%M%S");
    if n <= 1 {
        format!("Log-{stamp}.txt")
    } else {
        format!("Log-{stamp}-{n}.txt")
    }
}

/// The last `-N` suffix this process used for the log path `base` (`<dir>/Log-<stamp>.txt`);
/// with `taken`, records it. One entry is kept: names only repeat within one second, and a
/// miss only costs the plain search from `-1`.
fn last_suffix(base: &str, taken: Option<u32>) -> Option<u32> {
    static LAST: std::sync::Mutex<(String, u32)> = std::sync::Mutex::new((String::new(), 0));
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = taken {
        if last.0 != base || n > last.1 {
            *last = (base.to_string(), n);
        }
        return Some(n);
    }
    (last.0 == base).then_some(last.1)
}

/// How long written lines may wait in the buffer before the next line flushes them.
const FLUSH_AFTER: Duration = Duration::from_millis(500);
/// Buffer size: a whole ordinary transcript fits, so it usually reaches the file in one write.
const BUFFER: usize = 16 * 1024;

/// An open transcript. Lines are buffered: they reach the file when the buffer fills, when a
/// line is written more than [`FLUSH_AFTER`] after the last flush (so a slow exchange shows up
/// while it runs, up to the line before its latest), on [`TransLog::finish`] and on drop —
/// the lines before a stall appear once the reply or the timeout ends it. A fast transaction
/// costs one write.
pub struct TransLog {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    flushed: Instant,
    log_body: bool,
    /// True between a client `AUTH` and the first server reply that is not `334`: client lines
    /// in between are credentials.
    in_auth: bool,
    error: Option<io::Error>,
}

impl std::fmt::Debug for TransLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransLog")
            .field("path", &self.path)
            .field("log_body", &self.log_body)
            .field("error", &self.error)
            .finish()
    }
}

/// Makes every `Log-*.txt` in `logs_dir` owner-only (an older mailtap wrote them 0644) and
/// returns how many it changed; one line says so. The directory itself is left as it is: it
/// may be shared (`[paths].logs` can name any directory), and the files are what hold the mail.
/// A missing directory is nothing to do.
pub fn tighten_existing(logs_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return 0;
    };
    let mut changed = 0;
    let mut failed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("Log-") && name.ends_with(".txt")) {
            continue;
        }
        match crate::private_fs::tighten(&entry.path()) {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(_) => failed += 1,
        }
    }
    if changed > 0 {
        tracing::info!(logs = %logs_dir.display(), changed, "transcripts were readable by other users: made owner-only (0600)");
    }
    if failed > 0 {
        tracing::warn!(logs = %logs_dir.display(), failed, "transcripts readable by other users could not be made owner-only; chmod go= them");
    }
    changed
}

impl TransLog {
    /// [`TransLog::create_with`] with the default [`LogConfig`].
    pub fn create(logs_dir: &Path, now: DateTime<Utc>) -> io::Result<TransLog> {
        Self::create_with(logs_dir, now, &LogConfig::default())
    }

    /// Creates a new `Log-*.txt` in `logs_dir` (created if missing) named after `now` in local
    /// time, picking the first free of `-2`, `-3`, … `-10000` for same-second transactions.
    /// Never opens an existing file. Writes a short header naming the markers.
    pub fn create_with(
        logs_dir: &Path,
        now: DateTime<Utc>,
        config: &LogConfig,
    ) -> io::Result<TransLog> {
        match Self::create_in(logs_dir, now, config) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::private_fs::create_dir_all(logs_dir)?;
                Self::create_in(logs_dir, now, config)
            }
            other => other,
        }
    }

    fn create_in(logs_dir: &Path, now: DateTime<Utc>, config: &LogConfig) -> io::Result<TransLog> {
        let first_name = logs_dir
            .join(file_name(now, 1))
            .to_string_lossy()
            .into_owned();
        // Start after the last suffix this process took for the same name, so a busy second
        // costs one open per log instead of one per earlier log (create_new still guards).
        let start = last_suffix(&first_name, None).map_or(1, |n| n + 1);
        for n in start..=MAX_SUFFIX {
            let path = logs_dir.join(file_name(now, n));
            // Owner-only: a transcript holds addresses, subjects and the HTTP exchange.
            match crate::private_fs::options()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => {
                    last_suffix(&first_name, Some(n));
                    let mut log = TransLog {
                        path,
                        out: Some(BufWriter::with_capacity(BUFFER, f)),
                        flushed: Instant::now(),
                        log_body: config.log_body,
                        in_auth: false,
                        error: None,
                    };
                    log.raw(&format!(
                        "mailtap transaction log, started {}; times are local time (UTC{})",
                        crate::clock::precise(now),
                        crate::clock::offset(now)
                    ));
                    log.raw("markers: C: sent by mailtap to the server, S: received from the server, -- note");
                    return Ok(log);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{MAX_SUFFIX} logs already exist for {}", file_name(now, 1)),
        ))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first I/O error met so far, if any (writing stopped then).
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    fn raw(&mut self, line: &str) {
        let Some(out) = self.out.as_mut() else { return };
        if let Err(e) = out
            .write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
        {
            self.fail(e);
            return;
        }
        if self.flushed.elapsed() >= FLUSH_AFTER {
            self.flush();
        }
    }

    fn fail(&mut self, e: io::Error) {
        tracing::warn!(path = %self.path.display(), error = %e, "transaction log write failed; log abandoned");
        self.out = None;
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) {
        self.flushed = Instant::now();
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                self.fail(e);
            }
        }
    }

    fn stamped(&mut self, marker: &str, text: &str) {
        let ts = format_timestamp(Local::now());
        self.raw(&format!("{ts} {marker} {}", sanitize_line(text)));
    }

    fn head(&mut self, title: &str, head: &str) {
        self.section(title, Utc::now());
        for line in redact_head(head).lines() {
            self.raw(&sanitize_line(line));
        }
    }

    /// Writes the intercepted request head (request line + fields), secrets redacted.
    pub fn http_request_head(&mut self, head: &str) {
        self.head("HTTP request (browser -> mailtap)", head);
    }

    /// Writes the response head mailtap sent back to the browser, secrets redacted.
    pub fn http_response_head(&mut self, head: &str) {
        self.head("HTTP response (mailtap -> browser)", head);
    }

    /// Starts the section of SMTP attempt `n` (1-based) from `local` to `server_name` at
    /// `remote`.
    pub fn smtp_attempt(
        &mut self,
        n: u32,
        local: SocketAddr,
        remote: SocketAddr,
        server_name: &str,
    ) {
        self.in_auth = false;
        let name = sanitize_line(server_name);
        self.raw(&format!(
            "=== SMTP attempt {n}: {local} -> {name} ({remote}) at {}",
            crate::clock::precise(Utc::now())
        ));
    }

    /// Records the negotiated TLS protocol version and cipher suite.
    pub fn tls(&mut self, version: &str, cipher: &str) {
        self.stamped("--", &format!("TLS established: {version} {cipher}"));
    }

    /// Records one command line sent to the server. AUTH payloads and the credential lines
    /// that follow an AUTH command (until the server's first non-334 reply) are `<redacted>`.
    pub fn sent(&mut self, line: &str) {
        let clean = line.trim_end_matches(['\r', '\n']);
        let shown = if let Some(r) = redact_auth(clean) {
            self.in_auth = true;
            r
        } else if self.in_auth {
            "<redacted>".to_string()
        } else {
            clean.to_string()
        };
        self.stamped("C:", &shown);
    }

    /// Records one reply line received from the server.
    pub fn received(&mut self, line: &str) {
        if self.in_auth && !line.starts_with("334") {
            self.in_auth = false;
        }
        self.stamped("S:", line);
    }

    /// Records the DATA content as its header lines plus `[body: N bytes]`.
    pub fn data_summary(&mut self, headers: &str, body_bytes: usize) {
        for line in headers.lines() {
            if !line.is_empty() {
                self.stamped("C:", line);
            }
        }
        self.stamped("C:", &format!("[body: {body_bytes} bytes]"));
    }

    /// Records the DATA content of `message`: the whole message when `log_body` is set,
    /// otherwise its header section plus `[body: N bytes]`. Non-UTF-8 bytes are shown lossily.
    pub fn data_message(&mut self, message: &[u8]) {
        let text = String::from_utf8_lossy(message);
        if self.log_body {
            for line in text.lines() {
                self.stamped("C:", line);
            }
            return;
        }
        let split = find_header_end(message);
        let (headers, body_len) = match split {
            Some((h_end, b_start)) => (&message[..h_end], message.len() - b_start),
            None => (message, 0),
        };
        let headers = String::from_utf8_lossy(headers).into_owned();
        self.data_summary(&headers, body_len);
    }

    /// Records an outcome or remark (delivered, deferred, sender choice, ...).
    pub fn note(&mut self, text: &str) {
        self.stamped("--", text);
    }

    /// Flushes and closes the log; returns its path, or the first I/O error met.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.flush();
        self.out = None;
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.path.clone()),
        }
    }
}

impl Drop for TransLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Finds the blank line ending a message's header section: `(end of headers, start of body)`.
fn find_header_end(m: &[u8]) -> Option<(usize, usize)> {
    let crlf = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = m.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamp_has_microseconds() {
        // Guards: the documented `YYYY-mm-dd HH:MM:SS.ffffff` line timestamp.
        let t = Local.with_ymd_and_hms(2026, 11, 23, 10, 15, 30).unwrap()
            + chrono::TimeDelta::microseconds(123_456);
        assert_eq!(format_timestamp(t), "2026-11-23 10:15:30.123456");
        let t0 = Local.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_timestamp(t0), "2026-01-02 03:04:05.000000");
    }

    #[test]
    fn file_names_use_local_time_and_suffixes() {
        // Guards: Log-YYYYmmddHHMMSS.txt naming in local time, -N from 2 on.
        let local = Local.with_ymd_and_hms(2026, 11, 23, 10, 15, 30).unwrap();
        let utc = local.with_timezone(&Utc);
        assert_eq!(file_name(utc, 1), "Log-20261123101530.txt");
        assert_eq!(file_name(utc, 0), "Log-20261123101530.txt");
        assert_eq!(file_name(utc, 2), "Log-20261123101530-2.txt");
        assert_eq!(file_name(utc, 17), "Log-20261123101530-17.txt");
    }

    #[test]
    fn header_end_detection() {
        // Guards: the headers/body split for CRLF, LF and header-only messages.
        type Case<'a> = (&'a [u8], Option<(usize, usize)>);
        let cases: &[Case] = &[
            (b"A: 1\r\n\r\nbody", Some((4, 8))),
            (b"A: 1\n\nbody", Some((4, 6))),
            (b"A: 1\r\n", None),
            (b"", None),
        ];
        for (input, want) in cases {
            assert_eq!(find_header_end(input), *want);
        }
    }

    #[test]
    fn write_errors_are_kept_and_never_panic() {
        // Guards: a failing log device stops the log, reports the error, never panics.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut log = TransLog {
            path: PathBuf::from("/dev/full"),
            out: Some(BufWriter::with_capacity(16, full)),
            flushed: Instant::now(),
            log_body: false,
            in_auth: false,
            error: None,
        };
        log.sent("EHLO a-line-longer-than-the-sixteen-byte-buffer");
        log.note("still no panic");
        log.received("250 ok");
        assert!(log.error().is_some());
        assert!(log.finish().is_err());
    }
}
