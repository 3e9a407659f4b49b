//! Renders a `MailRecord` to RFC 5322/MIME bytes and runs the pre-queue checks.
//!
//! Owns: header sanitising (no CR/LF/NUL can reach a header), the MIME shape (mail-builder makes
//! multipart/alternative for text+html and multipart/mixed with attachments; Bcc is envelope
//! only) and `check`, which marks a record rejected with a precise reason without dropping
//! anything. Does not dot-stuff (the SMTP DATA writer does) and does no I/O.

use std::borrow::Cow;

use mail_builder::headers::address::Address;
use mail_builder::MessageBuilder;

use super::address::validate_addr;
use super::record::{
    InvalidRecipient, MailRecord, Mailbox, RecipientField, Rejection, RejectionKind, SenderSource,
};

/// Rendering failed inside mail-builder (it writes to memory, so this is not expected).
#[derive(Debug)]
pub struct BuildError(pub std::io::Error);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rendering the message failed: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

/// Replaces every control character (CR, LF, NUL, …) with a space so a value can never end a
/// header line early and start another (RFC 5322 §2.2: header fields are single CRLF lines).
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().any(|c| c.is_control()) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

fn address(m: &Mailbox) -> Address<'_> {
    Address::new_address(m.name.as_deref().map(sanitize), sanitize(&m.addr))
}

/// The entries of `list` (the record's `field`) not refused on their own.
fn listed<'a>(record: &MailRecord, field: RecipientField, list: &'a [Mailbox]) -> Vec<&'a Mailbox> {
    list.iter()
        .filter(|m| record.invalid_entry(field, m).is_none())
        .collect()
}

fn address_list<'a>(list: &[&'a Mailbox]) -> Address<'a> {
    Address::new_list(list.iter().map(|m| address(m)).collect())
}

/// Renders the message: From (display name + envelope sender), To, Cc, Reply-To, Subject
/// (RFC 2047 when non-ASCII), Date (the received time), Message-ID (`<record id@sender
/// domain>`), text/html bodies and attachments. Bcc is never written.
pub fn render(record: &MailRecord) -> Result<Vec<u8>, BuildError> {
    let domain = record
        .sender
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty() && !d.chars().any(|c| c.is_control() || c == '>'))
        .unwrap_or("mailtap.invalid");
    let from = Mailbox {
        name: record.from_name.clone(),
        addr: record.sender.clone(),
    };
    let mut b = MessageBuilder::new()
        .from(Address::new_address(
            from.name.as_deref().map(|n| sanitize(n).into_owned()),
            sanitize(&from.addr).into_owned(),
        ))
        .subject(sanitize(&record.subject))
        // Local time with its offset (RFC 5322 §3.3), the clock the sender reads.
        .header(
            "Date",
            mail_builder::headers::raw::Raw::new(crate::clock::rfc5322(record.received)),
        )
        .message_id(format!("{}@{}", sanitize(&record.id), domain));
    // Recipients refused on their own get no mail, and their (invalid) addresses are kept
    // out of the headers the others receive.
    let to = listed(record, RecipientField::To, &record.to);
    if !to.is_empty() {
        b = b.to(address_list(&to));
    }
    let cc = listed(record, RecipientField::Cc, &record.cc);
    if !cc.is_empty() {
        b = b.cc(address_list(&cc));
    }
    if let Some(rt) = record.reply_to.as_deref().filter(|l| !l.is_empty()) {
        b = b.reply_to(address_list(&rt.iter().collect::<Vec<_>>()));
    }
    match (&record.text, &record.html) {
        (None, None) => b = b.text_body(""),
        (t, h) => {
            if let Some(t) = t {
                b = b.text_body(t.as_str());
            }
            if let Some(h) = h {
                b = b.html_body(h.as_str());
            }
        }
    }
    for a in &record.attachments {
        b = b.attachment(
            sanitize(&a.content_type).into_owned(),
            sanitize(&a.filename).into_owned(),
            a.data.as_slice(),
        );
    }
    b.write_to_vec().map_err(BuildError)
}

fn reject(record: &mut MailRecord, reason: String, kind: RejectionKind) {
    tracing::info!(id = %record.id, %reason, "mail rejected");
    record.rejected = Some(Rejection { reason, kind });
}

/// Why one listed mailbox cannot be used: its address fails strict validation, or its display
/// name holds a control character.
fn mailbox_error(m: &Mailbox) -> Option<super::address::AddressError> {
    if let Err(e) = validate_addr(&m.addr) {
        return Some(e);
    }
    m.name
        .as_deref()
        .is_some_and(super::address::has_control)
        .then(|| super::address::AddressError::ControlCharacter {
            addr: m.addr.clone(),
        })
}

/// Checks a record before it is queued. Recipients are independent: each invalid To/Cc/Bcc
/// entry is listed in `invalid_recipients` with its own reason, and the others still get the
/// mail. The whole mail is `rejected` (first failure wins, in this order) for: no sender; an
/// invalid sender; an invalid Reply-To address; no recipients at all; no valid recipient (the
/// first invalid one is named); rendered size over `max_message_bytes` (both sizes given).
/// Returns the rendered message when rendering happened (also when it was too large), so
/// callers do not render twice. Nothing is removed from the record. A record already rejected
/// is left as it is.
pub fn check(record: &mut MailRecord, max_message_bytes: u64) -> Option<Vec<u8>> {
    if record.rejected.is_some() {
        return None;
    }
    let mut invalid: Vec<InvalidRecipient> = Vec::new();
    for (field, m) in record.recipients_by_field() {
        if invalid.iter().any(|i| i.field == field && i.addr == m.addr) {
            continue;
        }
        if let Some(e) = mailbox_error(m) {
            invalid.push(InvalidRecipient {
                field,
                addr: m.addr.clone(),
                reason: format!("invalid {field} recipient {:?}: {}", m.addr, e.detail()),
            });
        }
    }
    for i in &invalid {
        tracing::info!(id = %record.id, reason = %i.reason, "recipient refused");
    }
    record.invalid_recipients = invalid;
    if record.sender_source == SenderSource::Unknown || record.sender.is_empty() {
        reject(
            record,
            "no envelope sender: the request carried no address and none is configured".into(),
            RejectionKind::NoSender,
        );
        return None;
    }
    if let Err(e) = validate_addr(&record.sender) {
        let addr = record.sender.clone();
        reject(
            record,
            format!("invalid sender {addr:?}: {e}"),
            RejectionKind::InvalidAddress { addr },
        );
        return None;
    }
    let reply_to = record.reply_to.as_deref().unwrap_or(&[]);
    if let Some((m, e)) = reply_to.iter().find_map(|m| Some((m, mailbox_error(m)?))) {
        let addr = m.addr.clone();
        reject(
            record,
            format!("invalid Reply-To address {addr:?}: {e}"),
            RejectionKind::InvalidAddress { addr },
        );
        return None;
    }
    if record.recipients().next().is_none() {
        reject(
            record,
            "no recipients (To, Cc and Bcc are empty)".into(),
            RejectionKind::NoRecipients,
        );
        return None;
    }
    if record.valid_recipients().next().is_none() {
        let first = record.invalid_recipients[0].clone();
        let reason = match record.invalid_recipients.len() {
            1 => first.reason,
            _ => format!(
                "no valid recipient: {}",
                record
                    .invalid_recipients
                    .iter()
                    .map(|i| i.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        reject(
            record,
            reason,
            RejectionKind::InvalidAddress { addr: first.addr },
        );
        return None;
    }
    match render(record) {
        Ok(bytes) => {
            let size = bytes.len() as u64;
            if size > max_message_bytes {
                reject(
                    record,
                    format!("message is {size} bytes, over the limit of {max_message_bytes} bytes"),
                    RejectionKind::TooLarge {
                        size,
                        limit: max_message_bytes,
                    },
                );
            }
            Some(bytes)
        }
        Err(e) => {
            reject(record, e.to_string(), RejectionKind::Unrenderable);
            None
        }
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
