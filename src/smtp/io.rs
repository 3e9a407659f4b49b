//! Byte-level plumbing shared by the SMTP client and the built-in server.
//!
//! Owns [`Stream`] (plain TCP or TLS over TCP, upgradeable in place for STARTTLS) and
//! [`LineBuf`] (a bounded line reader that keeps unread bytes, so pipelined input and
//! STARTTLS injection can be detected). It knows nothing of SMTP commands or replies.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use super::tls_sniff::Tapped;

/// Any byte stream the SMTP client's dialogue can run over (a test's `tokio::io::duplex`,
/// a socket the caller dialled itself).
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A client- or server-side connection, before or after TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_native_tls::TlsStream<Tapped>>),
    /// A stream dialled (and, if at all, encrypted) by the caller; it cannot be upgraded to
    /// TLS in place.
    Other(Box<dyn Duplex>),
}

impl Stream {
    /// The TCP socket underneath, when there is one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().get_ref().get_ref().tcp()),
            Stream::Other(_) => None,
        }
    }
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Other(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Other(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Other(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Other(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Result of asking [`LineBuf`] for a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, including its terminating `\n` (and `\r` before it, if any).
    Full(Vec<u8>),
    /// The peer closed the connection; any partial line is returned (may be empty).
    Eof(Vec<u8>),
    /// More than `max` bytes without a `\n`.
    TooLong,
}

/// A read buffer yielding `\n`-terminated lines, never holding more than needed.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    pos: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl LineBuf {
    pub fn new() -> Self {
        LineBuf {
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    /// Bytes received but not yet consumed (pipelined commands, or injected bytes).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Drops unconsumed bytes (after they have been reported, e.g. on STARTTLS).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    /// Takes a complete line already buffered, if any.
    pub fn take_buffered(&mut self, max: usize) -> Option<Line> {
        let avail = &self.buf[self.pos..];
        match avail.iter().position(|b| *b == b'\n') {
            Some(i) if i < max => {
                let line = avail[..=i].to_vec();
                self.pos += i + 1;
                if self.pos == self.buf.len() {
                    self.clear();
                }
                Some(Line::Full(line))
            }
            Some(_) => Some(Line::TooLong),
            None if avail.len() >= max => Some(Line::TooLong),
            None => None,
        }
    }

    /// Reads until a full line (at most `max` bytes including the `\n`) is available.
    pub async fn read_line<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> io::Result<Line> {
        // Bounded: each iteration either returns or reads ≥ 1 byte, and a line > max returns.
        loop {
            if let Some(line) = self.take_buffered(max) {
                return Ok(line);
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            // read_buf appends into spare capacity: no zero-filling per read.
            let n = r.read_buf(&mut self.buf).await?;
            if n == 0 {
                let rest = self.buf.split_off(self.pos);
                self.clear();
                return Ok(Line::Eof(rest));
            }
        }
    }
}

/// Strips a trailing `\n` and then a trailing `\r`.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_and_cap() {
        // Guards: lines are split at LF, capped, and leftovers are kept as pending.
        let data: &[u8] = b"250-a\r\n250 b\nrest";
        let mut r = data;
        let mut lb = LineBuf::new();
        assert_eq!(
            lb.read_line(&mut r, 100).await.unwrap(),
            Line::Full(b"250-a\r\n".to_vec())
        );
        assert_eq!(lb.pending(), 10);
        assert_eq!(
            lb.read_line(&mut r, 100).await.unwrap(),
            Line::Full(b"250 b\n".to_vec())
        );
        assert_eq!(
            lb.read_line(&mut r, 100).await.unwrap(),
            Line::Eof(b"rest".to_vec())
        );
        let long = [b'x'; 50];
        let mut r = &long[..];
        let mut lb = LineBuf::new();
        assert_eq!(lb.read_line(&mut r, 10).await.unwrap(), Line::TooLong);
    }

    #[test]
    fn trim_table() {
        // Guards: only one line terminator is removed.
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\n", b"a"),
            (b"a\n", b"a"),
            (b"a", b"a"),
            (b"a\r\r\n", b"a\r"),
            (b"\r\n", b""),
        ];
        for (i, o) in cases {
            assert_eq!(trim_eol(i), *o);
        }
    }
}
