//! Host patterns: the one way mailtap names a host or a domain, wherever the configuration or a
//! rule names one (`[[rule]].hosts`, `[intercept].hosts`, `[mitm]`, `[senders]`, `[resolve]`,
//! `[proxy].pac_hosts`, the PAC file).
//!
//! A pattern is an exact host (`mail.qq.com`, `127.0.0.1`, `::1`) or `*.domain`, which means the
//! domain itself *and* every name under it (`*.mail.163.com` matches `mail.163.com` and
//! `hw.mail.163.com`, never `evilmail.163.com`). A pattern is normalised (lower case, no trailing
//! root dot, no IPv6 brackets) and validated once, when it is deserialised; matching a request's
//! host is then a comparison, case-insensitive, with no allocation. This module owns the syntax,
//! the matching and the host → value lookup ([`HostMap`]); it knows nothing about what the
//! places using it do with a match.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a pattern must look like, in the words error messages use.
pub const EXPECTED: &str = "a host name (mail.example.com), an IP address, or *.domain \
                            (the domain and every name under it)";

/// An exact host or `*.domain` (the domain and every name under it). Normalised: lower case,
/// no trailing dot, IPv6 without brackets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPattern {
    /// The host, or the domain of a wildcard; normalised.
    domain: String,
    wildcard: bool,
}

/// A string that is not a host pattern; says what it was and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatternError {
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for HostPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a host pattern ({}); expected {EXPECTED}",
            self.value, self.reason
        )
    }
}

impl std::error::Error for HostPatternError {}

/// Lower case, no port (`host:80`, `[::1]:80`), no IPv6 brackets, no trailing root dot: the form
/// patterns are compared against. For request hosts (URI authority or `Host` header).
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let h = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if raw.matches(':').count() > 1 {
        // A bare IPv6 literal: its colons are not a port separator.
        raw
    } else {
        raw.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(raw)
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

impl HostPattern {
    /// Parses and normalises a pattern. Accepted: a DNS name (labels of letters, digits, `-`,
    /// `_`; at most 63 bytes each, 253 in all), an IP address (IPv6 with or without brackets),
    /// or `*.` followed by a DNS name. Case and one trailing dot are ignored.
    pub fn parse(text: &str) -> Result<HostPattern, HostPatternError> {
        let err = |reason| HostPatternError {
            value: text.to_string(),
            reason,
        };
        let lower = text.to_ascii_lowercase();
        let (wildcard, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let bare = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(rest).parse::<IpAddr>() {
            if wildcard {
                return Err(err("an IP address has no names under it"));
            }
            return Ok(HostPattern {
                domain: ip.to_string(),
                wildcard: false,
            });
        }
        let name = rest.strip_suffix('.').unwrap_or(rest);
        if name.is_empty() {
            return Err(err("empty"));
        }
        if name.len() > 253 {
            return Err(err("longer than 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(err("empty label"));
            }
            if label.len() > 63 {
                return Err(err("a label is longer than 63 characters"));
            }
            if label.contains('*') {
                return Err(err("`*` is allowed only as a leading `*.`"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    "only letters, digits, `-`, `_` and dots (no port, path or space)",
                ));
            }
        }
        Ok(HostPattern {
            domain: name.to_string(),
            wildcard,
        })
    }

    /// True when `host` is this pattern's host, or (for `*.domain`) the domain or a name under
    /// it. `host` is compared case-insensitively; a trailing dot and IPv6 brackets are ignored;
    /// it must carry no port (see [`normalize_host`]).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let d = &self.domain;
        if host.eq_ignore_ascii_case(d) {
            return true;
        }
        self.wildcard
            && host.len() > d.len() + 1
            && host.as_bytes()[host.len() - d.len() - 1] == b'.'
            && host[host.len() - d.len()..].eq_ignore_ascii_case(d)
    }

    /// True for `*.domain`.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The exact host, or the wildcard's domain (normalised).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The pattern as a PAC (JavaScript) boolean expression over the lower-cased variable `h`.
    /// Wildcards use `dnsDomainIs`, which tests a suffix, plus equality for the domain itself.
    pub fn pac_condition(&self) -> String {
        // Validated: only [a-z0-9._:-] can occur, nothing to escape in a JS string.
        let d = &self.domain;
        if self.wildcard {
            format!("(h == \"{d}\" || dnsDomainIs(h, \".{d}\"))")
        } else {
            format!("h == \"{d}\"")
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.domain)
        } else {
            f.write_str(&self.domain)
        }
    }
}

impl FromStr for HostPattern {
    type Err = HostPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostPattern::parse(s)
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HostPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// True when any of `patterns` matches `host`.
pub fn any_matches(patterns: &[HostPattern], host: &str) -> bool {
    patterns.iter().any(|p| p.matches(host))
}

/// A table keyed by host pattern (`[senders]`, `[resolve]`). Lookup: an exact key for the host
/// wins; otherwise the most specific wildcard (longest domain) that matches. Two keys that are
/// the same pattern once normalised (`A.test` and `a.test.`) are an error when deserialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMap<V> {
    entries: BTreeMap<HostPattern, V>,
}

impl<V> Default for HostMap<V> {
    fn default() -> Self {
        HostMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<V> HostMap<V> {
    /// An empty map.
    pub fn new() -> HostMap<V> {
        HostMap::default()
    }

    /// Adds or replaces the value for `pattern`.
    pub fn insert(&mut self, pattern: HostPattern, value: V) -> Option<V> {
        self.entries.insert(pattern, value)
    }

    /// The value for `host` (see the type's lookup rule), `None` when no key matches.
    pub fn get(&self, host: &str) -> Option<&V> {
        let mut best: Option<(&HostPattern, &V)> = None;
        for (p, v) in &self.entries {
            if !p.matches(host) {
                continue;
            }
            if !p.wildcard {
                return Some(v);
            }
            if best.is_none_or(|(b, _)| p.domain.len() > b.domain.len()) {
                best = Some((p, v));
            }
        }
        best.map(|(_, v)| v)
    }

    /// Entries in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&HostPattern, &V)> {
        self.entries.iter()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &HostPattern> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V> FromIterator<(HostPattern, V)> for HostMap<V> {
    fn from_iter<I: IntoIterator<Item = (HostPattern, V)>>(iter: I) -> Self {
        HostMap {
            entries: iter.into_iter().collect(),
        }
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for HostMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, V>::deserialize(d)?;
        let mut entries = BTreeMap::new();
        for (key, value) in raw {
            let pattern = HostPattern::parse(&key).map_err(serde::de::Error::custom)?;
            if entries.contains_key(&pattern) {
                return Err(serde::de::Error::custom(format!(
                    "{key:?} names the host pattern {pattern} a second time (keys are compared \
                     without case or trailing dot)"
                )));
            }
            entries.insert(pattern, value);
        }
        Ok(HostMap { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn parsing_normalises_and_rejects_junk() {
        // Guards the one syntax: case, trailing dot and brackets normalised; junk refused.
        for (text, want) in [
            ("mail.qq.com", Some("mail.qq.com")),
            ("MAIL.QQ.com.", Some("mail.qq.com")),
            ("*.Example.test", Some("*.example.test")),
            ("*.mail.163.com.", Some("*.mail.163.com")),
            ("my_host.lan", Some("my_host.lan")),
            ("localhost", Some("localhost")),
            ("127.0.0.1", Some("127.0.0.1")),
            ("::1", Some("::1")),
            ("[::1]", Some("::1")),
            ("[0:0::1]", Some("::1")),
            ("", None),
            (".", None),
            ("*", None),
            ("*.", None),
            ("*.*.x", None),
            ("a.*.x", None),
            ("*x.test", None),
            (".x", None),
            ("a..b", None),
            ("a b", None),
            ("host:443", None),
            ("host/path", None),
            ("http://host", None),
            ("*.127.0.0.1", None),
            ("a\"b", None),
            ("a\\b", None),
            ("ex\u{e4}mple.test", None),
            ("a.b\n", None),
        ] {
            let got = HostPattern::parse(text).map(|p| p.to_string()).ok();
            assert_eq!(got.as_deref(), want, "{text:?}");
        }
        let long = format!("{}.test", "a".repeat(64));
        assert!(HostPattern::parse(&long).is_err());
        let too_long = vec!["abcdefghi"; 26].join(".");
        assert!(too_long.len() > 253 && HostPattern::parse(&too_long).is_err());
    }

    #[test]
    fn matching_table() {
        // Guards "*.domain = the domain and every name under it", exact hosts, case, dots.
        let cases: &[(&str, &str, bool)] = &[
            ("*.mail.163.com", "mail.163.com", true),
            ("*.mail.163.com", "hw.mail.163.com", true),
            ("*.mail.163.com", "a.b.mail.163.com", true),
            ("*.mail.163.com", "MAIL.163.COM", true),
            ("*.mail.163.com", "mail.163.com.", true),
            ("*.mail.163.com", "evilmail.163.com", false),
            ("*.mail.163.com", "mail.163.com.evil.test", false),
            ("*.mail.163.com", "163.com", false),
            ("*.mail.163.com", ".mail.163.com", false),
            ("*.mail.163.com", "", false),
            ("mail.qq.com", "mail.qq.com", true),
            ("mail.qq.com", "Mail.QQ.Com", true),
            ("mail.qq.com", "wx.mail.qq.com", false),
            ("mail.qq.com", "qq.com", false),
            ("*.Example.test", "webmail.example.test", true),
            ("*.Example.test", "example.test", true),
            ("::1", "[::1]", true),
            ("::1", "::1", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.10", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(p(pattern).matches(host), *want, "{pattern} vs {host:?}");
        }
    }

    #[test]
    fn request_hosts_normalise() {
        // Guards request-host normalisation: ports, brackets, bare IPv6, trailing dot, case.
        for (raw, want) in [
            ("Mail.QQ.com", "mail.qq.com"),
            ("mail.qq.com:8080", "mail.qq.com"),
            ("mail.qq.com.", "mail.qq.com"),
            ("[::1]:80", "::1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("host:abc", "host:abc"),
            ("", ""),
        ] {
            assert_eq!(normalize_host(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn host_map_lookup_prefers_exact_then_most_specific() {
        // Guards [senders]/[resolve] lookup: exact beats wildcard, longer wildcard beats shorter,
        // keys in any case match any case.
        let m: HostMap<u8> = toml::from_str(
            "\"*.Example.test\" = 1\n\"*.corp.example.test\" = 2\n\"Webmail.example.TEST\" = 3\n",
        )
        .unwrap();
        for (host, want) in [
            ("example.test", Some(1)),
            ("other.example.test", Some(1)),
            ("x.corp.example.test", Some(2)),
            ("CORP.example.test", Some(2)),
            ("webmail.example.test", Some(3)),
            ("WEBMAIL.EXAMPLE.TEST.", Some(3)),
            ("example.org", None),
        ] {
            assert_eq!(m.get(host).copied(), want, "{host}");
        }
    }

    #[test]
    fn host_map_refuses_bad_and_duplicate_keys() {
        // Guards validation at deserialisation: a bad key or a key given twice modulo case/dot
        // is an error naming it and saying what is expected.
        let e = toml::from_str::<HostMap<u8>>("\"a b\" = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a b\"") && e.contains("*.domain"), "{e}");
        let e = toml::from_str::<HostMap<u8>>("\"A.test\" = 1\n\"a.test.\" = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("second time"), "{e}");
    }

    #[test]
    fn pac_conditions_cover_the_domain_itself() {
        // Guards the PAC shape of a wildcard: the bare domain is compared too.
        assert_eq!(
            p("*.mail.163.com").pac_condition(),
            "(h == \"mail.163.com\" || dnsDomainIs(h, \".mail.163.com\"))"
        );
        assert_eq!(p("Mail.QQ.com").pac_condition(), "h == \"mail.qq.com\"");
    }
}
