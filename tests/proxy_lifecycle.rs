//! Connection lifecycle at the edges: clients that half-close after a complete request,
//! shutdown with idle and busy connections (a real `mailtap` process and SIGINT), and the
//! number of connections a decrypted tunnel opens to its origin.

mod common;
mod mitm_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request`, shuts down the sending half (as `nc -N` or a script's `shutdown(SHUT_WR)`
/// does) and reads everything the proxy sends back until it closes (bounded by `WAIT`).
async fn send_then_half_close(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy neither answered nor closed");
    String::from_utf8_lossy(&out).into_owned()
}

/// A webmail sample with its request target's port set to `port` (the host name stays and
/// `[resolve]` maps it to 127.0.0.1).
fn sample_to_port(name: &str, port: u16) -> Vec<u8> {
    let bytes = std::fs::read(format!("samples/webmail/{name}")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let host = "http://webmail.example.test/";
    assert!(text.starts_with(&format!("POST {host}")), "{name}");
    let mut out = format!("POST http://webmail.example.test:{port}/").into_bytes();
    out.extend_from_slice(&bytes[5 + host.len()..]);
    out
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_answer() {
    // Guards issue 9: a complete request followed by shutdown(SHUT_WR) is answered, both on the
    // forward path and when it is an intercepted send (whose mail is then taken).
    let origin = origin().await;
    let mt = start(
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         [senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n",
        None,
    )
    .await;
    let plain = format!(
        "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n",
        origin.addr
    );
    let answer = send_then_half_close(mt.addr, plain.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "plain: {answer:?}");
    assert!(answer.ends_with("hello"), "plain: {answer:?}");
    let send = sample_to_port("roundcube-plain.http", origin.addr.port());
    let answer = send_then_half_close(mt.addr, &send).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "intercepted: {answer:?}");
    let mails = settled_mails(&mt.spool).await;
    assert_eq!(mails.len(), 1, "the half-closed send was not taken");
    assert_eq!(mails[0].2.sender, "lilei@example.com");
    mt.shutdown().await;
}

/// A TCP front for `target` that counts the connections it accepts and relays each one.
async fn counting_front(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_decrypted_tunnel_dials_its_origin_once() {
    // Guards issue 9: a decrypted CONNECT opens no TCP connection of its own to the origin; the
    // requests inside it use the TLS pool's connection, so the origin sees one connection per
    // tunnel (and none more for a second tunnel while the first connection is pooled).
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = mitm_support::TestPki::new(pki_dir.path(), "origin");
    let origin = mitm_support::https_origin(&pki, &["origin.example.test"]).await;
    let (front, accepted) = counting_front(origin.addr).await;
    let config = format!(
        "[resolve]\n\"origin.example.test\" = \"127.0.0.1\"\n\
         [mitm]\ndecrypt_hosts = [\"origin.example.test\"]\nextra_roots = [{:?}]\n",
        pki.ca_path.display().to_string()
    );
    let mt = start(&config, None).await;
    let ca = mitm_support::mailtap_ca_pem(&mt.dir.path().join("data"));
    let tls = mitm_support::trusting(&[&ca]);
    let authority = format!("origin.example.test:{}", front.port());
    for round in 1..=2 {
        let stream = mitm_support::tls_via(mt.addr, &authority, "origin.example.test", &tls)
            .await
            .expect("TLS with mailtap's leaf");
        let answers = mitm_support::exchange(
            stream,
            vec![mitm_support::get("origin.example.test", "/")],
        )
        .await;
        assert_eq!(answers[0].text(), "hello over tls", "round {round}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "round {round}: connections the origin accepted"
        );
    }
    // Nothing is dialled before the 200 now: an unreachable origin is a 502 page inside the
    // tunnel, naming the target.
    let dead = format!("origin.example.test:{}", closed_port());
    let stream = mitm_support::tls_via(mt.addr, &dead, "origin.example.test", &tls)
        .await
        .expect("TLS with mailtap's leaf");
    let answers =
        mitm_support::exchange(stream, vec![mitm_support::get("origin.example.test", "/")]).await;
    assert_eq!(answers[0].status, hyper::StatusCode::BAD_GATEWAY);
    assert!(answers[0].text().contains(&dead), "{}", answers[0].text());
    mt.shutdown().await;
}
