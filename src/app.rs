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

/// Why mailtap could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Spool(QueueError),
    Proxy(ProxyError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Spool(e) => write!(f, "cannot open the mail spool: {e}"),
            StartError::Proxy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A started mailtap, not yet serving.
pub struct App {
    proxy: Proxy,
    spool: Spool<MailRecord>,
}

impl App {
    /// Opens the spool (recovering what a previous run left), builds the webmail interceptor
    /// and binds the proxy. Nothing is served until [`App::run`].
    pub async fn start(config: &Config) -> Result<App, StartError> {
        App::start_inner(config, None).await
    }

    /// Like [`App::start`], with `interceptor` in place of the webmail interceptor (for tests
    /// of the proxy's interception seam).
    pub async fn start_with(config: &Config, interceptor: Arc<dyn Interceptor>) -> Result<App, StartError> {
        App::start_inner(config, Some(interceptor)).await
    }

    async fn start_inner(config: &Config, interceptor: Option<Arc<dyn Interceptor>>) -> Result<App, StartError> {
        let spool: Spool<MailRecord> =
            Spool::open(&config.paths.data, config.queue.clone()).map_err(StartError::Spool)?;
        let interceptor = match interceptor {
            Some(i) => i,
            None => {
                let rules = config.rule_set().map_err(StartError::Config)?;
                let settings = CaptureSettings {
                    // Validated to fit in usize.
                    max_body_bytes: config.limits.max_intercept_body_bytes as usize,
                    max_message_bytes: config.limits.max_message_bytes,
                    senders: config.senders.clone(),
                    smtp_account: None,
                };
                Arc::new(Capture::new(rules, config.intercept.upload_store(), settings, spool.clone()))
            }
        };
        let proxy = Proxy::bind(config, Some(interceptor)).await.map_err(StartError::Proxy)?;
        Ok(App { proxy, spool })
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Host patterns the PAC file sends through mailtap.
    pub fn pac_hosts(&self) -> &[String] {
        self.proxy.pac_hosts()
    }

    /// The mail spool (for inspection and tests).
    pub fn spool(&self) -> &Spool<MailRecord> {
        &self.spool
    }

    /// Serves until `shutdown` resolves, then drains in-flight work (bounded by the configured
    /// grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.proxy.run(shutdown).await;
    }
}
