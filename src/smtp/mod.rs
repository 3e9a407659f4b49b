//! SMTP: a hand-written async client (RFC 5321 and extensions) and the built-in SMTP server.
//!
//! The client owns the protocol only — connect, TLS, AUTH, transactions, per-recipient
//! outcomes, transcript events — and does no file I/O; retry policy, queueing and log files
//! belong to the relay and translog. The built-in server ([`server`]) is the zero-config
//! upstream and the fault-injecting sink for tests; it stores mail under a mailbox directory.
//!
//! ```text
//! Session::connect(cfg, opts, transcript) → session.send(envelope, bytes, transcript)* → quit
//! ```
//!
//! # Layout
//! - `config`: the `[smtp]` section ([`ClientConfig`], [`Timeouts`], [`TlsMode`]) and [`Secret`].
//! - `client`: session setup — connect, greeting, EHLO/HELO, STARTTLS/implicit TLS, AUTH, QUIT.
//! - `send`: one transaction — MAIL/RCPT (pipelined when offered), DATA, per-recipient outcome.
//! - `conn`: timed reads/writes, transcript emission, TLS handshakes with verification.
//! - `reply`, `caps`, `data`, `auth`: pure parsers/encoders (replies, EHLO keywords,
//!   dot-stuffing, SASL payloads), unit-tested inline.
//! - `error`: [`Error`] with its [`Stage`] and `is_transient()`.
//! - `transcript`: the observer trait the Log-*.txt writer implements.
//! - `io`: the plain/TLS stream and bounded line reader shared by client and server.
//! - `tls_sniff`: negotiated TLS version and cipher read from the ServerHello on the wire.
//! - `server`, `server_session`, `server_auth`, `mailbox`: the built-in SMTP server
//!   (`[builtin_smtp]`, [`BuiltinSmtpConfig`]) and its on-disk mailbox.

pub mod auth;
pub mod caps;
mod client;
pub mod config;
mod conn;
pub mod data;
pub mod error;
pub mod io;
pub mod mailbox;
pub mod reply;
mod send;
pub mod server;
mod server_auth;
mod server_session;
pub mod tls_sniff;
pub mod transcript;

/// The built-in server's command-line parsing, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub use server_session::{parse_path, split_command};

pub use caps::Capabilities;
pub use client::{ConnectOptions, Session};
pub use config::{
    certificates_from_pem, password_from_env, ClientConfig, Secret, Timeouts, TlsMode,
};
pub use error::{Error, Stage};
pub use reply::{EnhancedCode, Reply};
pub use send::{Delivery, Envelope, RcptStatus};
pub use server::{BuiltinServer, BuiltinSmtpConfig};
pub use transcript::{NullTranscript, TlsInfo, Transcript, TranscriptEvent, VecTranscript};
