//! What a delivery attempt shows: the Log-*.txt transcript (through [`TransLog`]) and the
//! console summary per mail.
//!
//! Owns the mapping from SMTP client events to transcript lines and the console's wording. It
//! does not decide outcomes (the relay worker does) and never fails a delivery: a transcript
//! that cannot be written is reported once and then ignored.

use std::net::SocketAddr;

use chrono::Local;

use crate::mail::MailRecord;
use crate::smtp::{Transcript, TranscriptEvent};
use crate::translog::TransLog;

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
    let clean = crate::translog::sanitize_line;
    let mut out = String::new();
    out.push_str(&format!(
        "[{}] mail {} ({:?})\n",
        Local::now().format("%Y-%m-%d %H:%M:%S"),
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
