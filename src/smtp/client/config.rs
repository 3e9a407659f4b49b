//! The `[smtp]` configuration section for the SMTP client, plus the secret-holding types.
//!
//! Owns the names, defaults and validation of client settings (host, port, TLS mode, account,
//! RFC 5321 §4.5.3.2 timeouts, reply caps). It does not read files or the environment except in
//! [`Secret::from_env`]; reading `extra_roots` PEM files is the caller's job.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP for the whole session (lab use; visible in Wireshark).
    None,
    /// RFC 3207: plain greeting and EHLO, then `STARTTLS`; refused if the server lacks it.
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314, port 465).
    Implicit,
}

impl TlsMode {
    /// The conventional port: 25 for none, 587 for STARTTLS, 465 for implicit TLS.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Implicit => 465,
        }
    }
}

/// Per-stage timeouts in seconds. Defaults follow RFC 5321 §4.5.3.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect (and the TLS handshake of implicit TLS).
    pub connect_secs: u64,
    /// Waiting for the 220 greeting (RFC: 5 min).
    pub greeting_secs: u64,
    /// EHLO/HELO, STARTTLS + handshake, AUTH, RSET, QUIT replies.
    pub command_secs: u64,
    /// MAIL reply (RFC: 5 min).
    pub mail_secs: u64,
    /// Each RCPT reply (RFC: 5 min).
    pub rcpt_secs: u64,
    /// The 354 reply to DATA (RFC: 2 min).
    pub data_init_secs: u64,
    /// Each write of a data block (RFC: 3 min).
    pub data_block_secs: u64,
    /// The reply after the final `.` (RFC: 10 min).
    pub data_end_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_secs: 30,
            greeting_secs: 300,
            command_secs: 300,
            mail_secs: 300,
            rcpt_secs: 300,
            data_init_secs: 120,
            data_block_secs: 180,
            data_end_secs: 600,
        }
    }
}

impl Timeouts {
    /// Every timeout set to `secs` (tests use short ones).
    pub fn uniform(secs: u64) -> Self {
        Timeouts {
            connect_secs: secs,
            greeting_secs: secs,
            command_secs: secs,
            mail_secs: secs,
            rcpt_secs: secs,
            data_init_secs: secs,
            data_block_secs: secs,
            data_end_secs: secs,
        }
    }
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s.max(1))
}

/// The TOML `[smtp]` section: where and how to relay.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    pub host: String,
    /// `None` → [`TlsMode::default_port`].
    pub port: Option<u16>,
    pub tls: TlsMode,
    /// Name checked against the server certificate; `None` → `host`.
    pub tls_server_name: Option<String>,
    /// AUTH user; `None` → no AUTH.
    pub username: Option<String>,
    /// Name of the environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// PEM files with extra trusted roots (read by the caller; see [`super::ConnectOptions`]).
    pub extra_roots: Vec<PathBuf>,
    /// Name sent in EHLO/HELO; `None` → `localhost`.
    pub helo_name: Option<String>,
    /// Allow AUTH over an unencrypted connection (`tls = "none"`). Off by default.
    pub allow_plaintext_auth: bool,
    pub timeouts: Timeouts,
    /// Cap on one server reply in bytes (all lines plus CRLFs).
    pub max_reply_bytes: usize,
    /// Cap on the number of lines in one server reply.
    pub max_reply_lines: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            host: String::new(),
            port: None,
            tls: TlsMode::default(),
            tls_server_name: None,
            username: None,
            password_env: None,
            extra_roots: Vec::new(),
            helo_name: None,
            allow_plaintext_auth: false,
            timeouts: Timeouts::default(),
            max_reply_bytes: 16 * 1024,
            max_reply_lines: 100,
        }
    }
}

impl ClientConfig {
    /// The port to dial.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
    /// The name verified against the certificate.
    pub fn server_name(&self) -> &str {
        self.tls_server_name.as_deref().unwrap_or(&self.host)
    }
    /// The EHLO/HELO argument.
    pub fn helo(&self) -> &str {
        self.helo_name.as_deref().unwrap_or("localhost")
    }
    /// Checks the values that can be checked without I/O; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("smtp.host must not be empty".into());
        }
        if self.port == Some(0) {
            return Err("smtp.port must not be 0".into());
        }
        if self.username.is_some() && self.password_env.is_none() {
            return Err("smtp.password_env is required when smtp.username is set".into());
        }
        let helo = self.helo();
        if helo.is_empty() || !helo.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("smtp.helo_name {helo:?} is not a valid domain"));
        }
        if self.max_reply_bytes < 512 || self.max_reply_lines == 0 {
            return Err("smtp.max_reply_bytes must be ≥ 512 and max_reply_lines ≥ 1".into());
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so a future secret field cannot leak by accident: only names print.
        f.debug_struct("ClientConfig")
            .field("host", &self.host)
            .field("port", &self.effective_port())
            .field("tls", &self.tls)
            .field("tls_server_name", &self.tls_server_name)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("extra_roots", &self.extra_roots)
            .field("helo_name", &self.helo_name)
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// Reads the variable named `var`; `None` when unset or not UTF-8.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().map(Secret)
    }
    /// The secret itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads the AUTH password named by `cfg.password_env`. `Ok(None)` when no username is
/// configured; an error naming the variable when a username is set but the variable is not.
pub fn password_from_env(cfg: &ClientConfig) -> Result<Option<Secret>, String> {
    if cfg.username.is_none() {
        return Ok(None);
    }
    let var = cfg
        .password_env
        .as_deref()
        .ok_or("smtp.password_env is required when smtp.username is set")?;
    Secret::from_env(var)
        .map(Some)
        .ok_or_else(|| format!("environment variable {var} (smtp.password_env) is not set"))
}

/// Parses every `CERTIFICATE` block of a PEM bundle (an `extra_roots` file's bytes, read by
/// the caller). Errors name the block; a bundle without certificates is an error.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<native_tls::Certificate>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem).map_err(|_| "PEM file is not text".to_string())?;
    let mut out = Vec::new();
    let mut rest = text;
    // Bounded: each iteration consumes at least one BEGIN marker.
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after
            .find(END)
            .ok_or_else(|| format!("certificate {} has no END line", out.len() + 1))?;
        let block = &after[..end + END.len()];
        let cert = native_tls::Certificate::from_pem(block.as_bytes())
            .map_err(|e| format!("certificate {}: {e}", out.len() + 1))?;
        out.push(cert);
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_defaults_and_names() {
        // Guards: the `[smtp]` key names, defaults and port-by-TLS rule.
        let c: ClientConfig = toml::from_str("host = \"mx\"\ntls = \"implicit\"").unwrap();
        assert_eq!(c.effective_port(), 465);
        assert_eq!(c.timeouts.data_end_secs, 600);
        let c: ClientConfig = toml::from_str("host = \"mx\"\ntls = \"none\"").unwrap();
        assert_eq!(c.effective_port(), 25);
        let c: ClientConfig = toml::from_str("host = \"mx\"\nport = 2525").unwrap();
        assert_eq!((c.effective_port(), c.tls), (2525, TlsMode::Starttls));
        let c: ClientConfig =
            toml::from_str("host = \"mx\"\n[timeouts]\ngreeting_secs = 2").unwrap();
        assert_eq!(c.timeouts.greeting_secs, 2);
        assert_eq!(c.timeouts.mail_secs, 300);
    }

    #[test]
    fn unknown_keys_and_bad_values_rejected() {
        // Guards: typos are errors naming the key; invalid combinations fail validation.
        let e = toml::from_str::<ClientConfig>("host = \"mx\"\npasword_env = \"X\"").unwrap_err();
        assert!(e.to_string().contains("pasword_env"), "{e}");
        assert!(toml::from_str::<ClientConfig>("tls = \"ssl\"").is_err());
        let bad = [
            ClientConfig::default(),
            ClientConfig {
                host: "mx".into(),
                username: Some("u".into()),
                ..Default::default()
            },
            ClientConfig {
                host: "mx".into(),
                helo_name: Some("a b".into()),
                ..Default::default()
            },
            ClientConfig {
                host: "mx".into(),
                port: Some(0),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn debug_never_prints_secrets() {
        // Guards: a password never appears in Debug output.
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn pem_bundles_table() {
        // Guards: every certificate of a bundle is loaded; junk and truncation are errors.
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        let bundle = format!("# comment\n{}\n{}", a.cert.pem(), b.cert.pem());
        assert_eq!(certificates_from_pem(bundle.as_bytes()).unwrap().len(), 2);
        let truncated = &a.cert.pem()[..60];
        let garbage = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        for bad in ["", "hello", truncated, garbage] {
            assert!(certificates_from_pem(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(certificates_from_pem(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn password_lookup() {
        // Guards: the password comes from the named variable; a missing one names it.
        let mut c = ClientConfig {
            host: "mx".into(),
            ..Default::default()
        };
        assert_eq!(password_from_env(&c), Ok(None));
        c.username = Some("u".into());
        c.password_env = Some("MAILTAP_TEST_PW_SURELY_UNSET".into());
        let e = password_from_env(&c).unwrap_err();
        assert!(e.contains("MAILTAP_TEST_PW_SURELY_UNSET"));
        c.password_env = Some("PATH".into());
        assert!(password_from_env(&c).unwrap().is_some());
    }
}
