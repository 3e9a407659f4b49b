//! Property checks behind mailtap's fuzz targets: one function per target, each taking the raw
//! fuzzer input and panicking (a finding) when a property fails.
//!
//! Owns the input formats (documented per function) and the properties checked beyond "does
//! not panic": decode/encode round trips, "no CR/LF in anything that becomes an SMTP path",
//! bounded reply sizes, framing that re-encodes to the bytes it came from. The cargo fuzz
//! binaries in `fuzz_targets/` call these; the main crate's `tests/fuzz_seeds.rs` includes this
//! file (`#[path]`) and runs the committed seeds and regressions through them on stable, so a
//! finding stays covered without nightly. Because of that include, it may use only crates the
//! main crate also depends on. Does not generate inputs and keeps no state between calls beyond
//! the compiled built-in rule set.

use std::sync::OnceLock;
use std::task::{Context, Poll};

use mailtap::intercept::extract::{form, json, multipart, netease};
use mailtap::intercept::fields::{Decoded, Value};
use mailtap::intercept::{Extracted, OwnedHead, RuleSet};
use mailtap::mail::address::{has_control, parse_list, parse_mailbox, validate_addr};
use mailtap::mail::record::{MailRecord, Mailbox};
use mailtap::queue::{journal_decode, journal_encode, MailId, MailMeta};
use mailtap::redact::sanitize_line;
use mailtap::smtp::io::{trim_eol, Line, LineBuf};
use mailtap::smtp::reply::{Reply, ReplyParser};
use mailtap::smtp::{auth, data::is_safe_path, parse_path, split_command, Capabilities};

/// Splits `data` at its first `\n`: (first line without `\r`, rest). No `\n`: (data, empty).
fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (trim_eol(&data[..=i]), &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Percent-encodes every byte except ASCII alphanumerics (a valid form/query encoding).
fn pct(out: &mut Vec<u8>, s: &[u8]) {
    for b in s {
        if b.is_ascii_alphanumeric() {
            out.push(*b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

fn text_fields(d: &Decoded) -> Vec<(String, String)> {
    d.fields
        .iter()
        .filter_map(|(n, v)| match v {
            Value::Text(t) => Some((n.clone(), t.clone())),
            _ => None,
        })
        .collect()
}

/// `form`: the input is a form body. The first byte also picks a declared charset (none,
/// UTF-8, GBK, Big5) for a second decode.
///
/// Properties: one field per non-empty `&` segment, in order; re-encoding the decoded fields
/// (UTF-8, percent-encoded) and decoding with a declared UTF-8 gives the same fields; the query
/// parser agrees with the body parser on UTF-8 text.
pub fn form(data: &[u8]) {
    let d = form::decode(data, None);
    let segments = data.split(|b| *b == b'&').filter(|s| !s.is_empty()).count();
    assert_eq!(d.fields.len(), segments, "one field per segment");
    assert!(d.files.is_empty());
    let mut enc = Vec::new();
    for (i, (n, v)) in text_fields(&d).iter().enumerate() {
        if i > 0 {
            enc.push(b'&');
        }
        pct(&mut enc, n.as_bytes());
        enc.push(b'=');
        pct(&mut enc, v.as_bytes());
    }
    let again = form::decode(&enc, Some(encoding_rs::UTF_8));
    assert_eq!(text_fields(&again), text_fields(&d), "form round trip");
    let q = form::query_pairs(std::str::from_utf8(&enc).expect("encoding is ASCII"));
    assert_eq!(q, text_fields(&d), "query parser agrees");
    let declared = match data.first().map(|b| b % 4) {
        Some(1) => Some(encoding_rs::UTF_8),
        Some(2) => Some(encoding_rs::GBK),
        Some(3) => Some(encoding_rs::BIG5),
        _ => None,
    };
    let d2 = form::decode(data, declared);
    assert_eq!(d2.fields.len(), segments);
}

/// A boundary that does not occur in any of `parts`.
fn fresh_boundary(parts: &[&[u8]]) -> String {
    let mut b = String::from("fuzzBoundary");
    let mut n = 0u32;
    while parts
        .iter()
        .any(|p| p.windows(b.len()).any(|w| w == b.as_bytes()))
    {
        n += 1;
        b = format!("fuzzBoundary{n}x");
    }
    b
}

/// `multipart`: the input's first line is the Content-Type value, the rest the body.
///
/// Properties: file data never exceeds the body; re-encoding the decoded file parts (those with
/// a plain `type/subtype`) under a fresh boundary decodes to the same bytes, in order;
/// `filename_of` on the first line (read as a Content-Disposition) never panics.
pub fn multipart(data: &[u8]) {
    let (ct, body) = first_line(data);
    let ct = String::from_utf8_lossy(ct);
    let _ = multipart::filename_of(ct.as_bytes());
    let Ok(d) = multipart::decode(body, Some(&ct)) else {
        return;
    };
    let file_bytes: usize = d.files.iter().map(|f| f.data.len()).sum();
    assert!(file_bytes <= body.len(), "files hold more than the body");
    if d.files.is_empty() {
        return;
    }
    let datas: Vec<&[u8]> = d.files.iter().map(|f| f.data.as_slice()).collect();
    let boundary = fresh_boundary(&datas);
    let mut enc = Vec::new();
    let mut want = Vec::new();
    for (i, f) in d.files.iter().enumerate() {
        // Only content types that survive as a header value unchanged.
        let ct_ok = simple_media_type(&f.content_type);
        if !ct_ok {
            continue;
        }
        enc.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"n{i}\"\r\nContent-Type: {}\r\n\r\n", f.content_type).as_bytes());
        enc.extend_from_slice(&f.data);
        enc.extend_from_slice(b"\r\n");
        want.push((format!("f{i}"), format!("n{i}"), f.data.clone()));
    }
    enc.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let again = multipart::decode(
        &enc,
        Some(&format!("multipart/form-data; boundary={boundary}")),
    )
    .expect("re-encoded multipart decodes");
    let got: Vec<(String, String, Vec<u8>)> = again
        .files
        .into_iter()
        .map(|f| (f.field, f.filename, f.data))
        .collect();
    // Empty unnamed parts are dropped by design; names here are never empty.
    assert_eq!(got, want, "multipart file round trip");
}

/// Whether a content type is a bare `type/subtype` of token characters (it then survives as
/// a header value unchanged).
fn simple_media_type(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(s.split_once('/'), Some((a, b)) if ok(a) && ok(b))
}

fn json_of(d: &Decoded) -> String {
    let mut order = Vec::new();
    for (n, v) in &d.fields {
        let j = match v {
            Value::Text(t) => serde_json::Value::String(t.clone()),
            Value::List(l) => l.iter().cloned().map(serde_json::Value::String).collect(),
            Value::Keys(k) => {
                let mut o = String::from("{");
                for (i, key) in k.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    o.push_str(&serde_json::Value::String(key.clone()).to_string());
                    o.push_str(":0");
                }
                o.push('}');
                order.push((n.clone(), o));
                continue;
            }
        };
        order.push((n.clone(), j.to_string()));
    }
    let mut out = String::from("{");
    for (i, (n, raw)) in order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(n.clone()).to_string());
        out.push(':');
        out.push_str(raw);
    }
    out.push('}');
    out
}

/// `json`: the input is a request body.
///
/// Properties: a body decodes exactly when serde_json sees a JSON object (within its recursion
/// limit); re-serialising the decoded fields (text → strings, lists → arrays, object keys →
/// objects) decodes to the same `Decoded`, order and duplicates included.
pub fn json(data: &[u8]) {
    let r = json::decode(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        assert_eq!(r.is_ok(), v.is_object(), "object ⇔ decodes: {r:?}");
    }
    let Ok(d) = r else { return };
    let again = json::decode(json_of(&d).as_bytes()).expect("re-serialised JSON decodes");
    assert_eq!(again, d, "JSON round trip");
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `netease`: the input is a 163 `mbox:compose` form body (`var=<xml>&…`). The XML parser also
/// runs on the input as text.
///
/// Properties: parsed fields rendered back as flat `<string>`/`<array>` XML parse to the same
/// fields; the form's own fields follow the XML's in the decoded body.
pub fn netease(data: &[u8]) {
    if let Ok(d) = netease::decode(data, None) {
        let outer = form::decode(data, None);
        assert!(d.fields.len() >= outer.fields.len());
        assert_eq!(
            d.fields[d.fields.len() - outer.fields.len()..],
            outer.fields[..]
        );
    }
    let text = String::from_utf8_lossy(data);
    let Ok(fields) = netease::parse(&text) else {
        return;
    };
    let mut xml = String::from("<?xml version=\"1.0\"?><object>");
    for (n, v) in &fields {
        match v {
            Value::Text(t) => xml.push_str(&format!(
                "<string name=\"{}\">{}</string>",
                xml_escape(n),
                xml_escape(t)
            )),
            Value::List(items) => {
                xml.push_str(&format!("<array name=\"{}\">", xml_escape(n)));
                for it in items {
                    xml.push_str(&format!("<string>{}</string>", xml_escape(it)));
                }
                xml.push_str("</array>");
            }
            Value::Keys(_) => unreachable!("the XML parser makes no key lists"),
        }
    }
    xml.push_str("</object>");
    let again = netease::parse(&xml).expect("rendered XML parses");
    assert_eq!(again, fields, "NetEase XML round trip\n{xml}");
}

fn render_mailbox(m: &Mailbox) -> String {
    match &m.name {
        Some(n) => format!(
            "\"{}\" <{}>",
            n.replace('\\', "\\\\").replace('"', "\\\""),
            m.addr
        ),
        None => format!("<{}>", m.addr),
    }
}

/// `address`: the input (lossy UTF-8) is an address list as a webmail submits it.
///
/// Properties: a mailbox that passes strict validation has no control character (so no CR/LF)
/// and is a safe SMTP path; names never hold control characters; rendering valid mailboxes as
/// `"name" <addr>` and re-parsing the joined list gives the same mailboxes.
pub fn address(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let list = parse_list(&input);
    let mut valid = Vec::new();
    for m in &list {
        if let Some(n) = &m.name {
            assert!(!has_control(n), "control character in a name: {n:?}");
        }
        if validate_addr(&m.addr).is_ok() {
            assert!(
                !has_control(&m.addr),
                "control character accepted: {:?}",
                m.addr
            );
            if !m.addr.contains('"') {
                assert!(is_safe_path(&m.addr), "unsafe SMTP path: {:?}", m.addr);
            }
            if !m.addr.contains(['"', '>', '<', ',', ';', '\\']) {
                valid.push(m.clone());
            }
        }
    }
    let _ = parse_mailbox(&input);
    let joined: Vec<String> = valid.iter().map(render_mailbox).collect();
    let again = parse_list(&joined.join(", "));
    assert_eq!(again, valid, "address list round trip");
}

fn builtin_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| RuleSet::builtin().expect("built-in rules compile"))
}

/// Parses a raw request (`METHOD target HTTP/1.1`, headers, blank line, body) into a head and
/// body. `None` when the request line or URI does not parse; bad header lines are skipped.
fn parse_request(data: &[u8]) -> Option<(OwnedHead, &[u8])> {
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            data.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((data.len(), data.len()));
    let (head, body) = (&data[..split.0], &data[split.1..]);
    let mut lines = head.split(|b| *b == b'\n').map(trim_eol);
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = request_line.split(' ');
    let method = http::Method::from_bytes(parts.next()?.as_bytes()).ok()?;
    let uri: http::Uri = parts.next()?.parse().ok()?;
    let mut headers = http::HeaderMap::new();
    for l in lines {
        let Some(colon) = l.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(&l[..colon]),
            http::header::HeaderValue::from_bytes(l[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    Some((OwnedHead::from_parts(&method, &uri, &headers), body))
}

/// `rules`: the input is a raw HTTP request like `samples/webmail/*.http`, matched against the
/// built-in rules and, on a hit, extracted.
///
/// Properties: the normalised host is lowercase; matching is deterministic and names existing
/// rules; a send's valid recipients and sender never hold CR/LF; a sender carries `@`; an
/// upload carries files.
pub fn rules(data: &[u8]) {
    let Some((head, body)) = parse_request(data) else {
        return;
    };
    assert_eq!(head.host, head.host.to_ascii_lowercase());
    let set = builtin_rules();
    let view = head.view();
    let m = set.match_head(&view);
    assert_eq!(m, set.match_head(&view), "match is deterministic");
    let Some(m) = m else { return };
    assert!(m.candidates.iter().all(|i| *i < set.rules().len()));
    let Ok((rule, x)) = set.extract(&m, &view, body) else {
        return;
    };
    match x {
        Extracted::Send(d) => {
            assert!(rule.is_some());
            if let Some(f) = &d.from {
                assert!(f.addr.contains('@'));
                if validate_addr(&f.addr).is_ok() {
                    assert!(is_safe_path(&f.addr), "{:?}", f.addr);
                }
            }
            for m in d.to.iter().chain(&d.cc).chain(&d.bcc) {
                if validate_addr(&m.addr).is_ok() {
                    assert!(is_safe_path(&m.addr), "{:?}", m.addr);
                }
            }
        }
        Extracted::Upload(files, _) => assert!(!files.is_empty() && rule.is_some()),
        Extracted::NotASend => assert!(rule.is_none()),
    }
}

/// Reply size caps the fuzz target uses (the client's defaults are larger; small caps reach the
/// cap paths).
const REPLY_MAX_BYTES: usize = 512;
const REPLY_MAX_LINES: usize = 8;

/// `smtp_reply`: the input is what a server sends, split into lines at `\n` (`\r\n` stripped
/// as the client does), fed to one parser.
///
/// Properties: every reply has a code in 200..=559 repeated on every line, at most the line cap
/// and the byte cap (lines + CRLF; 3× for lossy UTF-8), an enhanced code of the reply's class;
/// no LF inside a line, and a line escaped for a transcript holds no control character; EHLO
/// capability parsing of any reply never panics.
pub fn smtp_reply(data: &[u8]) {
    let mut p = ReplyParser::new(REPLY_MAX_BYTES, REPLY_MAX_LINES);
    for raw in data.split_inclusive(|b| *b == b'\n') {
        let line = trim_eol(raw);
        let Ok(Some(r)) = p.push(line) else { continue };
        check_reply(&r);
    }
}

fn check_reply(r: &Reply) {
    assert!((200..=559).contains(&r.code), "{}", r.code);
    assert!(!r.lines.is_empty() && r.lines.len() <= REPLY_MAX_LINES);
    // The cap counts received bytes; lines are kept as lossy UTF-8, where one invalid byte
    // becomes U+FFFD (3 bytes): the kept text is at most 3× the cap.
    let bytes: usize = r.lines.iter().map(|l| l.len() + 2).sum();
    assert!(bytes <= 3 * REPLY_MAX_BYTES, "{bytes}");
    let code = r.code.to_string();
    for l in &r.lines {
        assert!(l.starts_with(&code), "{l:?}");
        // Lines are kept as received (a bare CR inside one included, for reports to quote);
        // what writes them out escapes controls, so a line stays one line in a transcript.
        assert!(!l.contains('\n'), "LF inside a reply line: {l:?}");
        let logged = sanitize_line(l);
        assert!(
            !logged.chars().any(|c| c.is_control() && c != '\t'),
            "{logged:?}"
        );
    }
    if let Some(e) = r.enhanced {
        assert_eq!(u16::from(e.class), r.code / 100);
    }
    let _ = Capabilities::from_ehlo(r);
    assert!(!r.one_line().contains('\n'));
}

/// Drives a future that never waits (an in-memory reader) to completion.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    // A slice reader is always ready: the first poll finishes.
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory read returned Pending"),
    }
}

/// Line cap the fuzz target uses (the server's default is 4096; small reaches the cap path).
const CMD_MAX_LINE: usize = 512;

/// `smtp_command`: the input is what a client sends to the built-in server, split into lines by
/// the server's own line reader and parsed as its command loop does.
///
/// Properties: the line reader returns the input exactly (lines + EOF rest) or stops at an
/// over-long line, never returning more than the cap; MAIL/RCPT paths carry no control
/// character, space or angle bracket (a safe SMTP path) and come from inside the argument;
/// AUTH decoding never panics.
pub fn smtp_command(data: &[u8]) {
    let mut reader: &[u8] = data;
    let mut lb = LineBuf::new();
    let mut seen = Vec::new();
    // Each round consumes at least one byte or ends: bounded by the input length + 1.
    for _ in 0..=data.len() {
        match ready(lb.read_line(&mut reader, CMD_MAX_LINE)).expect("slice reads never fail") {
            Line::Full(l) => {
                assert!(l.len() <= CMD_MAX_LINE && l.ends_with(b"\n"));
                seen.extend_from_slice(&l);
                command(&String::from_utf8_lossy(trim_eol(&l)));
            }
            Line::Eof(rest) => {
                seen.extend_from_slice(&rest);
                assert_eq!(seen, data, "line reader loses or adds bytes");
                return;
            }
            Line::TooLong => return,
        }
    }
    panic!("line reader did not finish");
}

fn command(line: &str) {
    let (verb, arg) = split_command(line);
    assert_eq!(verb, verb.to_ascii_uppercase());
    assert_eq!(arg, arg.trim());
    let kw = match verb.as_str() {
        "MAIL" => "FROM:",
        "RCPT" => "TO:",
        "AUTH" => {
            let _ = auth::parse_plain(arg);
            let _ = auth::decode_text(arg);
            return;
        }
        _ => return,
    };
    if let Some((path, params)) = parse_path(arg, kw) {
        assert!(
            is_safe_path(path) || path.len() > 512,
            "unsafe path {path:?}"
        );
        assert!(arg.contains(&format!("<{path}>")));
        assert_eq!(params, params.trim());
    }
}

/// `journal`: the input is a spool journal file.
///
/// Properties: the complete records re-encode (never longer than the bytes before the torn
/// tail, which holds no record) and decode back to themselves;
/// each record that parses as metadata (as recovery does) has a safe id and survives a
/// write/read round trip through the journal framing.
pub fn journal(data: &[u8]) {
    let (records, torn) = journal_decode(data);
    let end = torn.unwrap_or(data.len());
    assert!(end <= data.len());
    let re: Vec<u8> = records.iter().flat_map(|r| journal_encode(r)).collect();
    assert!(
        re.len() <= end,
        "re-encoded records are longer than their source"
    );
    let (again, none) = journal_decode(&re);
    assert_eq!(
        (again, none),
        (records.clone(), None),
        "journal framing round trip"
    );
    if let Some(at) = torn {
        assert_eq!(
            journal_decode(&data[at..]).0.len(),
            0,
            "a torn tail holds no record"
        );
    }
    for r in records {
        meta(r);
        if let Ok(m) = serde_json::from_slice::<MailMeta<serde_json::Value>>(r) {
            check_id(&m.id);
        }
    }
}

fn check_id(id: &MailId) {
    let s = id.to_string();
    assert!(
        !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']),
        "unsafe mail id {s:?}"
    );
    assert_eq!(MailId::parse(&s).ok().as_ref(), Some(id));
}

/// `meta`: the input is a `meta.json` file, read as the spool reads it (`MailMeta<MailRecord>`).
///
/// Properties: loaded metadata has a safe id and writes back (pretty JSON, as the store
/// writes) to a document that reads back and writes to the same bytes again, also through
/// the journal framing.
pub fn meta(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<MailMeta<MailRecord>>(data) else {
        return;
    };
    check_id(&m.id);
    let out = serde_json::to_vec_pretty(&m).expect("metadata serialises");
    let rec = journal_encode(&out);
    let (recs, torn) = journal_decode(&rec);
    assert_eq!((recs.len(), torn), (1, None));
    let back: MailMeta<MailRecord> =
        serde_json::from_slice(recs[0]).expect("written metadata reads");
    // Times are stored with microseconds: the first write may truncate, after that the
    // document is a fixed point.
    let out2 = serde_json::to_vec_pretty(&back).expect("metadata serialises");
    assert_eq!(out2, out, "meta.json write/read/write differs");
    assert_eq!(back.id, m.id);
    assert_eq!(back.record.to, m.record.to);
}
