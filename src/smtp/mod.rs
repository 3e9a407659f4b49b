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
mod server_session;
pub mod transcript;

pub use caps::Capabilities;
pub use client::{ConnectOptions, Session};
pub use config::{ClientConfig, Secret, Timeouts, TlsMode};
pub use error::{Error, Stage};
pub use reply::{EnhancedCode, Reply};
pub use send::{Delivery, Envelope, RcptStatus};
pub use server::{BuiltinServer, BuiltinSmtpConfig};
pub use transcript::{NullTranscript, TlsInfo, Transcript, TranscriptEvent, VecTranscript};
