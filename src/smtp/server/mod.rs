//! The built-in SMTP server: the zero-config upstream and the fault-injecting sink for tests.
//!
//! # Layout
//! - `config`: the `[builtin_smtp]` section ([`BuiltinSmtpConfig`], [`BuiltinAuth`]).
//! - `listener`: [`BuiltinServer`] — bind, accept loop, connection limit, shutdown.
//! - `shared`: the state every connection shares, and [`glob_match`] for recipient patterns.
//! - `session`: one connection's command dialogue and DATA reception.
//! - `auth`: AUTH PLAIN/LOGIN on the server side.
//! - `mailbox`: the on-disk store of received mail.
//!
//! Dependencies run one way: `listener` → `session` → (`auth`, `shared`) → `config`, `mailbox`.

mod auth;
mod config;
mod listener;
pub mod mailbox;
mod session;
mod shared;

pub use config::{BuiltinAuth, BuiltinSmtpConfig};
pub use listener::{BuiltinServer, ServerError};
/// The server's command-line parsing, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub use session::{parse_path, split_command};
pub use shared::glob_match;
