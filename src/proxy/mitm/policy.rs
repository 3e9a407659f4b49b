//! The decrypt decision: from the CONNECT authority's host alone, before any TLS byte, decide
//! whether a tunnel is intercepted or stays blind.
//!
//! Owns host-pattern matching (`host` exact, `*.domain` = the domain and every name under it,
//! case-insensitive, IPv6 brackets ignored) and the precedence `never_decrypt` > listed hosts.
//! Pure: no I/O, no certificates.

/// Which CONNECT hosts are decrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecryptPolicy {
    decrypt: Vec<String>,
    never: Vec<String>,
}

impl DecryptPolicy {
    /// `decrypt`: patterns of hosts to intercept (the rules' HTTPS hosts plus
    /// `[mitm].decrypt_hosts`); `never`: patterns that are never intercepted, whatever else says.
    pub fn new(decrypt: Vec<String>, never: Vec<String>) -> DecryptPolicy {
        let norm = |v: Vec<String>| {
            let mut v: Vec<String> = v.iter().map(|p| normalize(p)).collect();
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
        let host = normalize(host);
        if host.is_empty() || self.never.iter().any(|p| matches(p, &host)) {
            return false;
        }
        self.decrypt.iter().any(|p| matches(p, &host))
    }

    /// The decrypted patterns (normalised, sorted), for the PAC file and the home page.
    pub fn patterns(&self) -> &[String] {
        &self.decrypt
    }
}

/// Lower case, no IPv6 brackets, no trailing root dot.
fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `pattern` and `host` are normalised.
fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host == domain
                || (host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
        }
        None => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(decrypt: &[&str], never: &[&str]) -> DecryptPolicy {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
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
