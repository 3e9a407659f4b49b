//! Error reports ("差错报告"): the RFC 3464 delivery status notification mailtap sends the
//! original sender when a mail cannot be delivered.
//!
//! Owns the report's content: a human-readable part quoting the failed command and the server's
//! full reply, one `message/delivery-status` recipient block per failed recipient, and the
//! original header section (`text/rfc822-headers`). It builds bytes and a [`MailRecord`] with
//! `origin: Report`; it does not queue or send them (the relay does, through the queue), and it
//! never builds a report about a report.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::mail::record::{new_id, MailRecord, Mailbox, Origin, SenderSource};

/// `[report]`: who error reports come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// From address of reports; empty → the `[smtp]` username when it is an address, else
    /// `mailtap@localhost`.
    pub from: String,
    /// Reporting-MTA name in the delivery-status part.
    pub reporting_mta: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            from: String::new(),
            reporting_mta: "mailtap".into(),
        }
    }
}

/// Why one recipient was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient's address.
    pub recipient: String,
    /// RFC 3463 status, e.g. `5.1.1` (derived from the reply when it carries none).
    pub status: String,
    /// The command that failed (`RCPT TO:<bob@example.org>`), when there was one.
    pub command: Option<String>,
    /// The server's full reply (every line), or mailtap's own reason for local failures.
    pub diagnostic: String,
    /// Whether `diagnostic` is an SMTP reply (`smtp;`) or a local check (`x-mailtap;`).
    pub from_server: bool,
    /// The server that answered (`name [ip]:port`), when one did.
    pub remote_mta: Option<String>,
}

/// The report for `failures` of `original`, ready to enqueue: `None` when `original` is itself
/// a report (never a report about a report) or has no sender to report to.
pub fn build(
    original: &MailRecord,
    original_message: &[u8],
    failures: &[Failure],
    config: &ReportConfig,
    from: &str,
    now: DateTime<Utc>,
) -> Option<(MailRecord, Vec<u8>)> {
    if original.origin == Origin::Report || original.sender.is_empty() || failures.is_empty() {
        return None;
    }
    if crate::mail::address::validate_addr(&original.sender).is_err() {
        return None;
    }
    // The report's own id: its spool directory, Message-ID local part and transcript.
    let id = new_id(now);
    let boundary = format!("=_mailtap_report_{}", id.replace(['-', '.'], "_"));
    let date = crate::clock::rfc5322(now);
    let subject = format!(
        "Undelivered Mail Returned to Sender: {}",
        shorten(&original.subject, 150)
    );
    let mut m = String::new();
    m.push_str(&format!("From: Mail Delivery System <{from}>\r\n"));
    m.push_str(&format!("To: <{}>\r\n", original.sender));
    m.push_str(&format!("Subject: {}\r\n", encode_header(&subject)));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{id}@{}>\r\n", host_part(from)));
    // RFC 3834 §5: an automatic response, so auto-responders do not answer it.
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated delivery status notification.\r\n\r\n");

    // Part 1: for people.
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    m.push_str(&human_text(original, failures));

    // Part 2: for programs (RFC 3464 §2.2, §2.3).
    m.push_str(&format!("\r\n--{boundary}\r\n"));
    m.push_str("Content-Type: message/delivery-status\r\n\r\n");
    // RFC 3464 §2.2.1: the envelope id the original was submitted with — mailtap's id of it.
    m.push_str(&format!(
        "Original-Envelope-Id: {}\r\n",
        one_line(&original.id)
    ));
    m.push_str(&format!(
        "Reporting-MTA: dns; {}\r\n",
        one_line(&config.reporting_mta)
    ));
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        crate::clock::rfc5322(original.received)
    ));
    for f in failures {
        m.push_str("\r\n");
        m.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            one_line(&f.recipient)
        ));
        m.push_str("Action: failed\r\n");
        m.push_str(&format!("Status: {}\r\n", one_line(&f.status)));
        if let Some(mta) = &f.remote_mta {
            m.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta)));
        }
        let kind = if f.from_server { "smtp" } else { "x-mailtap" };
        m.push_str(&format!(
            "Diagnostic-Code: {kind}; {}\r\n",
            shorten(&one_line(&f.diagnostic), 900)
        ));
        m.push_str(&format!("Last-Attempt-Date: {date}\r\n"));
    }

    // Part 3: the original header section.
    m.push_str(&format!("\r\n--{boundary}\r\n"));
    m.push_str("Content-Type: text/rfc822-headers\r\n\r\n");
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(header_section(original_message));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let record = MailRecord {
        id,
        origin: Origin::Report,
        // RFC 5321 §4.5.5: notifications use the null reverse-path, so they can't loop.
        sender: String::new(),
        sender_source: SenderSource::Configured,
        from_name: Some("Mail Delivery System".into()),
        to: vec![Mailbox::bare(original.sender.clone())],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: None,
        subject,
        text: None,
        html: None,
        attachments: Vec::new(),
        source: original.source.clone(),
        received: now,
        // A report has no HTTP request of its own; its transcript says what it reports on.
        http_head: String::new(),
        http_response_head: String::new(),
        transcript: None,
        rejected: None,
        invalid_recipients: Vec::new(),
    };
    Some((record, bytes))
}

fn human_text(original: &MailRecord, failures: &[Failure]) -> String {
    let mut t = String::new();
    t.push_str("This is mailtap, the proxy that relayed your webmail message.\r\n\r\n");
    t.push_str(&format!(
        "Your message \"{}\" could not be delivered to {} of its recipients.\r\n",
        shorten(&one_line(&original.subject), 150),
        failures.len()
    ));
    for f in failures {
        t.push_str(&format!("\r\n<{}>:\r\n", one_line(&f.recipient)));
        if let Some(c) = &f.command {
            t.push_str(&format!("    mailtap said: {}\r\n", one_line(c)));
        }
        let who = match (&f.remote_mta, f.from_server) {
            (Some(mta), true) => format!("    {} replied:", one_line(mta)),
            (None, true) => "    the server replied:".to_string(),
            _ => "    reason:".to_string(),
        };
        t.push_str(&who);
        t.push_str("\r\n");
        for line in f.diagnostic.lines() {
            t.push_str(&format!("        {}\r\n", one_line(line)));
        }
    }
    t.push_str(&format!(
        "\r\nmailtap's id for your message: {} (its console, spool and Log-*.txt use it).\r\n",
        one_line(&original.id)
    ));
    t.push_str("The headers of your message follow in the last part of this report.\r\n");
    t
}

/// The header section of an RFC 5322 message (up to the first empty line), CRLF-terminated.
fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end]
}

/// At most `max` characters, with `…` when cut (keeps report lines under RFC 5322's 998).
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Control characters (CR, LF, …) can never start a new header or line in the report.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn host_part(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, h)| h.to_string())
        .unwrap_or_else(|| "localhost".into())
}

/// RFC 2047 encoded-word (UTF-8, base64) for non-ASCII header text; ASCII passes unchanged.
fn encode_header(text: &str) -> String {
    let text = one_line(text);
    if text.is_ascii() {
        return text;
    }
    use base64::Engine as _;
    // Encoded words are at most 75 characters (RFC 2047 §2): chunk on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::record::Source;

    fn original() -> MailRecord {
        MailRecord {
            id: "x".into(),
            origin: Origin::Webmail,
            sender: "lilei@example.com".into(),
            sender_source: SenderSource::Request,
            from_name: None,
            to: vec![Mailbox::bare("nobody@example.org")],
            cc: vec![],
            bcc: vec![],
            reply_to: None,
            subject: "实验报告 (100%)".into(),
            text: Some("hi".into()),
            html: None,
            attachments: vec![],
            source: Source {
                rule: "r".into(),
                webmail_host: "h".into(),
                client: "127.0.0.1:1".parse().unwrap(),
                proxy: "127.0.0.1:2".parse().unwrap(),
            },
            received: Utc::now(),
            http_head: String::new(),
            http_response_head: String::new(),
            transcript: None,
            rejected: None,
            invalid_recipients: Vec::new(),
        }
    }

    fn failure() -> Failure {
        Failure {
            recipient: "nobody@example.org".into(),
            status: "5.1.1".into(),
            command: Some("RCPT TO:<nobody@example.org>".into()),
            diagnostic: "550 5.1.1 <nobody@example.org>: Recipient address rejected".into(),
            from_server: true,
            remote_mta: Some("mx.example.org [127.0.0.1]:25".into()),
        }
    }

    #[test]
    fn report_has_the_three_rfc3464_parts() {
        // Guards the report's shape: human part quoting command + reply, DSN fields, headers.
        let msg = b"From: a@b.test\r\nSubject: hi\r\n\r\nbody line\r\n";
        let (record, bytes) = build(
            &original(),
            msg,
            &[failure()],
            &ReportConfig::default(),
            "mailtap@localhost",
            Utc::now(),
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"));
        assert!(text.contains("mailtap said: RCPT TO:<nobody@example.org>"));
        assert!(text.contains("550 5.1.1 <nobody@example.org>: Recipient address rejected"));
        assert!(text.contains(
            "Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1"));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: a@b.test\r\nSubject: hi\r\n"
        ));
        assert!(
            !text.contains("body line"),
            "the original body is not returned"
        );
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.lines().all(|l| l.len() <= 998));
        assert_eq!(record.origin, Origin::Report);
        assert_eq!(record.sender, "", "reports use the null reverse-path");
        assert_eq!(record.to[0].addr, "lilei@example.com");
    }

    #[test]
    fn no_report_about_a_report_or_without_sender() {
        // Guards loop prevention: reports and sender-less mails get no report.
        let mut r = original();
        r.origin = Origin::Report;
        assert!(build(
            &r,
            b"",
            &[failure()],
            &ReportConfig::default(),
            "m@l",
            Utc::now()
        )
        .is_none());
        let mut r = original();
        r.sender.clear();
        assert!(build(
            &r,
            b"",
            &[failure()],
            &ReportConfig::default(),
            "m@l",
            Utc::now()
        )
        .is_none());
    }

    #[test]
    fn hostile_values_stay_on_one_line() {
        // Guards header injection through subject, recipient or reply text.
        let mut r = original();
        r.subject = "x\r\nBcc: evil@example.net".into();
        let mut f = failure();
        f.recipient = "a@b\r\nX-Evil: 1".into();
        let (_, bytes) = build(
            &r,
            b"",
            &[f],
            &ReportConfig::default(),
            "m@l.test",
            Utc::now(),
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains("\r\nBcc:") && !text.contains("\r\nX-Evil"),
            "{text}"
        );
    }
}
