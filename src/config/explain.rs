//! Configuration errors a person can act on: where in the file (line, key, value as written)
//! and what is expected, in the words of the README rather than serde's or Rust's.
//!
//! Owns locating a byte offset or a dotted key in the TOML text (through toml's spanned
//! document) and rewording serde/std messages ("expected usize", "invalid IP address syntax").
//! It decides nothing about validity: `config` does, and calls this only to explain.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where something is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Located {
    /// 1-based line of the key.
    pub line: usize,
    /// Dotted key path, e.g. `proxy.allow` or `senders."h.test"`.
    pub key: String,
    /// The value as written (single-line values only).
    pub value: Option<String>,
}

/// 1-based line number of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One key segment as it would be written in a dotted key.
fn segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn shown_value(text: &str, span: Range<usize>) -> Option<String> {
    let raw = text.get(span)?.trim();
    (!raw.is_empty() && !raw.contains('\n') && raw.chars().count() <= 120).then(|| raw.to_string())
}

/// The innermost key whose key or value covers byte `offset` (toml's error span start).
pub(super) fn locate_offset(text: &str, offset: usize) -> Option<Located> {
    let doc = DeTable::parse(text).ok()?;
    let mut found = None;
    walk_table(
        text,
        doc.get_ref(),
        &mut Vec::new(),
        &mut |path, key_span, value| {
            let covers = |r: &Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
            if covers(&key_span) || covers(&value.span()) {
                // Later (deeper) matches refine earlier ones.
                found = Some(Located {
                    line: line_of(text, key_span.start),
                    key: path.join("."),
                    value: match value.get_ref() {
                        DeValue::Table(_) => None,
                        _ => shown_value(text, value.span()),
                    },
                });
            }
        },
    );
    found
}

/// Where the dotted key `segments` (unquoted, e.g. `["senders", "h.test"]`) is set, if it is.
pub(super) fn locate_key(text: &str, segments: &[&str]) -> Option<Located> {
    let doc = DeTable::parse(text).ok()?;
    let want: Vec<String> = segments.iter().map(|s| segment(s)).collect();
    let mut found = None;
    walk_table(
        text,
        doc.get_ref(),
        &mut Vec::new(),
        &mut |path, key_span, value| {
            if found.is_none() && path == want.as_slice() {
                found = Some(Located {
                    line: line_of(text, key_span.start),
                    key: path.join("."),
                    value: match value.get_ref() {
                        DeValue::Table(_) => None,
                        _ => shown_value(text, value.span()),
                    },
                });
            }
        },
    );
    found
}

/// Called with a key's dotted path (as segments), the key's span and its value.
type Visit<'v> = dyn FnMut(&[String], Range<usize>, &Spanned<DeValue<'_>>) + 'v;

/// Calls `visit(path, key span, value)` for every key, depth first, parents before children.
fn walk_table(text: &str, table: &DeTable<'_>, path: &mut Vec<String>, visit: &mut Visit<'_>) {
    for (key, value) in table.iter() {
        path.push(segment(key.get_ref()));
        visit(path, key.span(), value);
        walk_value(text, key.span(), value, path, visit);
        path.pop();
    }
}

fn walk_value(
    text: &str,
    key_span: Range<usize>,
    value: &Spanned<DeValue<'_>>,
    path: &mut Vec<String>,
    visit: &mut Visit<'_>,
) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(text, t, path, visit),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let last = path.pop().unwrap_or_default();
                path.push(format!("{last}[{i}]"));
                // An item is found by its own span; its "key" is where the item starts.
                let item_key = match item.get_ref() {
                    DeValue::Table(_) => key_span.clone(),
                    _ => item.span(),
                };
                visit(path, item_key.clone(), item);
                walk_value(text, item_key, item, path, visit);
                path.pop();
                path.push(last);
            }
        }
        _ => {}
    }
}

/// Rewords a serde/std message about `key` (dotted) and its `value` as written, in the
/// README's words.
pub(super) fn in_words(message: &str, key: &str, value: Option<&str>) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let in_allow = leaf.starts_with("allow");
    let mut m = message.trim().to_string();
    if m.contains("invalid IP address syntax") {
        let expected = if in_allow {
            "expected a network in CIDR form: an IP address, `/` and a prefix length of at most \
             32 for IPv4 or 128 for IPv6 (e.g. \"127.0.0.0/8\", \"::1/128\")"
        } else {
            "expected an IP address such as \"127.0.0.1\" or \"::1\" (not a host name)"
        };
        return expected.to_string();
    }
    if m.contains("invalid socket address syntax") {
        let mut m =
            "expected an IP address and a port, e.g. \"127.0.0.1:8800\" or \"[::1]:8800\"; \
                     a host name such as localhost is not accepted here — write its IP address"
                .to_string();
        let port = value
            .map(|v| v.trim_matches('"'))
            .and_then(|v| v.strip_prefix("localhost:"));
        if let Some(port) = port.filter(|p| p.parse::<u16>().is_ok()) {
            m.push_str(&format!(" (\"127.0.0.1:{port}\")"));
        }
        return m;
    }
    if let Some(rest) = m.strip_prefix("unknown field ") {
        m = format!("unknown key {rest}");
    }
    if let Some(rest) = m.strip_prefix("missing field ") {
        m = format!("missing key {rest}");
    }
    // serde's "expected <Rust type>" → what a person types.
    for (rust, words) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected bool", "expected true or false"),
        ("expected a sequence", "expected a list [ … ]"),
        ("expected a map", "expected a table"),
        (
            "expected socket address",
            "expected an IP address and a port such as \"127.0.0.1:8800\"",
        ),
        (
            "expected IP address",
            "expected an IP address such as \"127.0.0.1\"",
        ),
        ("expected a string", "expected a string in double quotes"),
    ] {
        m = m.replace(rust, words);
    }
    for (serde, words) in [
        ("floating point", "decimal number"),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: a table"),
    ] {
        m = m.replace(serde, words);
    }
    if let Some(pos) = m.find("expected struct ") {
        m.truncate(pos);
        m.push_str("expected a table");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_keys_are_found_with_their_lines() {
        // Guards locating: nested tables, quoted keys, arrays and array-of-tables items.
        let text = "# c\n[proxy]\nallow = [\"a\", \"b\"]\n[senders]\n\"h.test\" = \"x@\"\n[[rule]]\nname = \"r\"\n";
        let b = text.find("\"b\"").unwrap();
        let at = locate_offset(text, b).unwrap();
        assert_eq!((at.line, at.key.as_str()), (3, "proxy.allow[1]"));
        assert_eq!(at.value.as_deref(), Some("\"b\""));
        let s = locate_key(text, &["senders", "h.test"]).unwrap();
        assert_eq!((s.line, s.key.as_str()), (5, "senders.\"h.test\""));
        assert_eq!(s.value.as_deref(), Some("\"x@\""));
        let r = locate_offset(text, text.find("\"r\"").unwrap()).unwrap();
        assert_eq!(r.key, "rule[0].name");
        assert_eq!(r.line, 7);
        assert!(locate_key(text, &["proxy", "listen"]).is_none());
        assert_eq!(locate_key(text, &["proxy"]).unwrap().line, 2);
    }

    #[test]
    fn rust_words_become_readme_words() {
        // Guards the rewording table: no Rust type name survives.
        for (msg, key, want) in [
            (
                "invalid value: integer `-1`, expected usize",
                "proxy.max_connections",
                "whole number",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "x",
                "decimal number",
            ),
            ("invalid IP address syntax", "proxy.allow[0]", "CIDR"),
            (
                "invalid IP address syntax",
                "resolve.\"x.test\"",
                "not a host name",
            ),
            (
                "invalid socket address syntax",
                "proxy.listen",
                "[::1]:8800",
            ),
            ("missing field `path`", "rule[0]", "missing key `path`"),
            (
                "invalid type: string \"yes\", expected a boolean",
                "relay.console",
                "true or false",
            ),
        ] {
            let got = in_words(msg, key, None);
            assert!(got.contains(want), "{msg} → {got}");
            for rust in ["usize", "u64", "syntax"] {
                assert!(!got.contains(rust), "{msg} → {got}");
            }
        }
        let localhost = in_words(
            "invalid socket address syntax",
            "builtin_smtp.listen",
            Some("\"localhost:2525\""),
        );
        assert!(localhost.contains("\"127.0.0.1:2525\""), "{localhost}");
    }
}
