//! The streaming forward path through a running mailtap, driven by curl and a hyper client.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn curl_get_and_head_pass_through() {
    // Guards the basic absolute-form GET/HEAD path and the fields the origin receives.
    let origin = origin().await;
    let mt = start("", None).await;
    let url = format!("http://{}/1k", origin.addr);
    let (code, body, err) = curl(&["-x", &mt.proxy_url(), &url]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, vec![b'a'; 1024]);
    let (code, head, err) = curl(&["-I", "-x", &mt.proxy_url(), &url]).await;
    assert_eq!(code, 0, "{err}");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1024"), "{head}");
    assert!(head.contains("via: 1.1 mailtap"), "{head}");
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[1].method, "HEAD");
    // The origin gets origin-form, a Host from the target, and no proxy-only fields.
    assert_eq!(seen[0].uri, "/1k");
    assert_eq!(
        seen[0].header("host"),
        Some(origin.addr.to_string().as_str())
    );
    assert_eq!(seen[0].header("proxy-connection"), None);
    mt.shutdown().await;
}

#[tokio::test]
async fn chunked_upload_streams_to_the_origin() {
    // Guards streamed request bodies: a 3 MiB chunked POST arrives whole and byte-exact.
    let origin = origin().await;
    let mt = start("", None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let url = format!("http://{}/echo", origin.addr);
    let (code, body, err) = curl(&[
        "-x",
        &mt.proxy_url(),
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(body == data, "echoed body differs ({} bytes)", body.len());
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(seen[0].body_len, data.len());
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    mt.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    // Guards Expect: 100-continue: the client gets 100 before sending, then the final answer.
    let origin = origin().await;
    let mt = start("", None).await;
    let mut s = TcpStream::connect(mt.addr).await.unwrap();
    let head = format!(
        "POST http://{}/len HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        origin.addr, origin.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut s).await;
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    s.write_all(b"12345").await.unwrap();
    let fin = read_head(&mut s).await;
    assert!(
        fin.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&fin)
    );
    let mut body = [0u8; 1];
    tokio::time::timeout(WAIT, s.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body, b"5");
    // curl's own 100-continue path works too.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(200_000)).unwrap();
    let url = format!("http://{}/len", origin.addr);
    let data = format!("@{}", big.display());
    let (code, out, err) = curl(&[
        "-x",
        &mt.proxy_url(),
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"200000");
    assert!(origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.header("expect").is_none()));
    mt.shutdown().await;
}

#[tokio::test]
async fn many_requests_share_one_client_and_one_origin_connection() {
    // Guards keep-alive both ways: 200 requests on one browser connection reuse one origin one.
    let origin = origin().await;
    let mt = start("", None).await;
    let stream = TcpStream::connect(mt.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..200 {
        let req = Request::post(format!("http://{}/echo", origin.addr))
            .header("host", origin.addr.to_string())
            .body(Full::new(Bytes::from(format!("request {i}"))))
            .unwrap();
        let resp = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("request {i}").as_bytes());
    }
    assert_eq!(origin.seen.lock().unwrap().len(), 200);
    assert_eq!(
        *origin.connections.lock().unwrap(),
        1,
        "origin connection was not reused"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_fields_are_removed_and_header_case_kept() {
    // Guards RFC 9110 §7.6.1 on requests and responses, and header-case preservation both ways.
    let (addr, heads) = raw_origin(
        b"HTTP/1.1 200 OK\r\nX-Origin-CaSe: 1\r\nConnection: close, X-Hop\r\nX-Hop: gone\r\n\
          Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let mt = start("", None).await;
    let request = format!(
        "GET http://{addr}/x HTTP/1.1\r\nHost: wrong.example\r\nX-MiXeD-Case: v\r\n\
         Connection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nProxy-Connection: keep-alive\r\n\
         Keep-Alive: 300\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
         Proxy-Authorization: Basic eDp5\r\nCookie: a=b\r\n\r\n"
    );
    let mut s = TcpStream::connect(mt.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let response = String::from_utf8_lossy(&read_head(&mut s).await).into_owned();
    let head = String::from_utf8_lossy(&heads.lock().unwrap()[0]).into_owned();
    assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("X-MiXeD-Case: v\r\n"), "case lost: {head}");
    assert!(head.contains(&format!("\r\nHost: {addr}\r\n")), "{head}");
    assert!(head.contains("Cookie: a=b\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    for gone in [
        "x-drop-me",
        "proxy-connection",
        "keep-alive",
        "\r\nte:",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(!lower.contains(gone), "{gone} forwarded: {head}");
    }
    assert!(response.contains("X-Origin-CaSe: 1\r\n"), "{response}");
    let lower = response.to_ascii_lowercase();
    for gone in ["x-hop", "keep-alive", "proxy-authenticate"] {
        assert!(!lower.contains(gone), "{gone} returned: {response}");
    }
    mt.shutdown().await;
}

#[tokio::test]
async fn unreachable_origins_get_502_and_silent_ones_504() {
    // Guards the error answers: refused and unresolvable → 502, no response in time → 504.
    let silent = silent_origin().await;
    let mt = start(
        "[proxy]\nresponse_timeout_secs = 1\n[resolve]\n\"lab.example.test\" = \"127.0.0.1\"\n",
        None,
    )
    .await;
    let port = closed_port();
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        &format!("http://127.0.0.1:{port}/"),
    ])
    .await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{out}"
    );
    let (_, out, _) = curl(&["-i", "-x", &mt.proxy_url(), "http://no-such-host.invalid/"]).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.contains("cannot resolve host no-such-host.invalid"),
        "{out}"
    );
    let started = std::time::Instant::now();
    let (_, out, _) = curl(&["-i", "-x", &mt.proxy_url(), &format!("http://{silent}/")]).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(8));
    // [resolve] sends a made-up name to loopback: refused there names the override target.
    let (_, out, _) = curl(&[
        "-i",
        "-x",
        &mt.proxy_url(),
        &format!("http://lab.example.test:{port}/"),
    ])
    .await;
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(
        out.contains(&format!("cannot connect to lab.example.test:{port}")),
        "{out}"
    );
    mt.shutdown().await;
}
