//! What mailtap answers itself: its small home page, the PAC file, and error responses.
//!
//! Owns the text users see when the proxy (rather than an origin) answers. It does no I/O.

use std::fmt::Write as _;
use std::net::SocketAddr;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::mitm::CertAuthority;
use super::{full_body, ProxyBody};
use crate::hostpat::HostPattern;

/// A plain-text answer from the proxy itself: `mailtap: <message>`.
pub fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = format!("mailtap: {message}\n");
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Everything the home page shows.
pub struct HomeInfo<'a> {
    pub listen: SocketAddr,
    /// The address the browser used to reach us (`host:port`).
    pub proxy_authority: &'a str,
    pub pac_hosts: &'a [HostPattern],
    /// The hosts the user named as self-hosted webmails (`[intercept].hosts`, `[senders]` keys,
    /// `[mitm].decrypt_hosts`): where the Roundcube, SquirrelMail, SnappyMail and RainLoop rules
    /// apply.
    pub webmail_hosts: &'a [HostPattern],
    /// mailtap's CA when TLS interception is on.
    pub ca: Option<&'a CertAuthority>,
    /// Host patterns whose CONNECT tunnels are decrypted.
    pub decrypted: &'a [HostPattern],
}

/// The home page at `/`.
pub fn home(info: &HomeInfo<'_>) -> Response<ProxyBody> {
    let mut hosts = String::new();
    for h in info.pac_hosts {
        let _ = write!(
            hosts,
            "<li><code>{}</code></li>",
            html_escape(&h.to_string())
        );
    }
    if hosts.is_empty() {
        hosts.push_str("<li>(none)</li>");
    }
    let mut webmails = String::new();
    for h in info.webmail_hosts {
        let _ = write!(
            webmails,
            "<li><code>{}</code></li>",
            html_escape(&h.to_string())
        );
    }
    if webmails.is_empty() {
        webmails.push_str("<li>(none yet: no self-hosted webmail is intercepted)</li>");
    }
    let tls = match info.ca {
        None => {
            "<h2>HTTPS</h2>\n<p>TLS interception is off: every HTTPS site is tunnelled blind.</p>\n"
                .to_string()
        }
        Some(ca) => {
            let mut decrypted = String::new();
            for h in info.decrypted {
                let _ = write!(
                    decrypted,
                    "<li><code>{}</code></li>",
                    html_escape(&h.to_string())
                );
            }
            if decrypted.is_empty() {
                decrypted.push_str("<li>(none)</li>");
            }
            format!(
                "<h2>HTTPS webmail</h2>\n<p>HTTPS to the hosts below is decrypted with mailtap's own CA; \
                 every other HTTPS site is tunnelled blind. Install the CA in the browser: \
                 <a href=\"/ca.crt\">ca.crt</a> (PEM) or <a href=\"/ca.der\">ca.der</a> (DER).</p>\n\
                 <p>SHA-256 fingerprint: <code>{fp}</code></p>\n<ul>{decrypted}</ul>\n",
                fp = ca.fingerprint_sha256()
            )
        }
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mailtap</title></head><body>\n\
         <h1>mailtap {version}</h1>\n\
         <p>HTTP forward proxy listening on <code>{listen}</code>.</p>\n\
         <ul>\n<li>Manual proxy setting: HTTP proxy <code>{authority}</code> (also for HTTPS).</li>\n\
         <li>Automatic setting: <a href=\"/proxy.pac\">http://{authority}/proxy.pac</a></li>\n</ul>\n\
         <h2>Self-hosted webmails mailtap intercepts</h2>\n\
         <p>Roundcube, SquirrelMail, SnappyMail and RainLoop sends are taken only on these hosts \
         (hosted webmails such as QQ Mail and NetEase have their own hosts built in). A send \
         is relayed only when it comes from the webmail's own page (not another site) and \
         carries a session cookie that webmail set through mailtap; otherwise it goes to the \
         webmail unchanged.</p>\n<ul>{webmails}</ul>\n\
         <p>To add one, name it in the configuration file and restart mailtap:</p>\n\
         <pre>[intercept]\nhosts = [\"webmail.example.com\", \"*.mail.example.org\"]</pre>\n\
         <p>(<code>*.domain</code> means the domain and every name under it.)</p>\n\
         <h2>Hosts the PAC file sends through mailtap</h2>\n<ul>{hosts}</ul>\n{tls}</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        listen = info.listen,
        authority = html_escape(info.proxy_authority),
    );
    let mut response = Response::new(full_body(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The PAC file: the listed hosts go through `proxy_authority`, everything else (and loopback)
/// goes DIRECT.
pub fn pac(proxy_authority: &str, hosts: &[HostPattern]) -> Response<ProxyBody> {
    let conditions: Vec<String> = hosts.iter().map(HostPattern::pac_condition).collect();
    let matcher = if conditions.is_empty() {
        "false".to_string()
    } else {
        conditions.join(" ||\n      ")
    };
    let body = format!(
        "// mailtap {version}: webmail hosts go through mailtap, everything else directly.\n\
         function FindProxyForURL(url, host) {{\n\
         \x20 var h = host.toLowerCase();\n\
         \x20 if (isPlainHostName(h) || h == \"localhost\" || shExpMatch(h, \"127.*\") || h == \"[::1]\")\n\
         \x20   return \"DIRECT\";\n\
         \x20 if ({matcher})\n\
         \x20   return \"PROXY {proxy_authority}\";\n\
         \x20 return \"DIRECT\";\n\
         }}\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    let mut response = Response::new(full_body(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    response
}

/// mailtap's CA certificate for installation: PEM (`application/x-pem-file`) or DER
/// (`application/x-x509-ca-cert`, which browsers offer to import).
pub fn ca_certificate(ca: &CertAuthority, der: bool) -> Response<ProxyBody> {
    let (body, content_type, name) = if der {
        (
            ca.cert_der().to_vec(),
            "application/x-x509-ca-cert",
            "mailtap-ca.der",
        )
    } else {
        (
            ca.cert_pem().as_bytes().to_vec(),
            "application/x-pem-file",
            "mailtap-ca.crt",
        )
    };
    let mut response = Response::new(full_body(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(r: Response<ProxyBody>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn pac_lists_hosts_and_wildcards() {
        // Guards the PAC shape: exact hosts compared, wildcards through shExpMatch, proxy named.
        let hosts: Vec<HostPattern> = vec![
            "mail.qq.com".parse().unwrap(),
            "*.Example.Test".parse().unwrap(),
        ];
        let body = text(pac("127.0.0.1:8800", &hosts)).await;
        assert!(body.contains("h == \"mail.qq.com\""), "{body}");
        assert!(
            body.contains("(h == \"example.test\" || dnsDomainIs(h, \".example.test\"))"),
            "{body}"
        );
        assert!(body.contains("return \"PROXY 127.0.0.1:8800\";"), "{body}");
        let empty = text(pac("127.0.0.1:8800", &[])).await;
        assert!(empty.contains("if (false)"), "{empty}");
    }

    #[tokio::test]
    async fn home_escapes_what_it_shows() {
        // Guards the home page against markup from the Host header.
        let info = HomeInfo {
            listen: "127.0.0.1:8800".parse().unwrap(),
            proxy_authority: "<x>",
            pac_hosts: &[],
            webmail_hosts: &[],
            ca: None,
            decrypted: &[],
        };
        let body = text(home(&info)).await;
        assert!(body.contains("&lt;x&gt;") && !body.contains("<x>"));
    }
}
