//! CONNECT tunnels, malformed and oversized input, timeouts, the connection limit, access
//! control, the proxy's own pages, the interception seam and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use mailtap::proxy::{full_body, ClientInfo, Interceptor, Outcome, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn connect_tunnel_is_byte_exact_both_ways() {
    // Guards the blind tunnel: 4 MiB of every byte value echoes back unchanged, half-close passes.
    let echo = echo_server().await;
    let mt = start("", None).await;
    let (s, head) = connect_tunnel(mt.addr, echo).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let data: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i % 256) as u8 ^ (i >> 12) as u8)
        .collect();
    let (mut r, mut w) = s.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(
        back == data,
        "tunnel changed the bytes ({} back)",
        back.len()
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn connect_to_a_closed_port_is_502_naming_the_target() {
    // Guards dial-before-200: a refused CONNECT answers 502 with the target and the cause.
    let mt = start("", None).await;
    let port = closed_port();
    let out = raw_exchange(
        mt.addr,
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.contains(&format!("CONNECT 127.0.0.1:{port}")) && out.contains("refused"),
        "{out}"
    );
    let out = raw_exchange(mt.addr, b"CONNECT example.test HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    mt.shutdown().await;
}

#[tokio::test]
async fn idle_tunnels_are_closed_after_the_idle_timeout() {
    // Guards tunnel_idle_timeout_secs: a silent tunnel is closed, in bounded time.
    let echo = echo_server().await;
    let mt = start("[proxy]\ntunnel_idle_timeout_secs = 1\n", None).await;
    let (mut s, head) = connect_tunnel(mt.addr, echo).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("tunnel not closed")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    mt.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_oversized_heads_431() {
    // Guards the parser limits: garbage → 400, a head over max_header_bytes → 431.
    let mt = start("[proxy]\nmax_header_bytes = 8192\n", None).await;
    let out = raw_exchange(mt.addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let big = format!(
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let out = raw_exchange(mt.addr, big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    let out = raw_exchange(
        mt.addr,
        b"GET ftp://example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    mt.shutdown().await;
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    // Guards the header timeout (slowloris): a head that never completes is closed in time.
    let mt = start("[proxy]\nheader_timeout_secs = 1\n", None).await;
    let mut s = TcpStream::connect(mt.addr).await.unwrap();
    s.write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("not closed")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(5));
    mt.shutdown().await;
}

#[tokio::test]
async fn the_connection_limit_applies_back_pressure() {
    // Guards max_connections: at the limit a new client waits (no error) until a slot frees.
    let origin = origin().await;
    let mt = start("[proxy]\nmax_connections = 2\n", None).await;
    let (a, _) = connect_tunnel(mt.addr, origin.addr).await;
    let (b, _) = connect_tunnel(mt.addr, origin.addr).await;
    let mut c = TcpStream::connect(mt.addr).await.unwrap();
    let req = format!(
        "GET http://{}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.addr
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(400), c.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "third client was served while two slots were taken"
    );
    drop(a);
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    drop(b);
    mt.shutdown().await;
}

#[tokio::test]
async fn clients_outside_allow_get_403() {
    // Guards [proxy].allow: a loopback client is refused when loopback is not listed.
    let origin = origin().await;
    let mt = start("[proxy]\nallow = [\"10.0.0.0/8\"]\n", None).await;
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        &format!("http://{}/", origin.addr),
    ])
    .await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("127.0.0.1 is not allowed"), "{out}");
    assert!(origin.seen.lock().unwrap().is_empty());
    mt.shutdown().await;
}

#[tokio::test]
async fn proxy_auth_answers_407_until_credentials_match() {
    // Guards Basic proxy auth: missing/wrong → 407 with Proxy-Authenticate, right → forwarded.
    std::env::set_var("MAILTAP_TEST_PROXY_PW_1", "s3cret");
    let origin = origin().await;
    let mt = start(
        "[proxy.auth]\nusername = \"lab\"\npassword_env = \"MAILTAP_TEST_PROXY_PW_1\"\n",
        None,
    )
    .await;
    let url = format!("http://{}/", origin.addr);
    let (_, out, _) = curl(&["-i", "-x", &mt.proxy_url(), &url]).await;
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 407"), "{out}");
    assert!(
        out.contains("proxy-authenticate: basic realm=\"mailtap\""),
        "{out}"
    );
    let (_, out, _) = curl(&["-i", "-x", &mt.proxy_url(), "-U", "lab:wrong", &url]).await;
    assert!(out.starts_with(b"HTTP/1.1 407"));
    let (_, out, _) = curl(&["-i", "-x", &mt.proxy_url(), "-U", "lab:s3cret", &url]).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // CONNECT is guarded too; the credentials never reach the origin.
    let out = raw_exchange(
        mt.addr,
        format!(
            "CONNECT {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.addr
        )
        .as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");
    assert!(origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.header("proxy-authorization").is_none()));
    mt.shutdown().await;
}

#[tokio::test]
async fn pac_and_home_page_are_served_on_the_proxy_address() {
    // Guards the proxy's own pages: PAC lists configured hosts, home page links it, loops avoided.
    let mt = start(
        "[proxy]\npac_hosts = [\"*.webmail.test\"]\n[resolve]\n\"mail.example.test\" = \"127.0.0.1\"\n",
        None,
    )
    .await;
    let (code, pac, err) = curl(&["-i", &format!("{}/proxy.pac", mt.proxy_url())]).await;
    assert_eq!(code, 0, "{err}");
    let pac = String::from_utf8_lossy(&pac).into_owned();
    assert!(pac.contains("application/x-ns-proxy-autoconfig"), "{pac}");
    assert!(
        pac.contains("(h == \"webmail.test\" || dnsDomainIs(h, \".webmail.test\"))"),
        "{pac}"
    );
    assert!(pac.contains("h == \"mail.example.test\""), "{pac}");
    assert!(pac.contains(&format!("PROXY {}", mt.addr)), "{pac}");
    let (_, home, _) = curl(&[&format!("{}/", mt.proxy_url())]).await;
    let home = String::from_utf8_lossy(&home).into_owned();
    assert!(
        home.contains("/proxy.pac") && home.contains("mailtap"),
        "{home}"
    );
    // The proxy's own address in absolute-form is served locally, not forwarded to itself.
    let (_, via_proxy, _) = curl(&[
        "-x",
        &mt.proxy_url(),
        &format!("{}/proxy.pac", mt.proxy_url()),
    ])
    .await;
    assert!(String::from_utf8_lossy(&via_proxy).contains("FindProxyForURL"));
    let (_, missing, _) = curl(&["-i", &format!("{}/nope", mt.proxy_url())]).await;
    assert!(missing.starts_with(b"HTTP/1.1 404"));
    mt.shutdown().await;
}

/// Answers `/intercept` itself and forwards `/rewrite` with a new body.
struct TestInterceptor;

impl Interceptor for TestInterceptor {
    fn wants(&self, head: &RequestHead<'_>) -> bool {
        matches!(head.uri.path(), "/intercept" | "/rewrite")
    }
    fn intercept(
        self: Arc<Self>,
        request: Request<Incoming>,
        info: ClientInfo,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if parts.uri.path() == "/intercept" {
                let text = format!("taken {} bytes from {}", body.len(), info.client.ip());
                let mut r = hyper::Response::new(full_body(text));
                *r.status_mut() = StatusCode::ACCEPTED;
                return Outcome::Respond(r);
            }
            parts.headers.remove("content-length");
            Outcome::Forward {
                request: Request::from_parts(parts, full_body("rewritten")),
                on_response: Some(Box::new(|mut resp| {
                    Box::pin(async move {
                        resp.headers_mut()
                            .insert("x-hooked", "yes".parse().unwrap());
                        resp
                    })
                })),
            }
        })
    }
    fn pac_hosts(&self) -> Vec<mailtap::hostpat::HostPattern> {
        vec!["mail.hooked.test".parse().expect("a valid host pattern")]
    }
}

#[tokio::test]
async fn the_interception_seam_can_respond_or_forward() {
    // Guards the Interceptor contract: Respond answers without the origin; Forward + hook.
    let origin = origin().await;
    let mt = start("", Some(Arc::new(TestInterceptor))).await;
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        "-d",
        "abc",
        &format!("http://{}/intercept", origin.addr),
    ])
    .await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(
        out.starts_with("HTTP/1.1 202") && out.ends_with("taken 3 bytes from 127.0.0.1"),
        "{out}"
    );
    assert!(origin.seen.lock().unwrap().is_empty());
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        "-d",
        "abc",
        &format!("http://{}/echo", origin.addr),
    ])
    .await;
    assert!(String::from_utf8_lossy(&out).ends_with("abc"));
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        "-d",
        "abc",
        &format!("http://{}/rewrite", origin.addr),
    ])
    .await;
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.contains("x-hooked: yes"), "{out}");
    assert_eq!(
        origin.seen.lock().unwrap().last().unwrap().body_len,
        "rewritten".len()
    );
    let (_, pac, _) = curl(&[&format!("{}/proxy.pac", mt.proxy_url())]).await;
    assert!(String::from_utf8_lossy(&pac).contains("mail.hooked.test"));
    mt.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    // Guards graceful shutdown: a request in flight completes; new connections are refused.
    let origin = origin().await;
    let mt = start("[proxy]\nshutdown_grace_secs = 5\n", None).await;
    let addr = mt.addr;
    let url = format!("http://{}/slow", origin.addr);
    let proxy = mt.proxy_url();
    let in_flight = tokio::spawn(async move { curl(&["-x", &proxy, &url]).await });
    // Wait until the origin is working on it.
    let deadline = Instant::now() + WAIT;
    while origin.seen.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "request never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let task = mt.begin_shutdown();
    let (code, body, err) = in_flight.await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, b"slow done");
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain waited for the deadline"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
