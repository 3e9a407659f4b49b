//! The built-in SMTP server's listener: bind, accept loop, connection limit, shutdown.
//!
//! Owns binding, the connection limit, the optional self-signed STARTTLS identity (minted with
//! rcgen at bind) and the password lookup of the AUTH account. The per-connection dialogue is
//! in `session`; the state all connections share in `shared`; storage is `mailbox`.

use super::config::BuiltinSmtpConfig;
use super::mailbox::{Mailbox, MailboxError};
use super::session;
use super::shared::Shared;
use crate::smtp::client::config::Secret;
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
                tasks.spawn(session::refuse(tcp));
                continue;
            };
            let shared = self.shared.clone();
            tasks.spawn(async move {
                session::serve(shared, tcp, peer).await;
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
