//! Redaction and escaping of secrets wherever mailtap keeps or shows text: secret HTTP header
//! values and query parameters (by list and by name pattern: `X-Api-Key`, `X-Session-Id`,
//! `api_key=`), SMTP AUTH payloads, and control characters that could forge log lines.
//!
//! Owns pure string functions only (no I/O). Its users: the spool (`mail/record.rs` cleans the
//! request head a `MailRecord` stores), the transcript writer (`translog.rs` applies them to
//! every line, whatever its caller already did) and the relay's transcript lines.

/// Header names whose values never reach a log.
const SECRET_HEADERS: [&str; 6] = [
    "cookie",
    "set-cookie",
    "cookie2",
    "set-cookie2",
    "authorization",
    "proxy-authorization",
];

/// Substrings that mark a field or parameter name as a secret wherever they occur in it (in
/// lower case): long enough that ordinary names do not contain them by accident.
const SECRET_SUBSTRINGS: [&str; 10] = [
    "token",
    "secret",
    "session",
    "sessid",
    "apikey",
    "passw",
    "passphrase",
    "credential",
    "csrf",
    "xsrf",
];

/// Short markers that are secrets only as a whole word of the name (`X-Api-Key`, `api_key`,
/// `apiKey`, `X-Auth`), so that `Keep-Alive`, `keyword`, `author` or `passage` stay readable.
const SECRET_WORDS: [&str; 7] = ["key", "auth", "pass", "pwd", "sid", "sess", "sig"];

/// The words of a field or parameter name, in lower case: split at every character that is not
/// a letter or digit and at a lower-case → upper-case step (`apiKey` → `api`, `key`).
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Whether a name (header field or query parameter, any case) says its value is a credential,
/// a session or a token, by pattern: a [`SECRET_SUBSTRINGS`] entry anywhere, a
/// [`SECRET_WORDS`] entry as a whole word, or a word starting `authori`/`authent`
/// (`X-Authorization`, `authenticity_token`).
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if SECRET_SUBSTRINGS.iter().any(|s| lower.contains(s)) {
        return true;
    }
    name_words(name).iter().any(|w| {
        SECRET_WORDS.contains(&w.as_str()) || w.starts_with("authori") || w.starts_with("authent")
    })
}

/// Whether a header's value is a secret: the fields above (cookies, credentials), Roundcube's
/// request token header, and any field whose name marks a secret by pattern (`X-Api-Key`,
/// `X-Session-Id`, `X-SM-Token`, …; see `is_secret_name`).
pub(crate) fn is_secret_header(lower_name: &str) -> bool {
    SECRET_HEADERS.contains(&lower_name)
        || lower_name == "x-roundcube-request"
        || is_secret_name(lower_name)
}

/// Whether a query parameter of a request target carries a session or a credential (QQ Mail's
/// `sid=`, `api_key=`, `*token*`, `*session*`, `pass`, `password`…; see `is_secret_name`).
fn is_secret_param(name: &str) -> bool {
    is_secret_name(name)
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
pub(crate) fn redact_auth(line: &str) -> Option<String> {
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
    fn secret_names_are_found_by_pattern_not_only_by_list() {
        // Guards issue 10.7: non-standard secret names (X-Api-Key, X-Session-Id, api_key=…) are
        // redacted by word pattern, while look-alikes (Keep-Alive, keyword=, author=) stay.
        let headers: &[(&str, bool)] = &[
            ("x-api-key", true),
            ("x-goog-api-key", true),
            ("apikey", true),
            ("x-session-id", true),
            ("x-auth", true),
            ("x-authorization", true),
            ("x-client-secret", true),
            ("x-amz-security-token", true),
            ("x-passwd", true),
            ("x-password", true),
            ("x-csrf", true),
            ("sec-websocket-key", true),
            ("keep-alive", false),
            ("x-author", false),
            ("x-passenger-version", false),
            ("x-monkey", false),
            ("accept", false),
            ("sec-fetch-mode", false),
            ("content-type", false),
            ("x-keyboard-layout", false),
            ("host", false),
        ];
        for (name, secret) in headers {
            assert_eq!(is_secret_header(name), *secret, "header {name}");
            let line = format!("{name}: V4lue");
            let shown = redact_head(&line);
            assert_eq!(!shown.contains("V4lue"), *secret, "{shown}");
        }
        let params: &[(&str, bool)] = &[
            ("api_key", true),
            ("apiKey", true),
            ("APIKEY", true),
            ("access_token", true),
            ("sessionId", true),
            ("PHPSESSID", true),
            ("JSESSIONID", true),
            ("client_secret", true),
            ("auth", true),
            ("authToken", true),
            ("pass", true),
            ("password", true),
            ("user[password]", true),
            ("pwd", true),
            ("sid", true),
            ("key", true),
            ("keyword", false),
            ("author", false),
            ("passage", false),
            ("monkey", false),
            ("q", false),
            ("_task", false),
            ("_action", false),
            ("assessment", false),
        ];
        for (name, secret) in params {
            assert_eq!(is_secret_param(name), *secret, "param {name}");
            let url = format!("/p?{name}=V4lue&x=1");
            assert_eq!(!redact_url(&url).contains("V4lue"), *secret, "{url}");
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
