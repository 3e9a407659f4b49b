//! AUTH PLAIN / LOGIN for the built-in SMTP server (RFC 4954, RFC 4616).
//!
//! Owns the server side of the SASL exchanges: refusing AUTH in clear text when STARTTLS is
//! configured, 334 challenges, `*` cancellation, and checking the configured account. The
//! connection itself (reading lines, queueing replies) belongs to `session`.

use super::session::Conn;
use crate::smtp::io::{trim_eol, Line, Stream};
use crate::smtp::proto::auth;

impl Conn {
    pub(super) async fn auth(&mut self, arg: &str) -> std::io::Result<()> {
        let Some(expected) = self.shared.password.clone() else {
            self.reply("502 5.5.1 AUTH not available");
            return Ok(());
        };
        let tls = self.stream.as_ref().is_some_and(Stream::is_tls);
        if self.shared.acceptor.is_some() && !tls {
            self.reply("538 5.7.11 Encryption required for requested authentication mechanism");
            return Ok(());
        }
        if self.auth_user.is_some() || self.from.is_some() {
            self.reply("503 5.5.1 AUTH not allowed now");
            return Ok(());
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let creds = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) if i == "=" => String::new(),
                    Some(i) => i,
                    None => match self.challenge("334 ").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                auth::parse_plain(&resp)
            }
            "LOGIN" => {
                let Some(u) = self.challenge("334 VXNlcm5hbWU6").await? else {
                    return Ok(());
                };
                let Some(p) = self.challenge("334 UGFzc3dvcmQ6").await? else {
                    return Ok(());
                };
                auth::decode_text(&u).zip(auth::decode_text(&p))
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type");
                return Ok(());
            }
        };
        let want_user = self.cfg().auth.as_ref().map(|a| a.username.clone());
        match creds {
            Some((u, p)) if Some(&u) == want_user.as_ref() && p == expected.expose() => {
                self.auth_user = Some(u);
                self.reply("235 2.7.0 Authentication successful");
            }
            Some(_) => self.reply("535 5.7.8 Authentication credentials invalid"),
            None => self.reply("501 5.5.2 Cannot decode AUTH response"),
        }
        Ok(())
    }

    /// Sends a 334 challenge and reads the client's answer; `None` if the client cancelled
    /// with `*` (RFC 4954 §4), in which case the 501 reply is already queued.
    async fn challenge(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.reply(prompt);
        let (max, secs) = (self.cfg().max_line_bytes, self.cfg().command_timeout_secs);
        let line = match self.line(max, secs).await? {
            Line::Full(l) => l,
            _ => return Err(std::io::Error::other("connection ended during AUTH")),
        };
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        if text == "*" {
            self.reply("501 5.7.0 Authentication cancelled");
            return Ok(None);
        }
        Ok(Some(text))
    }
}
