//! The HTTP/1.1 forward proxy: accept loop, per-request dispatch, streaming forward path, blind
//! CONNECT tunnels, TLS interception of listed hosts (`mitm`), and the pages mailtap serves on
//! its own address.
//!
//! The proxy knows HTTP and sockets and nothing about mail. Whether a request is intercepted is
//! decided by an [`Interceptor`] on the request head alone; every other request takes the
//! streaming path and is never buffered.

mod dial;
mod forward;
pub mod mitm;
mod pages;
mod server;
mod service;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, Uri};

pub use dial::{DialError, DialErrorKind, Dialer};
pub use pages::error_response;
pub use server::{Proxy, ProxyError};
pub use tunnel::{TunnelEnd, TunnelStats};

/// The body type of everything the proxy sends: a streamed `Incoming` or a small in-memory body.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A complete in-memory body.
pub fn full_body(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The two ends of the browser's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The browser's address.
    pub client: SocketAddr,
    /// The proxy's own address on that connection.
    pub proxy: SocketAddr,
}

/// What the interceptor sees before deciding: the request head, no body.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Always absolute-form: `http://host/path?query`, or `https://host:port/path?query` for a
    /// request inside a decrypted CONNECT tunnel (the authority is the CONNECT's).
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub info: &'a ClientInfo,
}

/// Called with the origin's response to a forwarded request (e.g. to note an upload id); it
/// returns the response the browser gets.
pub type ResponseHook =
    Box<dyn FnOnce(Response<ProxyBody>) -> BoxFuture<'static, Response<ProxyBody>> + Send>;

/// What an interceptor decided for a request it took.
pub enum Outcome {
    /// Send this request to the origin on the normal path (possibly rebuilt from a buffered
    /// body), optionally passing the response through a hook.
    Forward {
        request: Request<ProxyBody>,
        on_response: Option<ResponseHook>,
    },
    /// Answer the browser with this response; nothing goes to the origin.
    Respond(Response<ProxyBody>),
}

/// The interception seam. `wants` runs on every proxied request and must be cheap; only when it
/// returns true does the request (with its unread body) go to `intercept`.
pub trait Interceptor: Send + Sync + 'static {
    /// Decides on the head alone whether this request is intercepted.
    fn wants(&self, head: &RequestHead<'_>) -> bool;
    /// Handles a request `wants` took. The request URI is absolute-form (`http://` or `https://`).
    fn intercept(
        self: Arc<Self>,
        request: Request<Incoming>,
        info: ClientInfo,
    ) -> BoxFuture<'static, Outcome>;
    /// Host patterns the PAC file should send through mailtap; their CONNECT tunnels are
    /// decrypted (unless `[mitm].never_decrypt` lists them).
    fn pac_hosts(&self) -> Vec<crate::hostpat::HostPattern>;
    /// Sees the head of every response the proxy forwards (not only intercepted ones), with
    /// the normalised host of its request, before the browser gets it. Must be cheap; it
    /// cannot change the response. (The webmail interceptor notes the session cookies a
    /// webmail sets.)
    fn observe_response(&self, host: &str, response: &http::response::Parts) {
        let _ = (host, response);
    }
}
