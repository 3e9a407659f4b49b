//! TLS interception end to end on 127.0.0.1: decrypted hosts get mailtap's certificate and the
//! same handling as plain HTTP (forwarding over verified TLS, webmail interception into the
//! spool); every other host stays a blind tunnel with the origin's own certificate; upstream
//! and client certificate failures end cleanly.

mod common;
mod mitm_support;

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use mitm_support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Names the test origin's certificate covers.
const ORIGIN_NAMES: [&str; 6] = [
    "origin.example.test",
    "blind.example.test",
    "never.example.test",
    "webmail.example.test",
    "mail.qq.com",
    "127.0.0.1",
];

struct World {
    mt: common::Running,
    pki: TestPki,
    origin: HttpsOrigin,
    rogue: HttpsOrigin,
    mailtap_ca: String,
    _pki_dir: tempfile::TempDir,
}

impl World {
    fn authority(&self, host: &str) -> String {
        format!("{host}:{}", self.origin.addr.port())
    }
}

async fn world() -> World {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(pki_dir.path(), "origin");
    let rogue_pki = TestPki::new(pki_dir.path(), "rogue");
    let origin = https_origin(&pki, &ORIGIN_NAMES).await;
    let rogue = https_origin(&rogue_pki, &["rogue.example.test"]).await;
    let config = format!(
        "[resolve]\n\"origin.example.test\" = \"127.0.0.1\"\n\"blind.example.test\" = \"127.0.0.1\"\n\
         \"never.example.test\" = \"127.0.0.1\"\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         \"mail.qq.com\" = \"127.0.0.1\"\n\"rogue.example.test\" = \"127.0.0.1\"\n\
         [mitm]\ndecrypt_hosts = [\"origin.example.test\", \"webmail.example.test\", \"127.0.0.1\", \
         \"never.example.test\", \"rogue.example.test\"]\nnever_decrypt = [\"never.example.test\"]\n\
         extra_roots = [{:?}]\n",
        pki.ca_path.display().to_string()
    );
    let mt = common::start(&config, None).await;
    let mailtap_ca = mailtap_ca_pem(&mt.dir.path().join("data"));
    World {
        mt,
        pki,
        origin,
        rogue,
        mailtap_ca,
        _pki_dir: pki_dir,
    }
}

#[tokio::test]
async fn decrypted_get_round_trips_with_mailtaps_certificate() {
    // Guards the decrypted path: mailtap's leaf, keep-alive requests forwarded over TLS and back.
    let w = world().await;
    let auth = w.authority("origin.example.test");
    let tls = tls_via(
        w.mt.addr,
        &auth,
        "origin.example.test",
        &trusting(&[&w.mailtap_ca]),
    )
    .await
    .expect("a client trusting mailtap's CA accepts the decrypted tunnel");
    assert_ne!(
        peer_der(&tls),
        w.origin.leaf_der,
        "mailtap's leaf, not the origin's"
    );
    let echo = Request::post("/echo")
        .header("host", &auth)
        .body(Full::new(Bytes::from(vec![b'e'; 100_000])))
        .unwrap();
    let answers = exchange(tls, vec![get(&auth, "/"), get(&auth, "/x?y=1"), echo]).await;
    assert_eq!(answers[0].status, StatusCode::OK);
    assert_eq!(answers[0].text(), "hello over tls");
    assert_eq!(answers[0].headers["via"], "1.1 mailtap");
    assert_eq!(answers[1].text(), "path /x?y=1");
    assert_eq!(answers[2].body.len(), 100_000);
    let seen = w.origin.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].target, "/");
    assert_eq!(seen[0].host, auth, "Host comes from the CONNECT authority");
    assert_eq!(seen[2].body_len, 100_000);
}

#[tokio::test]
async fn ip_literal_hosts_get_an_ip_san() {
    // Guards leaves for IP hosts: the client verifies an IP SAN, upstream verifies the origin's.
    let w = world().await;
    let auth = format!("127.0.0.1:{}", w.origin.addr.port());
    let tls = tls_via(w.mt.addr, &auth, "127.0.0.1", &trusting(&[&w.mailtap_ca]))
        .await
        .expect("IP SAN accepted");
    let answers = exchange(tls, vec![get(&auth, "/")]).await;
    assert_eq!(answers[0].text(), "hello over tls");
}

#[tokio::test]
async fn unlisted_and_never_decrypt_hosts_stay_blind_tunnels() {
    // Guards the decision: unlisted hosts and never_decrypt (which beats decrypt_hosts) see the
    // origin's own certificate; mailtap's CA does not get them through.
    let w = world().await;
    for host in ["blind.example.test", "never.example.test"] {
        let auth = w.authority(host);
        let tls = tls_via(w.mt.addr, &auth, host, &trusting(&[&w.pki.ca_pem]))
            .await
            .unwrap_or_else(|e| panic!("{host}: origin certificate expected: {e}"));
        assert_eq!(peer_der(&tls), w.origin.leaf_der, "{host}");
        let answers = exchange(tls, vec![get(&auth, "/")]).await;
        assert_eq!(answers[0].text(), "hello over tls");
        let only_mailtap = tls_via(w.mt.addr, &auth, host, &trusting(&[&w.mailtap_ca])).await;
        assert!(only_mailtap.is_err(), "{host} must not be decrypted");
    }
}

#[tokio::test]
async fn untrusted_upstream_is_a_502_naming_the_host() {
    // Guards upstream verification: an origin signed by an unknown CA is never used silently.
    let w = world().await;
    let auth = format!("rogue.example.test:{}", w.rogue.addr.port());
    let tls = tls_via(
        w.mt.addr,
        &auth,
        "rogue.example.test",
        &trusting(&[&w.mailtap_ca]),
    )
    .await
    .unwrap();
    let answers = exchange(tls, vec![get(&auth, "/")]).await;
    assert_eq!(answers[0].status, StatusCode::BAD_GATEWAY);
    let body = answers[0].text();
    assert!(body.contains("rogue.example.test"), "{body}");
    assert!(body.contains("certificate verify failed"), "{body}");
    assert!(
        w.rogue.seen.lock().unwrap().is_empty(),
        "no request reached the rogue origin"
    );
}

#[tokio::test]
async fn a_client_rejecting_the_ca_fails_cleanly_and_the_proxy_keeps_serving() {
    // Guards failure isolation: a client that distrusts mailtap, and one that sends plain text
    // into a decrypted tunnel, each close with one log line naming the host; others go on.
    let logs = LogCapture::default();
    let _guard = logs.install();
    let w = world().await;
    let auth = w.authority("origin.example.test");
    let refused = tls_via(
        w.mt.addr,
        &auth,
        "origin.example.test",
        &trusting(&[&w.pki.ca_pem]),
    )
    .await;
    assert!(
        refused.is_err(),
        "a client trusting only the origin's CA refuses mailtap's leaf"
    );
    let mut garbage = connect_via(w.mt.addr, &auth).await;
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, garbage.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the garbage tunnel is closed by mailtap");
    assert!(
        !String::from_utf8_lossy(&rest).contains("hello"),
        "no origin data leaks"
    );
    let tls = tls_via(
        w.mt.addr,
        &auth,
        "origin.example.test",
        &trusting(&[&w.mailtap_ca]),
    )
    .await
    .unwrap();
    assert_eq!(
        exchange(tls, vec![get(&auth, "/")]).await[0].text(),
        "hello over tls"
    );
    let page = common::raw_exchange(w.mt.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("origin.example.test"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per failed client:\n{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("TLS handshake with the browser failed")),
        "{text}"
    );
}

/// A sample request (absolute-form, as a browser sends it to a proxy) rewritten to origin-form
/// for a decrypted tunnel.
fn sample_request(path: &Path, authority: &str) -> Request<Full<Bytes>> {
    let bytes = std::fs::read(path).unwrap();
    let sep = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&bytes[..sep]).unwrap();
    let body = bytes[sep + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap().split(' ');
    let method = start.next().unwrap();
    let uri: hyper::Uri = start.next().unwrap().parse().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str());
    // The page that made the request was served over this tunnel: https and its port.
    let page = |v: &str| {
        v.replacen(
            &format!("http://{}", uri.host().unwrap()),
            &format!("https://{authority}"),
            1,
        )
    };
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "proxy-connection" => {}
            "origin" | "referer" => req = req.header(k.trim(), page(v.trim())),
            "host" => req = req.header("host", authority),
            _ => req = req.header(k.trim(), v.trim()),
        }
    }
    req.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn webmail_sends_over_https_are_intercepted_like_http() {
    // Guards the point of the feature: the same rules intercept a send inside a decrypted tunnel
    // (QQ by its rule's host, Roundcube by decrypt_hosts); the record is spooled with the
    // sample's fields and the browser gets the rule's relay response.
    let w = world().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = [
        (
            root.join("../shared/samples/webmail/qqmail.http"),
            root.join("../shared/samples/webmail/qqmail.expected.json"),
            "mail.qq.com",
            "\"errcode\":\"0\"",
        ),
        (
            root.join("samples/webmail/roundcube-plain.http"),
            root.join("samples/webmail/roundcube-plain.expected.json"),
            "webmail.example.test",
            "Message sent successfully.",
        ),
    ];
    for (n, (sample, expected, host, reply)) in cases.iter().enumerate() {
        let auth = w.authority(host);
        let tls = tls_via(w.mt.addr, &auth, host, &trusting(&[&w.mailtap_ca]))
            .await
            .unwrap_or_else(|e| panic!("{host} is decrypted: {e}"));
        // The browser logged in over the same tunnel: the webmail set the sample's cookies.
        let send = sample_request(sample, &auth);
        let cookies = send.headers()["cookie"].clone();
        let mut login = get(&auth, "/login");
        login.headers_mut().insert("x-set-cookies", cookies);
        let answers = exchange(tls, vec![login, send]).await;
        assert!(
            answers[0].text().contains("logged in"),
            "{host}: {}",
            answers[0].text()
        );
        let answers = &answers[1..];
        assert_eq!(
            answers[0].status,
            StatusCode::OK,
            "{host}: {}",
            answers[0].text()
        );
        assert!(
            answers[0].text().contains(reply),
            "{host}: {}",
            answers[0].text()
        );
        let mails = common::settled_mails(&w.mt.spool).await;
        assert_eq!(mails.len(), n + 1, "{host}: one more spooled mail");
        let r = &mails.iter().max_by_key(|(_, _, r)| r.received).unwrap().2;
        let want: Value = serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
        let addrs =
            |l: &[mailtap::mail::Mailbox]| l.iter().map(|m| m.addr.clone()).collect::<Vec<_>>();
        assert_eq!(serde_json::json!(addrs(&r.to)), want["to"], "{host}");
        assert_eq!(serde_json::json!(addrs(&r.cc)), want["cc"], "{host}");
        assert_eq!(serde_json::json!(addrs(&r.bcc)), want["bcc"], "{host}");
        assert_eq!(serde_json::json!(r.subject), want["subject"], "{host}");
        assert_eq!(serde_json::json!(r.html), want["html"], "{host}");
        assert_eq!(serde_json::json!(r.text), want["text"], "{host}");
        assert_eq!(serde_json::json!(r.sender), want["from"], "{host}");
        assert_eq!(r.source.webmail_host, *host);
    }
    let posts = w
        .origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "POST")
        .count();
    assert_eq!(
        posts, 0,
        "relay mode answers itself: the webmail never saw the sends"
    );
}

#[tokio::test]
async fn pac_home_and_ca_downloads() {
    // Guards installation: the PAC lists decrypted hosts, `/` links the CA, and /ca.crt and
    // /ca.der serve the stored CA certificate.
    let w = world().await;
    let pac = common::raw_exchange(w.mt.addr, b"GET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n").await;
    for host in ["origin.example.test", "mail.qq.com", "webmail.example.test"] {
        assert!(
            pac.contains(&format!("\"{host}\"")),
            "{host} in PAC:\n{pac}"
        );
    }
    let home = common::raw_exchange(w.mt.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        home.contains("href=\"/ca.crt\"") && home.contains("href=\"/ca.der\""),
        "{home}"
    );
    let ca = mailtap::proxy::mitm::CertAuthority::load_or_create(&w.mt.dir.path().join("data/ca"))
        .unwrap();
    assert!(home.contains(&ca.fingerprint_sha256()), "{home}");
    let pem = common::raw_exchange(w.mt.addr, b"GET /ca.crt HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        pem.starts_with("HTTP/1.1 200") && pem.ends_with(&w.mailtap_ca),
        "{pem}"
    );
    let (status, der, _) = common::curl(&[&format!("http://{}/ca.der", w.mt.addr)]).await;
    assert_eq!(status, 0);
    assert_eq!(der, ca.cert_der());
}

#[tokio::test]
async fn shutdown_closes_idle_decrypted_connections_promptly() {
    // Guards graceful shutdown: an idle kept-alive decrypted connection is closed at once
    // rather than holding shutdown for the whole grace period.
    let w = world().await;
    let auth = w.authority("origin.example.test");
    let tls = tls_via(
        w.mt.addr,
        &auth,
        "origin.example.test",
        &trusting(&[&w.mailtap_ca]),
    )
    .await
    .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let first = sender.send_request(get(&auth, "/")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    drop(first);
    let started = std::time::Instant::now();
    w.mt.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?} (grace is 10 s)",
        started.elapsed()
    );
    let closed = tokio::time::timeout(WAIT, conn).await;
    assert!(closed.is_ok(), "mailtap closed the decrypted connection");
    drop(sender);
}
