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
//! - `client/`: the client — `[smtp]` config, session setup, transactions, timed I/O with
//!   transcript events, [`Error`] with its [`Stage`]. See [`client`].
//! - `server/`: the built-in server (`[builtin_smtp]`, [`BuiltinSmtpConfig`]) and its on-disk
//!   mailbox. See [`server`].
//! - `proto/`: what both halves speak, with no I/O — `reply`, `caps`, `data` (dot-stuffing),
//!   `auth` (SASL payloads). Re-exported here under their old paths (`smtp::reply`, …).
//! - `io`: the plain/TLS stream and bounded line reader shared by client and server.
//! - `tls_sniff`: negotiated TLS version and cipher read from the ServerHello on the wire.
//!
//! Dependencies run one way: `client` and `server` use `proto`, `io` and `tls_sniff`; those
//! use neither half. The server borrows the client's [`Secret`] type only.

pub mod client;
pub mod io;
pub mod proto;
pub mod server;
pub mod tls_sniff;

pub use client::{config, error, transcript};
pub use proto::{auth, caps, data, reply};
pub use server::mailbox;

/// The built-in server's command-line parsing, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub use server::{parse_path, split_command};

pub use caps::Capabilities;
pub use client::{
    certificates_from_pem, password_from_env, ClientConfig, ConnectOptions, Delivery, Envelope,
    Error, NullTranscript, RcptStatus, Secret, Session, Stage, Timeouts, TlsInfo, TlsMode,
    Transcript, TranscriptEvent, VecTranscript,
};
pub use reply::{EnhancedCode, Reply};
pub use server::{BuiltinServer, BuiltinSmtpConfig};
