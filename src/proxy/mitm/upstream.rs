//! The upstream side of a decrypted tunnel: TLS to the real origin, verified against the
//! system roots plus `[mitm].extra_roots`, as a connector for the pooled HTTP client.
//!
//! Owns reading the extra root files and the TLS handshake toward origins (SNI and host-name
//! check by native-tls/OpenSSL). Verification is never switched off: a certificate that does not
//! verify is a [`DialErrorKind::Tls`] whose text names the host and OpenSSL's reason, which the
//! forward path turns into a 502. It does not speak HTTP and owns no pool.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_native_tls::{TlsConnector, TlsStream};

use crate::proxy::dial::{DialError, DialErrorKind, Dialer};

/// Why the upstream TLS client could not be set up.
#[derive(Debug)]
pub enum UpstreamError {
    /// An `extra_roots` file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// An `extra_roots` file holds no usable certificate.
    BadRoots { path: PathBuf, reason: String },
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Read { path, source } => {
                write!(
                    f,
                    "[mitm].extra_roots: cannot read {}: {source}",
                    path.display()
                )
            }
            UpstreamError::BadRoots { path, reason } => {
                write!(f, "[mitm].extra_roots: {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for UpstreamError {}

/// The TLS client for origins: trusts the system roots plus every certificate in `extra_roots`
/// (PEM files, each holding one or more certificates). The root files are read and checked when
/// this is created; the OpenSSL context (which loads the whole system store, a few MiB) is built
/// on first use, so a mailtap that never decrypts does not pay for it.
pub struct UpstreamTls {
    roots: Vec<native_tls::Certificate>,
    built: OnceLock<Result<TlsConnector, String>>,
}

impl UpstreamTls {
    /// Reads and parses `extra_roots`; an unreadable file or one without a certificate is an
    /// error naming the file.
    pub fn new(extra_roots: &[PathBuf]) -> Result<UpstreamTls, UpstreamError> {
        let mut roots = Vec::new();
        for path in extra_roots {
            roots.extend(read_roots(path)?);
        }
        Ok(UpstreamTls {
            roots,
            built: OnceLock::new(),
        })
    }

    /// The connector, built once. Verification is always on (native-tls's default).
    pub fn connector(&self) -> Result<TlsConnector, String> {
        self.built
            .get_or_init(|| {
                let mut builder = native_tls::TlsConnector::builder();
                for cert in &self.roots {
                    builder.add_root_certificate(cert.clone());
                }
                builder
                    .build()
                    .map(TlsConnector::from)
                    .map_err(|e| format!("cannot set up the upstream TLS client: {e}"))
            })
            .clone()
    }
}

fn read_roots(path: &Path) -> Result<Vec<native_tls::Certificate>, UpstreamError> {
    let pem = std::fs::read(path).map_err(|source| UpstreamError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| UpstreamError::BadRoots {
        path: path.to_path_buf(),
        reason,
    };
    let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// A TLS connection to an origin, as the pooled client's transport.
pub struct TlsConn(TlsStream<TcpStream>);

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Dials `https://` URIs: TCP through the [`Dialer`] (so `[resolve]` applies), then TLS with the
/// URI's host as SNI and verified name, both within the dialer's connect timeout each.
#[derive(Clone)]
pub struct TlsDialer {
    dialer: Dialer,
    tls: Arc<UpstreamTls>,
}

impl TlsDialer {
    pub fn new(dialer: Dialer, tls: Arc<UpstreamTls>) -> TlsDialer {
        TlsDialer { dialer, tls }
    }

    /// Connects to `host:port` and completes a verified TLS handshake.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TlsConn, DialError> {
        let err = |kind| DialError {
            host: host.to_string(),
            port,
            kind,
        };
        let tls = self
            .tls
            .connector()
            .map_err(|e| err(DialErrorKind::Tls(e)))?;
        let tcp = self.dialer.connect(host, port).await?;
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let deadline: Duration = self.dialer.timeout();
        match tokio::time::timeout(deadline, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(TlsConn(stream)),
            Ok(Err(e)) => Err(err(DialErrorKind::Tls(describe(&e)))),
            Err(_) => Err(err(DialErrorKind::Timeout(deadline))),
        }
    }
}

/// OpenSSL's message with its causes, e.g. "certificate verify failed (unable to get local
/// issuer certificate)".
fn describe(e: &native_tls::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl tower_service::Service<Uri> for TlsDialer {
    type Response = TokioIo<TlsConn>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            if host.is_empty() || uri.scheme_str() != Some("https") {
                return Err(DialError {
                    host,
                    port,
                    kind: DialErrorKind::BadTarget("only https:// is dialed with TLS"),
                });
            }
            dialer.connect(&host, port).await.map(TokioIo::new)
        })
    }
}
