//! Wiring: builds every subsystem from the configuration and runs them until shutdown.
//!
//! `main.rs` only parses arguments and calls [`App::start`]; tests call it too, on port 0. This
//! module owns the order in which things start and stop, not what they do.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::capture::{Capture, CaptureSettings};
use crate::config::{Config, ConfigError};
use crate::mail::MailRecord;
use crate::proxy::{Interceptor, Proxy, ProxyError};
use crate::queue::{QueueError, Spool};
use crate::relay::Relay;
use crate::smtp::{
    certificates_from_pem, password_from_env, BuiltinServer, ClientConfig, ConnectOptions, TlsMode,
};
use std::time::Duration;
use tokio::sync::watch;

/// How often expired finished mail is removed from the spool (`[queue].keep_finished_secs`).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long the relay must be quiet before the spool's journal is written into `meta.json`.
const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// Why mailtap could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Spool(QueueError),
    Proxy(ProxyError),
    /// The built-in SMTP server could not start.
    BuiltinSmtp(String),
    /// `[smtp]` is set but its password or trusted roots cannot be loaded.
    Smtp(String),
    /// A listening address could not be bound (typically: another program has the port).
    /// Nothing has been created on disk when this is returned.
    Listen {
        /// What was to listen there, and how to choose another address.
        what: &'static str,
        option: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Spool(e) => write!(f, "cannot open the mail spool: {e}"),
            StartError::Proxy(e) => write!(f, "{e}"),
            StartError::BuiltinSmtp(e) => write!(f, "cannot start the built-in SMTP server: {e}"),
            StartError::Smtp(e) => write!(f, "[smtp]: {e}"),
            StartError::Listen {
                what,
                option,
                addr,
                source,
            } => {
                write!(f, "cannot listen on {addr} for the {what}: {source}")?;
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        ". Another program (or another mailtap) is using that port: stop it, \
                         or choose a free address with {option} IP:PORT"
                    )?;
                }
                write!(f, ". Nothing was started or created.")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// A started mailtap, not yet serving.
pub struct App {
    proxy: Proxy,
    spool: Spool<MailRecord>,
    relay: Arc<Relay>,
    builtin: Option<BuiltinServer>,
    shutdown_grace: Duration,
}

impl App {
    /// Binds the proxy's and the built-in SMTP server's addresses first (so a busy port fails
    /// before anything is created on disk), then opens the spool (recovering what a previous
    /// run left) and builds the webmail interceptor. Nothing is served until [`App::run`].
    pub async fn start(config: &Config) -> Result<App, StartError> {
        App::start_inner(config, None).await
    }

    /// Like [`App::start`], with `interceptor` in place of the webmail interceptor (for tests
    /// of the proxy's interception seam).
    pub async fn start_with(
        config: &Config,
        interceptor: Arc<dyn Interceptor>,
    ) -> Result<App, StartError> {
        App::start_inner(config, Some(interceptor)).await
    }

    async fn start_inner(
        config: &Config,
        interceptor: Option<Arc<dyn Interceptor>>,
    ) -> Result<App, StartError> {
        let listen = config.proxy.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                what: "proxy",
                option: "--listen",
                addr: listen,
                source,
            })?;
        let (smtp, connect, builtin) = upstream(config).await?;
        let spool: Spool<MailRecord> =
            Spool::open(&config.paths.data, config.queue.clone()).map_err(StartError::Spool)?;
        // Transcripts an older version left readable by everyone become owner-only.
        let logs = config.paths.logs.clone();
        let _ = tokio::task::spawn_blocking(move || crate::translog::tighten_existing(&logs)).await;
        let interceptor = match interceptor {
            Some(i) => i,
            None => {
                let rules = config.rule_set().map_err(StartError::Config)?;
                let ic = &config.intercept;
                let settings = CaptureSettings {
                    body: crate::capture_body::BodyLimits {
                        // Validated to fit in usize.
                        max_bytes: config.limits.max_intercept_body_bytes as usize,
                        timeout: Duration::from_secs(ic.body_timeout_secs),
                        min_rate: ic.body_min_rate,
                        max_time: Duration::from_secs(ic.body_max_secs),
                        budget_wait: Duration::from_secs(ic.budget_wait_secs),
                    },
                    budget: crate::capture_body::Budget::new(ic.max_inflight_bytes),
                    bounds: crate::intercept::Bounds {
                        max_parts: ic.max_parts,
                    },
                    max_message_bytes: config.limits.max_message_bytes,
                    senders: config.senders.clone(),
                    smtp_account: config.smtp.as_ref().and_then(|s| s.username.clone()),
                    logs_dir: config.paths.logs.clone(),
                    log: config.log.clone(),
                    require_session: config.intercept.require_session,
                    session_ttl: Duration::from_secs(config.intercept.session_ttl_secs),
                };
                Arc::new(Capture::new(
                    rules,
                    config.intercept.upload_store(),
                    settings,
                    spool.clone(),
                ))
            }
        };
        let proxy =
            Proxy::from_listener(listener, config, Some(interceptor)).map_err(StartError::Proxy)?;
        let relay = Arc::new(Relay {
            spool: spool.clone(),
            smtp,
            connect,
            logs_dir: config.paths.logs.clone(),
            log: config.log.clone(),
            report: config.report.clone(),
            config: config.relay.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(crate::relay::IN_FLIGHT)),
            spool_trouble: Default::default(),
        });
        Ok(App {
            proxy,
            spool,
            relay,
            builtin,
            shutdown_grace: config.proxy.shutdown_grace(),
        })
    }

    /// The SMTP server mail is relayed to: `host:port` and whether it is the built-in one.
    pub fn smtp_upstream(&self) -> (String, u16, bool) {
        (
            self.relay.smtp.host.clone(),
            self.relay.smtp.effective_port(),
            self.builtin.is_some(),
        )
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Host patterns the PAC file sends through mailtap.
    pub fn pac_hosts(&self) -> &[crate::hostpat::HostPattern] {
        self.proxy.pac_hosts()
    }

    /// The mail spool (for inspection and tests).
    pub fn spool(&self) -> &Spool<MailRecord> {
        &self.spool
    }

    /// Serves until `shutdown` resolves, then drains in-flight work (bounded by the configured
    /// grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let relay = tokio::spawn(self.relay.clone().run(stop_rx.clone()));
        let sweeper = {
            let spool = self.spool.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move { spool.sweep_finished(SWEEP_EVERY, stop).await })
        };
        let settle = {
            let spool = self.spool.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move { spool.settle_when_quiet(SETTLE_AFTER, stop).await })
        };
        let builtin = self.builtin.map(|server| {
            let mut stop = stop_rx.clone();
            tokio::spawn(server.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        });
        self.proxy.run(shutdown).await;
        // The proxy has answered every browser; now let deliveries in progress finish.
        let _ = stop_tx.send(true);
        // One deadline for the relay and the built-in server together; whatever is still
        // running then is stopped, so nothing outlives `run` holding the spool.
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        let mut relay = relay;
        if tokio::time::timeout_at(deadline, &mut relay).await.is_err() {
            tracing::warn!("relay still busy at the shutdown deadline; its mail stays queued");
            relay.abort();
            let _ = relay.await;
        }
        settle.abort();
        let _ = settle.await;
        let mut sweeper = sweeper;
        if tokio::time::timeout_at(deadline, &mut sweeper)
            .await
            .is_err()
        {
            sweeper.abort();
            let _ = sweeper.await;
        }
        if let Some(mut b) = builtin {
            if tokio::time::timeout_at(deadline, &mut b).await.is_err() {
                b.abort();
                let _ = b.await;
            }
        }
    }
}

/// The relay's upstream: `[smtp]` as configured, or the built-in server started here.
async fn upstream(
    config: &Config,
) -> Result<(ClientConfig, ConnectOptions, Option<BuiltinServer>), StartError> {
    match &config.smtp {
        Some(smtp) => {
            let password = password_from_env(smtp).map_err(StartError::Smtp)?;
            let mut extra_roots = Vec::new();
            for path in &smtp.extra_roots {
                let pem = std::fs::read(path).map_err(|e| {
                    StartError::Smtp(format!("extra_roots {}: {e}", path.display()))
                })?;
                extra_roots.extend(certificates_from_pem(&pem).map_err(|e| {
                    StartError::Smtp(format!("extra_roots {}: {e}", path.display()))
                })?);
            }
            let addr = config
                .resolve
                .get(&smtp.host)
                .map(|ip| SocketAddr::new(*ip, smtp.effective_port()));
            let connect = ConnectOptions {
                password,
                extra_roots,
                addr,
            };
            Ok((smtp.clone(), connect, None))
        }
        None => {
            let mailbox = config.paths.data.join("mailbox");
            let server = BuiltinServer::bind(config.builtin_smtp.clone(), mailbox)
                .await
                .map_err(|e| match e {
                    crate::smtp::server::ServerError::Bind { addr, source } => StartError::Listen {
                        what: "built-in SMTP server",
                        option: "--smtp-listen",
                        addr,
                        source,
                    },
                    other => StartError::BuiltinSmtp(other.to_string()),
                })?;
            let addr = server
                .local_addr()
                .map_err(|e| StartError::BuiltinSmtp(e.to_string()))?;
            let smtp = ClientConfig {
                host: addr.ip().to_string(),
                port: Some(addr.port()),
                tls: TlsMode::None,
                helo_name: Some("mailtap".into()),
                ..ClientConfig::default()
            };
            Ok((smtp, ConnectOptions::default(), Some(server)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolve_reaches_the_smtp_host_in_any_case_and_by_wildcard() {
        // Guards [resolve] for [smtp].host: keys are host patterns, matched without case (a
        // mixed-case key once missed here while the proxy's dialer found it).
        for (resolve_key, smtp_host) in [
            ("Smtp.Lab.TEST", "smtp.lab.test"),
            ("smtp.lab.test", "SMTP.LAB.test"),
            ("*.LAB.test", "smtp.lab.test"),
        ] {
            let config = Config::parse(&format!(
                "[resolve]\n\"{resolve_key}\" = \"127.0.0.9\"\n\
                 [smtp]\nhost = \"{smtp_host}\"\nport = 2526\ntls = \"none\"\n"
            ))
            .unwrap();
            let (_, connect, builtin) = upstream(&config).await.unwrap();
            assert!(builtin.is_none());
            assert_eq!(
                connect.addr,
                Some(SocketAddr::from(([127, 0, 0, 9], 2526))),
                "{resolve_key} for {smtp_host}"
            );
        }
    }
}
