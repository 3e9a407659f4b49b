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
    // The sample's session, set by the webmail through mailtap (as a login would).
    log_in(
        mt.addr,
        "webmail.example.test",
        "roundcube_sessid=77aa; roundcube_sessauth=secret",
    )
    .await;
    let plain = format!("GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
    let answer = send_then_half_close(mt.addr, plain.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "plain: {answer:?}");
    assert!(answer.ends_with("hello"), "plain: {answer:?}");
    let send = sample_to_port("roundcube-plain.http", origin.addr.port());
    let answer = send_then_half_close(mt.addr, &send).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "intercepted: {answer:?}"
    );
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
        let answers =
            mitm_support::exchange(stream, vec![mitm_support::get("origin.example.test", "/")])
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

/// Kills the child when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP server that answers each chunk it reads with `pong` one second later (a slow origin
/// behind a blind tunnel).
async fn slow_pong_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                for _ in 0..100 {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if s.write_all(b"pong").await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn sigint_closes_idle_connections_at_once_and_lets_busy_ones_finish() {
    // Guards issue 9: with an idle keep-alive connection and an idle CONNECT tunnel open (a
    // browser left attached), SIGINT exits well within the 10 s grace period; a plain request
    // and a tunnelled exchange still in flight at the signal complete first.
    let origin = origin().await;
    let echo = echo_server().await;
    let slow = slow_pong_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        "[proxy]\nshutdown_grace_secs = 10\n[builtin_smtp]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailtap"))
        .args(["--listen", "127.0.0.1:0", "--config", "m.toml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    // The banner's first line names the address; the rest of stdout is drained until mailtap
    // exits (a closed pipe would make its later prints fail).
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        if let Some(Ok(line)) = lines.next() {
            let _ = first_tx.send(line);
        }
        for _ in lines.by_ref().take(10_000) {}
    });
    let first = tokio::time::timeout(WAIT, first_rx)
        .await
        .expect("banner in time")
        .expect("mailtap printed a banner");
    let proxy: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in the banner: {first:?}"));

    // An idle keep-alive connection: one request answered, then nothing.
    let mut keep_alive = TcpStream::connect(proxy).await.unwrap();
    let get = format!("GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
    keep_alive.write_all(get.as_bytes()).await.unwrap();
    let head = String::from_utf8_lossy(&read_head(&mut keep_alive).await).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 5];
    keep_alive.read_exact(&mut body).await.unwrap();
    // An idle tunnel that has carried an exchange.
    let mut idle_tunnel = open_tunnel(proxy, echo).await;
    idle_tunnel.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    idle_tunnel.read_exact(&mut back).await.unwrap();
    // A tunnel whose origin is still working on the last bytes sent.
    let mut busy_tunnel = open_tunnel(proxy, slow).await;
    busy_tunnel.write_all(b"ping").await.unwrap();
    // A plain request in flight.
    let url = format!("http://{}/slow", origin.addr);
    let proxy_url = format!("http://{proxy}");
    let in_flight = tokio::spawn(async move { curl(&["-x", &proxy_url, &url]).await });
    let deadline = Instant::now() + WAIT;
    while !origin.seen.lock().unwrap().iter().any(|s| s.uri == "/slow") {
        assert!(Instant::now() < deadline, "/slow never reached the origin");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let signalled = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let pong = tokio::time::timeout(WAIT, async {
        let mut got = [0u8; 4];
        busy_tunnel.read_exact(&mut got).await.map(|_| got)
    })
    .await;
    assert!(
        matches!(pong, Ok(Ok(ref b)) if b == b"pong"),
        "the busy tunnel was cut: {pong:?}"
    );
    let (code, body, err) = in_flight.await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, b"slow done");
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "mailtap did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    eprintln!("exit {took:?} after SIGINT (grace 10 s)");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(4),
        "idle connections held the shutdown for {took:?}"
    );
    // Both idle connections were closed by mailtap, not left to time out.
    for (name, stream) in [
        ("keep-alive", &mut keep_alive),
        ("tunnel", &mut idle_tunnel),
    ] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{name} connection still open");
    }
}
