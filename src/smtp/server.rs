//! The built-in SMTP server: config section `[builtin_smtp]`, listener, accept loop, shutdown.
//!
//! Owns binding, the connection limit, the optional self-signed STARTTLS identity (minted with
//! rcgen at bind), the AUTH account, and the shared fault-injection state. The per-connection
//! dialogue is in `server_session.rs`; storage is [`super::mailbox`].

use super::config::Secret;
use super::mailbox::{Mailbox, MailboxError};
use super::server_session;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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

/// Failures starting the server.
#[derive(Debug)]
pub enum ServerError {
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Mailbox(MailboxError),
    Tls(String),
    Config(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Mailbox(e) => write!(f, "mailbox: {e}"),
            ServerError::Tls(s) => write!(f, "STARTTLS certificate: {s}"),
            ServerError::Config(s) => write!(f, "builtin_smtp: {s}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// State shared by all connections of one server.
pub(crate) struct Shared {
    pub cfg: BuiltinSmtpConfig,
    pub mailbox: Mailbox,
    pub acceptor: Option<tokio_native_tls::TlsAcceptor>,
    pub password: Option<Secret>,
    /// MAIL commands seen so far (for `temp_fail_first_n`).
    pub mail_attempts: AtomicU64,
}

/// A bound, not yet running, built-in SMTP server.
pub struct BuiltinServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    cert_pem: Option<String>,
}

impl BuiltinServer {
    /// Binds `cfg.listen`, opens `mailbox_dir`, reads the AUTH password from its variable and
    /// mints the STARTTLS certificate if enabled.
    pub async fn bind(cfg: BuiltinSmtpConfig, mailbox_dir: PathBuf) -> Result<Self, ServerError> {
        if cfg.max_connections == 0 || cfg.max_recipients == 0 || cfg.max_line_bytes < 512 {
            return Err(ServerError::Config(
                "max_connections and max_recipients must be ≥ 1, max_line_bytes ≥ 512".into(),
            ));
        }
        let password = match &cfg.auth {
            Some(a) => Some(Secret::from_env(&a.password_env).ok_or_else(|| {
                ServerError::Config(format!("auth.password_env {} is not set", a.password_env))
            })?),
            None => None,
        };
        let (acceptor, cert_pem) = if cfg.starttls {
            let (a, pem) = self_signed_acceptor(&cfg.hostname)?;
            (Some(a), Some(pem))
        } else {
            (None, None)
        };
        // Bind before the mailbox directory is created: a busy port leaves nothing on disk.
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let mailbox = Mailbox::open(mailbox_dir, cfg.fsync).map_err(ServerError::Mailbox)?;
        Ok(BuiltinServer {
            listener,
            shared: Arc::new(Shared {
                cfg,
                mailbox,
                acceptor,
                password,
                mail_attempts: AtomicU64::new(0),
            }),
            cert_pem,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The self-signed STARTTLS certificate (PEM), for clients to trust via extra roots.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives open sessions up to
    /// 5 s to finish before aborting them.
    #[tracing::instrument(skip_all, fields(addr = ?self.listener.local_addr().ok()))]
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.shared.cfg.max_connections));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            // Reap finished sessions so the set stays small.
            while tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Transient (e.g. EMFILE): back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "connection limit reached");
                tasks.spawn(server_session::refuse(tcp));
                continue;
            };
            let shared = self.shared.clone();
            tasks.spawn(async move {
                server_session::serve(shared, tcp, peer).await;
                drop(permit);
            });
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}

/// Mints a self-signed certificate for `hostname`, `localhost` and 127.0.0.1.
fn self_signed_acceptor(
    hostname: &str,
) -> Result<(tokio_native_tls::TlsAcceptor, String), ServerError> {
    let names = vec![
        hostname.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| ServerError::Tls(e.to_string()))?;
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let id = native_tls::Identity::from_pkcs8(cert_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let acceptor = native_tls::TlsAcceptor::new(id).map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok((tokio_native_tls::TlsAcceptor::from(acceptor), cert_pem))
}

/// Case-insensitive glob match with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with single backtrack point: O(|p|·|t|) worst case, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        // Guards: recipient rejection patterns match as documented, including hostile inputs.
        let cases = [
            ("nobody@*", "nobody@x.org", true),
            ("nobody@*", "NOBODY@X.ORG", true),
            ("nobody@*", "somebody@x.org", false),
            ("nobody@*", "nobody", false),
            ("*@bad.test", "a@bad.test", true),
            ("*@bad.test", "a@bad.test.evil", false),
            ("a?c@x", "abc@x", true),
            ("a?c@x", "ac@x", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("**a**", "bab", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }

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
