//! The accept loop: connection limit with back-pressure, per-connection HTTP/1.1 service, and
//! graceful shutdown.
//!
//! Owns the listening socket and the lifetime of client connections. Request handling lives in
//! `service`; this file only decides when connections start and end.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::forward::Forwarder;
use super::mitm::{Mitm, MitmError, TlsDialer};
use super::service::{handle, BasicCredentials, ConnCtx, Shared};
use super::{ClientInfo, Dialer, Interceptor};
use crate::config::Config;
use crate::hostpat::HostPattern;

/// Why the proxy could not start.
#[derive(Debug)]
pub enum ProxyError {
    /// The listen address could not be bound.
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `[proxy].auth` names an environment variable that is not set.
    MissingPassword { variable: String },
    /// TLS interception is on but its CA or upstream roots could not be set up.
    Mitm(MitmError),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ProxyError::MissingPassword { variable } => write!(
                f,
                "[proxy].auth is set but the environment variable {variable} (the password) is not"
            ),
            ProxyError::Mitm(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// A bound, ready-to-run proxy.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds `config.proxy.listen` and prepares the shared state. The listener exists when this
    /// returns, so `local_addr` is final (useful with port 0).
    pub async fn bind(
        config: &Config,
        interceptor: Option<Arc<dyn Interceptor>>,
    ) -> Result<Proxy, ProxyError> {
        let listen = config.proxy.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: listen,
                source,
            })?;
        Proxy::from_listener(listener, config, interceptor)
    }

    /// Prepares a proxy on an already bound listener.
    pub fn from_listener(
        listener: TcpListener,
        config: &Config,
        interceptor: Option<Arc<dyn Interceptor>>,
    ) -> Result<Proxy, ProxyError> {
        let mut proxy_config = config.proxy.clone();
        if let Ok(addr) = listener.local_addr() {
            proxy_config.listen = addr;
        }
        let expected_auth = match &proxy_config.auth {
            None => None,
            Some(auth) => {
                let password =
                    std::env::var(&auth.password_env).map_err(|_| ProxyError::MissingPassword {
                        variable: auth.password_env.clone(),
                    })?;
                Some(BasicCredentials::new(&auth.username, &password))
            }
        };
        let dialer = Dialer::new(config.resolve.clone(), proxy_config.connect_timeout());
        let mut forwarder = Forwarder::new(
            dialer.clone(),
            proxy_config.upstream_idle(),
            proxy_config.response_timeout(),
        );
        let mut pac_hosts: Vec<HostPattern> =
            interceptor.iter().flat_map(|i| i.pac_hosts()).collect();
        let mitm = match config.mitm.enabled {
            false => None,
            true => {
                let mitm = Mitm::open(&config.mitm, &config.paths.data, pac_hosts.clone())
                    .map_err(ProxyError::Mitm)?;
                let tls = TlsDialer::new(dialer.clone(), mitm.upstream());
                forwarder = forwarder.with_tls(tls, proxy_config.upstream_idle());
                pac_hosts.extend(config.mitm.decrypt_hosts.iter().cloned());
                Some(Arc::new(mitm))
            }
        };
        pac_hosts.extend(proxy_config.pac_hosts.iter().cloned());
        // Lab hosts given in [resolve] are only reachable through mailtap.
        pac_hosts.extend(config.resolve.keys().cloned());
        pac_hosts.sort();
        pac_hosts.dedup();
        let shared = Arc::new(Shared {
            config: proxy_config,
            dialer,
            forwarder,
            interceptor,
            expected_auth,
            pac_hosts,
            webmail_hosts: config.webmail_hosts(),
            mitm,
        });
        Ok(Proxy { listener, shared })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.config.listen
    }

    /// Host patterns the PAC file sends through mailtap.
    pub fn pac_hosts(&self) -> &[HostPattern] {
        &self.shared.pac_hosts
    }

    /// TLS interception state (CA, policy, leaf cache), when `[mitm].enabled`.
    pub fn mitm(&self) -> Option<&Arc<Mitm>> {
        self.shared.mitm.as_ref()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests and
    /// tunnels finish for up to `[proxy].shutdown_grace_secs`, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let max = self.shared.config.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            // At the limit we stop calling accept(): new clients wait in the kernel backlog.
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let local = stream.local_addr().unwrap_or(self.shared.config.listen);
            let ctx = ConnCtx {
                info: ClientInfo {
                    client: canonical(peer),
                    proxy: canonical(local),
                },
                allowed: is_allowed(&self.shared.config.allow, peer.ip()),
                shared: self.shared.clone(),
                permit: Arc::new(permit),
                stop: stop_rx.clone(),
            };
            tokio::spawn(serve_connection(stream, ctx, stop_rx.clone()));
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let grace = self.shared.config.shutdown_grace();
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing in-flight work"
        );
        // Every connection and tunnel holds a permit: all permits back means all work is done.
        let drained = tokio::time::timeout(grace, limit.acquire_many(max as u32)).await;
        if drained.is_err() {
            tracing::warn!("shutdown deadline reached with connections still open; closing them");
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how an IPv4 peer appears on an IPv6 socket,
/// RFC 4291 §2.5.5.2) as the IPv4 address it is; any other address unchanged.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether a client at `ip` may use the proxy: some `[proxy].allow` network contains it, as
/// received or, for an IPv4-mapped address, as IPv4 (so `127.0.0.0/8` admits
/// `::ffff:127.0.0.1` on a `[::]` listener).
fn is_allowed(allow: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let v4 = ip.to_canonical();
    allow
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&v4))
}

#[tracing::instrument(level = "debug", skip_all, fields(client = %ctx.info.client))]
async fn serve_connection(stream: TcpStream, ctx: ConnCtx, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let config = &ctx.shared.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout())
        .max_header_size(config.max_header_bytes)
        .preserve_header_case(true)
        // A client may stop sending once its request is complete (`shutdown(SHUT_WR)`, netcat,
        // scripts): an EOF after a whole request is not an abort, so the request is still
        // handled and answered (RFC 9112 §9.6 closes gracefully in this order). Without this
        // hyper drops the connection at that EOF and the answer is never written.
        .half_close(true);
    let service = {
        let ctx = ctx.clone();
        service_fn(move |request| handle(ctx.clone(), request))
    };
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}
