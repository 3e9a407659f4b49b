//! The HTTP half of a mail's transcript, written when things happen: the response section is
//! added once the response head went to the browser and its body ended.
//!
//! Owns [`ResponseLog`] and the body wrapper that times the response: hyper encodes the head
//! right before it first polls the body, so the first poll is when the head was written (the
//! socket write follows in the same turn); the end of the body is when the response was
//! complete. It writes nothing but that section, and never delays or changes the response.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::Response;

use crate::proxy::ProxyBody;
use crate::translog::{HttpPending, LogConfig, TransLog};

/// Where and how to write the response section of one mail's transcript.
#[derive(Debug)]
pub struct ResponseLog {
    pub path: PathBuf,
    pub config: LogConfig,
    /// (browser, proxy) ends of the connection.
    pub ends: (SocketAddr, SocketAddr),
    /// Released once the section is written, so the relay appends its attempts after it.
    pub pending: HttpPending,
}

impl ResponseLog {
    /// Appends the response section; failures are logged (the transcript never fails a send).
    fn write(self, head: &str, written: DateTime<Utc>, body: Result<usize, &str>) {
        match TransLog::reopen(&self.path, &self.config) {
            Ok(mut log) => {
                log.http_response(self.ends, head, written, body);
                if let Err(e) = log.finish() {
                    tracing::warn!(path = %self.path.display(), error = %e, "transcript: response not recorded");
                }
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "transcript: response not recorded")
            }
        }
        drop(self.pending);
    }
}

/// `response` with its body wrapped so that its head, the time it was written and the body's
/// end reach the transcript. The head is taken as it is now: set every field before this.
pub fn stamped(response: Response<ProxyBody>, log: ResponseLog) -> Response<ProxyBody> {
    let head = response_head(&response);
    let (parts, body) = response.into_parts();
    let body = Stamped {
        inner: body,
        log: Some((log, head)),
        first_poll: None,
        bytes: 0,
    };
    Response::from_parts(parts, body.boxed())
}

/// The status line and every header field of a response, one per line (LF).
pub fn response_head(response: &Response<ProxyBody>) -> String {
    let mut out = format!("{:?} {}\n", response.version(), response.status());
    for (name, value) in response.headers() {
        out.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out
}

/// An upload request seen by the interceptor, kept until its send takes its files so the
/// send's transcript can show it.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub ends: (SocketAddr, SocketAddr),
    /// Request head, secrets redacted.
    pub head: String,
    pub times: crate::translog::HttpTimes,
    /// The webmail's response head and when mailtap passed it on.
    pub response: Option<(String, DateTime<Utc>)>,
}

/// Most upload records kept (oldest dropped first): a record only adds to a transcript.
const MAX_UPLOAD_RECORDS: usize = 256;

/// Upload records by ticket, bounded.
#[derive(Debug, Default)]
pub struct UploadRecords(std::collections::VecDeque<(crate::intercept::Ticket, UploadRecord)>);

impl UploadRecords {
    pub fn insert(&mut self, ticket: crate::intercept::Ticket, record: UploadRecord) {
        if self.0.len() >= MAX_UPLOAD_RECORDS {
            self.0.pop_front();
        }
        self.0.push_back((ticket, record));
    }

    pub fn responded(&mut self, ticket: crate::intercept::Ticket, head: String, at: DateTime<Utc>) {
        if let Some((_, r)) = self.0.iter_mut().find(|(t, _)| *t == ticket) {
            r.response = Some((head, at));
        }
    }

    /// Removes and returns the records of `tickets`, each once, in `tickets` order.
    pub fn take(&mut self, tickets: &[crate::intercept::Ticket]) -> Vec<UploadRecord> {
        let mut out = Vec::new();
        for t in tickets {
            if let Some(i) = self.0.iter().position(|(x, _)| x == t) {
                if let Some((_, r)) = self.0.remove(i) {
                    out.push(r);
                }
            }
        }
        out
    }
}

struct Stamped {
    inner: ProxyBody,
    log: Option<(ResponseLog, String)>,
    first_poll: Option<DateTime<Utc>>,
    bytes: usize,
}

impl Stamped {
    fn finish(&mut self, body: Result<usize, &str>) {
        if let Some((log, head)) = self.log.take() {
            let written = self.first_poll.unwrap_or_else(Utc::now);
            log.write(&head, written, body);
        }
    }
}

impl Body for Stamped {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.first_poll.get_or_insert_with(Utc::now);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len();
                }
                if this.inner.is_end_stream() {
                    let n = this.bytes;
                    this.finish(Ok(n));
                }
            }
            Poll::Ready(None) => {
                let n = this.bytes;
                this.finish(Ok(n));
            }
            Poll::Ready(Some(Err(_))) => this.finish(Err("the body failed while being sent")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Stamped {
    fn drop(&mut self) {
        if self.log.is_none() {
            return;
        }
        if self.first_poll.is_none() && self.inner.is_end_stream() {
            // An empty body is never polled: the head went out just before the drop.
            self.finish(Ok(0));
        } else {
            self.finish(Err(
                "the browser went away before the whole response was written",
            ));
        }
    }
}
