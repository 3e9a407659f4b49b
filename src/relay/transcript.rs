//! What a delivery attempt shows: the Log-*.txt transcript (through [`TransLog`]) and the
//! console summary per mail.
//!
//! Owns the mapping from SMTP client events to transcript lines and the console's wording. It
//! does not decide outcomes (the relay worker does) and never fails a delivery: a transcript
//! that cannot be written is reported once and then ignored.

use std::net::SocketAddr;

use crate::mail::record::Origin;
use crate::mail::MailRecord;
use crate::smtp::{Transcript, TranscriptEvent};
use crate::translog::{LogConfig, TransLog};

/// The SMTP client's events, written into one mail's transaction log.
pub struct LogTranscript<'a> {
    pub log: Option<&'a mut TransLog>,
    /// Attempt number shown in the section heading.
    pub attempt: u32,
    pub log_body: bool,
    /// The server's address once connected (for the console line).
    pub remote: Option<SocketAddr>,
}

impl Transcript for LogTranscript<'_> {
    fn event(&mut self, ev: TranscriptEvent<'_>) {
        if let TranscriptEvent::Connected { remote, .. } = &ev {
            self.remote = Some(*remote);
        }
        let Some(log) = self.log.as_deref_mut() else {
            return;
        };
        match ev {
            TranscriptEvent::Connected {
                local,
                remote,
                server_name,
            } => log.smtp_attempt(self.attempt, local, remote, server_name),
            TranscriptEvent::Tls(info) => log.tls(
                info.version.as_deref().unwrap_or("TLS (version unknown)"),
                info.cipher.as_deref().unwrap_or("(cipher unknown)"),
            ),
            TranscriptEvent::Sent(line) => log.sent(line),
            TranscriptEvent::Received(line) => log.received(line),
            TranscriptEvent::DataSummary {
                header_block,
                body_bytes,
            } => {
                if !self.log_body {
                    log.data_summary(header_block, body_bytes);
                }
            }
            TranscriptEvent::Data(bytes) => log.data_message(bytes),
            TranscriptEvent::Closed => log.note("connection closed after QUIT"),
            TranscriptEvent::Error(e) => log.note(&format!("error at {:?}: {e}", e.stage())),
        }
    }

    fn wants_body(&self) -> bool {
        self.log_body
    }
}

/// The per-mail console block of the lab: time, browser, proxy, mail server, sender, every
/// recipient, length — then the outcome lines. Values from the request are shown with control
/// characters escaped, so an address cannot forge console lines; a closed stdout is ignored.
pub fn console_summary(record: &MailRecord, server: &str, bytes: usize, outcome: &[String]) {
    use std::io::Write as _;
    let clean = crate::redact::sanitize_line;
    let mut out = String::new();
    out.push_str(&format!(
        "[{}] mail {} ({:?})\n",
        crate::clock::console(chrono::Utc::now()),
        record.id,
        record.origin
    ));
    out.push_str(&format!("  browser     {}\n", record.source.client));
    out.push_str(&format!("  proxy       {}\n", record.source.proxy));
    out.push_str(&format!("  mail server {server}\n"));
    let sender = if record.sender.is_empty() {
        "<>"
    } else {
        &record.sender
    };
    out.push_str(&format!(
        "  sender      {} ({:?})\n",
        clean(sender),
        record.sender_source
    ));
    for (kind, list) in [("To", &record.to), ("Cc", &record.cc), ("Bcc", &record.bcc)] {
        for m in list.iter() {
            out.push_str(&format!("  {kind:<11} {}\n", clean(&m.addr)));
        }
    }
    out.push_str(&format!("  length      {bytes} bytes\n"));
    for line in outcome {
        out.push_str(&format!("  => {}\n", clean(line)));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

/// The mail's transcript, opened for appending this attempt: the file named in the record
/// (created when the mail was taken), or — for a record that names none, or whose file is
/// gone — a new one, which then starts with what the record knows of the HTTP exchange.
/// `None` (and a warning) when no transcript can be written; delivery goes on regardless.
pub fn open_for_attempt(
    logs_dir: &std::path::Path,
    config: &LogConfig,
    record: &MailRecord,
) -> Option<TransLog> {
    let named = record
        .transcript
        .as_deref()
        .filter(|n| n.starts_with("Log-") && !n.contains(['/', '\\']) && !n.contains(".."));
    if let Some(name) = named {
        let path = logs_dir.join(name);
        match TransLog::reopen(&path, config) {
            Ok(log) => return Some(log),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(id = %record.id, path = %path.display(), "the mail's transcript is gone; starting a new one");
            }
            Err(e) => {
                tracing::warn!(id = %record.id, path = %path.display(), error = %e, "cannot append to the mail's transcript");
                return None;
            }
        }
    }
    let mut log = match TransLog::create_for_mail(logs_dir, record.received, &record.id, config) {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!(id = %record.id, error = %e, logs = %logs_dir.display(), "cannot create the mail's transcript; delivering anyway");
            return None;
        }
    };
    if let Some(name) = named {
        log.note(&format!("{name} was removed; this transcript continues it"));
    }
    if record.origin == Origin::Report {
        log.note(&format!(
            "error report written by mailtap: {}",
            record.subject
        ));
    } else {
        log.note("HTTP exchange as stored with the mail (its times were not recorded):");
        log.http_request_head(&record.http_head);
        if !record.http_response_head.is_empty() {
            log.http_response_head(&record.http_response_head);
        }
    }
    Some(log)
}
