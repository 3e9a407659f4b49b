//! What binds an intercepted send to a real webmail session: the cookies the webmail itself set
//! in responses mailtap forwarded, and where the request came from.
//!
//! Owns two pure decisions. [`SessionBook`] remembers (hashed, bounded, with a time to live) the
//! `name=value` of every cookie a webmail host set through mailtap, and answers whether a send's
//! `Cookie` header carries one of them — a page on another site cannot read those values, and a
//! local script that never logged in through mailtap does not have them. [`cross_site`] reads
//! `Sec-Fetch-Site`, `Origin` and `Referer` to tell a request the webmail's own page made from
//! one another site's page made. It does no I/O and never stores a cookie value in clear.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use http::HeaderMap;

/// Most remembered cookies; beyond it the entry closest to expiry goes first.
pub const MAX_REMEMBERED: usize = 4096;

/// Remembered webmail cookies: keyed hashes of `name=value` (SipHash with a per-process random
/// key, so the book holds nothing an attacker could replay or reverse), each with an expiry.
#[derive(Debug)]
pub struct SessionBook {
    keys: RandomState,
    ttl: Duration,
    /// hash(name=value) → (hash(name), expiry).
    entries: HashMap<u64, (u64, Instant)>,
}

impl SessionBook {
    /// An empty book; entries live `ttl` from the response that set (or last re-set) them.
    pub fn new(ttl: Duration) -> SessionBook {
        SessionBook {
            keys: RandomState::new(),
            ttl,
            entries: HashMap::new(),
        }
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        let mut h = self.keys.build_hasher();
        for p in parts {
            p.hash(&mut h);
        }
        h.finish()
    }

    /// Notes the cookies of one webmail response's `Set-Cookie` values. A cookie being deleted
    /// (empty value, `Max-Age` ≤ 0, or an `Expires` in the past) removes every remembered value
    /// of that name — a logout ends the binding. Returns how many cookies were remembered.
    pub fn note_set_cookies<'a>(
        &mut self,
        set_cookies: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> usize {
        let mut noted = 0;
        for line in set_cookies {
            let Some((name, value, deleted)) = parse_set_cookie(line) else {
                continue;
            };
            let name_hash = self.hash(&[name]);
            if deleted {
                self.entries.retain(|_, (n, _)| *n != name_hash);
                continue;
            }
            let key = self.hash(&[name, value]);
            if !self.entries.contains_key(&key) && self.entries.len() >= MAX_REMEMBERED {
                self.evict(now);
            }
            self.entries.insert(key, (name_hash, now + self.ttl));
            noted += 1;
        }
        noted
    }

    /// Drops expired entries; if none was, the one closest to expiry.
    fn evict(&mut self, now: Instant) {
        self.entries.retain(|_, (_, exp)| *exp > now);
        if self.entries.len() >= MAX_REMEMBERED {
            if let Some(k) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&k);
            }
        }
    }

    /// True when the `Cookie` header value carries at least one unexpired cookie a webmail set
    /// through mailtap.
    pub fn knows_any(&self, cookie: Option<&str>, now: Instant) -> bool {
        let Some(cookie) = cookie else {
            return false;
        };
        cookie.split(';').any(|pair| {
            let Some((name, value)) = pair.split_once('=') else {
                return false;
            };
            let key = self.hash(&[name.trim(), value.trim()]);
            self.entries.get(&key).is_some_and(|(_, exp)| *exp > now)
        })
    }

    /// Number of remembered cookies (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `(name, value, is_a_deletion)` of a `Set-Cookie` value (RFC 6265 §5.2); `None` when it has
/// no `name=`.
fn parse_set_cookie(line: &str) -> Option<(&str, &str, bool)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let (name, value) = (name.trim(), value.trim().trim_matches('"'));
    if name.is_empty() {
        return None;
    }
    let mut deleted = value.is_empty();
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("max-age") && v.parse::<i64>().is_ok_and(|n| n <= 0) {
            deleted = true;
        }
        if k.eq_ignore_ascii_case("expires") {
            if let Ok(t) = chrono::DateTime::parse_from_rfc2822(&v.replace('-', " ")) {
                deleted |= t < chrono::Utc::now();
            }
        }
    }
    Some((name, value, deleted))
}

/// Why a request counts as cross-site (for the log line), or `None` when it comes from the
/// webmail's own pages (or from no browser page at all).
///
/// `host`/`port` are the request's; `same_webmail(other)` says whether another host belongs to
/// the same webmail (one host pattern of the webmail covers both, e.g. `mail.qq.com` and
/// `set1.mail.qq.com` under `*.mail.qq.com`). The page that made the request is "own" when its
/// `Origin` (else its `Referer`) names the same port and the same host or such a sibling.
/// Rules, in order:
/// - `Sec-Fetch-Site: cross-site` → cross-site.
/// - `Origin: null` (sandboxed frames, `data:` pages, no-referrer pages), or an `Origin` (else
///   `Referer`) that is not own → cross-site.
/// - `Sec-Fetch-Site: same-site` without an own `Origin`/`Referer` → cross-site: a sibling host
///   under the same domain (another user's pages, a forum) is not the webmail.
/// - no `Sec-Fetch-Site`, `Origin` or `Referer` at all: not a browser page (curl, a script) →
///   not cross-site; the session-cookie check still applies.
pub fn cross_site(
    headers: &HeaderMap,
    host: &str,
    port: u16,
    same_webmail: impl Fn(&str) -> bool,
) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    let site = text("sec-fetch-site").map(|s| s.to_ascii_lowercase());
    if site.as_deref() == Some("cross-site") {
        return Some("Sec-Fetch-Site: cross-site".into());
    }
    let own = |url: &str| {
        page_host_port(url).is_some_and(|(h, p)| {
            p == port && (h == crate::hostpat::normalize_host(host) || same_webmail(&h))
        })
    };
    let page = match (text("origin"), text("referer")) {
        (Some(origin), _) => Some((own(&origin), format!("Origin: {origin}"))),
        (None, Some(referer)) => {
            let shown = referer.split(['?', '#']).next().unwrap_or("").to_string();
            Some((own(&referer), format!("Referer: {shown}")))
        }
        (None, None) => None,
    };
    match (page, site.as_deref()) {
        (Some((false, why)), _) => Some(why),
        (None, Some("same-site")) => Some("Sec-Fetch-Site: same-site".into()),
        _ => None,
    }
}

/// The normalised host and port (the scheme's default when none is given) a page URL names;
/// `None` for `null` and anything unparsable.
fn page_host_port(url: &str) -> Option<(String, u16)> {
    let uri = url.parse::<http::Uri>().ok()?;
    let h = uri.host()?;
    let p = uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })?;
    Some((crate::hostpat::normalize_host(h), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_set_through_mailtap_bind_later_sends() {
        // Guards the session binding: only a cookie value the webmail set counts, any case of
        // surrounding space; a logout (deletion) and the TTL end it.
        let t0 = Instant::now();
        let mut b = SessionBook::new(Duration::from_secs(60));
        let n = b.note_set_cookies(
            [
                "roundcube_sessid=77aa; path=/; HttpOnly",
                "roundcube_sessauth=secret; path=/; secure",
                "lang=en; Max-Age=3600",
            ]
            .into_iter(),
            t0,
        );
        assert_eq!(n, 3);
        for (cookie, want) in [
            (Some("roundcube_sessid=77aa"), true),
            (Some("x=1;  roundcube_sessauth=secret ; y=2"), true),
            (Some("roundcube_sessid=77ab"), false),
            (Some("ROUNDCUBE_SESSID=77aa"), false),
            (Some("roundcube_sessid"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(b.knows_any(cookie, t0), want, "{cookie:?}");
        }
        assert!(!b.knows_any(Some("roundcube_sessid=77aa"), t0 + Duration::from_secs(61)));
        b.note_set_cookies(["roundcube_sessid=; Max-Age=0"].into_iter(), t0);
        assert!(!b.knows_any(Some("roundcube_sessid=77aa"), t0));
        assert!(b.knows_any(Some("roundcube_sessauth=secret"), t0));
        b.note_set_cookies(
            ["roundcube_sessauth=-del-; expires=Thu, 01-Jan-1970 00:00:01 GMT"].into_iter(),
            t0,
        );
        assert!(!b.knows_any(Some("roundcube_sessauth=secret"), t0));
    }

    #[test]
    fn the_book_is_bounded() {
        // Guards memory: a flood of Set-Cookie values never grows the book past its bound, and
        // the newest cookie is kept.
        let t0 = Instant::now();
        let mut b = SessionBook::new(Duration::from_secs(60));
        for i in 0..(MAX_REMEMBERED + 500) {
            let line = format!("c{i}=v{i}");
            b.note_set_cookies(
                [line.as_str()].into_iter(),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(b.len(), MAX_REMEMBERED);
        let last = format!("c{0}=v{0}", MAX_REMEMBERED + 499);
        assert!(b.knows_any(Some(&last), t0));
        assert!(!b.knows_any(Some("c0=v0"), t0));
    }

    #[test]
    fn cross_site_table() {
        // Guards the provenance rules: Sec-Fetch-Site, Origin (incl. null), Referer, siblings of
        // the same webmail, none.
        let h = "webmail.example.test";
        let sibling = |other: &str| other == "www.example.test";
        // (request headers, expected reason)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[], None),
            (&[("sec-fetch-site", "same-origin")], None),
            (&[("sec-fetch-site", "none")], None),
            (
                &[("sec-fetch-site", "cross-site")],
                Some("Sec-Fetch-Site: cross-site"),
            ),
            (
                &[("sec-fetch-site", "Same-Site")],
                Some("Sec-Fetch-Site: same-site"),
            ),
            (&[("origin", "http://webmail.example.test:8080")], None),
            (&[("origin", "http://WEBMAIL.example.test:8080")], None),
            (
                &[("origin", "http://attacker.test")],
                Some("Origin: http://attacker.test"),
            ),
            (
                &[("origin", "http://webmail.example.test:8081")],
                Some("Origin: http://webmail.example.test:8081"),
            ),
            (
                &[("origin", "http://webmail.example.test.attacker.test:8080")],
                Some("Origin: http://webmail.example.test.attacker.test:8080"),
            ),
            (&[("origin", "null")], Some("Origin: null")),
            (
                &[
                    ("origin", "null"),
                    ("referer", "http://webmail.example.test:8080/"),
                ],
                Some("Origin: null"),
            ),
            (
                &[("referer", "http://webmail.example.test:8080/?_task=mail")],
                None,
            ),
            (
                &[("referer", "http://attacker.test/x?secret=1")],
                Some("Referer: http://attacker.test/x"),
            ),
            (
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "http://attacker.test"),
                ],
                Some("Origin: http://attacker.test"),
            ),
            // A sibling of the same webmail (one of its host patterns covers both) is own.
            (
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "http://www.example.test:8080"),
                ],
                None,
            ),
            (
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "http://blog.example.test:8080"),
                ],
                Some("Origin: http://blog.example.test:8080"),
            ),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://webmail.example.test:8080"),
                ],
                Some("Sec-Fetch-Site: cross-site"),
            ),
        ];
        for (headers, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in *headers {
                map.insert(http::header::HeaderName::from_static(k), v.parse().unwrap());
            }
            assert_eq!(
                cross_site(&map, h, 8080, sibling).as_deref(),
                *want,
                "{headers:?}"
            );
        }
        let mut map = HeaderMap::new();
        map.insert("origin", "https://webmail.example.test".parse().unwrap());
        assert_eq!(cross_site(&map, h, 443, sibling), None);
        assert!(cross_site(&map, h, 80, sibling).is_some());
    }
}
