//! multipart/form-data decoding over an in-memory body, driven synchronously.
//!
//! Owns: running multer over a borrowed body (fed in 256 KiB chunks, polled with a no-op waker
//! since every chunk is ready), filename recovery from Content-Disposition (RFC 7578 §4.2 /
//! RFC 2231 `filename*`, raw UTF-8 or GB18030 bytes) and the text-part charset policy. Does not
//! interpret fields. Memory: a part's buffer grows with what is read of it (never reserved
//! from the body's length: a reservation per part became one memory mapping per part, and
//! 66,000 tiny parts exhausted `vm.max_map_count`); peak ≈ body + parts. More than
//! `max_parts` parts stop the decoder at the first one over.

use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::ExtractError;
use crate::intercept::fields::{charset_of, decode_text, guess, Decoded, FilePart, Value};

const CHUNK: usize = 256 * 1024;

/// Feeds the body one chunk at a time, answering `Pending` (after waking itself) between
/// chunks. multer's buffer reads a stream until it is pending, so an always-ready stream would
/// copy the whole body into that buffer at once; this keeps its buffer near one chunk.
struct Throttled<'a> {
    chunks: std::slice::Chunks<'a, u8>,
    ready: bool,
}

impl Stream for Throttled<'_> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        Poll::Ready(self.chunks.next().map(|c| Ok(Bytes::copy_from_slice(c))))
    }
}

/// Decodes `body` with the boundary from `content_type`. Text parts become fields; parts with
/// a `filename` parameter become files (a part with an empty filename and no bytes — an
/// unused file input — is dropped). Default bound on parts (see [`decode_bounded`]).
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<Decoded, ExtractError> {
    decode_bounded(body, content_type, super::Bounds::default().max_parts)
}

/// [`decode`] with its own bound: more than `max_parts` parts (fields and files, counted as
/// they are reached) is `TooManyParts`.
pub fn decode_bounded(
    body: &[u8],
    content_type: Option<&str>,
    max_parts: usize,
) -> Result<Decoded, ExtractError> {
    let ct = content_type.ok_or(ExtractError::MissingContentType)?;
    let boundary =
        multer::parse_boundary(ct).map_err(|e| ExtractError::Multipart(e.to_string()))?;
    let chunks = Throttled {
        chunks: body.chunks(CHUNK),
        ready: false,
    };
    let mut mp = multer::Multipart::new(chunks, boundary);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    // Bound: every other poll feeds a chunk and every part needs bytes, so a body of n bytes
    // cannot need more than a small multiple of n/CHUNK + parts polls; n/8 is far above that.
    let max_polls = body.len() / 8 + 1024;
    let mut polls = 0usize;
    let mut parts = 0usize;
    let mut texts: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut files = Vec::new();
    loop {
        polls += 1;
        if polls > max_polls {
            return Err(ExtractError::Multipart(
                "multipart parser did not finish".into(),
            ));
        }
        let field = match mp.poll_next_field(&mut cx) {
            Poll::Ready(Ok(Some(f))) => f,
            Poll::Ready(Ok(None)) => break,
            Poll::Ready(Err(e)) => return Err(ExtractError::Multipart(e.to_string())),
            Poll::Pending => continue,
        };
        parts += 1;
        if parts > max_parts {
            return Err(ExtractError::TooManyParts { limit: max_parts });
        }
        let name = field.name().unwrap_or_default().to_string();
        let disposition = field
            .headers()
            .get(http::header::CONTENT_DISPOSITION)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let part_ct = field.content_type().map(|m| m.to_string());
        let filename = filename_of(&disposition);
        // Grows with what arrives (amortised doubling; large buffers grow by remapping, not
        // copying): allocation proportional to the part, whatever the body's size.
        let mut data = Vec::new();
        let mut field = pin!(field);
        loop {
            polls += 1;
            if polls > max_polls {
                return Err(ExtractError::Multipart(
                    "multipart parser did not finish".into(),
                ));
            }
            match field.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(chunk))) => data.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => return Err(ExtractError::Multipart(e.to_string())),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    return Err(ExtractError::Multipart("in-memory body stalled".into()))
                }
            }
        }
        if data.capacity() - data.len() > data.len() / 8 {
            data.shrink_to_fit();
        }
        match filename {
            Some(filename) => {
                if filename.is_empty() && data.is_empty() {
                    continue;
                }
                files.push(FilePart {
                    field: name,
                    filename,
                    content_type: part_ct.unwrap_or_else(|| "application/octet-stream".into()),
                    data,
                });
            }
            None => {
                let declared = charset_of(part_ct.as_deref()).is_some();
                let bytes = match charset_of(part_ct.as_deref()) {
                    Some(enc) => decode_text(&data, Some(enc)).into_bytes(),
                    None => data,
                };
                texts.push((name, bytes, declared));
            }
        }
    }
    // Undeclared text parts share one charset: UTF-8 when all are valid, else GB18030 (the
    // page charset of e.g. SquirrelMail zh_CN is sent by no header).
    let all_utf8 = texts.iter().all(|(_, b, _)| guess(b) == encoding_rs::UTF_8);
    let enc = if all_utf8 {
        encoding_rs::UTF_8
    } else {
        encoding_rs::GB18030
    };
    let fields = texts
        .into_iter()
        .map(|(n, b, declared)| {
            let v = if declared {
                decode_text(&b, Some(encoding_rs::UTF_8))
            } else {
                decode_text(&b, Some(enc))
            };
            (n, Value::Text(v))
        })
        .collect();
    Ok(Decoded { fields, files })
}

/// Splits header parameters on `;` outside quotes; returns (lowercase name, raw value bytes
/// with quotes and backslash escapes removed).
fn params(header: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut esc) = (0, false, false);
    for (i, b) in header.iter().enumerate() {
        if esc {
            esc = false;
        } else if *b == b'\\' && quoted {
            esc = true;
        } else if *b == b'"' {
            quoted = !quoted;
        } else if *b == b';' && !quoted {
            parts.push(&header[start..i]);
            start = i + 1;
        }
    }
    parts.push(&header[start..]);
    for p in parts.into_iter().skip(1) {
        let Some(eq) = p.iter().position(|b| *b == b'=') else {
            continue;
        };
        let name = String::from_utf8_lossy(&p[..eq])
            .trim()
            .to_ascii_lowercase();
        let raw = p[eq + 1..].trim_ascii();
        let value = match raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
            Some(inner) => {
                let mut v = Vec::with_capacity(inner.len());
                let mut it = inner.iter();
                while let Some(b) = it.next() {
                    if *b == b'\\' {
                        if let Some(n) = it.next() {
                            v.push(*n);
                        }
                    } else {
                        v.push(*b);
                    }
                }
                v
            }
            None => raw.to_vec(),
        };
        out.push((name, value));
    }
    out
}

/// The filename of a Content-Disposition value: `filename*` (RFC 2231 §4:
/// `charset'lang'percent-encoded`) wins over `filename`, whose raw bytes are UTF-8 when valid,
/// else GB18030. `None` when the part has no filename parameter (a text field).
pub fn filename_of(disposition: &[u8]) -> Option<String> {
    let ps = params(disposition);
    if let Some((_, v)) = ps.iter().find(|(n, _)| n == "filename*") {
        let text = String::from_utf8_lossy(v);
        let mut it = text.splitn(3, '\'');
        if let (Some(cs), Some(_lang), Some(enc)) = (it.next(), it.next(), it.next()) {
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(enc).collect();
            let declared = encoding_rs::Encoding::for_label(cs.as_bytes());
            return Some(decode_text(&bytes, declared));
        }
    }
    ps.iter()
        .find(|(n, _)| n == "filename")
        .map(|(_, v)| decode_text(v, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_table() {
        // RFC 2231 names win; raw UTF-8 and GBK names decode; no filename → text field.
        let (gbk, _, _) = encoding_rs::GBK.encode("报告.txt");
        let mut gbk_cd = b"form-data; name=\"f\"; filename=\"".to_vec();
        gbk_cd.extend_from_slice(&gbk);
        gbk_cd.push(b'"');
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (b"form-data; name=\"a\"".to_vec(), None),
            (b"form-data; name=\"a\"; filename=\"\"".to_vec(), Some("")),
            ("form-data; name=\"a\"; filename=\"实验报告.txt\"".as_bytes().to_vec(), Some("实验报告.txt")),
            (b"form-data; name=\"a\"; filename=\"x.txt\"; filename*=UTF-8''%E5%AE%9E%E9%AA%8C.txt".to_vec(), Some("实验.txt")),
            (b"form-data; name=\"a\"; filename*=utf-8'zh'a%20b.txt".to_vec(), Some("a b.txt")),
            (b"form-data; name=\"a\"; filename*=gbk''%B1%A8%B8%E6.txt".to_vec(), Some("报告.txt")),
            (b"form-data; name=\"a\"; filename=\"semi;colon \\\"q\\\".txt\"".to_vec(), Some("semi;colon \"q\".txt")),
            (gbk_cd, Some("报告.txt")),
        ];
        for (cd, want) in cases {
            assert_eq!(
                filename_of(&cd).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(&cd)
            );
        }
    }

    #[test]
    fn decodes_fields_files_and_charset() {
        // Text parts become fields (GB18030 fallback), file parts keep bytes and type.
        let (gbk, _, _) = encoding_rs::GBK.encode("发送");
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"send\"\r\n\r\n".to_vec();
        body.extend_from_slice(&gbk);
        body.extend_from_slice(b"\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/x-test\r\n\r\n\x00\x01\r\x02\r\n--B\r\nContent-Disposition: form-data; name=\"empty\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n");
        let d = decode(&body, Some("multipart/form-data; boundary=B")).unwrap();
        assert_eq!(d.text("send", false), Some("发送"));
        assert_eq!(d.files.len(), 1);
        assert_eq!(d.files[0].data, b"\x00\x01\r\x02");
        assert_eq!(d.files[0].content_type, "application/x-test");
        assert_eq!(d.files[0].field, "f");
    }

    #[test]
    fn hostile_multipart_errors() {
        // Missing or boundary-less content types and truncated bodies are errors, not panics.
        assert!(matches!(
            decode(b"", None),
            Err(ExtractError::MissingContentType)
        ));
        assert!(decode(b"x", Some("multipart/form-data")).is_err());
        let r = decode(
            b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc",
            Some("multipart/form-data; boundary=B"),
        );
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn parts_over_the_bound_stop_the_decoder() {
        // Guards the parts cap: the bound itself decodes, one part more is TooManyParts.
        let body = |n: usize| {
            let mut b = String::new();
            for i in 0..n {
                b.push_str(&format!(
                    "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{i}\"\r\n\r\nx\r\n"
                ));
            }
            b + "--B--\r\n"
        };
        let ct = Some("multipart/form-data; boundary=B");
        assert_eq!(
            decode_bounded(body(50).as_bytes(), ct, 50)
                .unwrap()
                .files
                .len(),
            50
        );
        assert_eq!(
            decode_bounded(body(51).as_bytes(), ct, 50).unwrap_err(),
            ExtractError::TooManyParts { limit: 50 }
        );
    }
}
