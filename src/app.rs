//! Wiring: builds every subsystem from the configuration and runs them until shutdown.
//!
//! `main.rs` only parses arguments and calls [`start`]; tests call it too, on port 0. This module
//! owns the order in which things start and stop, not what they do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::proxy::{Interceptor, Proxy, ProxyError};

/// A started mailtap, not yet serving.
pub struct App {
    proxy: Proxy,
}

impl App {
    /// Binds the proxy's listener. Nothing is served until [`App::run`].
    pub async fn start(
        config: &Config,
        interceptor: Option<Arc<dyn Interceptor>>,
    ) -> Result<App, ProxyError> {
        let proxy = Proxy::bind(config, interceptor).await?;
        Ok(App { proxy })
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Host patterns the PAC file sends through mailtap.
    pub fn pac_hosts(&self) -> &[String] {
        self.proxy.pac_hosts()
    }

    /// Serves until `shutdown` resolves, then drains in-flight work (bounded by the configured
    /// grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.proxy.run(shutdown).await;
    }
}
