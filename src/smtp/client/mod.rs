//! The SMTP client: session setup (connect, greeting, EHLO, TLS, AUTH, QUIT), mail
//! transactions with per-recipient outcomes, and the transcript events it emits.
//!
//! # Layout
//! - `config`: the `[smtp]` section ([`ClientConfig`], [`Timeouts`], [`TlsMode`]) and [`Secret`].
//! - `session`: [`Session`] setup and teardown — connect, greeting, EHLO/HELO, STARTTLS/implicit
//!   TLS, AUTH, RSET, QUIT.
//! - `send`: one transaction — MAIL/RCPT (pipelined when offered), DATA, per-recipient outcome.
//! - `conn`: timed reads/writes, transcript emission, TLS handshakes with verification.
//! - `error`: [`Error`] with its [`Stage`] and `is_transient()`.
//! - `transcript`: the observer trait the Log-*.txt writer implements.

pub mod config;
mod conn;
pub mod error;
mod send;
mod session;
pub mod transcript;

pub use config::{
    certificates_from_pem, password_from_env, ClientConfig, Secret, Timeouts, TlsMode,
};
pub use error::{Error, Stage};
pub use send::{Delivery, Envelope, RcptStatus};
pub use session::{ConnectOptions, Session};
pub use transcript::{NullTranscript, TlsInfo, Transcript, TranscriptEvent, VecTranscript};
