//! Who may use the proxy: `Proxy-Authorization` parsing (RFC 9110 §11) and `[proxy].allow`
//! matched against IPv4, IPv6 and IPv4-mapped client addresses, including from a real
//! non-loopback address in a network namespace the test creates and removes.

mod common;

use base64::Engine as _;
use common::*;

/// `Proxy-Authorization` for `user:pass` with the scheme spelt `scheme` and `gap` between them.
fn credentials(scheme: &str, gap: &str, user_pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
    format!("{scheme}{gap}{token}")
}

#[tokio::test]
async fn auth_scheme_is_case_insensitive() {
    // Guards issue 10.8: the Basic scheme matches in any case and after any run of spaces
    // (RFC 9110 §11.1, §11.4); wrong credentials and other schemes stay refused.
    std::env::set_var("MAILTAP_TEST_PROXY_PW_ACCESS", "s3cret");
    let origin = origin().await;
    let mt = start(
        "[proxy.auth]\nusername = \"lab\"\npassword_env = \"MAILTAP_TEST_PROXY_PW_ACCESS\"\n",
        None,
    )
    .await;
    let cases = [
        (credentials("Basic", " ", "lab:s3cret"), "200"),
        (credentials("basic", " ", "lab:s3cret"), "200"),
        (credentials("BASIC", " ", "lab:s3cret"), "200"),
        (credentials("bAsIc", "   ", "lab:s3cret"), "200"),
        (credentials("basic", " ", "lab:wrong"), "407"),
        (credentials("basic", " ", "LAB:s3cret"), "407"),
        (credentials("Bearer", " ", "lab:s3cret"), "407"),
        (credentials("Basicx", " ", "lab:s3cret"), "407"),
        (credentials("basic", "", "lab:s3cret"), "407"),
        ("basic".to_string(), "407"),
    ];
    for (value, want) in cases {
        for connect in [false, true] {
            let request = if connect {
                format!(
                    "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nProxy-Authorization: {value}\r\n\r\n",
                    origin.addr
                )
            } else {
                format!(
                    "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\nProxy-Authorization: {value}\r\nConnection: close\r\n\r\n",
                    origin.addr
                )
            };
            let mut stream = tokio::net::TcpStream::connect(mt.addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&read_head(&mut stream).await).into_owned();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {want}")),
                "{value:?} (CONNECT: {connect}) → {head}"
            );
        }
    }
    mt.shutdown().await;
}
