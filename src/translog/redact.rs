//! Redaction and escaping of transcript text: secret HTTP header values, SMTP AUTH payloads,
//! and control characters that could forge log lines.
//!
//! Owns pure string functions only (no I/O); the writer in `translog.rs` applies them to every
//! line, whatever its caller already did.

/// Header names whose values never reach a log.
const SECRET_HEADERS: [&str; 6] = [
    "cookie",
    "set-cookie",
    "cookie2",
    "set-cookie2",
    "authorization",
    "proxy-authorization",
];

/// Whether a header's value is a secret: the fields above, and any field naming a token
/// (CSRF / session tokens such as SnappyMail's `X-SM-Token`, equal to its session cookie) or
/// Roundcube's request token header.
pub(crate) fn is_secret_header(lower_name: &str) -> bool {
    SECRET_HEADERS.contains(&lower_name)
        || lower_name.contains("token")
        || lower_name == "x-roundcube-request"
}

/// Whether a query parameter of a request target carries a session or a credential (QQ Mail's
/// `sid=`, `*token*`, `*sess*`, `key`, `auth`, `pass*`).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "sid"
        || n == "key"
        || n == "auth"
        || n.contains("token")
        || n.contains("sess")
        || n.starts_with("pass")
}

/// Header fields whose value is a URL that may carry the same session parameters.
const URL_HEADERS: [&str; 3] = ["referer", "location", "content-location"];

/// A request target or URL with the values of secret query parameters `<redacted>`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=<redacted>"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// A header value as it may be logged: `<redacted>` for secret fields, URLs with their secret
/// parameters redacted, anything else unchanged. `lower_name` is the field name in lower case.
pub(crate) fn redact_value(lower_name: &str, value: &str) -> String {
    if is_secret_header(lower_name) {
        "<redacted>".to_string()
    } else if URL_HEADERS.contains(&lower_name) {
        redact_url(value)
    } else {
        value.to_string()
    }
}

/// The request line `METHOD target VERSION` with secret query values `<redacted>`; any other
/// line unchanged.
fn redact_request_line(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return line.to_string();
    };
    format!("{method} {} {version}", redact_url(target))
}

/// Escapes control characters (except tab) so one logical line stays one line in the file.
/// A single trailing CRLF/LF (the wire terminator) is dropped first.
pub fn sanitize_line(line: &str) -> String {
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Returns `head` (an HTTP message head, CRLF or LF lines) with the values of Cookie,
/// Set-Cookie, Authorization, Proxy-Authorization and token fields (any case, whitespace before
/// the colon tolerated, folded continuation lines included) and the session / credential
/// parameters of the request line's query replaced by `<redacted>`. Lines are joined with
/// `\n`; the trailing empty line of a head is dropped.
pub fn redact_head(head: &str) -> String {
    let mut out = Vec::new();
    let mut in_secret = false;
    for (i, raw) in head.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if i == 0 && line.ends_with(|c: char| c.is_ascii_digit()) && line.contains(" HTTP/") {
            out.push(redact_request_line(line));
            continue;
        }
        if line.starts_with([' ', '\t']) && !out.is_empty() {
            // obs-fold continuation (RFC 9112 §5.2) belongs to the previous field.
            out.push(if in_secret {
                " <redacted>".to_string()
            } else {
                line.to_string()
            });
            continue;
        }
        in_secret = false;
        if let Some((name, value)) = line.split_once(':') {
            let n = name.trim().to_ascii_lowercase();
            if is_secret_header(&n) {
                in_secret = true;
                out.push(format!("{}: <redacted>", name.trim_end()));
                continue;
            }
            out.push(format!("{name}:{}", redact_value(&n, value)));
            continue;
        }
        out.push(line.to_string());
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// Redacts the payload of a client AUTH command: `AUTH PLAIN <b64>` → `AUTH PLAIN <redacted>`.
/// Returns `None` if `line` is not an AUTH command.
pub(super) fn redact_auth(line: &str) -> Option<String> {
    let mut parts = line.splitn(3, ' ');
    let verb = parts.next()?;
    if !verb.eq_ignore_ascii_case("AUTH") {
        return None;
    }
    let mech = parts.next().unwrap_or("");
    Some(match parts.next() {
        Some(_) => format!("{verb} {mech} <redacted>"),
        None => format!("{verb} {mech}").trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_table() {
        // Guards: secret header values and session query values never survive, whatever the
        // case, spacing or folding; ordinary fields and parameters stay readable.
        let cases: &[(&str, &str)] = &[
            ("Cookie: a=1; b=2", "Cookie: <redacted>"),
            ("cookie:sid=1", "cookie: <redacted>"),
            ("COOKIE : x", "COOKIE: <redacted>"),
            ("Set-Cookie: sid=9; HttpOnly", "Set-Cookie: <redacted>"),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: <redacted>",
            ),
            (
                "Proxy-Authorization: Basic eDp5",
                "Proxy-Authorization: <redacted>",
            ),
            (
                "Cookie: a=1\r\n  more=secret",
                "Cookie: <redacted>\n <redacted>",
            ),
            ("Host: x\r\n  folded", "Host: x\n  folded"),
            ("X-Cookie-Hint: keep", "X-Cookie-Hint: keep"),
            (
                "POST /send HTTP/1.1\r\nCookie: s=1\r\n\r\n",
                "POST /send HTTP/1.1\nCookie: <redacted>",
            ),
            (
                "Referer: http://x/?Cookie: y",
                "Referer: http://x/?Cookie: y",
            ),
            ("X-SM-Token: 3f9a1c", "X-SM-Token: <redacted>"),
            ("X-Roundcube-Request: Jx8QkT", "X-Roundcube-Request: <redacted>"),
            ("X-CSRF-Token: a", "X-CSRF-Token: <redacted>"),
            (
                "POST http://mail.qq.com/cgi-bin/compose_send?sid=fQLMt2-4Qwp HTTP/1.1\r\nHost: q",
                "POST http://mail.qq.com/cgi-bin/compose_send?sid=<redacted> HTTP/1.1\nHost: q",
            ),
            (
                "GET /?_task=mail&_token=abc&x=1&SESSID=9&pass=p&keep=k HTTP/1.1",
                "GET /?_task=mail&_token=<redacted>&x=1&SESSID=<redacted>&pass=<redacted>&keep=k HTTP/1.1",
            ),
            (
                "POST /?/Json/&q[]=/0/ HTTP/1.1",
                "POST /?/Json/&q[]=/0/ HTTP/1.1",
            ),
            ("HTTP/1.1 200 OK", "HTTP/1.1 200 OK"),
            (
                "Referer: http://mail.qq.com/cgi-bin/frame_html?sid=abc&r=1",
                "Referer: http://mail.qq.com/cgi-bin/frame_html?sid=<redacted>&r=1",
            ),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_head(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn sanitize_escapes_controls() {
        // Guards: a hostile line cannot inject a new log line or raw control bytes.
        let cases: &[(&str, &str)] = &[
            ("250 OK\r\n", "250 OK"),
            ("250 OK\n", "250 OK"),
            (
                "a\r\n2026-01-01 00:00:00.000000 S: 250 fake",
                "a\\r\\n2026-01-01 00:00:00.000000 S: 250 fake",
            ),
            ("nul\0bell\x07", "nul\\x00bell\\x07"),
            ("tab\tok", "tab\tok"),
            ("a\rb", "a\\rb"),
            ("中文 ok", "中文 ok"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_line(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn auth_redaction_table() {
        // Guards: AUTH payloads are hidden, the mechanism stays visible.
        let cases: &[(&str, Option<&str>)] = &[
            (
                "AUTH PLAIN AGxpbGVpAHNlY3JldA==",
                Some("AUTH PLAIN <redacted>"),
            ),
            ("auth login dXNlcg==", Some("auth login <redacted>")),
            ("AUTH LOGIN", Some("AUTH LOGIN")),
            ("MAIL FROM:<a@b.org>", None),
            ("AUTHX PLAIN x", None),
        ];
        for (input, want) in cases {
            assert_eq!(redact_auth(input).as_deref(), *want, "input {input:?}");
        }
    }
}
