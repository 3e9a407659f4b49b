//! Webmail sample fixtures: raw-HTTP parsing, the sample directories, and the projection of a
//! `MailRecord` onto the `expected.json` shape.

use std::path::{Path, PathBuf};

use mailtap::mail::record::{MailRecord, RejectionKind, SenderSource};
use serde_json::{json, Value};

pub struct RawRequest {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// Splits a raw HTTP message into its start line, headers and body (Content-Length checked).
pub fn split_message(bytes: &[u8], what: &Path) -> (String, http::HeaderMap, Vec<u8>) {
    let sep = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{what:?}: no blank line"));
    let head =
        std::str::from_utf8(&bytes[..sep]).unwrap_or_else(|_| panic!("{what:?}: head not UTF-8"));
    let body = bytes[sep + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{what:?}: bad header {line:?}"));
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    if let Some(cl) = headers.get(http::header::CONTENT_LENGTH) {
        assert_eq!(
            cl.to_str().unwrap().parse::<usize>().unwrap(),
            body.len(),
            "{what:?}: Content-Length"
        );
    }
    (start, headers, body)
}

pub fn parse_request(path: &Path) -> RawRequest {
    let bytes = std::fs::read(path).unwrap();
    let (start, headers, body) = split_message(&bytes, path);
    let mut parts = start.split(' ');
    let method = http::Method::from_bytes(parts.next().unwrap().as_bytes()).unwrap();
    let uri: http::Uri = parts.next().unwrap().parse().unwrap();
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{path:?}");
    RawRequest {
        method,
        uri,
        headers,
        body,
    }
}

pub fn dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared/samples/webmail"),
        root.join("samples/webmail"),
    ]
}

pub fn files(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| pred(n))
        .collect();
    out.sort();
    out
}

pub fn as_expected(r: &MailRecord) -> Value {
    let addrs = |l: &[mailtap::mail::Mailbox]| l.iter().map(|m| m.addr.clone()).collect::<Vec<_>>();
    json!({
        "from": (r.sender_source == SenderSource::Request).then(|| r.sender.clone()),
        "to": addrs(&r.to),
        "cc": addrs(&r.cc),
        "bcc": addrs(&r.bcc),
        "subject": r.subject,
        "text": r.text,
        "html": r.html,
        "attachments": r.attachments.iter().map(|a| json!({
            "filename": a.filename, "content_type": a.content_type, "size": a.data.len()
        })).collect::<Vec<_>>(),
    })
}

pub fn kind_name(k: &RejectionKind) -> &'static str {
    match k {
        RejectionKind::NoSender => "NoSender",
        RejectionKind::InvalidAddress { .. } => "InvalidAddress",
        RejectionKind::NoRecipients => "NoRecipients",
        RejectionKind::TooLarge { .. } => "TooLarge",
        RejectionKind::Unrenderable => "Unrenderable",
    }
}
