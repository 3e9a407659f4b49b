//! The SMTP protocol pieces client and server share, with no I/O: pure parsers and encoders,
//! unit-tested inline (and fuzzed).
//!
//! - `reply`: multi-line replies and enhanced status codes ([`Reply`](reply::Reply)).
//! - `caps`: EHLO keywords ([`Capabilities`](caps::Capabilities)).
//! - `data`: DATA preparation — dot-stuffing, size, SMTPUTF8 need.
//! - `auth`: SASL PLAIN/LOGIN payload encoding and decoding.

pub mod auth;
pub mod caps;
pub mod data;
pub mod reply;
