//! DATA payload preparation: line-ending normalisation and dot-stuffing (RFC 5321 §4.5.2).
//!
//! Owns turning a message (any mix of CRLF, bare LF, bare CR) into the exact bytes sent after
//! `354`: every line ends in CRLF, every line starting with `.` gets one more `.`, and the
//! terminator `.` CRLF follows a final CRLF. This is where SMTP smuggling (`\n.\n`, `\r.\r`)
//! is neutralised: a bare CR or LF is a line ending here, so a lone dot becomes `..`.
//! It does no I/O and does not inspect MIME structure.

/// The prepared payload plus facts the client needs before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Stuffed bytes including the final `.` CRLF terminator.
    pub payload: Vec<u8>,
    /// Size in octets of the normalised message before stuffing (the RFC 1870 `SIZE=` value).
    pub size: usize,
    /// Any byte ≥ 0x80 in the message (needs `BODY=8BITMIME`).
    pub eight_bit: bool,
    /// Normalised header section (up to, not including, the first empty line), CRLF-separated.
    pub header_block: String,
    /// Octets after the empty line that ends the headers (0 when there is none).
    pub body_bytes: usize,
}

/// The terminator that ends DATA.
const END: &[u8] = b".\r\n";

/// Normalises line endings, dot-stuffs and terminates `message`. Never fails: every byte
/// sequence maps to a well-formed payload whose only `CRLF . CRLF` is the terminator.
pub fn prepare(message: &[u8]) -> Prepared {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut size = 0usize;
    let mut eight_bit = false;
    let mut header_end: Option<usize> = None; // normalised offset where the body starts
    let mut line_start = true;
    let mut line_len = 0usize; // length of the current normalised line so far
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        // A line ending is CRLF, or a bare CR, or a bare LF.
        if b == b'\r' || b == b'\n' {
            if b == b'\r' && message.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            out.extend_from_slice(b"\r\n");
            size += 2;
            if header_end.is_none() && line_len == 0 {
                header_end = Some(size);
            }
            line_start = true;
            line_len = 0;
            i += 1;
            continue;
        }
        if line_start && b == b'.' {
            out.push(b'.');
        }
        eight_bit |= b >= 0x80;
        out.push(b);
        size += 1;
        line_len += 1;
        line_start = false;
        i += 1;
    }
    if !line_start {
        // RFC 5321 §4.1.1.4: the terminator must follow a CRLF.
        out.extend_from_slice(b"\r\n");
        size += 2;
    }
    out.extend_from_slice(END);
    let (header_block, body_bytes) = summarise(&out, header_end, size);
    Prepared {
        payload: out,
        size,
        eight_bit,
        header_block,
        body_bytes,
    }
}

/// Splits off the header section for transcripts. `header_end` is the normalised offset just
/// after the empty line; headers are taken from the stuffed payload with stuffing removed.
fn summarise(stuffed: &[u8], header_end: Option<usize>, size: usize) -> (String, usize) {
    let Some(end) = header_end else {
        // No empty line: the whole message is headers (or garbage); there is no body.
        let text = unstuff_lossy(&stuffed[..stuffed.len() - END.len()]);
        return (text.trim_end_matches("\r\n").to_string(), 0);
    };
    // Walk the stuffed payload line by line until `end` normalised octets are consumed.
    let mut consumed = 0usize;
    let mut header = String::new();
    for line in stuffed.split_inclusive(|b| *b == b'\n') {
        if consumed >= end {
            break;
        }
        let l = line
            .strip_prefix(b".")
            .filter(|_| line.starts_with(b".."))
            .unwrap_or(line);
        consumed += l.len();
        header.push_str(&String::from_utf8_lossy(l));
    }
    let header = header.trim_end_matches("\r\n").to_string();
    (header, size - end)
}

fn unstuff_lossy(stuffed: &[u8]) -> String {
    let mut s = String::new();
    for line in stuffed.split_inclusive(|b| *b == b'\n') {
        let l = if line.starts_with(b"..") {
            &line[1..]
        } else {
            line
        };
        s.push_str(&String::from_utf8_lossy(l));
    }
    s
}

/// Whether `addr` needs SMTPUTF8 (RFC 6531): any non-ASCII character.
pub fn needs_smtputf8(addr: &str) -> bool {
    !addr.is_ascii()
}

/// Whether `addr` is safe to put between `<` and `>` in MAIL/RCPT: no controls, spaces or angle
/// brackets, so no command injection (`a@b>\r\nRCPT TO:<c@d`). Empty is allowed (null sender).
pub fn is_safe_path(addr: &str) -> bool {
    addr.len() <= 512
        && addr
            .chars()
            .all(|c| !c.is_control() && c != ' ' && c != '<' && c != '>' && c != '\u{7f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_stuffing_table() {
        // Guards: every line-ending mix and smuggling input becomes CRLF-only, dot-stuffed data.
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
            (b"a\rb", b"a\r\nb\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            // SMTP smuggling variants: none may end the data early.
            (b"x\n.\ny", b"x\r\n..\r\ny\r\n.\r\n"),
            (b"x\r.\ry", b"x\r\n..\r\ny\r\n.\r\n"),
            (b"x\r\n.\ny", b"x\r\n..\r\ny\r\n.\r\n"),
            (b"x\n.\r\ny", b"x\r\n..\r\ny\r\n.\r\n"),
            (b"x\r\n..\r\n", b"x\r\n...\r\n.\r\n"),
            (b".hidden\r\n", b"..hidden\r\n.\r\n"),
            (b"mid.dot\r\n", b"mid.dot\r\n.\r\n"),
            (b"\r\n\r\n", b"\r\n\r\n.\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
        ];
        for (input, want) in cases {
            let p = prepare(input);
            assert_eq!(
                p.payload,
                *want,
                "{:?} -> {:?}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(&p.payload)
            );
            // Property: the terminator occurs exactly once, at the end.
            let term = b"\r\n.\r\n";
            let n = p.payload.windows(term.len()).filter(|w| w == term).count();
            assert!(n <= 1, "early terminator in {:?}", p.payload);
            // Property: no bare CR or LF survives.
            for (i, b) in p.payload.iter().enumerate() {
                if *b == b'\n' {
                    assert_eq!(p.payload[i - 1], b'\r');
                }
                if *b == b'\r' {
                    assert_eq!(p.payload.get(i + 1), Some(&b'\n'));
                }
            }
        }
    }

    #[test]
    fn size_and_eight_bit() {
        // Guards: SIZE counts the normalised, unstuffed message; 8-bit bytes are detected.
        let p = prepare(b"a\n.b\n");
        assert_eq!(p.size, b"a\r\n.b\r\n".len());
        assert!(!p.eight_bit);
        assert!(prepare("Subject: é\r\n\r\nx".as_bytes()).eight_bit);
    }

    #[test]
    fn header_summary() {
        // Guards: the transcript summary has exactly the headers and the body byte count.
        let p = prepare(b"From: a@b\nSubject: hi\n\nline1\n.line2\n");
        assert_eq!(p.header_block, "From: a@b\r\nSubject: hi");
        assert_eq!(p.body_bytes, b"line1\r\n.line2\r\n".len());
        let p = prepare(b"..weird: x\r\n\r\n");
        assert_eq!(p.header_block, "..weird: x");
        assert_eq!(p.body_bytes, 0);
        let p = prepare(b"no-body-at-all");
        assert_eq!(p.header_block, "no-body-at-all");
        assert_eq!(p.body_bytes, 0);
    }

    #[test]
    fn address_safety_table() {
        // Guards: addresses that could inject SMTP commands are refused.
        for ok in ["", "a@b.c", "张三@例子.中国", "\"x\"@y"] {
            assert!(is_safe_path(ok), "{ok}");
        }
        for bad in [
            "a@b>\r\nRCPT TO:<c@d",
            "a b@c",
            "a<b@c",
            "a@b\n",
            "a\u{0}@b",
        ] {
            assert!(!is_safe_path(bad), "{bad:?}");
        }
        assert!(needs_smtputf8("张三@例子.中国"));
        assert!(!needs_smtputf8("a@b.c"));
    }

    /// Normalises line endings the way `prepare` defines them (reference model for the fuzz test).
    fn normalise_model(input: &[u8]) -> Vec<u8> {
        let text: Vec<u8> = input.to_vec();
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            match text[i] {
                b'\r' if text.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    i += 2;
                    continue;
                }
                b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn pseudo_random_inputs_round_trip() {
        // Guards: for hostile byte soups, unstuffing the payload gives back exactly the
        // normalised message, and the terminator appears only at the end.
        let alphabet = [b'.', b'\r', b'\n', b'a', 0xC3, b' '];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 58) as usize; // 0..63
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                input.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let p = prepare(&input);
            assert!(p.payload.ends_with(b".\r\n"));
            let body = &p.payload[..p.payload.len() - 3];
            assert!(body.is_empty() || body.ends_with(b"\r\n"));
            let mut unstuffed = Vec::new();
            for line in body.split_inclusive(|b| *b == b'\n') {
                assert_ne!(line, b".\r\n", "early terminator for {input:?}");
                unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            }
            assert_eq!(unstuffed, normalise_model(&input), "input {input:?}");
            assert_eq!(p.size, unstuffed.len());
            assert_eq!(p.eight_bit, input.contains(&0xC3));
        }
    }
}
