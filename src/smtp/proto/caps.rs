//! ESMTP capabilities: what a server announced in its EHLO reply (RFC 5321 §4.1.1.1).
//!
//! Owns the parsing of EHLO keywords (SIZE, PIPELINING, 8BITMIME, SMTPUTF8, STARTTLS, AUTH,
//! ENHANCEDSTATUSCODES). It does not decide policy (which mechanism to use, whether to refuse):
//! the client does.

use super::reply::Reply;

/// Capabilities announced by a server. `Default` is what a HELO-only server offers: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The EHLO keyword `SIZE` was present (RFC 1870).
    pub size: bool,
    /// The announced fixed maximum message size; `None` when absent or `SIZE 0` ("no limit").
    pub size_limit: Option<u64>,
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms, upper-cased, in the server's order (RFC 4954 §3).
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Parses the lines of a positive EHLO reply. The first line is the server's greeting
    /// name and is skipped; unknown keywords are ignored.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for text in reply.texts().skip(1) {
            let mut words = text.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            // Some old servers announce `AUTH=LOGIN PLAIN`.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k.to_string(), Some(p.to_string())),
                None => (keyword, None),
            };
            match keyword.as_str() {
                "SIZE" => {
                    caps.size = true;
                    caps.size_limit = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|n| *n > 0);
                }
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    let mechs = first_param
                        .into_iter()
                        .chain(words.map(str::to_string))
                        .map(|m| m.to_ascii_uppercase());
                    for m in mechs {
                        if !m.is_empty() && !caps.auth.contains(&m) {
                            caps.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// Whether the server offers the SASL mechanism `mech` (case-insensitive).
    pub fn has_auth(&self, mech: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::proto::reply::ReplyParser;

    fn caps(lines: &[&str]) -> Capabilities {
        let mut p = ReplyParser::new(4096, 64);
        let mut out = None;
        for l in lines {
            out = p.push(l.as_bytes()).unwrap();
        }
        Capabilities::from_ehlo(&out.unwrap())
    }

    #[test]
    fn keyword_table() {
        // Guards: every supported EHLO keyword is recognised, case-insensitively.
        let c = caps(&[
            "250-mx.example.org greets you",
            "250-size 1000",
            "250-PIPELINING",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250-STARTTLS",
            "250-ENHANCEDSTATUSCODES",
            "250 AUTH plain LOGIN CRAM-MD5",
        ]);
        assert!(c.size && c.pipelining && c.eightbitmime && c.smtputf8 && c.starttls);
        assert!(c.enhanced_status_codes);
        assert_eq!(c.size_limit, Some(1000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN", "CRAM-MD5"]);
        assert!(c.has_auth("login"));
    }

    #[test]
    fn hostile_and_edge_values() {
        // Guards: odd SIZE values and the greeting line never produce bogus capabilities.
        let c = caps(&["250-STARTTLS is my name", "250-SIZE 0", "250 SIZE"]);
        assert!(
            !c.starttls,
            "the first line is the server name, not a keyword"
        );
        assert!(c.size);
        assert_eq!(c.size_limit, None);
        let c = caps(&["250-x", "250-SIZE -5", "250-AUTH=LOGIN PLAIN", "250 "]);
        assert_eq!(c.size_limit, None);
        assert_eq!(c.auth, vec!["LOGIN", "PLAIN"]);
        let c = caps(&["250-x", "250 SIZE 99999999999999999999999"]);
        assert_eq!(c.size_limit, None);
        assert_eq!(caps(&["250 only-a-name"]), Capabilities::default());
    }
}
