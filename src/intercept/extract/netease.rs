//! NetEase (163/126/yeah.net) js6 `mbox:compose`: a form whose `var` field holds XML.
//!
//! Owns: a small tolerant parser for the `<object>`/`<string name>`/`<array name>` shape
//! (entities and CDATA decoded, unknown elements skipped, never panics on bad input). Named
//! scalars (`string`, `boolean`, `int`, …) become text fields, named arrays become lists of
//! their scalar items, at any depth; the first occurrence of a name wins on lookup. Does not
//! validate XML.

use super::{form, ExtractError};
use crate::intercept::fields::{Decoded, Value};

/// Decodes the form body and parses its `var` XML into fields (the form's own fields follow).
pub fn decode(
    body: &[u8],
    declared: Option<&'static encoding_rs::Encoding>,
) -> Result<Decoded, ExtractError> {
    decode_bounded(body, declared, super::Bounds::default().max_parts)
}

/// [`decode`] refusing an outer form of more than `max_parts` fields.
pub fn decode_bounded(
    body: &[u8],
    declared: Option<&'static encoding_rs::Encoding>,
    max_parts: usize,
) -> Result<Decoded, ExtractError> {
    let mut outer = form::decode_bounded(body, declared, max_parts)?;
    let xml = outer
        .text("var", false)
        .ok_or(ExtractError::MissingField("var".into()))?
        .to_string();
    let mut fields = parse(&xml)?;
    fields.append(&mut outer.fields);
    Ok(Decoded {
        fields,
        files: Vec::new(),
    })
}

enum Frame {
    /// A named array collecting items.
    Array(String, Vec<String>),
    /// An unnamed or named container we only descend through.
    Other,
}

/// Parses the XML into fields. Errors only on unterminated markup.
pub fn parse(xml: &str) -> Result<Vec<(String, Value)>, ExtractError> {
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0;
    let bytes = xml.as_bytes();
    // Each iteration consumes at least one tag; bounded by the input length.
    while let Some(rel) = xml[pos..].find('<') {
        let start = pos + rel;
        if xml[start..].starts_with("<?") || xml[start..].starts_with("<!--") {
            let end_pat = if xml[start..].starts_with("<?") {
                "?>"
            } else {
                "-->"
            };
            let end = xml[start..]
                .find(end_pat)
                .ok_or_else(|| bad("unterminated declaration"))?;
            pos = start + end + end_pat.len();
            continue;
        }
        let end = xml[start..]
            .find('>')
            .ok_or_else(|| bad("unterminated tag"))?
            + start;
        let tag = &xml[start + 1..end];
        pos = end + 1;
        if let Some(name) = tag.strip_prefix('/') {
            if matches!(name.trim(), "array") {
                if let Some(Frame::Array(n, items)) = stack.pop() {
                    out.push((n, Value::List(items)));
                }
            } else if matches!(name.trim(), "object") {
                stack.pop();
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let kind = tag.split_whitespace().next().unwrap_or_default();
        let name = attr(tag, "name");
        match kind {
            "object" => {
                if !self_closing {
                    stack.push(Frame::Other);
                }
            }
            "array" => {
                if self_closing {
                    if let Some(n) = name {
                        out.push((n, Value::List(Vec::new())));
                    }
                } else {
                    stack.push(match name {
                        Some(n) => Frame::Array(n, Vec::new()),
                        None => Frame::Other,
                    });
                }
            }
            _ => {
                let text = if self_closing {
                    String::new()
                } else {
                    let close = format!("</{kind}>");
                    let rel = xml[pos..]
                        .find(&close)
                        .ok_or_else(|| bad("unterminated element"))?;
                    let raw = &xml[pos..pos + rel];
                    pos += rel + close.len();
                    unescape(raw)
                };
                match (stack.last_mut(), name) {
                    (Some(Frame::Array(_, items)), _) => items.push(text),
                    (_, Some(n)) => out.push((n, Value::Text(text))),
                    (_, None) => {}
                }
            }
        }
        debug_assert!(pos <= bytes.len());
    }
    Ok(out)
}

fn bad(what: &str) -> ExtractError {
    ExtractError::Xml(what.into())
}

/// The value of attribute `key` in a start tag (single or double quotes), entities decoded.
fn attr(tag: &str, key: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(i) = rest.find(key) {
        let before_ok = i > 0 && rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = rest[i + key.len()..].trim_start();
        if before_ok {
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start();
                let q = v.chars().next()?;
                if q == '"' || q == '\'' {
                    let end = v[1..].find(q)?;
                    return Some(unescape(&v[1..1 + end]));
                }
            }
        }
        rest = &rest[i + key.len()..];
    }
    None
}

/// Decodes the five XML entities, numeric references and CDATA sections; leaves unknown
/// entities as written.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            out.push_str(&cdata[..end]);
            rest = cdata.get(end + 3..).unwrap_or("");
            continue;
        }
        if rest.starts_with('<') {
            out.push('<');
            rest = &rest[1..];
            continue;
        }
        // `;` is ASCII, so its byte position is a char boundary even amid multi-byte text.
        let Some(semi) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_shape() {
        // Named strings/booleans become fields, arrays lists, entities decoded, nesting ignored.
        let xml = r#"<?xml version="1.0"?><object><string name="id">c:1</string><object name="attrs"><string name="account">"李雷"&lt;l@163.com&gt;</string><array name="to"><string>"张三"&lt;z@x.com&gt;</string><string>b@y.org</string></array><array name="cc"/><string name="subject">a &amp; b</string><boolean name="isHtml">true</boolean><string name="content"><![CDATA[<p>hi</p>]]></string><array name="attachments"><object><string name="id">1</string></object></array></object><string name="action">deliver</string></object>"#;
        let f = parse(xml).unwrap();
        let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("account"),
            Some(Value::Text("\"李雷\"<l@163.com>".into()))
        );
        assert_eq!(
            get("to"),
            Some(Value::List(vec![
                "\"张三\"<z@x.com>".into(),
                "b@y.org".into()
            ]))
        );
        assert_eq!(get("cc"), Some(Value::List(vec![])));
        assert_eq!(get("subject"), Some(Value::Text("a & b".into())));
        assert_eq!(get("isHtml"), Some(Value::Text("true".into())));
        assert_eq!(get("content"), Some(Value::Text("<p>hi</p>".into())));
        assert_eq!(get("action"), Some(Value::Text("deliver".into())));
    }

    #[test]
    fn hostile_xml() {
        // Truncated markup is an error; odd entities pass through; nothing panics.
        assert!(parse("<object><string name=\"a\">x").is_err());
        assert!(parse("<object><string name=\"a\"").is_err());
        assert!(parse("<!-- x").is_err());
        assert_eq!(
            unescape("&bogus; &#x4E2D;&#25991; & &;"),
            "&bogus; 中文 & &;"
        );
        assert_eq!(unescape("&中文字符;x"), "&中文字符;x");
        assert_eq!(unescape("a &amp 第3周; b"), "a &amp 第3周; b");
        assert!(parse("").unwrap().is_empty());
        assert!(parse("</array></object><string>x</string>")
            .unwrap()
            .is_empty());
    }
}
