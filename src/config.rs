//! mailtap's configuration: the TOML file's sections, their defaults, and validation.
//!
//! Every section is a serde struct with `deny_unknown_fields`, so a misspelt key is an error
//! that names the key and its position. Each subsystem receives only its own section. This module
//! reads and checks the file; it opens no sockets and touches no other files.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::hostpat::{HostMap, HostPattern};
use crate::intercept::{InterceptConfig, RuleConfig, RuleSet};
use crate::queue::QueueConfig;
use crate::relay::RelayConfig;
use crate::report::ReportConfig;
use crate::smtp::{BuiltinSmtpConfig, ClientConfig};
use crate::translog::LogConfig;

mod explain;

/// The whole configuration file. Absent sections take their defaults, so an empty file (or no
/// file at all) is the zero-configuration run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxyConfig,
    /// Host pattern → address overrides applied before DNS (like `curl --resolve`).
    pub resolve: HostMap<IpAddr>,
    pub limits: LimitsConfig,
    pub paths: PathsConfig,
    pub intercept: InterceptConfig,
    /// Envelope sender per webmail host pattern, for webmails whose send request carries only
    /// an identity id. A key also names its host as a webmail (see `webmail_hosts`).
    pub senders: HostMap<String>,
    /// Extra or overriding interception rules (`[[rule]]`); built-ins ship in the binary.
    pub rule: Vec<RuleConfig>,
    pub queue: QueueConfig,
    pub log: LogConfig,
    /// The upstream SMTP server; absent → the built-in server is the upstream.
    pub smtp: Option<ClientConfig>,
    pub builtin_smtp: BuiltinSmtpConfig,
    pub report: ReportConfig,
    pub relay: RelayConfig,
    /// `[mitm]`: TLS interception of webmail hosts.
    pub mitm: crate::proxy::mitm::MitmConfig,
}

/// `[limits]`: sizes mailtap enforces on intercepted mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest rendered message relayed; a larger one is stored rejected and reported.
    pub max_message_bytes: u64,
    /// Largest intercepted request body read; a larger one gets 413 and is not forwarded.
    pub max_intercept_body_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 10 * 1024 * 1024,
            max_intercept_body_bytes: 50 * 1024 * 1024,
        }
    }
}

/// `[paths]`: where runtime data lives (relative paths are relative to the working directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Spool, built-in mailbox and CA live under here.
    pub data: PathBuf,
    /// `Log-*.txt` transcripts are written here.
    pub logs: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            data: PathBuf::from("data"),
            logs: PathBuf::from("logs"),
        }
    }
}

impl Config {
    /// The active interception rules: config rules first, then the built-ins they don't replace;
    /// rules that name no host apply to [`Config::webmail_hosts`].
    pub fn rule_set(&self) -> Result<RuleSet, ConfigError> {
        RuleSet::with_config(self.intercept.builtin_rules, self.rule.clone())
            .map(|set| set.with_named_hosts(self.webmail_hosts()))
            .map_err(|e| ConfigError::Invalid {
                key: "rule",
                reason: e.to_string(),
            })
    }

    /// The hosts the user named as (self-hosted) webmails: `[intercept].hosts`, the `[senders]`
    /// keys and `[mitm].decrypt_hosts`. Sorted, deduplicated.
    pub fn webmail_hosts(&self) -> Vec<HostPattern> {
        let mut hosts: Vec<HostPattern> = self
            .intercept
            .hosts
            .iter()
            .chain(self.senders.keys())
            .chain(&self.mitm.decrypt_hosts)
            .cloned()
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// `[proxy]`: the listening side, access control, limits and timeouts.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address the proxy listens on.
    pub listen: SocketAddr,
    /// Client networks allowed to use the proxy; others get 403.
    pub allow: Vec<IpNet>,
    /// Optional Basic proxy authentication.
    pub auth: Option<ProxyAuth>,
    /// Concurrent client connections (CONNECT tunnels included). At the limit mailtap stops
    /// accepting, so further clients wait in the kernel's backlog (back-pressure, not errors).
    pub max_connections: usize,
    /// Largest request head (request line + header fields) in bytes; larger → 431.
    pub max_header_bytes: usize,
    /// Time allowed for a complete request head, counted from when the connection starts waiting
    /// for one; it is therefore also the idle limit of a kept-alive client connection.
    pub header_timeout_secs: u64,
    /// Time allowed to resolve and connect to an origin or CONNECT target.
    pub connect_timeout_secs: u64,
    /// Time allowed for an origin to start its response once the request is sent; → 504.
    pub response_timeout_secs: u64,
    /// A CONNECT tunnel with no byte in either direction for this long is closed.
    pub tunnel_idle_timeout_secs: u64,
    /// Idle pooled connections to origins are closed after this long. Kept below the shortest
    /// common server keep-alive (Apache httpd and Node.js use 5 s) so that a request is not
    /// sent on a connection the origin is closing.
    pub upstream_idle_secs: u64,
    /// On Ctrl-C / SIGTERM: how long in-flight requests and tunnels may take to finish.
    pub shutdown_grace_secs: u64,
    /// Extra host patterns (`host` or `*.domain`) the PAC file sends through mailtap.
    pub pac_hosts: Vec<HostPattern>,
    /// Threads serving connections; 0 = half the CPU cores, at least one (mailtap shares the
    /// machine with the browser, and one thread gave the best tail latency on 2 cores).
    pub worker_threads: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8800)),
            allow: vec![
                "127.0.0.0/8".parse().expect("static CIDR"),
                "::1/128".parse().expect("static CIDR"),
            ],
            auth: None,
            max_connections: 16384,
            max_header_bytes: 64 * 1024,
            header_timeout_secs: 30,
            connect_timeout_secs: 10,
            response_timeout_secs: 120,
            tunnel_idle_timeout_secs: 600,
            upstream_idle_secs: 4,
            shutdown_grace_secs: 10,
            pac_hosts: Vec::new(),
            worker_threads: 0,
        }
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("listen", &self.listen)
            .field("allow", &self.allow)
            .field("auth", &self.auth)
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }
    pub fn tunnel_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tunnel_idle_timeout_secs)
    }
    pub fn upstream_idle(&self) -> Duration {
        Duration::from_secs(self.upstream_idle_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    /// The number of runtime worker threads to start (`worker_threads`, or half the cores).
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).max(1)
    }
}

/// `[proxy].auth`: Basic proxy authentication. The password is never in the file: it is read
/// from the environment variable `password_env` names.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuth {
    pub username: String,
    #[serde(default = "default_proxy_password_env")]
    pub password_env: String,
}

fn default_proxy_password_env() -> String {
    "MAILTAP_PROXY_PASSWORD".to_string()
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .finish()
    }
}

/// A configuration problem, with the key it concerns and why.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A value parsed but is not usable.
    Invalid { key: &'static str, reason: String },
    /// A problem in a file — TOML syntax, the schema (unknown key, wrong type) or a value
    /// that is not usable — located: the file, the line, the key and its value as written
    /// (each when known), and what is wrong or expected in words.
    At {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        value: Option<String>,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Invalid { key, reason } => write!(f, "invalid `{key}`: {reason}"),
            ConfigError::At {
                path,
                line,
                key,
                value,
                reason,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, ", line {line}")?;
                }
                match (key, value) {
                    (Some(k), Some(v)) => write!(f, ": {k} = {v}")?,
                    (Some(k), None) => write!(f, ": {k}")?,
                    _ => {}
                }
                write!(f, ": {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_located(&text, path)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_located(text, Path::new("<config>"))
    }

    /// Parses and validates `text` read from `path`; every error is located in it.
    fn parse_located(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let found = offset.and_then(|o| explain::locate_offset(text, o));
            let key = found.as_ref().map(|l| l.key.clone()).unwrap_or_default();
            ConfigError::At {
                path: path.to_path_buf(),
                line: found
                    .as_ref()
                    .map(|l| l.line)
                    .or_else(|| offset.map(|o| explain::line_of(text, o))),
                reason: explain::in_words(
                    e.message(),
                    &key,
                    found.as_ref().and_then(|l| l.value.as_deref()),
                ),
                key: found.as_ref().map(|l| l.key.clone()),
                value: found.and_then(|l| l.value),
            }
        })?;
        config
            .validate()
            .map_err(|e| locate_invalid(e, text, path))?;
        Ok(config)
    }

    /// Checks the values serde cannot: zero limits, empty names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.proxy;
        let positive: [(&'static str, u64); 6] = [
            ("proxy.max_connections", p.max_connections as u64),
            ("proxy.header_timeout_secs", p.header_timeout_secs),
            ("proxy.connect_timeout_secs", p.connect_timeout_secs),
            ("proxy.response_timeout_secs", p.response_timeout_secs),
            ("proxy.tunnel_idle_timeout_secs", p.tunnel_idle_timeout_secs),
            ("proxy.upstream_idle_secs", p.upstream_idle_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        if p.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "proxy.max_header_bytes",
                reason: format!("{} is too small (at least 1024)", p.max_header_bytes),
            });
        }
        if let Some(auth) = &p.auth {
            if auth.username.is_empty() || auth.username.contains(':') {
                return Err(ConfigError::Invalid {
                    key: "proxy.auth.username",
                    reason: "must be non-empty and contain no ':'".into(),
                });
            }
            if auth.password_env.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "proxy.auth.password_env",
                    reason: "must name an environment variable".into(),
                });
            }
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_message_bytes", limits.max_message_bytes),
            (
                "limits.max_intercept_body_bytes",
                limits.max_intercept_body_bytes,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        if usize::try_from(limits.max_intercept_body_bytes).is_err() {
            return Err(ConfigError::Invalid {
                key: "limits.max_intercept_body_bytes",
                reason: "too large for this machine".into(),
            });
        }
        self.intercept
            .validate()
            .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        self.queue.validate().map_err(|e| ConfigError::Invalid {
            key: "queue",
            reason: match e {
                crate::queue::QueueError::Config(reason) => reason,
                other => other.to_string(),
            },
        })?;
        for (host, sender) in self.senders.iter() {
            crate::mail::address::validate_addr(sender).map_err(|e| ConfigError::Invalid {
                key: "senders",
                reason: format!("{host} = {sender:?}: {e}"),
            })?;
        }
        if let Some(smtp) = &self.smtp {
            smtp.validate().map_err(|reason| ConfigError::Invalid {
                key: "smtp",
                reason,
            })?;
        }
        let (proxy, builtin) = (self.proxy.listen, self.builtin_smtp.listen);
        if self.smtp.is_none() && same_listener(proxy, builtin) {
            return Err(ConfigError::Invalid {
                key: "proxy.listen",
                reason: format!(
                    "the proxy (proxy.listen = {proxy}) and the built-in SMTP server \
                     (builtin_smtp.listen = {builtin}) cannot listen on the same address; give \
                     them different ports, or configure [smtp] to relay to another server"
                ),
            });
        }
        if self.relay.workers == 0 {
            return Err(ConfigError::Invalid {
                key: "relay.workers",
                reason: "must be greater than 0".into(),
            });
        }
        self.rule_set()?;
        self.mitm
            .validate()
            .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        Ok(())
    }
}

/// True when two listeners would fight over one port (same port, and the same IP or a
/// wildcard on either side). Port 0 never clashes: the system picks a free one.
fn same_listener(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Places a validation error in the file: the key it names (or, for a whole section, the key
/// its reason starts with; failing that, the first key its reason mentions that the file sets).
fn locate_invalid(e: ConfigError, text: &str, path: &Path) -> ConfigError {
    let ConfigError::Invalid { key, reason } = e else {
        return e;
    };
    let segments: Vec<&str> = key.split('.').collect();
    let mut reason = reason;
    let mut found = explain::locate_key(text, &segments);
    let is_section = found.as_ref().is_none_or(|l| l.value.is_none());
    if is_section {
        // "first_retry_secs = 0: …", "smtp.host must not be empty", "h.test = \"x@\": …"
        let token: String = reason
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let leaf = token
            .strip_prefix(&format!("{key}."))
            .unwrap_or(&token)
            .to_string();
        let mut refined = segments.clone();
        refined.push(&leaf);
        if let Some(l) = (!leaf.is_empty())
            .then(|| explain::locate_key(text, &refined))
            .flatten()
        {
            let rest = reason[token.len()..].to_string();
            let rest = match rest.strip_prefix(" = ") {
                Some(r) => r.split_once(": ").map_or(r, |(_, after)| after).to_string(),
                None => rest.trim_start_matches([':', ' ']).to_string(),
            };
            reason = rest;
            found = Some(l);
        }
    }
    if found.is_none() {
        found = reason
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter(|w| w.contains('.') && !w.starts_with('.') && !w.ends_with('.'))
            .find_map(|w| explain::locate_key(text, &w.split('.').collect::<Vec<_>>()));
    }
    match found {
        Some(l) => ConfigError::At {
            path: path.to_path_buf(),
            line: Some(l.line),
            key: Some(l.key),
            value: l.value,
            reason,
        },
        None => ConfigError::At {
            path: path.to_path_buf(),
            line: None,
            key: Some(key.to_string()),
            value: None,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        // Guards the zero-configuration run: no keys → every default.
        let c = Config::parse("").unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:8800".parse().unwrap());
        assert_eq!(c.proxy.allow.len(), 2);
        assert!(c.resolve.is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        // Guards that a misspelt key is an error naming the key, in any section.
        for (text, key) in [
            ("[proxy]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
            (
                "[proxy.auth]\nusername = \"a\"\npasword_env = \"X\"\n",
                "pasword_env",
            ),
            ("[proxi]\n", "proxi"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        // Guards validation beyond types: zero limits, bad CIDR, bad PAC host.
        for (text, key) in [
            ("[proxy]\nmax_connections = 0\n", "proxy.max_connections"),
            ("[proxy]\nmax_header_bytes = 10\n", "proxy.max_header_bytes"),
            ("[proxy]\nallow = [\"10.0.0.0/33\"]\n", "allow"),
            ("[proxy]\npac_hosts = [\"a b\"]\n", "pac_hosts"),
            ("[intercept]\nhosts = [\"*.*.x\"]\n", "hosts"),
            ("[senders]\n\"a/b\" = \"x@example.com\"\n", "a/b"),
            ("[resolve]\n\"x:80\" = \"127.0.0.1\"\n", "x:80"),
            ("[proxy.auth]\nusername = \"a:b\"\n", "proxy.auth.username"),
            ("[resolve]\n\"x.test\" = \"not-an-ip\"\n", "x.test"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} → {err}");
        }
    }

    #[test]
    fn full_section_parses() {
        // Guards the documented key names of [proxy] and [resolve].
        let c = Config::parse(
            "[proxy]\nlisten = \"0.0.0.0:3128\"\nallow = [\"10.0.0.0/8\"]\nauth = { username = \"lab\" }\n\
             pac_hosts = [\"*.example.test\"]\n[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n",
        )
        .unwrap();
        assert_eq!(c.proxy.listen.port(), 3128);
        assert_eq!(c.proxy.auth.unwrap().password_env, "MAILTAP_PROXY_PASSWORD");
        assert_eq!(
            c.resolve.get("webmail.example.test"),
            Some(&IpAddr::from([127, 0, 0, 1]))
        );
    }

    #[test]
    fn host_pattern_keys_name_key_value_and_expectation() {
        // Guards issue 11 item 1: every host pattern in the file is validated when read, and
        // the error names the key, the value and what is expected.
        for (text, key, value) in [
            ("[proxy]\npac_hosts = [\"a b\"]\n", "pac_hosts", "\"a b\""),
            (
                "[intercept]\nhosts = [\"http://x\"]\n",
                "hosts",
                "\"http://x\"",
            ),
            (
                "[mitm]\ndecrypt_hosts = [\"*.\"]\n",
                "decrypt_hosts",
                "\"*.\"",
            ),
            (
                "[senders]\n\"*.*.x\" = \"a@example.com\"\n",
                "senders",
                "\"*.*.x\"",
            ),
            ("[resolve]\n\"x y\" = \"127.0.0.1\"\n", "resolve", "\"x y\""),
            (
                "[[rule]]\nname = \"r\"\nhosts = [\"a:1\"]\npath = \"/\"\ndecoder = \"form\"\n",
                "hosts",
                "\"a:1\"",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(value) && err.contains("*.domain"),
                "{text:?} → {err}"
            );
        }
    }

    #[test]
    fn webmail_hosts_collect_every_place_a_webmail_is_named() {
        // Guards what counts as "named": [intercept].hosts, [senders] keys, [mitm].decrypt_hosts.
        let c = Config::parse(
            "[intercept]\nhosts = [\"A.test\"]\n[senders]\n\"*.B.test\" = \"x@example.com\"\n\
             [mitm]\ndecrypt_hosts = [\"c.test\", \"a.test.\"]\n[resolve]\n\"d.test\" = \"127.0.0.1\"\n",
        )
        .unwrap();
        let named: Vec<String> = c.webmail_hosts().iter().map(|h| h.to_string()).collect();
        assert_eq!(named, ["a.test", "*.b.test", "c.test"]);
        assert!(Config::parse("").unwrap().webmail_hosts().is_empty());
    }
}
