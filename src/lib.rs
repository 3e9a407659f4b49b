//! mailtap: an HTTP forward proxy that intercepts webmail "send" requests and relays the mail
//! over a hand-written SMTP client.
//!
//! Ordinary HTTP and CONNECT traffic passes through untouched; requests that interception rules
//! match are taken off the streaming path.
//!
//! # Layout
//! - [`config`]: the TOML file's sections, defaults and validation.
//! - [`hostpat`]: host patterns (`host`, `*.domain`), the one syntax and matching every section
//!   and rule uses.
//! - [`app`]: wiring and shutdown; starts everything (also from tests, on port 0).
//! - [`blocking`]: the thread pool for blocking work; a refused thread never panics.
//! - [`proxy`]: accept loop and connection limit, request dispatch, streaming forward path,
//!   CONNECT tunnels, the proxy's own pages (home, PAC), and the [`proxy::Interceptor`] seam.
//! - [`intercept`]: interception rules (built-in TOML + `[[rule]]`), body decoders and
//!   extractors, upload correlation, sender resolution, and what binds a send to a real webmail
//!   session (cookies the webmail set through mailtap, the cross-site check).
//! - [`mail`]: the `MailRecord`, address parsing/validation, MIME rendering and checks.
//! - [`capture`]: the interceptor joining proxy → intercept → mail → queue.
//! - [`capture_body`]: reading an intercepted body under its size, time and memory bounds.
//! - [`queue`]: the durable spool (the durability line), claims, retry schedule, recovery.
//! - [`redact`]: secrets out of stored and shown text (header values, query parameters, AUTH
//!   payloads, forged line breaks); used by the spool, the transcripts and the relay.
//! - [`translog`]: one `Log-<timestamp>.txt` transcript per mail transaction.
//! - [`smtp`]: `client/` (the hand-written async SMTP client), `server/` (the built-in SMTP
//!   server and its mailbox) and `proto/` (reply parser, EHLO keywords, dot-stuffing, SASL
//!   encoding: no I/O) that both use.
//! - [`relay`]: `worker` (delivery loop: spool → SMTP) and `conclude` (per-recipient outcomes,
//!   retries, error reports, console), the data between them in `attempt`.
//! - [`report`]: RFC 3464 error reports to the sender.
//! - [`private_fs`]: owner-only modes for the files that hold mail, transcripts and keys.
//! - [`clock`]: the human-read time formats (local time with its offset).
//! - [`sys`]: every operating-system call std and tokio lack (spool lock, `syncfs`, half-close,
//!   descriptor limit, Linux `splice`), through safe wrappers; no `unsafe` anywhere.

#![deny(unsafe_code)]

pub mod app;
pub mod blocking;
pub mod capture;
pub mod capture_body;
pub mod clock;
pub mod config;
pub mod hostpat;
pub mod intercept;
pub mod mail;
pub mod private_fs;
pub mod proxy;
pub mod queue;
pub mod redact;
pub mod relay;
pub mod report;
pub mod smtp;
pub mod sys;
pub mod translog;
