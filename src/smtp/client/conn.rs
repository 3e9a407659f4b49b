//! The client's connection: commands out, replies in, each under a deadline, all observed.
//!
//! Owns the timed read/write primitives, transcript emission of every wire line, and the TLS
//! handshake (implicit or after STARTTLS) with certificate verification. It does not know the
//! order of SMTP commands; [`super::session`] does.

use super::error::{Error, Stage};
use super::transcript::{TlsInfo, Transcript, TranscriptEvent};
use crate::smtp::io::{trim_eol, Line, LineBuf, Stream, Tapped};
use crate::smtp::proto::reply::{Reply, ReplyParser};
use crate::smtp::tls_sniff::parse_server_hello;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Largest single write of DATA payload; each write gets the data-block timeout.
const DATA_CHUNK: usize = 256 * 1024;

pub(crate) struct Conn {
    stream: Stream,
    lines: LineBuf,
    parser: ReplyParser,
    max_line: usize,
}

impl Conn {
    pub(crate) fn new(stream: Stream, max_reply_bytes: usize, max_reply_lines: usize) -> Self {
        Conn {
            stream,
            lines: LineBuf::new(),
            parser: ReplyParser::new(max_reply_bytes, max_reply_lines),
            max_line: max_reply_bytes,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Reads one complete reply; the whole reply must arrive within `limit`.
    pub(crate) async fn read_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
        t: &mut dyn Transcript,
    ) -> Result<Reply, Error> {
        let deadline = Instant::now() + limit;
        // Bounded: the parser fails after max_reply_lines lines; each read is deadline-bound.
        loop {
            let read = self.lines.read_line(&mut self.stream, self.max_line);
            let line = match tokio::time::timeout_at(deadline, read).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        stage,
                        after: limit,
                    })
                }
                Ok(Err(source)) => return Err(Error::Io { stage, source }),
                Ok(Ok(Line::TooLong)) => {
                    return Err(Error::Protocol {
                        stage,
                        detail: format!("reply line longer than {} bytes", self.max_line),
                    })
                }
                Ok(Ok(Line::Eof(rest))) => {
                    if !rest.is_empty() {
                        t.event(TranscriptEvent::Received(&String::from_utf8_lossy(&rest)));
                    }
                    return Err(Error::Closed { stage });
                }
                Ok(Ok(Line::Full(l))) => l,
            };
            let l = trim_eol(&line);
            t.event(TranscriptEvent::Received(&String::from_utf8_lossy(l)));
            match self.parser.push(l) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => return Err(Error::from_reply_error(stage, e)),
            }
        }
    }

    /// Writes `wire` in one call (commands, or a pipelined group) within `limit`.
    /// `shown` are the lines the transcript gets (secrets already replaced).
    pub(crate) async fn write_cmds(
        &mut self,
        stage: Stage,
        wire: &[u8],
        shown: &[&str],
        limit: Duration,
        t: &mut dyn Transcript,
    ) -> Result<(), Error> {
        for s in shown {
            t.event(TranscriptEvent::Sent(s));
        }
        self.write_raw(stage, wire, limit).await
    }

    async fn write_raw(&mut self, stage: Stage, wire: &[u8], limit: Duration) -> Result<(), Error> {
        let w = async {
            self.stream.write_all(wire).await?;
            self.stream.flush().await
        };
        match timeout(limit, w).await {
            Err(_) => Err(Error::Timeout {
                stage,
                after: limit,
            }),
            Ok(Err(source)) => Err(Error::Io { stage, source }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one command line and reads its reply.
    pub(crate) async fn command(
        &mut self,
        stage: Stage,
        cmd: &str,
        shown: &str,
        limit: Duration,
        t: &mut dyn Transcript,
    ) -> Result<Reply, Error> {
        let mut wire = Vec::with_capacity(cmd.len() + 2);
        wire.extend_from_slice(cmd.as_bytes());
        wire.extend_from_slice(b"\r\n");
        self.write_cmds(stage, &wire, &[shown], limit, t).await?;
        self.read_reply(stage, limit, t).await
    }

    /// Writes the stuffed DATA payload in large chunks, each within `block_limit`.
    pub(crate) async fn write_data(
        &mut self,
        payload: &[u8],
        block_limit: Duration,
    ) -> Result<(), Error> {
        for chunk in payload.chunks(DATA_CHUNK) {
            self.write_raw(Stage::Data, chunk, block_limit).await?;
        }
        Ok(())
    }

    /// Upgrades to TLS. RFC 3207 §4.2 / STARTTLS injection: bytes the server sent after its
    /// 220 and before the handshake are refused rather than trusted after the upgrade.
    pub(crate) async fn upgrade(
        self,
        connector: &native_tls::TlsConnector,
        name: &str,
        limit: Duration,
    ) -> Result<(Conn, TlsInfo), Error> {
        if self.lines.pending() > 0 {
            return Err(Error::Protocol {
                stage: Stage::StartTls,
                detail: format!(
                    "{} unexpected bytes after the STARTTLS reply",
                    self.lines.pending()
                ),
            });
        }
        let tcp = match self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) => {
                return Err(Error::Protocol {
                    stage: Stage::StartTls,
                    detail: "TLS is already active".into(),
                })
            }
            Stream::Other(_) => {
                return Err(Error::Tls {
                    stage: Stage::StartTls,
                    detail: "STARTTLS needs the TCP socket Session::connect dials".into(),
                })
            }
        };
        let (stream, info) = handshake(tcp, connector, name, limit).await?;
        Ok((
            Conn {
                stream,
                lines: LineBuf::new(),
                parser: self.parser,
                max_line: self.max_line,
            },
            info,
        ))
    }

    pub(crate) async fn shutdown(&mut self) {
        // Best effort: the peer may already be gone.
        let _ = timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// Builds a connector that verifies against the system roots plus `extra_roots`, TLS ≥ 1.2.
/// Verification is never disabled.
pub(crate) fn connector(
    extra_roots: &[native_tls::Certificate],
) -> Result<native_tls::TlsConnector, Error> {
    let mut b = native_tls::TlsConnector::builder();
    b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    for r in extra_roots {
        b.add_root_certificate(r.clone());
    }
    b.build().map_err(|e| Error::Tls {
        stage: Stage::Tls,
        detail: e.to_string(),
    })
}

/// Performs the client TLS handshake within `limit`, verifying the certificate for `name`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    connector: &native_tls::TlsConnector,
    name: &str,
    limit: Duration,
) -> Result<(Stream, TlsInfo), Error> {
    let c = tokio_native_tls::TlsConnector::from(connector.clone());
    let mut tls = match timeout(limit, c.connect(name, Tapped::new(tcp, true))).await {
        Err(_) => {
            return Err(Error::Timeout {
                stage: Stage::Tls,
                after: limit,
            })
        }
        Ok(Err(e)) => {
            return Err(Error::Tls {
                stage: Stage::Tls,
                detail: e.to_string(),
            })
        }
        Ok(Ok(s)) => s,
    };
    let hello = tls.get_mut().get_mut().get_mut().take_recording();
    let (version, cipher) = match parse_server_hello(&hello) {
        Some((v, c)) => (Some(v), Some(c)),
        None => (None, None),
    };
    let peer_cert_hash = tls
        .get_ref()
        .tls_server_end_point()
        .ok()
        .flatten()
        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect());
    let info = TlsInfo {
        version,
        cipher,
        peer_cert_hash,
        verified_name: name.to_string(),
    };
    Ok((Stream::Tls(Box::new(tls)), info))
}
