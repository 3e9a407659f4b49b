//! Envelope-sender resolution for intercepted mail.
//!
//! Owns the precedence: the request's own address; else the rule's `sender`; else the
//! `[senders]` entry for the webmail host; else the SMTP account; and reports which one was
//! used. Does not validate the address (`mail::check` does).

use crate::hostpat::HostMap;
use crate::mail::record::{Mailbox, SenderSource};

/// The chosen envelope sender and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSender {
    /// Empty when `source` is `Unknown`.
    pub addr: String,
    pub source: SenderSource,
}

/// Resolves the sender. A candidate counts only when it contains `@`. `senders` keys are host
/// patterns (see [`HostMap::get`]: an exact key wins, then the most specific `*.domain`).
pub fn resolve_sender(
    request: Option<&Mailbox>,
    rule_sender: Option<&str>,
    senders: &HostMap<String>,
    host: &str,
    smtp_account: Option<&str>,
) -> ResolvedSender {
    let addr_like = |s: &str| s.contains('@');
    if let Some(m) = request.filter(|m| addr_like(&m.addr)) {
        return ResolvedSender {
            addr: m.addr.clone(),
            source: SenderSource::Request,
        };
    }
    let by_host = senders.get(host);
    if let Some(s) = rule_sender
        .filter(|s| addr_like(s))
        .or(by_host.map(String::as_str).filter(|s| addr_like(s)))
    {
        return ResolvedSender {
            addr: s.to_string(),
            source: SenderSource::Configured,
        };
    }
    if let Some(s) = smtp_account.filter(|s| addr_like(s)) {
        return ResolvedSender {
            addr: s.to_string(),
            source: SenderSource::SmtpAccount,
        };
    }
    ResolvedSender {
        addr: String::new(),
        source: SenderSource::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_table() {
        // Request beats rule beats host map beats SMTP account; non-addresses are skipped.
        let senders: HostMap<String> = toml::from_str(
            "\"webmail.example.test\" = \"host@example.com\"\n\
             \"*.corp.test\" = \"wild@example.com\"\n\
             \"*.Example.test\" = \"upper@example.com\"\n\
             \"bad.test\" = \"not-an-address\"\n",
        )
        .unwrap();
        let req = Mailbox::bare("req@example.com");
        let idn = Mailbox::bare("1");
        // (request sender, rule sender, host, SMTP account, expected address, expected source)
        type Case<'a> = (
            Option<&'a Mailbox>,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            &'a str,
            SenderSource,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                Some(&req),
                Some("rule@example.com"),
                "webmail.example.test",
                Some("acct@example.com"),
                "req@example.com",
                SenderSource::Request,
            ),
            (
                Some(&idn),
                Some("rule@example.com"),
                "webmail.example.test",
                None,
                "rule@example.com",
                SenderSource::Configured,
            ),
            (
                None,
                None,
                "WEBMAIL.example.test",
                None,
                "host@example.com",
                SenderSource::Configured,
            ),
            (
                None,
                None,
                "mail.corp.test",
                None,
                "wild@example.com",
                SenderSource::Configured,
            ),
            (
                None,
                None,
                "corp.test",
                None,
                "wild@example.com",
                SenderSource::Configured,
            ),
            (
                None,
                None,
                "other.EXAMPLE.test",
                None,
                "upper@example.com",
                SenderSource::Configured,
            ),
            (
                None,
                None,
                "bad.test",
                Some("acct@example.com"),
                "acct@example.com",
                SenderSource::SmtpAccount,
            ),
            (
                None,
                None,
                "other.test",
                Some("username-only"),
                "",
                SenderSource::Unknown,
            ),
        ];
        for (r, rule, host, acct, want, src) in cases {
            let got = resolve_sender(r, rule, &senders, host, acct);
            assert_eq!((got.addr.as_str(), got.source), (want, src), "{host}");
        }
    }
}
