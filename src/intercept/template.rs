//! The success response a rule gives the browser in `relay` mode, with values from the request.
//!
//! Owns: the `[rule.response]` shape, placeholder syntax (`{query.NAME}`, `{body.NAME}`) and
//! escaping (JS-string escaping in the body, percent-encoding in header values) so a value
//! from the request can never break out of the string it lands in. Does not send anything.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `[rule.response]`: status, content type, extra headers and body, with placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseTemplate {
    #[serde(default = "default_status")]
    pub status: u16,
    pub content_type: String,
    /// Extra headers (e.g. `Location` for a redirect); values may hold placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// A rendered response, ready for the proxy to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayResponse {
    pub status: u16,
    /// Content-Type first, then the template's headers in name order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn placeholder_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| match Regex::new(r"\{(query|body)\.([^{}\s]+)\}") {
        Ok(r) => r,
        // The pattern is a literal checked by the unit tests; this arm cannot be reached.
        Err(_) => unreachable!("placeholder regex is valid"),
    })
}

/// A placeholder named in a template: `("query"|"body", NAME)`.
pub type VarName = (String, String);

impl ResponseTemplate {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(100..=599).contains(&self.status) {
            return Err(format!(
                "response status {} is not an HTTP status",
                self.status
            ));
        }
        let bad = |s: &str| s.chars().any(|c| c.is_control());
        if bad(&self.content_type)
            || self
                .headers
                .iter()
                .any(|(k, v)| bad(k) || bad(v) || k.is_empty())
        {
            return Err("response headers must not contain control characters".into());
        }
        // mailtap frames the body itself (its length changes with the placeholders), and
        // connection-level fields are the proxy's business.
        const RESERVED: [&str; 7] = [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "trailer",
            "content-type",
        ];
        if let Some(k) = self
            .headers
            .keys()
            .find(|k| RESERVED.contains(&k.to_ascii_lowercase().as_str()))
        {
            return Err(format!(
                "response header {k:?} is set by mailtap (use content_type for Content-Type)"
            ));
        }
        Ok(())
    }

    /// Every placeholder the template uses, deduplicated.
    pub fn placeholders(&self) -> Vec<VarName> {
        let mut out: Vec<VarName> = Vec::new();
        let texts = std::iter::once(&self.body).chain(self.headers.values());
        for t in texts {
            for c in placeholder_re().captures_iter(t) {
                let v = (c[1].to_string(), c[2].to_string());
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Renders with `vars` keyed `"query.NAME"` / `"body.NAME"`; a missing value renders empty.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> RelayResponse {
        let fill = |text: &str, escape: fn(&str) -> String| {
            placeholder_re()
                .replace_all(text, |c: &regex::Captures<'_>| {
                    let key = format!("{}.{}", &c[1], &c[2]);
                    escape(vars.get(&key).map(String::as_str).unwrap_or(""))
                })
                .into_owned()
        };
        let mut headers = vec![("Content-Type".to_string(), self.content_type.clone())];
        for (k, v) in &self.headers {
            headers.push((k.clone(), fill(v, url_escape)));
        }
        RelayResponse {
            status: self.status,
            headers,
            body: fill(&self.body, js_escape).into_bytes(),
        }
    }
}

/// Escapes a value for a JS string literal in either quote style, inside an HTML `<script>`:
/// backslash, quotes, `<`, `>`, `&`, control characters and U+2028/2029 become `\uXXXX`/`\\`.
pub fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' | '\'' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
pub fn url_escape(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_headers_are_refused_in_templates() {
        // Guards responses whose length changes after filling placeholders: no fixed framing.
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Content-Type",
        ] {
            let t = ResponseTemplate {
                status: 200,
                content_type: "text/plain".into(),
                headers: BTreeMap::from([(name.to_string(), "1".to_string())]),
                body: String::new(),
            };
            let e = t.validate().unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }

    fn tpl(body: &str) -> ResponseTemplate {
        ResponseTemplate {
            status: 200,
            content_type: "text/html".into(),
            headers: BTreeMap::from([("Location".into(), "x.php?m={body.mailbox}".into())]),
            body: body.into(),
        }
    }

    #[test]
    fn js_escape_table() {
        // Request values cannot close the JS string or the script element they land in.
        let cases = [
            ("plain123", "plain123"),
            ("a\"b", "a\\u0022b"),
            ("a'b", "a\\u0027b"),
            (
                "</script><script>alert(1)</script>",
                "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
            ),
            ("back\\slash", "back\\\\slash"),
            ("line\r\nbreak", "line\\u000d\\u000abreak"),
            ("\u{2028}", "\\u2028"),
            ("中文", "中文"),
        ];
        for (input, want) in cases {
            assert_eq!(js_escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn render_fills_and_escapes() {
        // Placeholders are filled from the request, escaped per context; other braces stay.
        let t =
            tpl("iframe_loaded(\"{query._unlock}\"); remove(\"{body._id}\"); {\"k\":1} {nope.x}");
        assert_eq!(
            t.placeholders(),
            vec![
                ("query".to_string(), "_unlock".to_string()),
                ("body".to_string(), "_id".to_string()),
                ("body".to_string(), "mailbox".to_string())
            ]
        );
        let vars = BTreeMap::from([
            (
                "query._unlock".to_string(),
                "loading1\"</script>".to_string(),
            ),
            (
                "body.mailbox".to_string(),
                "INBOX&x=1\r\nSet-Cookie: a".to_string(),
            ),
        ]);
        let r = t.render(&vars);
        let body = String::from_utf8(r.body).unwrap();
        assert_eq!(
            body,
            "iframe_loaded(\"loading1\\u0022\\u003c/script\\u003e\"); remove(\"\"); {\"k\":1} {nope.x}"
        );
        assert_eq!(r.headers[0], ("Content-Type".into(), "text/html".into()));
        assert_eq!(
            r.headers[1].1,
            "x.php?m=INBOX%26x%3D1%0D%0ASet-Cookie%3A%20a"
        );
    }

    #[test]
    fn validate_rejects_bad_templates() {
        // Status out of range or control characters in headers are config errors.
        let mut t = tpl("");
        t.status = 42;
        assert!(t.validate().is_err());
        let mut t = tpl("");
        t.headers.insert("X".into(), "a\r\nb".into());
        assert!(t.validate().is_err());
        assert!(tpl("ok").validate().is_ok());
    }
}
