//! Negotiated TLS version and cipher suite, read from the server's ServerHello on the wire.
//!
//! native-tls exposes neither, so [`Tapped`] records the first bytes the server sends during
//! the handshake and [`parse_server_hello`] reads the (always plaintext) ServerHello: the
//! selected version (RFC 8446 §4.2.1 `supported_versions`, else `legacy_version`) and the cipher
//! suite. It only observes bytes; it never influences the handshake or certificate checks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes recorded at most (a ServerHello is far smaller; certificates follow it).
const TAP_CAP: usize = 16 * 1024;

/// A TCP stream that can record what it reads, for TLS handshake inspection.
#[derive(Debug)]
pub struct Tapped {
    tcp: TcpStream,
    rec: Option<Vec<u8>>,
}

impl Tapped {
    /// Wraps `tcp`; with `record` the first [`TAP_CAP`] bytes read are kept.
    pub fn new(tcp: TcpStream, record: bool) -> Self {
        Tapped {
            tcp,
            rec: record.then(Vec::new),
        }
    }
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
    /// Stops recording and returns what was recorded.
    pub fn take_recording(&mut self) -> Vec<u8> {
        self.rec.take().unwrap_or_default()
    }
}

impl AsyncRead for Tapped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let p = Pin::new(&mut me.tcp).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(rec)) = (&p, me.rec.as_mut()) {
            let new = &buf.filled()[before..];
            let room = TAP_CAP.saturating_sub(rec.len()).min(new.len());
            rec.extend_from_slice(&new[..room]);
        }
        p
    }
}

impl AsyncWrite for Tapped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Reads the negotiated `(version, cipher suite)` from the server's first handshake bytes.
/// `None` when they are not a well-formed ServerHello (never panics on hostile input).
pub fn parse_server_hello(wire: &[u8]) -> Option<(String, String)> {
    // Reassemble handshake-record fragments (content type 22), RFC 8446 §5.1.
    let mut hs = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 && rest[0] == 22 && hs.len() < 4096 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let frag = rest.get(5..5 + len)?;
        hs.extend_from_slice(frag);
        rest = &rest[5 + len..];
    }
    // Handshake header: type 2 = ServerHello, 24-bit length.
    if hs.first() != Some(&2) {
        return None;
    }
    let len = (usize::from(*hs.get(1)?) << 16)
        | (usize::from(*hs.get(2)?) << 8)
        | usize::from(*hs.get(3)?);
    let body = hs.get(4..4 + len)?;
    let legacy = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let sid_len = usize::from(*body.get(34)?);
    let at = 35 + sid_len;
    let suite = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
    let mut version = legacy;
    // Extensions follow the compression method byte.
    if let Some(ext_len) = body.get(at + 3..at + 5) {
        let ext_len = usize::from(u16::from_be_bytes([ext_len[0], ext_len[1]]));
        let mut exts = body.get(at + 5..at + 5 + ext_len)?;
        while exts.len() >= 4 {
            let ty = u16::from_be_bytes([exts[0], exts[1]]);
            let l = usize::from(u16::from_be_bytes([exts[2], exts[3]]));
            let data = exts.get(4..4 + l)?;
            if ty == 0x002b && l == 2 {
                version = u16::from_be_bytes([data[0], data[1]]);
            }
            exts = &exts[4 + l..];
        }
    }
    Some((version_name(version), suite_name(suite)))
}

fn version_name(v: u16) -> String {
    match v {
        0x0304 => "TLSv1.3".into(),
        0x0303 => "TLSv1.2".into(),
        0x0302 => "TLSv1.1".into(),
        0x0301 => "TLSv1.0".into(),
        other => format!("0x{other:04x}"),
    }
}

/// IANA names for the suites OpenSSL commonly negotiates; others as hex.
fn suite_name(s: u16) -> String {
    let name = match s {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        _ => return format!("0x{s:04x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a ServerHello record with an optional supported_versions extension.
    fn hello(legacy: u16, suite: u16, sv: Option<u16>, split: Option<usize>) -> Vec<u8> {
        let mut body = legacy.to_be_bytes().to_vec();
        body.extend([7u8; 32]); // random
        body.push(3);
        body.extend([1, 2, 3]); // session id
        body.extend(suite.to_be_bytes());
        body.push(0); // compression
        let mut exts = Vec::new();
        exts.extend([0x00, 0x33, 0x00, 0x02, 0xaa, 0xbb]); // some other extension
        if let Some(v) = sv {
            exts.extend([0x00, 0x2b, 0x00, 0x02]);
            exts.extend(v.to_be_bytes());
        }
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![2, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut out = Vec::new();
        let parts: Vec<&[u8]> = match split {
            Some(n) => vec![&hs[..n], &hs[n..]],
            None => vec![&hs[..]],
        };
        for p in parts {
            out.extend([22, 3, 3, (p.len() >> 8) as u8, p.len() as u8]);
            out.extend(p);
        }
        out.extend([20, 3, 3, 0, 1, 1]); // a following ChangeCipherSpec record
        out
    }

    #[test]
    fn server_hello_table() {
        // Guards: version comes from supported_versions when present; fragments reassemble.
        let cases = [
            (
                hello(0x0303, 0x1302, Some(0x0304), None),
                "TLSv1.3",
                "TLS_AES_256_GCM_SHA384",
            ),
            (
                hello(0x0303, 0xc030, None, None),
                "TLSv1.2",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ),
            (
                hello(0x0303, 0x1301, Some(0x0304), Some(10)),
                "TLSv1.3",
                "TLS_AES_128_GCM_SHA256",
            ),
            (hello(0x0303, 0x1234, None, None), "TLSv1.2", "0x1234"),
        ];
        for (wire, v, c) in cases {
            assert_eq!(
                parse_server_hello(&wire),
                Some((v.to_string(), c.to_string()))
            );
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Guards: truncated, oversized or non-TLS input yields None, never a panic.
        let good = hello(0x0303, 0x1302, Some(0x0304), None);
        for n in 0..good.len() - 6 {
            let _ = parse_server_hello(&good[..n]);
        }
        assert_eq!(parse_server_hello(b"220 smtp.example ESMTP\r\n"), None);
        assert_eq!(parse_server_hello(&[22, 3, 3, 0xff, 0xff, 2]), None);
        assert_eq!(parse_server_hello(&[22, 3, 3, 0, 1, 1]), None);
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut v = good.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 40) as usize % v.len();
            v[i] = (seed >> 8) as u8;
            let _ = parse_server_hello(&v);
        }
    }
}
