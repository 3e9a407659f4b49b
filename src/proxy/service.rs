//! Per-request dispatch: access checks, the proxy's own pages, CONNECT, the interception seam,
//! and the streaming forward path.
//!
//! Owns the order in which a request is judged. It holds no connection state beyond what the
//! accept loop hands it ([`ConnCtx`]).

use std::sync::Arc;

use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::forward::Forwarder;
use super::mitm::Mitm;
use super::pages::{self, error_response, HomeInfo};
use super::tunnel::{self, TunnelEnd};
use super::{full_body, ClientInfo, Dialer, Interceptor, Outcome, ProxyBody, RequestHead};
use crate::config::ProxyConfig;

/// What every connection shares.
pub struct Shared {
    pub config: ProxyConfig,
    pub dialer: Dialer,
    pub forwarder: Forwarder,
    pub interceptor: Option<Arc<dyn Interceptor>>,
    /// The credentials `Proxy-Authorization` must carry, when auth is on.
    pub expected_auth: Option<BasicCredentials>,
    /// Host patterns in the PAC file.
    pub pac_hosts: Vec<crate::hostpat::HostPattern>,
    /// The user's named webmail hosts, shown on the home page.
    pub webmail_hosts: Vec<crate::hostpat::HostPattern>,
    /// TLS interception; `None` when `[mitm].enabled = false` (every CONNECT is blind).
    pub mitm: Option<Arc<Mitm>>,
}

/// One client connection's context.
#[derive(Clone)]
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub info: ClientInfo,
    /// Whether the client address is in `[proxy].allow`.
    pub allowed: bool,
    /// Held by the connection and by any tunnel it becomes, so the connection limit counts both.
    pub permit: Arc<OwnedSemaphorePermit>,
    /// Turns true when the proxy shuts down (decrypted tunnels then finish their request and
    /// close, like plain connections).
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// The `username:password` pair that proxy Basic authentication (RFC 7617) accepts. Its
/// `Debug` never shows the password.
pub struct BasicCredentials {
    user_pass: Vec<u8>,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicCredentials(<redacted>)")
    }
}

impl BasicCredentials {
    pub fn new(username: &str, password: &str) -> BasicCredentials {
        BasicCredentials {
            user_pass: format!("{username}:{password}").into_bytes(),
        }
    }

    /// True when a `Proxy-Authorization` value carries these credentials. The scheme is
    /// case-insensitive (RFC 9110 §11.1) and separated from the token68 by one or more spaces
    /// (§11.4); the token is compared after base64 decoding, in constant time.
    pub fn accepts(&self, value: &HeaderValue) -> bool {
        let Ok(text) = value.to_str() else {
            return false;
        };
        let Some((scheme, rest)) = text.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim_start())
        else {
            return false;
        };
        constant_time_eq(&decoded, &self.user_pass)
    }
}

/// Byte equality whose time does not depend on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Handles one request. Never fails: every problem becomes an HTTP answer.
pub async fn handle(
    ctx: ConnCtx,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    if !ctx.allowed {
        tracing::warn!(client = %ctx.info.client, "client not in [proxy].allow: 403");
        let mut r = error_response(
            StatusCode::FORBIDDEN,
            &format!("{} is not allowed to use this proxy", ctx.info.client.ip()),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }
    if request.method() == Method::CONNECT {
        return Ok(match check_auth(&ctx, &request) {
            Some(denied) => denied,
            None => connect(ctx, request).await,
        });
    }
    let uri = request.uri();
    if uri.authority().is_none() || is_self(&ctx, uri) {
        return Ok(own_page(&ctx, &request));
    }
    if uri.scheme_str() != Some("http") {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            &format!("cannot forward {uri}: only http:// URLs are forwarded (HTTPS goes through CONNECT)"),
        ));
    }
    if let Some(denied) = check_auth(&ctx, &request) {
        return Ok(denied);
    }
    Ok(dispatch(&ctx, request).await)
}

/// The interception seam, then the streaming forward path. `request` has an absolute-form URI
/// (`http://` from a plain proxy request, `https://` from inside a decrypted tunnel) and has
/// passed the access checks.
pub async fn dispatch(ctx: &ConnCtx, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some(interceptor) = &ctx.shared.interceptor else {
        let request = request.map(|b| b.boxed());
        return ctx.shared.forwarder.forward(request).await;
    };
    let host = crate::hostpat::normalize_host(
        request
            .uri()
            .host()
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default(),
    );
    let response = dispatch_inner(ctx, interceptor, request).await;
    // Only the head is looked at; the body keeps streaming.
    let (parts, body) = response.into_parts();
    interceptor.observe_response(&host, &parts);
    Response::from_parts(parts, body)
}

async fn dispatch_inner(
    ctx: &ConnCtx,
    interceptor: &Arc<dyn Interceptor>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let head = RequestHead {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        info: &ctx.info,
    };
    if interceptor.wants(&head) {
        return match interceptor.clone().intercept(request, ctx.info).await {
            Outcome::Respond(response) => response,
            Outcome::Forward {
                request,
                on_response,
            } => {
                let response = ctx.shared.forwarder.forward(request).await;
                match on_response {
                    Some(hook) => hook(response).await,
                    None => response,
                }
            }
        };
    }
    let request = request.map(|b| b.boxed());
    ctx.shared.forwarder.forward(request).await
}

/// `None` when the request may pass; otherwise the 407 to send.
fn check_auth(ctx: &ConnCtx, request: &Request<Incoming>) -> Option<Response<ProxyBody>> {
    let expected = ctx.shared.expected_auth.as_ref()?;
    let given = request.headers().get(header::PROXY_AUTHORIZATION);
    if given.is_some_and(|value| expected.accepts(value)) {
        return None;
    }
    tracing::warn!(
        client = %ctx.info.client,
        reason = if given.is_some() { "wrong credentials" } else { "no credentials" },
        "proxy authentication required: 407"
    );
    let mut r = error_response(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "proxy authentication required",
    );
    r.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mailtap\", charset=\"UTF-8\""),
    );
    Some(r)
}

/// True when an absolute-form URI names this proxy itself (so it is not forwarded in a loop).
fn is_self(ctx: &ConnCtx, uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let local = ctx.info.proxy;
    if authority.port_u16().unwrap_or(80) != local.port() {
        return false;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip == local.ip() || (ip.is_loopback() && local.ip().is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost") && local.ip().is_loopback(),
    }
}

fn own_page(ctx: &ConnCtx, request: &Request<Incoming>) -> Response<ProxyBody> {
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| ctx.info.proxy.to_string());
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served on the proxy's own address",
        );
    }
    match request.uri().path() {
        "/" => pages::home(&HomeInfo {
            listen: ctx.shared.config.listen,
            proxy_authority: &authority,
            pac_hosts: &ctx.shared.pac_hosts,
            webmail_hosts: &ctx.shared.webmail_hosts,
            ca: ctx.shared.mitm.as_ref().map(|m| m.ca()),
            decrypted: ctx
                .shared
                .mitm
                .as_ref()
                .map(|m| m.policy().patterns())
                .unwrap_or(&[]),
        }),
        "/proxy.pac" => pages::pac(&authority, &ctx.shared.pac_hosts),
        "/ca.crt" | "/ca.der" => match &ctx.shared.mitm {
            Some(mitm) => pages::ca_certificate(mitm.ca(), request.uri().path() == "/ca.der"),
            None => error_response(
                StatusCode::NOT_FOUND,
                "TLS interception is off ([mitm].enabled = false): there is no CA",
            ),
        },
        other => error_response(StatusCode::NOT_FOUND, &format!("no page {other} here")),
    }
}

/// CONNECT host:port: when `[mitm]`'s policy lists the host (decided here, before any TLS
/// byte), answer 200 and decrypt, leaving the origin to the pooled TLS client; otherwise dial
/// first, answer 200 only once the target accepted, and tunnel blind.
async fn connect(ctx: ConnCtx, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = request.uri().authority().cloned() else {
        return error_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let Some(port) = authority.port_u16() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!("CONNECT {authority}: a port is required"),
        );
    };
    let decrypt = ctx
        .shared
        .mitm
        .as_ref()
        .filter(|m| m.should_decrypt(authority.host()))
        .cloned();
    if let Some(mitm) = decrypt {
        // Requests inside a decrypted tunnel go to the origin through the pooled TLS client,
        // which dials (or reuses a pooled connection) when the first one arrives. Dialling here
        // too would open a connection that carries nothing; an unreachable origin is reported
        // as a 502/504 page inside the tunnel instead, which the browser shows (a refused
        // CONNECT is only an opaque network error to it).
        tokio::spawn(super::mitm::serve::run(ctx, mitm, authority, request));
        return Response::new(full_body(""));
    }
    let server = match ctx.shared.dialer.connect(authority.host(), port).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::info!(target = %authority, error = %e, "CONNECT failed");
            let status = if e.is_timeout() {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return error_response(status, &format!("CONNECT {authority}: {e}"));
        }
    };
    let idle = ctx.shared.config.tunnel_idle_timeout();
    let permit = ctx.permit.clone();
    let stop = ctx.stop.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(target = %authority, error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!(target = %authority, "CONNECT on a non-TCP connection is not supported");
                return;
            }
        };
        let client = parts.io.into_inner();
        let mut server = server;
        // Bytes the browser sent right behind the CONNECT head belong to the tunnel.
        if !parts.read_buf.is_empty() && server.write_all(&parts.read_buf).await.is_err() {
            return;
        }
        drop(parts.read_buf);
        match tunnel::run(client, server, idle, stop).await {
            TunnelEnd::Closed(stats) => {
                tracing::debug!(target = %authority, ?stats, "tunnel closed")
            }
            TunnelEnd::Idle => tracing::debug!(target = %authority, "tunnel idle: closed"),
            TunnelEnd::Shutdown => {
                tracing::debug!(target = %authority, "tunnel idle at shutdown: closed")
            }
            TunnelEnd::Error(e) => tracing::debug!(target = %authority, error = %e, "tunnel ended"),
        }
    });
    Response::new(full_body(""))
}
