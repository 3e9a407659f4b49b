//! Serving one decrypted tunnel: after the CONNECT's 200, accept TLS from the browser with the
//! host's leaf and run HTTP/1.1 on it, each request rewritten to absolute
//! `https://<connect-authority><path>` and handed to the proxy's ordinary dispatch.
//!
//! Owns the handshake deadline and the one log line a failed handshake produces (a browser that
//! does not trust mailtap's CA, a pinned app, or a client sending garbage). It does not decide
//! whether to decrypt (the CONNECT handler asks the policy) nor what happens to a request.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::http::uri::{Authority, Scheme};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::Mitm;
use crate::proxy::pages::error_response;
use crate::proxy::service::{dispatch, ConnCtx};
use crate::proxy::ProxyBody;

/// Takes over the CONNECT `request` once hyper hands the connection over, and serves it
/// decrypted until the browser closes it, the keep-alive idle limit passes or an error occurs.
/// Every way out is logged; none of them affects other connections.
pub async fn run(ctx: ConnCtx, mitm: Arc<Mitm>, authority: Authority, request: Request<Incoming>) {
    let host = authority.host().to_string();
    let client = ctx.info.client;
    let upgraded = match hyper::upgrade::on(request).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(%host, error = %e, "CONNECT upgrade failed");
            return;
        }
    };
    let acceptor = match mitm.acceptor(&host) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%host, %client, error = %e, "no certificate for a decrypted host: tunnel closed");
            return;
        }
    };
    let handshake = acceptor.accept(TokioIo::new(upgraded));
    let tls = match tokio::time::timeout(mitm.handshake_timeout(), handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(
                %host, %client, error = %e,
                "TLS handshake with the browser failed (mailtap's CA not trusted, a pinned client, or not TLS): tunnel closed"
            );
            return;
        }
        Err(_) => {
            tracing::warn!(%host, %client, timeout_secs = mitm.handshake_timeout().as_secs(),
                "browser did not complete the TLS handshake in time: tunnel closed");
            return;
        }
    };
    tracing::debug!(%host, %client, "decrypted tunnel open");
    let config = &ctx.shared.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout())
        .max_header_size(config.max_header_bytes)
        .preserve_header_case(true)
        // A client may stop sending once its request is complete (`shutdown(SHUT_WR)`, netcat,
        // scripts): an EOF after a whole request is not an abort, so the request is still
        // handled and answered (RFC 9112 §9.6 closes gracefully in this order). Without this
        // hyper drops the connection at that EOF and the answer is never written.
        .half_close(true);
    let service = {
        let ctx = ctx.clone();
        service_fn(move |request| {
            let (ctx, authority) = (ctx.clone(), authority.clone());
            async move { Ok::<_, std::convert::Infallible>(handle_inner(ctx, authority, request).await) }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut stop = ctx.stop.clone();
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%host, %client, error = %e, "decrypted connection ended with an error");
    }
}

/// One request inside the tunnel. The access checks (`[proxy].allow`, proxy authentication)
/// were passed by the CONNECT that opened it; browsers send no `Proxy-Authorization` inside.
async fn handle_inner(
    ctx: ConnCtx,
    authority: Authority,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    match https_uri(&authority, request.uri()) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(why) => return error_response(StatusCode::BAD_REQUEST, &why),
    }
    dispatch(&ctx, request).await
}

/// The absolute `https://` URI for a target received inside a tunnel to `authority`. The
/// CONNECT authority always wins: an absolute-form target naming another host is refused, so a
/// tunnel opened for one host cannot be used to reach another.
fn https_uri(authority: &Authority, target: &Uri) -> Result<Uri, String> {
    if let Some(other) = target.authority() {
        let same_host = other.host().eq_ignore_ascii_case(authority.host())
            && other.port_u16().unwrap_or(443) == authority.port_u16().unwrap_or(443);
        if !same_host {
            return Err(format!(
                "request for {other} inside a tunnel to {authority} is refused"
            ));
        }
    }
    let path = target
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    Uri::builder()
        .scheme(Scheme::HTTPS)
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| format!("bad request target {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_https_uris_of_the_tunnel() {
        // Guards the rewrite: origin-form joins the CONNECT authority; other hosts are refused.
        let a: Authority = "mail.example.test:443".parse().unwrap();
        for (target, want) in [
            ("/", Some("https://mail.example.test:443/")),
            (
                "/?_task=mail&x=1",
                Some("https://mail.example.test:443/?_task=mail&x=1"),
            ),
            ("/a/b%20c", Some("https://mail.example.test:443/a/b%20c")),
            (
                "https://MAIL.example.test/x",
                Some("https://mail.example.test:443/x"),
            ),
            ("https://evil.test/x", None),
            ("https://mail.example.test:8443/x", None),
            ("*", Some("https://mail.example.test:443/")),
        ] {
            let uri: Uri = target.parse().unwrap();
            let got = https_uri(&a, &uri).ok().map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "{target}");
        }
    }
}
