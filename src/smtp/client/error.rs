//! The SMTP client's error type: which stage failed, with the server's reply as evidence.
//!
//! Owns the stage names and the transient/permanent classification that the relay's retry
//! policy relies on. It does not decide what to do about an error.

use crate::smtp::proto::reply::{Reply, ReplyError};
use std::fmt;
use std::time::Duration;

/// Where in the session an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Tls,
    Auth,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Rset,
    Noop,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Tls => "TLS handshake",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::DataEnd => "end of data",
            Stage::Rset => "RSET",
            Stage::Noop => "NOOP",
            Stage::Quit => "QUIT",
        };
        f.write_str(s)
    }
}

/// An SMTP client failure.
#[derive(Debug)]
pub enum Error {
    /// The server answered with an unexpected reply. `command` is the line it answered as
    /// sent (AUTH payloads as `<redacted>`, `.` for end of data; `None` for the greeting);
    /// `reply` is the server's full reply.
    Reply {
        stage: Stage,
        command: Option<String>,
        reply: Reply,
    },
    /// Socket error.
    Io {
        stage: Stage,
        source: std::io::Error,
    },
    /// No answer within the configured time.
    Timeout { stage: Stage, after: Duration },
    /// The server closed the connection.
    Closed { stage: Stage },
    /// The server sent something that is not SMTP, or broke a limit.
    Protocol { stage: Stage, detail: String },
    /// TLS could not be set up (certificate not trusted, handshake failed, STARTTLS missing).
    Tls { stage: Stage, detail: String },
    /// The message is larger than the server's announced SIZE limit (RFC 1870); nothing sent.
    SizeExceeded { limit: u64, size: usize },
    /// An address needs SMTPUTF8 and the server does not offer it (RFC 6531 §3.4).
    Smtputf8Unsupported { address: String },
    /// An address that cannot be sent safely (control characters, `<`, `>`, spaces).
    InvalidAddress { address: String },
    /// Local configuration problem (missing password, AUTH not possible, bad value).
    Config(String),
    /// The session was broken by an earlier error and cannot be used.
    Unusable,
}

impl Error {
    /// The stage this error belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Error::Reply { stage, .. }
            | Error::Io { stage, .. }
            | Error::Timeout { stage, .. }
            | Error::Closed { stage }
            | Error::Protocol { stage, .. }
            | Error::Tls { stage, .. } => *stage,
            Error::SizeExceeded { .. }
            | Error::Smtputf8Unsupported { .. }
            | Error::InvalidAddress { .. } => Stage::Mail,
            Error::Config(_) | Error::Unusable => Stage::Connect,
        }
    }

    /// The server's reply, where the error is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Error::Reply { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The command line the server's reply answered, where the error is a reply.
    pub fn command(&self) -> Option<&str> {
        match self {
            Error::Reply { command, .. } => command.as_deref(),
            _ => None,
        }
    }

    /// True when trying again later may succeed: a 4yz reply, I/O errors, timeouts, a dropped
    /// connection, a garbled reply. 5yz replies, TLS/certificate failures, SIZE and SMTPUTF8
    /// refusals, bad addresses and configuration errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Reply { reply, .. } => reply.is_transient(),
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Closed { .. }
            | Error::Protocol { .. }
            | Error::Unusable => true,
            Error::Tls { .. }
            | Error::SizeExceeded { .. }
            | Error::Smtputf8Unsupported { .. }
            | Error::InvalidAddress { .. }
            | Error::Config(_) => false,
        }
    }

    pub(crate) fn from_reply_error(stage: Stage, e: ReplyError) -> Self {
        Error::Protocol {
            stage,
            detail: e.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reply {
                stage,
                command: Some(c),
                reply,
            } => write!(f, "{stage}: server replied {reply} to {c:?}"),
            Error::Reply {
                stage,
                command: None,
                reply,
            } => write!(f, "{stage}: server replied {reply}"),
            Error::Io { stage, source } => write!(f, "{stage}: I/O error: {source}"),
            Error::Timeout { stage, after } => {
                write!(f, "{stage}: no reply within {} s", after.as_secs_f64())
            }
            Error::Closed { stage } => write!(f, "{stage}: server closed the connection"),
            Error::Protocol { stage, detail } => write!(f, "{stage}: protocol error: {detail}"),
            Error::Tls { stage, detail } => write!(f, "{stage}: TLS error: {detail}"),
            Error::SizeExceeded { limit, size } => write!(
                f,
                "message of {size} bytes exceeds the server's SIZE limit of {limit} bytes"
            ),
            Error::Smtputf8Unsupported { address } => write!(
                f,
                "address {address:?} needs SMTPUTF8, which the server does not offer"
            ),
            Error::InvalidAddress { address } => {
                write!(f, "address {address:?} cannot be sent in an SMTP command")
            }
            Error::Config(s) => write!(f, "configuration: {s}"),
            Error::Unusable => f.write_str("session is unusable after an earlier error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![format!("{code} x")],
        }
    }

    #[test]
    fn transient_classification_table() {
        // Guards: the relay's retry decision — 4yz/IO/timeout transient, 5yz and local permanent.
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases: Vec<(Error, bool)> = vec![
            (
                Error::Reply {
                    stage: Stage::Rcpt,
                    command: None,
                    reply: reply(450),
                },
                true,
            ),
            (
                Error::Reply {
                    stage: Stage::Rcpt,
                    command: None,
                    reply: reply(550),
                },
                false,
            ),
            (
                Error::Reply {
                    stage: Stage::Greeting,
                    command: None,
                    reply: reply(554),
                },
                false,
            ),
            (
                Error::Io {
                    stage: Stage::Data,
                    source: io(),
                },
                true,
            ),
            (
                Error::Timeout {
                    stage: Stage::Mail,
                    after: Duration::from_secs(1),
                },
                true,
            ),
            (
                Error::Closed {
                    stage: Stage::DataEnd,
                },
                true,
            ),
            (
                Error::Protocol {
                    stage: Stage::Ehlo,
                    detail: "x".into(),
                },
                true,
            ),
            (
                Error::Tls {
                    stage: Stage::Tls,
                    detail: "unknown issuer".into(),
                },
                false,
            ),
            (Error::SizeExceeded { limit: 1, size: 2 }, false),
            (
                Error::Smtputf8Unsupported {
                    address: "é@x".into(),
                },
                false,
            ),
            (Error::Config("x".into()), false),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_transient(), want, "{e}");
        }
    }

    #[test]
    fn display_quotes_stage_and_reply() {
        // Guards: error text names the stage and quotes the server's full reply.
        let e = Error::Reply {
            stage: Stage::Rcpt,
            command: Some("RCPT TO:<x@y>".into()),
            reply: Reply {
                code: 550,
                enhanced: None,
                lines: vec!["550-5.1.1 no".into(), "550 such user".into()],
            },
        };
        assert_eq!(
            e.to_string(),
            "RCPT: server replied 550-5.1.1 no / 550 such user to \"RCPT TO:<x@y>\""
        );
        assert_eq!(e.stage(), Stage::Rcpt);
        assert_eq!(e.reply().map(|r| r.code), Some(550));
        assert_eq!(e.command(), Some("RCPT TO:<x@y>"));
    }
}
