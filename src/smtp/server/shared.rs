//! What every connection of one built-in server shares: its configuration, mailbox, TLS
//! identity, AUTH password and the fault-injection counter; and the recipient glob matcher.

use std::sync::atomic::AtomicU64;

use super::config::BuiltinSmtpConfig;
use super::mailbox::Mailbox;
use crate::smtp::client::config::Secret;

/// State shared by all connections of one server.
pub(crate) struct Shared {
    pub cfg: BuiltinSmtpConfig,
    pub mailbox: Mailbox,
    pub acceptor: Option<tokio_native_tls::TlsAcceptor>,
    pub password: Option<Secret>,
    /// MAIL commands seen so far (for `temp_fail_first_n`).
    pub mail_attempts: AtomicU64,
}

/// Case-insensitive glob match with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with single backtrack point: O(|p|·|t|) worst case, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        // Guards: recipient rejection patterns match as documented, including hostile inputs.
        let cases = [
            ("nobody@*", "nobody@x.org", true),
            ("nobody@*", "NOBODY@X.ORG", true),
            ("nobody@*", "somebody@x.org", false),
            ("nobody@*", "nobody", false),
            ("*@bad.test", "a@bad.test", true),
            ("*@bad.test", "a@bad.test.evil", false),
            ("a?c@x", "abc@x", true),
            ("a?c@x", "ac@x", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("**a**", "bab", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }
}
