//! Address lists as webmails submit them, and strict addr-spec validation.
//!
//! Owns: splitting `"Name" <a@b>, Name <a@b>; bare@c` lists (quoted commas respected, empty
//! items skipped, display names kept verbatim) and the strict check every sender/recipient must
//! pass. Does not decode anything inside names (no RFC 2047, no HTML entities) and does not
//! expand nicknames or add default domains: a proxy cannot know them.

use email_address::{EmailAddress, Options};

use super::record::Mailbox;

/// Why an address failed strict validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    /// CR, LF, NUL or another control character: could become a header or SMTP command.
    ControlCharacter {
        addr: String,
    },
    /// Rejected by email_address with strict options (TLD required, no domain literal, no
    /// display text).
    Syntax {
        addr: String,
        detail: String,
    },
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::Empty => write!(f, "empty address"),
            AddressError::ControlCharacter { addr } => {
                write!(f, "address {addr:?} contains a control character")
            }
            AddressError::Syntax { addr, detail } => {
                write!(f, "address {addr:?} is invalid: {detail}")
            }
        }
    }
}

impl std::error::Error for AddressError {}

impl AddressError {
    /// What is wrong, without repeating the address (for messages that name it already).
    pub fn detail(&self) -> String {
        match self {
            AddressError::Empty => "empty address".into(),
            AddressError::ControlCharacter { .. } => {
                "contains a control character (CR, LF, NUL…)".into()
            }
            AddressError::Syntax { detail, .. } => detail.clone(),
        }
    }
}

/// True when `s` holds a character that must never reach a header or an SMTP line.
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Strictly validates a bare addr-spec. `Ok` guarantees: non-empty, no control characters,
/// a dotted domain with a TLD, no domain literal, no display text.
pub fn validate_addr(addr: &str) -> Result<(), AddressError> {
    if addr.is_empty() {
        return Err(AddressError::Empty);
    }
    if has_control(addr) {
        return Err(AddressError::ControlCharacter { addr: addr.into() });
    }
    let opts = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    EmailAddress::parse_with_options(addr, opts)
        .map(|_| ())
        .map_err(|e| AddressError::Syntax {
            addr: addr.into(),
            detail: match e {
                // `a@localhost`: a valid RFC 5321 name, but not one mail can be relayed to.
                email_address::Error::DomainTooFew => {
                    "the domain has no top-level domain (such as .com or .cn), so no mail \
                     server on the Internet can take it"
                        .to_string()
                }
                other => other.to_string().trim_end_matches('.').to_string(),
            },
        })
}

/// True when the address has non-ASCII characters and so needs SMTPUTF8 (RFC 6531) on the wire.
pub fn needs_smtputf8(addr: &str) -> bool {
    !addr.is_ascii()
}

/// Splits an address list on `,` or `;` outside double quotes and angle brackets, skipping
/// empty items. Never fails: items are returned as written for `validate_addr` to judge.
pub fn parse_list(input: &str) -> Vec<Mailbox> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' if !in_angle => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ';' if !in_quote && !in_angle && ends_with_entity(&input[start..i]) => {}
            ',' | ';' if !in_quote && !in_angle => {
                out.extend(parse_mailbox(&input[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(parse_mailbox(&input[start..]));
    out
}

/// True when `s` ends with an unterminated HTML character reference (`&nbsp`, `&#160`,
/// `&#xA0`), so the `;` that follows closes it instead of separating items (QQ Mail sends
/// display names with entities).
fn ends_with_entity(s: &str) -> bool {
    let Some(amp) = s.rfind('&') else {
        return false;
    };
    let ent = &s[amp + 1..];
    let body = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X"));
    match (body, ent.strip_prefix('#')) {
        (Some(hex), _) => {
            !hex.is_empty() && hex.len() <= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        (None, Some(dec)) => {
            !dec.is_empty() && dec.len() <= 7 && dec.bytes().all(|b| b.is_ascii_digit())
        }
        (None, None) => {
            (2..=10).contains(&ent.len())
                && ent.as_bytes()[0].is_ascii_alphabetic()
                && ent.bytes().all(|b| b.is_ascii_alphanumeric())
        }
    }
}

/// Parses one item: `"Name" <a@b>`, `Name <a@b>`, `"Name"<a@b>`, `<a@b>` or a bare `a@b`.
/// Returns `None` for an item that is empty after trimming. Text after `>` (e.g. a label
/// `(work)`) is ignored; an unclosed `<` takes the rest as the address. An item holding CR,
/// LF, NUL or another control character is returned whole as a bare (invalid) address.
pub fn parse_mailbox(item: &str) -> Option<Mailbox> {
    let item = item.trim_matches(|c: char| c == ' ' || c == '\t');
    if item.is_empty() {
        return None;
    }
    // An item with a control character is kept whole as its address, so validation rejects
    // it and the rejection names exactly what was typed (it can never be split into a
    // plausible-looking mailbox).
    if has_control(item) {
        return Some(Mailbox::bare(item));
    }
    let Some(lt) = find_unquoted(item, '<') else {
        return Some(Mailbox::bare(item));
    };
    let rest = &item[lt + 1..];
    let addr = match rest.find('>') {
        Some(gt) => &rest[..gt],
        None => rest,
    };
    let name = unquote(item[..lt].trim_matches(|c: char| c == ' ' || c == '\t'));
    Some(Mailbox {
        name: (!name.is_empty()).then_some(name),
        addr: addr
            .trim_matches(|c: char| c == ' ' || c == '\t')
            .to_string(),
    })
}

fn find_unquoted(s: &str, target: char) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quote {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if c == target && !in_quote {
            return Some(i);
        }
    }
    None
}

/// Removes one pair of surrounding double quotes and their backslash escapes.
fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return s.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, addr: &str) -> Mailbox {
        Mailbox {
            name: name.map(Into::into),
            addr: addr.into(),
        }
    }

    #[test]
    fn parse_list_table() {
        // Every list shape webmails send splits into the right names and addresses.
        let cases: Vec<(&str, Vec<Mailbox>)> = vec![
            ("", vec![]),
            (" , ;; ,", vec![]),
            ("a@b.org", vec![mb(None, "a@b.org")]),
            (
                "张三 <z@example.com>,bob@example.org,",
                vec![
                    mb(Some("张三"), "z@example.com"),
                    mb(None, "bob@example.org"),
                ],
            ),
            (
                "\"张三\"<z@example.com>; \"bob\"<b@example.org>",
                vec![
                    mb(Some("张三"), "z@example.com"),
                    mb(Some("bob"), "b@example.org"),
                ],
            ),
            (
                "\"Li, Lei\" <l@x.cn>, \"A;B\" <ab@x.cn>",
                vec![mb(Some("Li, Lei"), "l@x.cn"), mb(Some("A;B"), "ab@x.cn")],
            ),
            (
                "\"Quote \\\" in\" <q@x.cn>",
                vec![mb(Some("Quote \" in"), "q@x.cn")],
            ),
            ("<only@x.cn>", vec![mb(None, "only@x.cn")]),
            ("Name <a@x.cn> (work)", vec![mb(Some("Name"), "a@x.cn")]),
            ("Broken <a@x.cn", vec![mb(Some("Broken"), "a@x.cn")]),
            ("odd <a,b@x.cn>", vec![mb(Some("odd"), "a,b@x.cn")]),
            (
                "&nbsp;Wang&nbsp; <w@x.cn>",
                vec![mb(Some("&nbsp;Wang&nbsp;"), "w@x.cn")],
            ),
            (
                "a@x.cn;b@y.cn;",
                vec![mb(None, "a@x.cn"), mb(None, "b@y.cn")],
            ),
            (
                "Li&#160;Lei <l@x.cn>;a&b@x.cn;c@y.cn",
                vec![
                    mb(Some("Li&#160;Lei"), "l@x.cn"),
                    mb(None, "a&b@x.cn"),
                    mb(None, "c@y.cn"),
                ],
            ),
            (
                "Evil\r\nBcc: x@y.cn <e@x.cn>",
                vec![mb(None, "Evil\r\nBcc: x@y.cn <e@x.cn>")],
            ),
            (
                "a@x.cn\r\nRCPT TO:<e@x.cn>, b@y.cn",
                vec![mb(None, "a@x.cn\r\nRCPT TO:<e@x.cn>"), mb(None, "b@y.cn")],
            ),
            ("Nul\0 <n@x.cn>", vec![mb(None, "Nul\0 <n@x.cn>")]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_list(input), want, "input {input:?}");
        }
    }

    #[test]
    fn strict_validation_table() {
        // Strict options reject everything that is not a plain, routable addr-spec.
        let good = [
            "a@b.org",
            "zhang.san+lab@mail.example.com",
            "张三@例子.中国",
        ];
        for a in good {
            assert_eq!(validate_addr(a), Ok(()), "{a}");
        }
        let bad = [
            "",
            "chengli",
            "chengli@",
            "bupt.edu.cn",
            "a..b@x.org",
            "a@localhost",
            "a@[127.0.0.1]",
            "Chen Li <c@x.org>",
            "a@b.org\r\nRCPT TO:<evil@x.org>",
            "a@b.org\n",
            "a\0@b.org",
            "a@b.org\r",
        ];
        for a in bad {
            assert!(validate_addr(a).is_err(), "{a:?} accepted");
        }
        assert!(matches!(
            validate_addr("x@y.org\r\nDATA"),
            Err(AddressError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn smtputf8_detection() {
        // Only non-ASCII addresses need SMTPUTF8.
        assert!(!needs_smtputf8("a@b.org"));
        assert!(needs_smtputf8("张三@例子.中国"));
        assert!(needs_smtputf8("a@例子.中国"));
    }
}
