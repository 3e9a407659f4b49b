//! The `[builtin_smtp]` section: listen address, mailbox, STARTTLS, AUTH account and the
//! fault-injection knobs tests use.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// AUTH account for the built-in server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinAuth {
    pub username: String,
    /// Environment variable holding the password (read at bind).
    pub password_env: String,
}

/// The TOML `[builtin_smtp]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinSmtpConfig {
    pub listen: SocketAddr,
    /// Name in the greeting, EHLO reply and the certificate.
    pub hostname: String,
    /// Advertised as `SIZE`; larger messages get `552 5.3.4`.
    pub max_message_bytes: u64,
    /// Case-insensitive globs (`*`, `?`); matching recipients get `550 5.1.1`.
    pub reject_recipients: Vec<String>,
    /// The first N MAIL commands this server receives, counted globally across all connections
    /// since bind, get `451 4.3.0` (to show retries).
    pub temp_fail_first_n: u64,
    /// Offer STARTTLS with a self-signed certificate minted at bind.
    pub starttls: bool,
    /// Require AUTH PLAIN/LOGIN before MAIL.
    pub auth: Option<BuiltinAuth>,
    pub max_connections: usize,
    pub max_recipients: usize,
    /// Longest accepted command line, in bytes including CRLF.
    pub max_line_bytes: usize,
    /// Wait for a command (RFC 5321 §4.5.3.2.7: at least 5 min).
    pub command_timeout_secs: u64,
    /// Wait for each line of message data.
    pub data_timeout_secs: u64,
    /// fsync each stored message and the directory before answering 250. Turning it off
    /// trades crash safety for speed (benchmarks, throw-away labs).
    pub fsync: bool,
}

impl Default for BuiltinSmtpConfig {
    fn default() -> Self {
        BuiltinSmtpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: "mailtap.localhost".into(),
            max_message_bytes: 10 * 1024 * 1024,
            reject_recipients: vec!["nobody@*".into()],
            temp_fail_first_n: 0,
            starttls: false,
            auth: None,
            max_connections: 64,
            max_recipients: 100,
            max_line_bytes: 2048,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            fsync: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        // Guards: `[builtin_smtp]` defaults and rejection of unknown keys.
        let c: BuiltinSmtpConfig = toml::from_str("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(c.reject_recipients, vec!["nobody@*"]);
        let e = toml::from_str::<BuiltinSmtpConfig>("lisen = \"x\"").unwrap_err();
        assert!(e.to_string().contains("lisen"));
        let c: BuiltinSmtpConfig =
            toml::from_str("starttls = true\n[auth]\nusername = \"u\"\npassword_env = \"P\"")
                .unwrap();
        assert!(c.starttls && c.auth.is_some());
    }
}
