//! SMTP reply parser: turns reply lines into [`Reply`] values (RFC 5321 §4.2, RFC 3463 codes).
//!
//! Owns the grammar of a reply (`250-...` continuation lines, `250 ...` final line), the
//! extraction of an enhanced status code (`x.y.z`), and the caps on reply length and line
//! count. It does no I/O: callers feed it one line at a time.

use std::fmt;

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply.
///
/// `lines` holds every line exactly as received (without CRLF), so an error report can quote
/// the server's full reply. `code` is the same on every line (the parser guarantees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2yz: the command was accepted.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3yz: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4yz: transient negative completion; the same command may succeed later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5yz: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text of every line after the code and separator, in order (may contain empty strings).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.get(4..).unwrap_or(""))
    }

    /// All lines joined with `" / "`: a one-line rendering for error messages and consoles.
    pub fn one_line(&self) -> String {
        self.lines.join(" / ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// Why a reply could not be parsed; each variant carries the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that is not `DDD`, `DDD text` or `DDD-text` with a valid reply code.
    Malformed { line: String },
    /// A continuation line whose code differs from the first line's.
    CodeMismatch { first: u16, line: String },
    /// The reply grew past the byte cap.
    TooLong { limit: usize },
    /// The reply grew past the line-count cap.
    TooManyLines { limit: usize },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed { line } => write!(f, "malformed reply line {line:?}"),
            ReplyError::CodeMismatch { first, line } => {
                write!(f, "reply line {line:?} does not repeat code {first}")
            }
            ReplyError::TooLong { limit } => write!(f, "reply longer than {limit} bytes"),
            ReplyError::TooManyLines { limit } => write!(f, "reply has more than {limit} lines"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Incremental parser for one reply. Feed lines with [`ReplyParser::push`] until it returns
/// `Some(reply)`; then it is reset and ready for the next reply.
#[derive(Debug)]
pub struct ReplyParser {
    max_bytes: usize,
    max_lines: usize,
    code: Option<u16>,
    lines: Vec<String>,
    bytes: usize,
}

impl ReplyParser {
    /// A parser that refuses replies longer than `max_bytes` (counting line bytes plus CRLF)
    /// or with more than `max_lines` lines.
    pub fn new(max_bytes: usize, max_lines: usize) -> Self {
        ReplyParser {
            max_bytes,
            max_lines,
            code: None,
            lines: Vec::new(),
            bytes: 0,
        }
    }

    /// Feeds one line (CR/LF already stripped). Returns the reply once its last line arrived.
    /// On error the parser is reset; the connection should be considered broken.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let r = self.push_inner(line);
        if !matches!(r, Ok(None)) {
            self.code = None;
            self.lines.clear();
            self.bytes = 0;
        }
        r
    }

    fn push_inner(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        self.bytes += line.len() + 2;
        if self.bytes > self.max_bytes {
            return Err(ReplyError::TooLong {
                limit: self.max_bytes,
            });
        }
        if self.lines.len() >= self.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: self.max_lines,
            });
        }
        let text = String::from_utf8_lossy(line).into_owned();
        let (code, last) = match parse_line(line) {
            Some(x) => x,
            None => return Err(ReplyError::Malformed { line: text }),
        };
        if let Some(first) = self.code {
            if first != code {
                return Err(ReplyError::CodeMismatch { first, line: text });
            }
        } else {
            self.code = Some(code);
        }
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        let lines = std::mem::take(&mut self.lines);
        let enhanced = lines
            .first()
            .and_then(|l| l.get(4..))
            .and_then(|t| parse_enhanced(t, code));
        Ok(Some(Reply {
            code,
            enhanced,
            lines,
        }))
    }
}

/// Parses the code and whether this is the last line. RFC 5321 §4.2: reply codes are
/// `[2-5][0-5][0-9]`; the code is followed by SP (last line), `-` (more lines follow), or
/// nothing at all (a bare `250` is a valid last line).
fn parse_line(line: &[u8]) -> Option<(u16, bool)> {
    if line.len() < 3 {
        return None;
    }
    let (a, b, c) = (line[0], line[1], line[2]);
    if !(b'2'..=b'5').contains(&a) || !(b'0'..=b'5').contains(&b) || !c.is_ascii_digit() {
        return None;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    match line.get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        Some(_) => None,
    }
}

/// RFC 3463 / RFC 2034 §4: the enhanced code starts the text, its class equals the first digit
/// of the reply code, subject and detail have 1–3 digits.
fn parse_enhanced(text: &str, code: u16) -> Option<EnhancedCode> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let num = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let class = num(c)?;
    if c.len() != 1 || class != code / 100 || !(2..=5).contains(&class) || class == 3 {
        return None;
    }
    Some(EnhancedCode {
        class: class as u8,
        subject: num(s)?,
        detail: num(d)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> Result<Option<Reply>, ReplyError> {
        let mut p = ReplyParser::new(512, 4);
        let mut last = None;
        for l in lines {
            last = p.push(l.as_bytes())?;
        }
        Ok(last)
    }

    #[test]
    fn reply_grammar_table() {
        // Guards: the reply grammar accepts valid single/multi-line replies and rejects garbage.
        let ok: &[(&[&str], u16, usize)] = &[
            (&["250 OK"], 250, 1),
            (&["250"], 250, 1),
            (&["250-mx.example", "250-SIZE 10", "250 HELP"], 250, 3),
            (&["354 go ahead"], 354, 1),
            (&["221 2.0.0 Bye"], 221, 1),
        ];
        for (lines, code, n) in ok {
            let r = parse_all(lines).unwrap().unwrap();
            assert_eq!(r.code, *code, "{lines:?}");
            assert_eq!(r.lines.len(), *n);
        }
        let bad: &[&[&str]] = &[
            &["25"],
            &["2500 x"],
            &["650 nope"],
            &["190 nope"],
            &["2x0 x"],
            &["HTTP/1.1 200 OK"],
            &[""],
            &["250_x"],
            &["250-a", "251 b"],
            &["\u{0}\u{0}\u{0}"],
        ];
        for lines in bad {
            assert!(parse_all(lines).is_err(), "{lines:?} should fail");
        }
    }

    #[test]
    fn continuation_waits_for_last_line() {
        // Guards: a `250-` line does not complete a reply.
        let mut p = ReplyParser::new(512, 8);
        assert_eq!(p.push(b"250-a").unwrap(), None);
        let r = p.push(b"250 b").unwrap().unwrap();
        assert_eq!(r.texts().collect::<Vec<_>>(), vec!["a", "b"]);
        // The parser is reusable after a complete reply.
        assert_eq!(p.push(b"220 x").unwrap().unwrap().code, 220);
    }

    #[test]
    fn caps_on_length_and_lines() {
        // Guards: a hostile endless or huge reply is refused, not buffered forever.
        let mut p = ReplyParser::new(20, 100);
        assert_eq!(p.push(b"250-aaaaaaaaaa").unwrap(), None);
        assert_eq!(
            p.push(b"250-aaaaaaaaaa"),
            Err(ReplyError::TooLong { limit: 20 })
        );
        let mut p = ReplyParser::new(10_000, 3);
        for _ in 0..3 {
            assert_eq!(p.push(b"250-x").unwrap(), None);
        }
        assert_eq!(p.push(b"250 x"), Err(ReplyError::TooManyLines { limit: 3 }));
    }

    #[test]
    fn enhanced_code_table() {
        // Guards: enhanced status codes are recognised only when well-formed and class-consistent.
        type Case<'a> = (&'a str, Option<(u8, u16, u16)>);
        let cases: &[Case] = &[
            ("550 5.1.1 user unknown", Some((5, 1, 1))),
            ("451 4.3.0 try later", Some((4, 3, 0))),
            ("250 2.0.0", Some((2, 0, 0))),
            ("250 2.100.999 x", Some((2, 100, 999))),
            ("550 4.1.1 class mismatch", None),
            ("550 5.1 too short", None),
            ("550 5.1.1.1 too long", None),
            ("550 5.1000.1 too many digits", None),
            ("550 user unknown", None),
            ("354 3.0.0 no class 3", None),
            ("550 5.a.1 letters", None),
        ];
        for (line, want) in cases {
            let r = parse_all(&[line]).unwrap().unwrap();
            let got = r.enhanced.map(|e| (e.class, e.subject, e.detail));
            assert_eq!(got, *want, "{line}");
        }
    }

    #[test]
    fn classification() {
        // Guards: reply classes map to the right predicates.
        let r = |c: u16| Reply {
            code: c,
            enhanced: None,
            lines: vec![c.to_string()],
        };
        assert!(r(250).is_positive() && !r(250).is_transient());
        assert!(r(354).is_intermediate());
        assert!(r(421).is_transient() && !r(421).is_permanent());
        assert!(r(554).is_permanent());
        assert_eq!(r(250).one_line(), "250");
    }

    #[test]
    fn random_lines_never_panic_and_stay_bounded() {
        // Guards: arbitrary bytes either parse or fail cleanly; no reply exceeds the caps.
        let mut p = ReplyParser::new(256, 8);
        let mut seed: u64 = 42;
        for _ in 0..5000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 57) as usize;
            let line: Vec<u8> = (0..len)
                .map(|i| {
                    let b = (seed >> (i % 56)) as u8;
                    // Bias towards digits, '-' and ' ' so many lines are nearly valid.
                    match b % 4 {
                        0 => b'2' + b % 4,
                        1 => b'-',
                        2 => b' ',
                        _ => b,
                    }
                })
                .collect();
            if let Ok(Some(r)) = p.push(&line) {
                assert!(r.lines.len() <= 8);
                assert!((200..600).contains(&r.code));
            }
        }
    }
}
