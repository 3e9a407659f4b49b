//! One connection of the built-in SMTP server: the command dialogue and DATA reception.
//!
//! Owns the server side of RFC 5321 (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY, QUIT),
//! STARTTLS (RFC 3207, discarding pre-TLS pipelined bytes), AUTH PLAIN/LOGIN, dot-unstuffing,
//! the configured rejections, and batching replies so pipelined clients get one write. AUTH is
//! in `auth`; listening and storage live in `listener` and
//! `mailbox`.

use super::mailbox::StoredEnvelope;
use super::shared::{glob_match, Shared};
use crate::smtp::io::{trim_eol, Line, LineBuf, Stream, Tapped};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest DATA line accepted (RFC 5321 says 1000; be lenient, but bounded).
const MAX_DATA_LINE: usize = 64 * 1024;
/// Bytes of DATA accepted past `max_message_bytes` (discarded) before the server hangs up.
const MAX_OVERRUN: usize = 16 * 1024 * 1024;
/// Commands per connection before the server closes it.
const MAX_COMMANDS: usize = 1_000_000;

/// Answers a connection over the limit with 421 and closes it.
pub(crate) async fn refuse(mut tcp: TcpStream) {
    let msg = b"421 4.7.0 Too many connections, try again later\r\n";
    let _ = timeout(Duration::from_secs(5), tcp.write_all(msg)).await;
}

enum Flow {
    Continue,
    Close,
}

pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: SocketAddr,
    pub(super) stream: Option<Stream>,
    pub(super) lines: LineBuf,
    pub(super) out: Vec<u8>,
    pub(super) helo: Option<String>,
    pub(super) auth_user: Option<String>,
    pub(super) from: Option<String>,
    pub(super) rcpts: Vec<String>,
}

/// Serves one connection until QUIT, EOF, a timeout or an I/O error.
#[tracing::instrument(skip_all, fields(peer = %peer))]
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut c = Conn {
        shared,
        peer,
        stream: Some(Stream::Plain(tcp)),
        lines: LineBuf::new(),
        out: Vec::with_capacity(4096),
        helo: None,
        auth_user: None,
        from: None,
        rcpts: Vec::new(),
    };
    if let Err(e) = c.run().await {
        tracing::debug!(peer = %c.peer, error = %e, "built-in SMTP session ended");
    }
}

impl Conn {
    pub(super) fn cfg(&self) -> &super::config::BuiltinSmtpConfig {
        &self.shared.cfg
    }

    pub(super) fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit = Duration::from_secs(self.cfg().command_timeout_secs.max(1));
        let Some(s) = self.stream.as_mut() else {
            return Err(std::io::Error::other("no stream"));
        };
        let w = async {
            s.write_all(&self.out).await?;
            s.flush().await
        };
        match timeout(limit, w).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::other("write timeout")),
        }
        self.out.clear();
        Ok(())
    }

    /// Reads a line, flushing pending replies first unless another full line is buffered
    /// (so a pipelined group gets its replies in one write, RFC 2920 §3.2).
    pub(super) async fn line(&mut self, max: usize, secs: u64) -> std::io::Result<Line> {
        if let Some(l) = self.lines.take_buffered(max) {
            return Ok(l);
        }
        self.flush().await?;
        let limit = Duration::from_secs(secs.max(1));
        let Some(s) = self.stream.as_mut() else {
            return Err(std::io::Error::other("no stream"));
        };
        match timeout(limit, self.lines.read_line(s, max)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle timeout",
            )),
        }
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let greeting = format!("220 {} ESMTP mailtap built-in server", self.cfg().hostname);
        self.reply(&greeting);
        for _ in 0..MAX_COMMANDS {
            let (max, secs) = (self.cfg().max_line_bytes, self.cfg().command_timeout_secs);
            let line = match self.line(max, secs).await {
                Ok(Line::Full(l)) => l,
                Ok(Line::Eof(_)) => return Ok(()),
                Ok(Line::TooLong) => {
                    self.reply("500 5.5.2 Line too long");
                    return self.flush().await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.reply("421 4.4.2 Idle timeout, closing connection");
                    return self.flush().await;
                }
                Err(e) => return Err(e),
            };
            let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            if let Flow::Close = self.command(&text).await? {
                return self.flush().await;
            }
        }
        self.reply("421 4.7.0 Too many commands");
        self.flush().await
    }

    fn reset(&mut self) {
        self.from = None;
        self.rcpts.clear();
    }

    async fn command(&mut self, line: &str) -> std::io::Result<Flow> {
        let (verb, arg) = split_command(line);
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => self.reply("501 5.5.4 Domain name required"),
            "EHLO" => self.ehlo(arg),
            "HELO" => {
                self.reset();
                self.helo = Some(arg.to_string());
                let r = format!("250 {}", self.cfg().hostname);
                self.reply(&r);
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data().await?,
            "RSET" => {
                self.reset();
                self.reply("250 2.0.0 Ok");
            }
            "NOOP" => self.reply("250 2.0.0 Ok"),
            "VRFY" => self.reply("252 2.5.0 Cannot VRFY user, but will accept message"),
            "QUIT" => {
                self.reply("221 2.0.0 Bye");
                return Ok(Flow::Close);
            }
            "STARTTLS" => return self.starttls().await,
            "AUTH" => self.auth(arg).await?,
            _ => self.reply("500 5.5.2 Command unrecognized"),
        }
        Ok(Flow::Continue)
    }

    fn ehlo(&mut self, arg: &str) {
        self.reset();
        self.helo = Some(arg.to_string());
        let tls = self.stream.as_ref().is_some_and(Stream::is_tls);
        let mut lines = vec![
            format!("{} greets {arg}", self.cfg().hostname),
            format!("SIZE {}", self.cfg().max_message_bytes),
            "PIPELINING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.shared.acceptor.is_some() && !tls {
            lines.push("STARTTLS".into());
        }
        // RFC 4954 §4: with STARTTLS configured, AUTH is offered only inside TLS.
        if self.shared.password.is_some() && (tls || self.shared.acceptor.is_none()) {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.reply(&format!("250{sep}{l}"));
        }
    }

    fn mail(&mut self, arg: &str) {
        if self.helo.is_none() {
            return self.reply("503 5.5.1 Send EHLO/HELO first");
        }
        if self.shared.password.is_some() && self.auth_user.is_none() {
            return self.reply("530 5.7.0 Authentication required");
        }
        if self.from.is_some() {
            return self.reply("503 5.5.1 Nested MAIL command");
        }
        let Some((path, params)) = parse_path(arg, "FROM:") else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        let mut utf8 = false;
        for p in params.split_ascii_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if n > self.cfg().max_message_bytes => {
                        return self.reply("552 5.3.4 Message size exceeds fixed maximum");
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply("501 5.5.4 Bad SIZE parameter"),
                },
                "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                "SMTPUTF8" if v.is_empty() => utf8 = true,
                _ => return self.reply("555 5.5.4 Unsupported MAIL parameter"),
            }
        }
        if !path.is_ascii() && !utf8 {
            return self.reply("553 5.6.7 Non-ASCII address requires SMTPUTF8");
        }
        let n = self.shared.mail_attempts.fetch_add(1, Ordering::Relaxed);
        if n < self.cfg().temp_fail_first_n {
            return self.reply("451 4.3.0 Temporary failure, try again later");
        }
        self.from = Some(path.to_string());
        self.reply("250 2.1.0 Ok");
    }

    fn rcpt(&mut self, arg: &str) {
        if self.from.is_none() {
            return self.reply("503 5.5.1 Need MAIL command first");
        }
        let Some((path, _params)) = parse_path(arg, "TO:") else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if path.is_empty() {
            return self.reply("501 5.1.3 Empty recipient address");
        }
        if self.rcpts.len() >= self.cfg().max_recipients {
            return self.reply("452 4.5.3 Too many recipients");
        }
        if self
            .cfg()
            .reject_recipients
            .iter()
            .any(|p| glob_match(p, path))
        {
            let r = format!("550 5.1.1 <{path}>: Recipient address rejected: User unknown");
            return self.reply(&r);
        }
        self.rcpts.push(path.to_string());
        self.reply("250 2.1.5 Ok");
    }

    async fn data(&mut self) -> std::io::Result<()> {
        if self.from.is_none() {
            self.reply("503 5.5.1 Need MAIL command first");
            return Ok(());
        }
        if self.rcpts.is_empty() {
            self.reply("554 5.5.1 No valid recipients");
            return Ok(());
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        let max = self.cfg().max_message_bytes as usize;
        let secs = self.cfg().data_timeout_secs;
        let mut msg = Vec::with_capacity(8192);
        let mut oversize = false;
        let mut at_line_start = true;
        let mut received = 0usize;
        // Bounded by MAX_DATA_LINE per line and the data timeout per read; the client
        // must end with CRLF.CRLF. Only a "." line ending in CRLF terminates (no smuggling).
        loop {
            let line = match self.line(MAX_DATA_LINE, secs).await? {
                Line::Full(l) => l,
                Line::Eof(_) => return Err(std::io::Error::other("EOF during DATA")),
                Line::TooLong => {
                    self.reply("500 5.5.2 Data line too long");
                    return Err(std::io::Error::other("data line too long"));
                }
            };
            // A line starts only after CRLF: a bare LF is content, not a line ending, so
            // neither the terminator nor unstuffing applies after one (SMTP smuggling).
            let starts_line = at_line_start;
            at_line_start = line.ends_with(b"\r\n");
            if starts_line && line == b".\r\n" {
                break;
            }
            // RFC 5321 §4.5.2: remove one leading dot.
            let l = if starts_line && line.first() == Some(&b'.') {
                &line[1..]
            } else {
                &line[..]
            };
            received += line.len();
            if received > max.saturating_add(MAX_OVERRUN) {
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                return Err(std::io::Error::other(
                    "client kept sending past the size limit",
                ));
            }
            if msg.len() + l.len() > max {
                oversize = true;
            } else if !oversize {
                msg.extend_from_slice(l);
            }
        }
        let (from, rcpts) = (
            self.from.take().unwrap_or_default(),
            std::mem::take(&mut self.rcpts),
        );
        if oversize {
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            return Ok(());
        }
        let env = StoredEnvelope {
            id: self.shared.mailbox.new_id(),
            sender: from,
            recipients: rcpts,
            received: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            client_addr: self.peer.to_string(),
            helo: self.helo.clone().unwrap_or_default(),
            size: msg.len() as u64,
            tls: self.stream.as_ref().is_some_and(Stream::is_tls),
            auth_user: self.auth_user.clone(),
            message_id: super::mailbox::message_id_of(&msg),
        };
        let shared = self.shared.clone();
        let id = env.id.clone();
        // The crate's pool: a refused thread must not panic (see `blocking`).
        let stored = crate::blocking::run(move || shared.mailbox.store(&env, &msg)).await;
        match stored {
            Ok(Ok(())) => self.reply(&format!("250 2.0.0 Ok: queued as {id}")),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "built-in SMTP server could not store a message");
                self.reply("451 4.3.0 Local error in processing");
            }
            Err(e) => {
                tracing::error!(error = %e, "mailbox store task failed");
                self.reply("451 4.3.0 Local error in processing");
            }
        }
        Ok(())
    }

    async fn starttls(&mut self) -> std::io::Result<Flow> {
        let tls = self.stream.as_ref().is_some_and(Stream::is_tls);
        let Some(acceptor) = self.shared.acceptor.clone().filter(|_| !tls) else {
            self.reply("502 5.5.1 STARTTLS not available");
            return Ok(Flow::Continue);
        };
        // RFC 3207 §4.2 / STARTTLS injection: never act on commands pipelined before TLS.
        self.lines.clear();
        self.reply("220 2.0.0 Ready to start TLS");
        self.flush().await?;
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Ok(Flow::Close);
        };
        let limit = Duration::from_secs(self.cfg().command_timeout_secs.max(1));
        match timeout(limit, acceptor.accept(Tapped::new(tcp, false))).await {
            Ok(Ok(s)) => {
                self.stream = Some(Stream::Tls(Box::new(s)));
                self.helo = None;
                self.auth_user = None;
                self.reset();
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => Err(std::io::Error::other(format!("TLS handshake: {e}"))),
            Err(_) => Err(std::io::Error::other("TLS handshake timeout")),
        }
    }
}

/// Splits a command line (CRLF already removed) into its upper-cased verb and its trimmed
/// argument (empty when there is none).
pub fn split_command(line: &str) -> (String, &str) {
    match line.split_once(' ') {
        Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// Parses `FROM:<path> params` / `TO:<path> params` (case-insensitive keyword, optional space
/// after the colon). Returns the path without brackets and the parameter string.
pub fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    if path.contains('<') || path.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some((path, rest[end + 1..].trim()))
}

#[cfg(test)]
mod tests {
    use super::parse_path;

    #[test]
    fn path_table() {
        // Guards: MAIL/RCPT argument parsing, including hostile and malformed paths.
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("FROM:<a@b>", "FROM:", Some(("a@b", ""))),
            ("from: <a@b> SIZE=10", "FROM:", Some(("a@b", "SIZE=10"))),
            ("FROM:<>", "FROM:", Some(("", ""))),
            ("TO:<x@y>", "TO:", Some(("x@y", ""))),
            ("TO:x@y", "TO:", None),
            ("TO:<x@y", "TO:", None),
            ("TO:<a<b@c>", "TO:", None),
            ("TO:<a b@c>", "TO:", None),
            ("FROM:<a@b>", "TO:", None),
            ("", "TO:", None),
            ("T", "TO:", None),
        ];
        for (arg, kw, want) in cases {
            assert_eq!(parse_path(arg, kw), *want, "{arg}");
        }
    }
}
