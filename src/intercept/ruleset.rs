//! The active set of rules and cheap head matching.
//!
//! Owns: merging built-in rules (TOML shipped in the binary) with config rules (same name
//! overrides; config rules are tried first), head-only matching that decides whether the proxy
//! buffers a body at all, and the list of hosts whose HTTPS would need interception. Does not
//! look at bodies.

use super::extract::form::query_pairs;
use super::extract::{extract, ExtractError, Extracted};
use super::rules::{Condition, Rule, RuleConfig, RuleError};
use crate::hostpat::{normalize_host, HostPattern};

/// The built-in rules, as TOML (`[[rule]]` tables).
pub const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// The parts of a request head rules look at. `host` is lowercase without port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadView<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The Cookie header (for upload correlation keys), if any.
    pub cookie: Option<&'a str>,
}

/// Owned storage for a `HeadView`, built from `http` types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHead {
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub cookie: Option<String>,
}

impl OwnedHead {
    /// Host from the URI authority, else the Host header; lowercased, port and a trailing dot
    /// removed (rules match on host + path, never on scheme — RFC 9112 §3.2).
    pub fn from_parts(
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> OwnedHead {
        let text = |n: http::header::HeaderName| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let host_raw = uri
            .host()
            .map(String::from)
            .or_else(|| text(http::header::HOST))
            .unwrap_or_default();
        OwnedHead {
            method: method.as_str().to_string(),
            host: normalize_host(&host_raw),
            path: uri.path().to_string(),
            query: uri.query().map(String::from),
            content_type: text(http::header::CONTENT_TYPE),
            cookie: {
                // Several Cookie lines are one list (RFC 6265 §5.4 sends one; join any extras).
                let all: Vec<&str> = headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                (!all.is_empty()).then(|| all.join("; "))
            },
        }
    }

    pub fn view(&self) -> HeadView<'_> {
        HeadView {
            method: &self.method,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            content_type: self.content_type.as_deref(),
            cookie: self.cookie.as_deref(),
        }
    }
}

/// The value of cookie `name` in a Cookie header (`a=b; c=d`).
pub fn cookie_value<'a>(cookie: &'a str, name: &str) -> Option<&'a str> {
    cookie.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn query_holds(conds: &[Condition], query: &[(String, String)]) -> bool {
    conds.iter().all(|c| {
        c.holds(
            query
                .iter()
                .find(|(k, _)| *k == c.field)
                .map(|(_, v)| v.as_str()),
        )
    })
}

impl Rule {
    /// Head test for a send: method, path, query conditions, and (when the request has one) a
    /// Content-Type of the decoder's media type. The host is [`RuleSet::match_head`]'s test.
    pub fn send_head_matches(&self, head: &HeadView<'_>, query: &[(String, String)]) -> bool {
        let c = &self.config;
        head.method.eq_ignore_ascii_case(&c.method)
            && head
                .content_type
                .is_none_or(|ct| media_type(ct) == c.decoder.media_type())
            && self.path.is_match(head.path)
            && query_holds(&c.query, query)
    }

    /// Head test for the upload sub-rule: method, upload path (or the rule's), upload query
    /// conditions, and a multipart/form-data Content-Type. The host is [`RuleSet::match_head`]'s.
    pub fn upload_head_matches(&self, head: &HeadView<'_>, query: &[(String, String)]) -> bool {
        let Some(up) = &self.config.upload else {
            return false;
        };
        head.method.eq_ignore_ascii_case(&self.config.method)
            && head
                .content_type
                .is_some_and(|ct| media_type(ct) == "multipart/form-data")
            && self
                .upload_path
                .as_ref()
                .unwrap_or(&self.path)
                .is_match(head.path)
            && query_holds(&up.query, query)
    }

    /// The namespace uploads of this rule are stored under (rules sharing an upload endpoint,
    /// like SnappyMail and RainLoop, share one).
    pub fn upload_group(&self) -> &str {
        self.config
            .upload
            .as_ref()
            .and_then(|u| u.group.as_deref())
            .unwrap_or(&self.config.name)
    }
}

/// Whether a head is a send candidate or an upload to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Send,
    Upload,
}

/// A head match: its kind and the candidate rules (indices into the set, in trial order).
/// Only a match makes the proxy buffer the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub kind: MatchKind,
    pub candidates: Vec<usize>,
}

/// The active rules, in trial order, and the hosts the user named as webmails (where the rules
/// that name no host apply).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    named: Vec<HostPattern>,
}

impl RuleSet {
    /// The built-in rules only.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        RuleSet::with_config(true, Vec::new())
    }

    /// Parses the built-in rules' TOML.
    pub fn builtin_configs() -> Result<Vec<RuleConfig>, RuleError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        toml::from_str::<File>(BUILTIN_TOML)
            .map(|f| f.rule)
            .map_err(|e| RuleError {
                rule: "<builtin>".into(),
                detail: e.to_string(),
            })
    }

    /// Config rules first (validated; an invalid one is an error naming it; duplicate names
    /// among them are an error), then the built-ins (when `builtin`) whose names no config
    /// rule takes.
    pub fn with_config(builtin: bool, extra: Vec<RuleConfig>) -> Result<RuleSet, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        for c in extra {
            if rules.iter().any(|r| r.name() == c.name) {
                return Err(RuleError {
                    rule: c.name,
                    detail: "defined twice in the configuration".into(),
                });
            }
            rules.push(Rule::compile(c)?);
        }
        if builtin {
            for c in RuleSet::builtin_configs()? {
                if !rules.iter().any(|r| r.name() == c.name) {
                    rules.push(Rule::compile(c)?);
                }
            }
        }
        Ok(RuleSet {
            rules,
            named: Vec::new(),
        })
    }

    /// This set with `named` as the user's webmail hosts: rules that name no host (Roundcube,
    /// SquirrelMail, SnappyMail, RainLoop, any-host `[[rule]]`s) match these hosts and no other.
    /// Without any, such rules match nothing.
    pub fn with_named_hosts(mut self, named: Vec<HostPattern>) -> RuleSet {
        let mut named = named;
        named.sort();
        named.dedup();
        self.named = named;
        self
    }

    /// The hosts the user named as webmails (sorted, deduplicated).
    pub fn named_hosts(&self) -> &[HostPattern] {
        &self.named
    }

    /// True when `host` (no port) is a webmail host: one a rule names, or one the user named.
    pub fn is_webmail_host(&self, host: &str) -> bool {
        crate::hostpat::any_matches(&self.named, host)
            || self
                .rules
                .iter()
                .any(|r| crate::hostpat::any_matches(&r.config.hosts, host))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name() == name)
    }

    /// Every host pattern a rule names, plus the user's named webmail hosts: what the PAC file
    /// sends through mailtap and whose HTTPS is decrypted. Sorted and deduplicated.
    pub fn hosts_for_https(&self) -> Vec<HostPattern> {
        let mut hosts: Vec<HostPattern> = self
            .rules
            .iter()
            .flat_map(|r| r.config.hosts.iter().cloned())
            .chain(self.named.iter().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Head-only matching. Upload sub-rules are tried first (an upload endpoint may share a
    /// send endpoint's path); the kind of the first hit fixes the kind, and every rule of that
    /// kind that matches is a candidate. `None` = forward without buffering.
    pub fn match_head(&self, head: &HeadView<'_>) -> Option<RuleMatch> {
        let on_host: Vec<usize> = (0..self.rules.len())
            .filter(|i| self.rules[*i].host_matches(head.host, &self.named))
            .collect();
        if on_host.is_empty() {
            return None;
        }
        let query = head.query.map(query_pairs).unwrap_or_default();
        let ups: Vec<usize> = on_host
            .iter()
            .copied()
            .filter(|i| self.rules[*i].upload_head_matches(head, &query))
            .collect();
        if !ups.is_empty() {
            return Some(RuleMatch {
                kind: MatchKind::Upload,
                candidates: ups,
            });
        }
        let sends: Vec<usize> = on_host
            .into_iter()
            .filter(|i| self.rules[*i].send_head_matches(head, &query))
            .collect();
        (!sends.is_empty()).then_some(RuleMatch {
            kind: MatchKind::Send,
            candidates: sends,
        })
    }

    /// Tries the match's candidates in order; the first that yields a send or an upload wins.
    /// `Ok((None, NotASend))` when none does. A decode error from a candidate is returned only
    /// when no later candidate succeeds.
    pub fn extract(
        &self,
        m: &RuleMatch,
        head: &HeadView<'_>,
        body: &[u8],
    ) -> Result<(Option<&Rule>, Extracted), ExtractError> {
        let mut first_err = None;
        for &i in &m.candidates {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            match extract(rule, head, body) {
                Ok(Extracted::NotASend) => {}
                Ok(x) => return Ok((Some(rule), x)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok((None, Extracted::NotASend)),
        }
    }
}
