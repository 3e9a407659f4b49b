//! Outbound TCP: name resolution with `[resolve]` overrides, connect with a deadline, and the
//! connector the pooled HTTP client uses.
//!
//! Owns the classification of connection failures (cannot resolve / refused / timed out / other)
//! so that the proxy can answer the browser with a precise 502 or 504. It does not speak HTTP.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::hostpat::HostMap;

/// Why a connection to `host:port` could not be made.
#[derive(Debug)]
pub struct DialError {
    pub host: String,
    pub port: u16,
    pub kind: DialErrorKind,
}

#[derive(Debug)]
pub enum DialErrorKind {
    /// DNS gave no usable address.
    Resolve(io::Error),
    /// Every address refused or failed; the last error is kept.
    Connect(io::Error),
    /// The whole attempt took longer than the connect timeout.
    Timeout(Duration),
    /// The URI had no host or an unsupported scheme.
    BadTarget(&'static str),
    /// TCP connected but the TLS handshake failed: the origin's certificate was not trusted
    /// (the reason says why) or the origin does not speak TLS.
    Tls(String),
}

impl DialError {
    /// True when the failure was the deadline (the proxy answers 504 rather than 502).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, DialErrorKind::Timeout(_))
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = (&self.host, self.port);
        match &self.kind {
            DialErrorKind::Resolve(e) => write!(f, "cannot resolve host {host}: {e}"),
            DialErrorKind::Connect(e) => write!(f, "cannot connect to {host}:{port}: {e}"),
            DialErrorKind::Timeout(d) => {
                write!(
                    f,
                    "connecting to {host}:{port} timed out after {} s",
                    d.as_secs()
                )
            }
            DialErrorKind::BadTarget(why) => write!(f, "bad target {host}:{port}: {why}"),
            DialErrorKind::Tls(why) => write!(f, "TLS with {host}:{port} failed: {why}"),
        }
    }
}

impl std::error::Error for DialError {}

/// Resolves and connects. Cheap to clone (shared override table).
#[derive(Clone)]
pub struct Dialer {
    overrides: Arc<HostMap<IpAddr>>,
    timeout: Duration,
}

impl Dialer {
    /// `overrides`: the `[resolve]` table (host patterns, already validated and normalised).
    pub fn new(overrides: HostMap<IpAddr>, timeout: Duration) -> Dialer {
        Dialer {
            overrides: Arc::new(overrides),
            timeout,
        }
    }

    /// The deadline applied to one connection attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The addresses `host` maps to: the `[resolve]` override when there is one, a literal IP,
    /// else DNS.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Some(ip) = self.overrides.get(bare) {
            return Ok(vec![SocketAddr::new(*ip, port)]);
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        // getaddrinfo blocks: it runs on the crate's pool, whose refused threads do not panic
        // (tokio's `lookup_host` would).
        let name = bare.to_string();
        let addrs: Vec<SocketAddr> = crate::blocking::run(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                .map(Iterator::collect::<Vec<SocketAddr>>)
        })
        .await
        .map_err(io::Error::other)??;
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
        }
        Ok(addrs)
    }

    /// Connects to the first address of `host` that accepts, within the connect timeout.
    /// The stream has TCP_NODELAY set.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let err = |kind| DialError {
            host: host.to_string(),
            port,
            kind,
        };
        let attempt = async {
            let addrs = self
                .resolve(host, port)
                .await
                .map_err(|e| err(DialErrorKind::Resolve(e)))?;
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Small requests and responses must not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last = e,
                }
            }
            Err(err(DialErrorKind::Connect(last)))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(err(DialErrorKind::Timeout(self.timeout))),
        }
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(80);
            if host.is_empty() {
                return Err(DialError {
                    host,
                    port,
                    kind: DialErrorKind::BadTarget("no host"),
                });
            }
            if uri.scheme_str() != Some("http") {
                return Err(DialError {
                    host,
                    port,
                    kind: DialErrorKind::BadTarget("only http:// is forwarded; use CONNECT"),
                });
            }
            dialer.connect(&host, port).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overrides_win_over_dns() {
        // Guards [resolve]: an override is used verbatim, case-insensitively, before DNS.
        let map: HostMap<IpAddr> = toml::from_str(
            "\"WebMail.Example.Test\" = \"127.0.0.9\"\n\"*.Lab.test\" = \"127.0.0.8\"\n",
        )
        .unwrap();
        let d = Dialer::new(map, Duration::from_secs(1));
        for (host, ip) in [
            ("webmail.example.test", [127, 0, 0, 9]),
            ("WEBMAIL.example.test.", [127, 0, 0, 9]),
            ("lab.test", [127, 0, 0, 8]),
            ("A.LAB.test", [127, 0, 0, 8]),
        ] {
            let addrs = d.resolve(host, 81).await.unwrap();
            assert_eq!(addrs, vec![SocketAddr::from((ip, 81))], "{host}");
        }
        let lit = d.resolve("[::1]", 80).await.unwrap();
        assert_eq!(
            lit,
            vec![SocketAddr::from((
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                80
            ))]
        );
    }
}
