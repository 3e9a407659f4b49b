//! `MailRecord`: the one owned, serde-serialisable type that crosses from the HTTP half to the
//! SMTP half.
//!
//! Owns the record's shape, its id generation and the redacted rendering of the intercepted HTTP
//! head. Does not validate or render the mail (see `mail::build`) and holds no hyper/tokio types.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a record came from: an intercepted webmail send, or an error report mailtap wrote.
/// Reports are never reported on again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    Webmail,
    Report,
}

/// Which source gave the envelope sender, so logs can say which one was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SenderSource {
    /// The intercepted request carried the address.
    Request,
    /// A per-rule `sender` or a per-host `[senders]` entry from the configuration.
    Configured,
    /// The configured SMTP account (`[smtp].username`).
    SmtpAccount,
    /// Nothing supplied an address; `check` rejects such a record with `NoSender`.
    Unknown,
}

/// One mailbox: an optional display name (kept verbatim, nothing decoded) and an addr-spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub addr: String,
}

impl Mailbox {
    /// A mailbox with no display name.
    pub fn bare(addr: impl Into<String>) -> Self {
        Mailbox {
            name: None,
            addr: addr.into(),
        }
    }
}

/// One attachment; `data` serialises as a standard base64 string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Where an intercepted mail was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub rule: String,
    pub webmail_host: String,
    pub client: SocketAddr,
    pub proxy: SocketAddr,
}

/// Why a record must not be delivered (it is kept whole and reported to the sender instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Human-readable, precise: names the address or gives the sizes.
    pub reason: String,
    pub kind: RejectionKind,
}

/// The machine-readable class of a rejection, carrying its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionKind {
    /// No envelope sender could be determined.
    NoSender,
    /// This address (sender or recipient) failed strict validation.
    InvalidAddress { addr: String },
    /// To, Cc and Bcc are all empty.
    NoRecipients,
    /// The rendered message is `size` bytes, over the `limit`.
    TooLarge { size: u64, limit: u64 },
    /// The message could not be rendered at all.
    Unrenderable,
}

/// The envelope field a recipient was listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecipientField {
    To,
    Cc,
    Bcc,
}

impl std::fmt::Display for RecipientField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecipientField::To => "To",
            RecipientField::Cc => "Cc",
            RecipientField::Bcc => "Bcc",
        })
    }
}

/// A recipient that failed the checks on its own: it gets no mail and the sender a report
/// naming it with `reason`; the other recipients are not affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidRecipient {
    pub field: RecipientField,
    /// The address exactly as listed.
    pub addr: String,
    /// Human-readable: names the field, the address and what is wrong with it.
    pub reason: String,
}

/// An intercepted (or generated) mail, complete and owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRecord {
    /// The mail's one id (a [`crate::queue::MailId`]): spool directory, Message-ID local part,
    /// transcript, console and reports all use it.
    pub id: String,
    pub origin: Origin,
    /// Envelope sender addr-spec (empty when `sender_source` is `Unknown`).
    pub sender: String,
    pub sender_source: SenderSource,
    /// Display name for the From header.
    pub from_name: Option<String>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Envelope only: never written as a header.
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Vec<Mailbox>>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub source: Source,
    /// Serialised as RFC 3339 with microseconds.
    #[serde(with = "rfc3339")]
    pub received: DateTime<Utc>,
    /// The intercepted request head as text with secrets redacted (see `redact_head`).
    pub http_head: String,
    /// The response head mailtap sent the browser for this request, when mailtap answered it
    /// (relay mode); empty otherwise.
    #[serde(default)]
    pub http_response_head: String,
    /// File name (in the logs directory) of this mail's `Log-*.txt`, created when the mail was
    /// taken; every SMTP attempt is appended to it. `None` in records from before it existed.
    #[serde(default)]
    pub transcript: Option<String>,
    pub rejected: Option<Rejection>,
    /// Recipients `check` refused one by one (set by `check`; the record still lists them in
    /// `to`/`cc`/`bcc`). They are left out of the envelope and the rendered headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_recipients: Vec<InvalidRecipient>,
}

impl MailRecord {
    /// Every envelope recipient: To, then Cc, then Bcc, in request order.
    pub fn recipients(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(self.cc.iter()).chain(self.bcc.iter())
    }

    /// Every recipient with the field it was listed in, To, then Cc, then Bcc.
    pub fn recipients_by_field(&self) -> impl Iterator<Item = (RecipientField, &Mailbox)> {
        let tag = |field| move |m| (field, m);
        self.to
            .iter()
            .map(tag(RecipientField::To))
            .chain(self.cc.iter().map(tag(RecipientField::Cc)))
            .chain(self.bcc.iter().map(tag(RecipientField::Bcc)))
    }

    /// Why this entry was refused on its own, when it was.
    pub fn invalid_entry(&self, field: RecipientField, m: &Mailbox) -> Option<&InvalidRecipient> {
        self.invalid_recipients
            .iter()
            .find(|i| i.field == field && i.addr == m.addr)
    }

    /// The recipients the mail goes to: every entry not refused on its own.
    pub fn valid_recipients(&self) -> impl Iterator<Item = (RecipientField, &Mailbox)> {
        self.recipients_by_field()
            .filter(|(f, m)| self.invalid_entry(*f, m).is_none())
    }
}

/// A new unique mail id (see [`crate::queue::MailId::new`]): the record keeps it, the spool
/// names the mail's directory by it, and the Message-ID, transcript and reports show it.
pub fn new_id(now: DateTime<Utc>) -> String {
    crate::queue::MailId::new(now).to_string()
}

/// Renders a request head as text (`METHOD URI HTTP/1.1` then `Name: value` lines, CRLF-free,
/// one per line), with secrets `<redacted>` by the transcripts' rules (cookies, credentials,
/// token fields, session parameters in the URI and in URL-valued fields), so the spool keeps
/// no more than the Log-*.txt shows. Non-UTF-8 header bytes are shown lossily.
pub fn redact_head(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> String {
    use crate::redact::{redact_url, redact_value};
    let mut out = format!("{method} {} HTTP/1.1\n", redact_url(&uri.to_string()));
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).replace(['\r', '\n'], " ");
        let shown = redact_value(name.as_str(), &text);
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&shown);
        out.push('\n');
    }
    out
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Streams the encoding through `collect_str` (serde_json writes it straight into its
    /// output): no second whole-attachment string in memory while the metadata is written.
    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Encoded(data))
    }

    struct Encoded<'a>(&'a [u8]);

    impl std::fmt::Display for Encoded<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Whole 3-byte groups per step, so the pieces join into one valid encoding.
            let mut buf = [0u8; 4096];
            for chunk in self.0.chunks(3072) {
                let n = base64::engine::general_purpose::STANDARD
                    .encode_slice(chunk, &mut buf)
                    .map_err(|_| std::fmt::Error)?;
                f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)?;
            }
            Ok(())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_headers_only() {
        // Cookie/Authorization/Proxy-Authorization never appear in clear in the logged head.
        let mut h = http::HeaderMap::new();
        h.insert("cookie", "sid=SECRET1".parse().unwrap());
        h.insert("authorization", "Basic SECRET2".parse().unwrap());
        h.insert("proxy-authorization", "Basic SECRET3".parse().unwrap());
        h.insert("user-agent", "ua/1".parse().unwrap());
        let uri: http::Uri = "http://h.test/p?q=1".parse().unwrap();
        let text = redact_head(&http::Method::POST, &uri, &h);
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(text.matches("<redacted>").count(), 3);
        assert!(text.starts_with("POST http://h.test/p?q=1 HTTP/1.1\n"));
        assert!(text.contains("user-agent: ua/1\n"));
    }

    #[test]
    fn ids_are_unique_and_record_roundtrips() {
        // Ids never repeat in a burst; attachment bytes survive a JSON round trip as base64.
        let now = Utc::now();
        let ids: std::collections::BTreeSet<_> = (0..1000).map(|_| new_id(now)).collect();
        assert_eq!(ids.len(), 1000);
        let att = Attachment {
            filename: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            data: vec![0, 1, 2, 255],
        };
        let json = serde_json::to_string(&att).unwrap();
        assert!(json.contains("\"AAEC/w==\""), "{json}");
        let back: Attachment = serde_json::from_str(&json).unwrap();
        assert_eq!(back, att);
    }
}
