//! Test helper: a browser's webmail "send" request, posted through a running mailtap.
//!
//! Owns building a Roundcube-style form send (the request a browser sends through its proxy)
//! and posting raw bytes to the proxy, reading back one response (bounded). It starts nothing
//! and checks nothing about delivery: the tests do that against the SMTP server they chose.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Host name of the webmail the requests go to (mapped by `[resolve]` in the tests' config).
pub const WEBMAIL_HOST: &str = "webmail.example.test";
/// Path of the Roundcube send request (the part the HTTP POST's URI ends with).
pub const SEND_PATH: &str = "/roundcube/?_task=mail&_unlock=loading9&_framed=1";
/// The session cookie [`roundcube_send`] carries; `common::log_in` with it first, so that
/// mailtap has seen the webmail set it.
pub const SESSION_COOKIE: &str = "roundcube_sessid=SECRET1234";
/// Upper bound for one request/response exchange with the proxy.
pub const EXCHANGE_WAIT: Duration = Duration::from_secs(20);

/// `[resolve]` and `[senders]` TOML sending webmail requests (and each `(host, ip)` of
/// `resolve`) to loopback and naming `sender` as the envelope sender (Roundcube's form carries
/// only an identity id), console off.
pub fn webmail_config(sender: &str, resolve: &[(&str, &str)]) -> String {
    let mut toml = format!("[resolve]\n\"{WEBMAIL_HOST}\" = \"127.0.0.1\"\n");
    for (host, ip) in resolve {
        toml.push_str(&format!("\"{host}\" = \"{ip}\"\n"));
    }
    toml.push_str(&format!(
        "[senders]\n\"{WEBMAIL_HOST}\" = \"{sender}\"\n[relay]\nconsole = false\n"
    ));
    toml
}

/// A Roundcube send (form-encoded) with these recipients, subject and plain-text body, as a
/// browser sends it to its HTTP proxy (absolute-form request target on port 9).
pub fn roundcube_send(to: &str, cc: &str, subject: &str, message: &str) -> Vec<u8> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let body = format!(
        "_token=t&_task=mail&_action=send&_id=77&_from=1&_to={}&_cc={}&_bcc=&_subject={}&_is_html=0&_message={}&_draft=",
        enc(to),
        enc(cc),
        enc(subject),
        enc(message)
    );
    format!(
        "POST http://{WEBMAIL_HOST}:9{SEND_PATH} HTTP/1.1\r\n\
         Host: {WEBMAIL_HOST}\r\nCookie: {SESSION_COOKIE}\r\nUser-Agent: test\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Why a post through the proxy did not yield a response.
#[derive(Debug)]
pub enum PostError {
    Io(std::io::Error),
    TimedOut,
    BadHead(String),
}

/// Posts `request` to the proxy at `proxy` and returns the response head plus its
/// `Content-Length` body as text (bounded by [`EXCHANGE_WAIT`]; heads capped at 64 KiB).
pub async fn post(proxy: SocketAddr, request: &[u8]) -> Result<String, PostError> {
    let exchange = async {
        let mut s = TcpStream::connect(proxy).await.map_err(PostError::Io)?;
        s.write_all(request).await.map_err(PostError::Io)?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 || s.read(&mut byte).await.map_err(PostError::Io)? == 0 {
                return Err(PostError::BadHead(
                    String::from_utf8_lossy(&head).into_owned(),
                ));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        let mut body = vec![0; len.min(1 << 20)];
        s.read_exact(&mut body).await.map_err(PostError::Io)?;
        Ok(head + &String::from_utf8_lossy(&body))
    };
    tokio::time::timeout(EXCHANGE_WAIT, exchange)
        .await
        .map_err(|_| PostError::TimedOut)?
}

/// [`SESSION_COOKIE`] set by the webmail through the proxy at `proxy` (`host:port`), without a
/// runtime (for tests that drive the `mailtap` binary): a one-shot loopback origin reached as
/// [`WEBMAIL_HOST`] (which the config's `[resolve]` maps to 127.0.0.1) answers a GET with it.
pub fn log_in_blocking(proxy: &str) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let origin = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(EXCHANGE_WAIT)).expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            if s.read(&mut byte).expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nSet-Cookie: {SESSION_COOKIE}; Path=/\r\nContent-Length: 9\r\n\
             Connection: close\r\n\r\nlogged in"
        );
        s.write_all(answer.as_bytes()).expect("answer");
    });
    let mut s = std::net::TcpStream::connect(proxy).expect("connect to the proxy");
    s.set_read_timeout(Some(EXCHANGE_WAIT)).expect("timeout");
    s.write_all(
        format!("GET http://{WEBMAIL_HOST}:{port}/ HTTP/1.1\r\nHost: {WEBMAIL_HOST}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("login request");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).ends_with("logged in"),
        "login through mailtap: {}",
        String::from_utf8_lossy(&answer)
    );
    origin.join().expect("login origin");
}
