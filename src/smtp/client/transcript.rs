//! Transcript observer: the events an SMTP session reports for Log-*.txt and the console.
//!
//! Owns the event vocabulary and the rule that secrets are redacted *before* an event is
//! emitted (AUTH payloads arrive here as `<redacted>`). It does not timestamp, format files or
//! decide whether to keep message bodies: the writer does ([`Transcript::wants_body`]).

use super::error::Error;
use std::net::SocketAddr;

/// What is known about an established TLS layer.
///
/// native-tls exposes neither the negotiated protocol version nor the cipher suite; they are
/// read from the server's ServerHello on the wire (`tls_sniff`) and are `None` only if that
/// could not be parsed. `peer_cert_hash` is the RFC 5929 `tls-server-end-point` hash of the
/// server certificate (hex), identifying the certificate that was verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub peer_cert_hash: Option<String>,
    /// The name the certificate was verified against.
    pub verified_name: String,
}

/// One observable step of a session.
#[derive(Debug)]
pub enum TranscriptEvent<'a> {
    /// TCP connected.
    Connected {
        local: SocketAddr,
        remote: SocketAddr,
        server_name: &'a str,
    },
    /// TLS handshake completed (implicit or after STARTTLS).
    Tls(&'a TlsInfo),
    /// A command line sent (without CRLF); AUTH payloads are already `<redacted>`.
    Sent(&'a str),
    /// A reply line received (without CRLF).
    Received(&'a str),
    /// The message about to be sent after 354: its headers and the body size in octets.
    DataSummary {
        header_block: &'a str,
        body_bytes: usize,
    },
    /// The full stuffed payload (without the final `.` line); only if `wants_body()`.
    Data(&'a [u8]),
    /// The session ended with QUIT.
    Closed,
    /// The session (or one transaction) failed with this error.
    Error(&'a Error),
}

/// Receives transcript events. Implementations must not block for long: they run inline.
/// `Send` so that sessions (which hold `&mut dyn Transcript` across awaits) can run in
/// spawned tasks.
pub trait Transcript: Send {
    fn event(&mut self, ev: TranscriptEvent<'_>);
    /// Whether [`TranscriptEvent::Data`] should be emitted (the `log_body` setting).
    fn wants_body(&self) -> bool {
        false
    }
}

/// A transcript that discards everything.
#[derive(Debug, Default)]
pub struct NullTranscript;

impl Transcript for NullTranscript {
    fn event(&mut self, _ev: TranscriptEvent<'_>) {}
}

/// Collects `C: ...` / `S: ...` lines (and `*` lines for other events): for tests and debugging.
#[derive(Debug, Default)]
pub struct VecTranscript {
    pub lines: Vec<String>,
    pub log_body: bool,
}

impl VecTranscript {
    pub fn new() -> Self {
        Self::default()
    }
    /// Only the `C:` and `S:` lines, in order.
    pub fn dialogue(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.starts_with("C: ") || l.starts_with("S: "))
            .map(String::as_str)
            .collect()
    }
}

impl Transcript for VecTranscript {
    fn event(&mut self, ev: TranscriptEvent<'_>) {
        let line = match ev {
            TranscriptEvent::Connected {
                local,
                remote,
                server_name,
            } => format!("* connected {local} -> {remote} ({server_name})"),
            TranscriptEvent::Tls(info) => format!(
                "* tls version={} cipher={} name={}",
                info.version.as_deref().unwrap_or("unknown"),
                info.cipher.as_deref().unwrap_or("unknown"),
                info.verified_name
            ),
            TranscriptEvent::Sent(l) => format!("C: {l}"),
            TranscriptEvent::Received(l) => format!("S: {l}"),
            TranscriptEvent::DataSummary {
                header_block,
                body_bytes,
            } => format!("* data headers={header_block:?} body_bytes={body_bytes}"),
            TranscriptEvent::Data(d) => format!("* body {:?}", String::from_utf8_lossy(d)),
            TranscriptEvent::Closed => "* closed".to_string(),
            TranscriptEvent::Error(e) => format!("* error {e}"),
        };
        self.lines.push(line);
    }
    fn wants_body(&self) -> bool {
        self.log_body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_transcript_formats() {
        // Guards: the test transcript prefixes directions and filters dialogue lines.
        let mut t = VecTranscript::new();
        t.event(TranscriptEvent::Sent("EHLO x"));
        t.event(TranscriptEvent::Received("250 ok"));
        t.event(TranscriptEvent::Closed);
        assert_eq!(t.dialogue(), vec!["C: EHLO x", "S: 250 ok"]);
        assert_eq!(t.lines.len(), 3);
        assert!(!t.wants_body());
    }
}
