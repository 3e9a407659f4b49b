//! application/x-www-form-urlencoded decoding (bodies and query strings).
//!
//! Owns: `+`→space first, then percent-decoding of bytes, then charset decoding (WHATWG URL
//! §5.1 application/x-www-form-urlencoded parsing). Does not interpret any field.

use encoding_rs::Encoding;

use super::ExtractError;
use crate::intercept::fields::{decode_text_owned, guess, Decoded, Value};

/// Splits `a=b&c=d` into raw byte pairs: `+` becomes a space *before* percent-decoding so a
/// literal `%2B` stays `+`. Empty segments are skipped; a segment without `=` has an empty value.
pub fn raw_pairs(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    input
        .split(|b| *b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (k, v) = match seg.iter().position(|b| *b == b'=') {
                Some(i) => (&seg[..i], &seg[i + 1..]),
                None => (seg, &[][..]),
            };
            (unescape(k), unescape(v))
        })
        .collect()
}

/// `+` → space, then `%XX` → byte, in one pass into one buffer of the input's size (a
/// 9 MiB single-line value used to take three copies). A `%` not followed by two hex digits
/// stays as it is.
fn unescape(s: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|h| hex(*h)),
                s.get(i + 2).and_then(|l| hex(*l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// The number of fields `raw_pairs` would produce, counted without decoding anything.
pub fn count_pairs(input: &[u8]) -> usize {
    input
        .split(|b| *b == b'&')
        .filter(|seg| !seg.is_empty())
        .count()
}

/// [`decode`], refusing a body of more than `max_parts` fields before decoding any of them.
pub fn decode_bounded(
    body: &[u8],
    declared: Option<&'static Encoding>,
    max_parts: usize,
) -> Result<Decoded, ExtractError> {
    if count_pairs(body) > max_parts {
        return Err(ExtractError::TooManyParts { limit: max_parts });
    }
    Ok(decode(body, declared))
}

/// Decodes a form body. Charset: `declared` if given, else UTF-8 when every name and value is
/// valid UTF-8, else GB18030 for all of them.
pub fn decode(body: &[u8], declared: Option<&'static Encoding>) -> Decoded {
    let pairs = raw_pairs(body);
    let enc = declared.unwrap_or_else(|| {
        if pairs
            .iter()
            .all(|(k, v)| guess(k) == encoding_rs::UTF_8 && guess(v) == encoding_rs::UTF_8)
        {
            encoding_rs::UTF_8
        } else {
            encoding_rs::GB18030
        }
    });
    Decoded {
        fields: pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    decode_text_owned(k, Some(enc)),
                    Value::Text(decode_text_owned(v, Some(enc))),
                )
            })
            .collect(),
        files: Vec::new(),
    }
}

/// Parses a query string (UTF-8, lossy) into name/value pairs in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    raw_pairs(query.as_bytes())
        .into_iter()
        .map(|(k, v)| (decode_text_owned(k, None), decode_text_owned(v, None)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: &Decoded, n: &str) -> Option<String> {
        d.text(n, false).map(String::from)
    }

    #[test]
    fn form_decoding_table() {
        // `+` is a space, `%2B` a plus, percent-decoding is bytewise, empty items skipped.
        let d = decode(b"a=x+y&b=a%2Bb%3Dc&&c&d=%E5%BC%A0&e=100%25&f=%zz", None);
        assert_eq!(text(&d, "a").as_deref(), Some("x y"));
        assert_eq!(text(&d, "b").as_deref(), Some("a+b=c"));
        assert_eq!(text(&d, "c").as_deref(), Some(""));
        assert_eq!(text(&d, "d").as_deref(), Some("张"));
        assert_eq!(text(&d, "e").as_deref(), Some("100%"));
        assert_eq!(text(&d, "f").as_deref(), Some("%zz"));
        assert_eq!(d.fields.len(), 6);
    }

    #[test]
    fn gb18030_fallback_without_charset() {
        // A GBK-encoded form without a charset decodes as GB18030; a declared charset wins.
        let (gbk, _, _) = encoding_rs::GBK.encode("发送");
        let mut body = b"send=".to_vec();
        for b in gbk.iter() {
            body.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
        body.extend_from_slice(b"&ascii=ok");
        let d = decode(&body, None);
        assert_eq!(text(&d, "send").as_deref(), Some("发送"));
        assert_eq!(text(&d, "ascii").as_deref(), Some("ok"));
        let d = decode(b"x=%E5%BC%A0", Some(encoding_rs::UTF_8));
        assert_eq!(text(&d, "x").as_deref(), Some("张"));
    }

    #[test]
    fn query_pairs_keep_raw_keys() {
        // SnappyMail's `?/Json/&q[]=/0/` yields a `/Json/` key with an empty value.
        let q = query_pairs("/Json/&q[]=/0/");
        assert_eq!(
            q,
            vec![("/Json/".into(), "".into()), ("q[]".into(), "/0/".into())]
        );
        assert!(query_pairs("").is_empty());
    }
}
