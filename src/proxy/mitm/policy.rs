//! The decrypt decision: from the CONNECT authority's host alone, before any TLS byte, decide
//! whether a tunnel is intercepted or stays blind.
//!
//! Owns the precedence `never_decrypt` > listed hosts; the patterns themselves are
//! [`HostPattern`]s (`*.domain` = the domain and every name under it). Pure: no I/O, no
//! certificates.

use crate::hostpat::{any_matches, HostPattern};

/// Which CONNECT hosts are decrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecryptPolicy {
    decrypt: Vec<HostPattern>,
    never: Vec<HostPattern>,
}

impl DecryptPolicy {
    /// `decrypt`: patterns of hosts to intercept (the rules' HTTPS hosts plus
    /// `[mitm].decrypt_hosts`); `never`: patterns that are never intercepted, whatever else says.
    pub fn new(decrypt: Vec<HostPattern>, never: Vec<HostPattern>) -> DecryptPolicy {
        let norm = |mut v: Vec<HostPattern>| {
            v.sort();
            v.dedup();
            v
        };
        DecryptPolicy {
            decrypt: norm(decrypt),
            never: norm(never),
        }
    }

    /// True when a CONNECT to `host` is to be decrypted.
    pub fn should_decrypt(&self, host: &str) -> bool {
        let host = host.trim();
        if host.is_empty() || any_matches(&self.never, host) {
            return false;
        }
        any_matches(&self.decrypt, host)
    }

    /// The decrypted patterns (sorted), for the home page.
    pub fn patterns(&self) -> &[HostPattern] {
        &self.decrypt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(decrypt: &[&str], never: &[&str]) -> DecryptPolicy {
        let v = |s: &[&str]| s.iter().map(|x| x.parse().unwrap()).collect();
        DecryptPolicy::new(v(decrypt), v(never))
    }

    #[test]
    fn decision_table() {
        // Guards the decrypt decision: exact and wildcard matches, case, brackets, never wins.
        let p = policy(
            &[
                "mail.qq.com",
                "*.mail.163.com",
                "Webmail.Example.TEST",
                "::1",
                "*.corp.test",
            ],
            &["secure.corp.test"],
        );
        for (host, want) in [
            ("mail.qq.com", true),
            ("MAIL.QQ.COM", true),
            ("mail.qq.com.", true),
            ("wx.mail.qq.com", false),
            ("qq.com", false),
            ("mail.163.com", true),
            ("hw.mail.163.com", true),
            ("evilmail.163.com", false),
            ("mail.163.com.evil.test", false),
            ("webmail.example.test", true),
            ("[::1]", true),
            ("a.corp.test", true),
            ("secure.corp.test", false),
            ("SECURE.corp.test", false),
            ("", false),
            ("example.org", false),
        ] {
            assert_eq!(p.should_decrypt(host), want, "{host:?}");
        }
    }

    #[test]
    fn never_wildcard_beats_exact_decrypt() {
        // Guards precedence: a never_decrypt wildcard removes an exactly listed host.
        let p = policy(&["bank.example", "mail.example"], &["*.bank.example"]);
        assert!(!p.should_decrypt("bank.example"));
        assert!(p.should_decrypt("mail.example"));
        assert!(!policy(&[], &[]).should_decrypt("mail.example"));
    }
}
