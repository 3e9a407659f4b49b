//! The decoded body every decoder produces: ordered named values plus file parts.
//!
//! Owns: the one shape rules look at (`Decoded`), name lookup (optionally case-insensitive)
//! and the byte→text charset policy shared by the decoders (declared charset, else UTF-8 when
//! valid, else GB18030). Does not know about rules or mail.

use encoding_rs::Encoding;

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar (form field, JSON string/number/bool, XML string).
    Text(String),
    /// A list of scalars (JSON array, XML `<array>`).
    List(Vec<String>),
    /// A JSON object: its keys in document order.
    Keys(Vec<String>),
}

/// A file part of a multipart body.
#[derive(Clone, PartialEq, Eq)]
pub struct FilePart {
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for FilePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePart")
            .field("field", &self.field)
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A decoded request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Named values in body order; a name may repeat (the first wins on lookup).
    pub fields: Vec<(String, Value)>,
    pub files: Vec<FilePart>,
}

impl Decoded {
    /// The first value named `name` (ASCII case-insensitively when `ci`).
    pub fn get(&self, name: &str, ci: bool) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| {
                if ci {
                    n.eq_ignore_ascii_case(name)
                } else {
                    n == name
                }
            })
            .map(|(_, v)| v)
    }

    /// The first *text* value named `name`.
    pub fn text(&self, name: &str, ci: bool) -> Option<&str> {
        match self.get(name, ci) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }
}

/// Decodes bytes as text: with `declared` (a charset label) when given and known; otherwise
/// UTF-8 when valid, else GB18030 (which accepts GBK/GB2312). Never fails: undecodable bytes
/// become U+FFFD.
pub fn decode_text(bytes: &[u8], declared: Option<&'static Encoding>) -> String {
    let enc = declared.unwrap_or_else(|| guess(bytes));
    let (text, _) = enc.decode_without_bom_handling(bytes);
    text.into_owned()
}

/// [`decode_text`] taking the bytes: valid UTF-8 (declared or guessed) becomes the string
/// without a copy.
pub fn decode_text_owned(bytes: Vec<u8>, declared: Option<&'static Encoding>) -> String {
    let enc = declared.unwrap_or_else(|| guess(&bytes));
    if enc == encoding_rs::UTF_8 {
        return match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => decode_text(e.as_bytes(), Some(enc)),
        };
    }
    decode_text(&bytes, Some(enc))
}

/// UTF-8 when `bytes` is valid UTF-8, else GB18030.
pub fn guess(bytes: &[u8]) -> &'static Encoding {
    if std::str::from_utf8(bytes).is_ok() {
        encoding_rs::UTF_8
    } else {
        encoding_rs::GB18030
    }
}

/// The `charset` parameter of a Content-Type value, resolved to an encoding.
pub fn charset_of(content_type: Option<&str>) -> Option<&'static Encoding> {
    let ct = content_type?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        Encoding::for_label(v.trim().trim_matches('"').as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_fallback_table() {
        // Declared charset wins; else UTF-8 if valid; else GB18030.
        let (gbk, _, _) = encoding_rs::GBK.encode("发送实验报告");
        assert_eq!(decode_text(&gbk, None), "发送实验报告");
        assert_eq!(decode_text("发送".as_bytes(), None), "发送");
        assert_eq!(decode_text(b"plain", None), "plain");
        let (big5, _, _) = encoding_rs::BIG5.encode("郵件");
        assert_eq!(
            decode_text(&big5, charset_of(Some("text/plain; charset=\"big5\""))),
            "郵件"
        );
        assert_eq!(
            charset_of(Some("application/x-www-form-urlencoded; charset=UTF-8")),
            Some(encoding_rs::UTF_8)
        );
        assert_eq!(
            charset_of(Some("application/x-www-form-urlencoded; charset=nonsense")),
            None
        );
        assert_eq!(charset_of(Some("application/json")), None);
        assert_eq!(charset_of(None), None);
    }

    #[test]
    fn lookup_case_rules() {
        // Case-insensitive lookup only when asked; first duplicate wins; lists are not text.
        let d = Decoded {
            fields: vec![
                ("To".into(), Value::Text("a".into())),
                ("to".into(), Value::Text("b".into())),
                ("arr".into(), Value::List(vec!["x".into()])),
            ],
            files: vec![],
        };
        assert_eq!(d.text("to", false), Some("b"));
        assert_eq!(d.text("TO", true), Some("a"));
        assert_eq!(d.text("TO", false), None);
        assert_eq!(d.text("arr", false), None);
        assert!(d.get("arr", false).is_some());
    }
}
