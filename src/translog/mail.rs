//! One transcript per mail: the `Log-*.txt` is created when the mail is taken (named from that
//! time), gets the HTTP exchange once — request head with the time it arrived and the time its
//! body was complete, the response head with the time it was written, uploads that belong to
//! the send — and then every SMTP attempt appended, in this run or after a restart, ending with
//! the final outcome.
//!
//! Owns the section formats and the hand-over between the proxy side (which writes the HTTP
//! exchange, the response only once it was written to the browser) and the relay (which
//! appends attempts): [`HttpPending`] tells the relay to wait, briefly, until the HTTP part is
//! complete, so the file reads in the order things happened. It does not talk HTTP or SMTP.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{format_timestamp, LogConfig, TransLog, BUFFER};
use crate::clock;
use crate::redact::{redact_head, sanitize_line};

impl TransLog {
    /// Creates the transcript of mail `id`, taken at `taken`: `Log-<taken, local>.txt` (with
    /// `-2`, `-3`, … as [`TransLog::create_with`]), whose header names the mail and the zone.
    pub fn create_for_mail(
        logs_dir: &Path,
        taken: DateTime<Utc>,
        id: &str,
        config: &LogConfig,
    ) -> io::Result<TransLog> {
        let mut log = TransLog::create_with(logs_dir, taken, config)?;
        log.raw(&format!(
            "mail {}, taken {}",
            sanitize_line(id),
            clock::precise(taken)
        ));
        Ok(log)
    }

    /// Opens an existing transcript to append to it (a later attempt, another run). Fails with
    /// `NotFound` when the file is gone; never creates one.
    pub fn reopen(path: &Path, config: &LogConfig) -> io::Result<TransLog> {
        let f = OpenOptions::new().append(true).open(path)?;
        Ok(TransLog {
            path: path.to_path_buf(),
            out: Some(BufWriter::with_capacity(BUFFER, f)),
            flushed: Instant::now(),
            log_body: config.log_body,
            in_auth: false,
            error: None,
        })
    }

    /// A section heading with its time: `=== <title> <local time with offset>`.
    pub fn section(&mut self, title: &str, at: DateTime<Utc>) {
        self.raw(&format!(
            "=== {} {}",
            sanitize_line(title),
            clock::precise(at)
        ));
    }

    /// A note stamped with the time it happened, not the time it is written.
    pub fn note_at(&mut self, at: DateTime<Utc>, text: &str) {
        let ts = format_timestamp(clock::local(at));
        self.raw(&format!("{ts} -- {}", sanitize_line(text)));
    }

    /// The browser's request: `browser → proxy` addresses, the head (secrets redacted) with the
    /// time it arrived, and when its body of `body_bytes` was complete.
    pub fn http_request(&mut self, ends: (SocketAddr, SocketAddr), head: &str, times: HttpTimes) {
        let (client, proxy) = ends;
        self.section(
            &format!("HTTP request (browser {client} -> mailtap {proxy}), head received"),
            times.head,
        );
        for line in redact_head(head).lines() {
            self.raw(&sanitize_line(line));
        }
        self.note_at(
            times.body,
            &format!("request body complete: {} bytes", times.body_bytes),
        );
    }

    /// An upload that belongs to this mail (an attachment sent before the send): its request
    /// head with the times it arrived, and the webmail's response head with the time mailtap
    /// passed it on to the browser (when it did).
    pub fn http_upload(
        &mut self,
        ends: (SocketAddr, SocketAddr),
        head: &str,
        times: HttpTimes,
        response: Option<(&str, DateTime<Utc>)>,
    ) {
        let (client, proxy) = ends;
        self.section(
            &format!("HTTP upload request (browser {client} -> mailtap {proxy}), head received"),
            times.head,
        );
        for line in redact_head(head).lines() {
            self.raw(&sanitize_line(line));
        }
        self.note_at(
            times.body,
            &format!(
                "upload body complete: {} bytes; forwarded to the webmail",
                times.body_bytes
            ),
        );
        match response {
            Some((head, at)) => {
                self.section(
                    &format!(
                        "HTTP upload response (webmail -> mailtap {proxy} -> browser {client}), passed on"
                    ),
                    at,
                );
                for line in redact_head(head).lines() {
                    self.raw(&sanitize_line(line));
                }
            }
            None => self.note("the upload's response was not seen"),
        }
    }

    /// The response mailtap (or, for `tee`, the webmail through mailtap) sent the browser: the
    /// whole head as written, the time it was written, and how the body ended.
    pub fn http_response(
        &mut self,
        ends: (SocketAddr, SocketAddr),
        head: &str,
        written: DateTime<Utc>,
        body: Result<usize, &str>,
    ) {
        let (client, proxy) = ends;
        self.section(
            &format!("HTTP response (mailtap {proxy} -> browser {client}), head written"),
            written,
        );
        for line in redact_head(head).lines() {
            self.raw(&sanitize_line(line));
        }
        match body {
            Ok(n) => self.note(&format!("response body written: {n} bytes")),
            Err(why) => self.note(&format!("response not complete: {why}")),
        }
    }
}

/// When the parts of a request arrived.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimes {
    /// The request head was complete (the proxy started handling it).
    pub head: DateTime<Utc>,
    /// The body was read to its end.
    pub body: DateTime<Utc>,
    pub body_bytes: usize,
}

type Waiters = HashMap<String, tokio::sync::watch::Receiver<()>>;

fn pending() -> std::sync::MutexGuard<'static, Waiters> {
    static PENDING: std::sync::OnceLock<Mutex<Waiters>> = std::sync::OnceLock::new();
    // A panic while holding the lock leaves a consistent map (single inserts and removes).
    PENDING
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Held by the proxy side while the HTTP part of mail `id`'s transcript is still being
/// written (until its response was written to the browser); dropping it lets the relay go on.
#[derive(Debug)]
pub struct HttpPending {
    id: String,
    _done: tokio::sync::watch::Sender<()>,
}

impl HttpPending {
    /// Marks the HTTP part of mail `id`'s transcript as in progress.
    pub fn new(id: &str) -> HttpPending {
        let (tx, rx) = tokio::sync::watch::channel(());
        pending().insert(id.to_string(), rx);
        HttpPending {
            id: id.to_string(),
            _done: tx,
        }
    }
}

impl Drop for HttpPending {
    fn drop(&mut self) {
        pending().remove(&self.id);
    }
}

/// Waits (at most `max`) until the HTTP part of mail `id`'s transcript is complete; returns at
/// once when nothing is pending (another run wrote it, or it is done).
pub async fn http_written(id: &str, max: Duration) {
    let rx = pending().get(id).cloned();
    if let Some(mut rx) = rx {
        // Err = the sender was dropped: the section is complete.
        let _ = tokio::time::timeout(max, rx.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_relay_waits_for_the_response_section_and_no_longer() {
        // Guards the hand-over: a waiter returns when the guard drops, and at once without one.
        let guard = HttpPending::new("m-1");
        let t0 = Instant::now();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(guard);
        });
        http_written("m-1", Duration::from_secs(5)).await;
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(90) && waited < Duration::from_secs(4));
        release.await.unwrap();
        let t1 = Instant::now();
        http_written("m-1", Duration::from_secs(5)).await;
        http_written("unknown", Duration::from_secs(5)).await;
        assert!(t1.elapsed() < Duration::from_secs(1));
    }
}
