//! Helpers for the TLS interception tests: a private test PKI (rcgen), HTTPS origins signed by
//! it, CONNECT + TLS clients with an explicit trust list, one-request HTTP/1.1 exchanges over a
//! TLS stream, and a log capture. Every server binds 127.0.0.1:0 and every wait is bounded.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_native_tls::TlsStream;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A test CA (not mailtap's): signs the HTTPS origins' certificates.
pub struct TestPki {
    pub ca_pem: String,
    /// The CA certificate written to a file (for `[mitm].extra_roots`).
    pub ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new(dir: &Path, name: &str) -> TestPki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} test CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, &ca_pem).unwrap();
        TestPki {
            ca_pem,
            ca_path,
            issuer: Issuer::new(params, key),
        }
    }

    /// A TLS acceptor for `names` (DNS names or IPs) and the leaf's DER.
    pub fn acceptor(&self, names: &[&str]) -> (tokio_native_tls::TlsAcceptor, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let identity =
            native_tls::Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
                .unwrap();
        let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
        (acceptor.into(), cert.der().to_vec())
    }
}

/// What an HTTPS origin saw of one request.
#[derive(Debug, Clone)]
pub struct SeenTls {
    pub method: String,
    pub target: String,
    pub host: String,
    pub body_len: usize,
}

/// An HTTPS origin. `/` answers `hello over tls` (to GET; a POST gets `webmail got the post`);
/// `/big?n=N` answers N bytes of 'x'; `/echo` echoes the body; `/compose` is a Roundcube-shaped
/// compose page whose script submits the form on load; anything else answers `path <target>`.
pub struct HttpsOrigin {
    pub addr: SocketAddr,
    pub leaf_der: Vec<u8>,
    pub seen: Arc<Mutex<Vec<SeenTls>>>,
}

pub async fn https_origin(pki: &TestPki, names: &[&str]) -> HttpsOrigin {
    let (acceptor, leaf_der) = pki.acceptor(names);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<SeenTls>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen2.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(WAIT, acceptor.accept(stream)).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, hyper::Error>(answer(req, seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    HttpsOrigin {
        addr,
        leaf_der,
        seen,
    }
}

async fn answer(req: Request<Incoming>, seen: Arc<Mutex<Vec<SeenTls>>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts.uri.to_string();
    seen.lock().unwrap().push(SeenTls {
        method: parts.method.to_string(),
        target: target.clone(),
        host: parts
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body_len: body.len(),
    });
    match parts.uri.path() {
        "/" if parts.method == hyper::Method::POST => {
            Response::new(Full::new(Bytes::from_static(b"webmail got the post")))
        }
        "/" => Response::new(Full::new(Bytes::from_static(b"hello over tls"))),
        "/compose" => {
            let mut r = Response::new(Full::new(Bytes::from_static(COMPOSE_PAGE.as_bytes())));
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // The webmail's session cookie, as it sets one at login: mailtap relays only sends
            // that carry a cookie the webmail set through it.
            r.headers_mut().insert(
                "set-cookie",
                hyper::header::HeaderValue::from_static(
                    "roundcube_sessid=c0mp05e; Path=/; Secure; HttpOnly",
                ),
            );
            r
        }
        // A login: sets each `name=value` of the request's `X-Set-Cookies` (as a webmail sets
        // its session cookies at login).
        "/login" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"logged in")));
            let pairs = parts
                .headers
                .get("x-set-cookies")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            for pair in pairs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("{pair}; Path=/")) {
                    r.headers_mut().append("set-cookie", v);
                }
            }
            r
        }
        "/echo" => Response::new(Full::new(body)),
        "/big" => {
            let n: usize = parts
                .uri
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1024);
            Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        }
        _ => Response::new(Full::new(Bytes::from(format!("path {target}")))),
    }
}

/// A compose form shaped like Roundcube 1.6's (the fields its built-in rule reads), submitted
/// by its own script once loaded.
pub const COMPOSE_PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Compose</title></head>
<body onload="document.getElementById('f').submit()">
<form id="f" method="post" action="/?_task=mail&_unlock=loading42&_framed=1">
<input type="hidden" name="_token" value="tok">
<input type="hidden" name="_task" value="mail">
<input type="hidden" name="_action" value="send">
<input type="hidden" name="_id" value="c0ffee">
<input type="hidden" name="_from" value="Li Lei &lt;lilei@example.com&gt;">
<input type="text" name="_to" value="Zhang San &lt;zhangsan@example.com&gt;, bob@example.org">
<input type="text" name="_cc" value="">
<input type="text" name="_bcc" value="">
<input type="text" name="_subject" value="Browser test 浏览器">
<textarea name="_message">Hello from headless Chromium over HTTPS.</textarea>
<input type="hidden" name="_is_html" value="0">
<input type="hidden" name="_draft" value="">
<input type="hidden" name="_store_target" value="Sent">
</form></body></html>
"#;

/// mailtap's CA certificate (PEM) under a test's data directory.
pub fn mailtap_ca_pem(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("ca").join("mailtap-ca.pem")).unwrap()
}

/// A TLS client trusting exactly `pems` (no system roots, so the test decides trust).
pub fn trusting(pems: &[&str]) -> tokio_native_tls::TlsConnector {
    let mut b = native_tls::TlsConnector::builder();
    b.disable_built_in_roots(true);
    for pem in pems {
        b.add_root_certificate(native_tls::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap().into()
}

/// Opens `CONNECT authority` through the proxy and returns the stream after a 200.
pub async fn connect_via(proxy: SocketAddr, authority: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "CONNECT {authority}: {head}"
    );
    s
}

/// Reads a response head byte by byte (bounded by 64 KiB and `WAIT`).
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let _ = tokio::time::timeout(WAIT, async {
        while head.len() < 65536 && !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    String::from_utf8_lossy(&head).into_owned()
}

/// CONNECT + TLS handshake for `name` with the given trust.
pub async fn tls_via(
    proxy: SocketAddr,
    authority: &str,
    name: &str,
    tls: &tokio_native_tls::TlsConnector,
) -> Result<TlsStream<TcpStream>, native_tls::Error> {
    let tcp = connect_via(proxy, authority).await;
    tokio::time::timeout(WAIT, tls.connect(name, tcp))
        .await
        .expect("TLS handshake did not finish in time")
}

/// DER of the certificate the TLS peer presented.
pub fn peer_der(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref()
        .peer_certificate()
        .unwrap()
        .expect("peer sent a certificate")
        .to_der()
        .unwrap()
}

/// A response read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends requests over one HTTP/1.1 connection on `io`, in order, and reads each answer.
pub async fn exchange<S>(io: S, requests: Vec<Request<Full<Bytes>>>) -> Vec<Answer>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for req in requests {
        let resp = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .expect("answer in time")
            .expect("answer");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        out.push(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        });
    }
    out
}

/// `GET path` with `Host: host`.
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Captured log output of one test (current-thread runtime: spawned tasks log here too).
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a subscriber for the current thread (debug level) and returns its guard.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let buf = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || buf.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
