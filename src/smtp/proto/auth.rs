//! SASL PLAIN (RFC 4616) and LOGIN encodings used by SMTP AUTH (RFC 4954).
//!
//! Owns building and parsing the base64 payloads for both the client and the built-in server.
//! It does not talk to the network and never logs anything.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Which mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// RFC 4616 §2: `base64(authzid NUL authcid NUL passwd)` with an empty authzid.
pub fn plain_response(user: &str, pass: &str) -> String {
    let mut raw = Vec::with_capacity(user.len() + pass.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(pass.as_bytes());
    STANDARD.encode(raw)
}

/// Base64 of one LOGIN step (the username or the password).
pub fn login_step(s: &str) -> String {
    STANDARD.encode(s.as_bytes())
}

/// Decodes a base64 line from the peer; `None` when it is not valid base64 or not UTF-8.
pub fn decode_text(b64: &str) -> Option<String> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// Parses a PLAIN response into `(authcid, passwd)`; an authzid, if present, must equal the
/// authcid or be empty. `None` for anything malformed.
pub fn parse_plain(b64: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    let mut parts = bytes.split(|b| *b == 0);
    let authz = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    if !authz.is_empty() && authz != user {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip_and_rfc_example() {
        // Guards: PLAIN encoding matches RFC 4616 and parses back; hostile payloads are refused.
        assert_eq!(
            plain_response("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(
            parse_plain(&plain_response("u", "p:w")),
            Some(("u".into(), "p:w".into()))
        );
        let bad = [
            "not base64!",
            "",
            &STANDARD.encode(b"\0\0pass"),
            &STANDARD.encode(b"other\0user\0pass"),
            &STANDARD.encode(b"\0user\0pass\0extra"),
            &STANDARD.encode(b"\0user"),
        ];
        for b in bad {
            assert_eq!(parse_plain(b), None, "{b:?}");
        }
        assert!(parse_plain(&STANDARD.encode(b"user\0user\0pw")).is_some());
    }

    #[test]
    fn login_steps() {
        // Guards: LOGIN steps are plain base64 of each value and decode back.
        assert_eq!(login_step("user"), "dXNlcg==");
        assert_eq!(decode_text("VXNlcm5hbWU6").as_deref(), Some("Username:"));
        assert_eq!(decode_text("%%%"), None);
        assert_eq!(Mechanism::Login.name(), "LOGIN");
    }
}
