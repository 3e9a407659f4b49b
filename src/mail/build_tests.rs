//! Unit tests for `mail::build`: rendering shape, header-injection safety and `check` reasons.

use super::*;
use crate::mail::record::{Attachment, Origin, Source};
use chrono::{TimeZone, Utc};

fn record() -> MailRecord {
    MailRecord {
        id: "20260101000000000000-00000000000000ab".into(),
        origin: Origin::Webmail,
        sender: "lilei@example.com".into(),
        sender_source: SenderSource::Request,
        from_name: Some("李雷".into()),
        to: vec![
            Mailbox {
                name: Some("张三".into()),
                addr: "zhangsan@example.com".into(),
            },
            Mailbox::bare("bob@example.org"),
        ],
        cc: vec![Mailbox::bare("wangwu@example.net")],
        bcc: vec![Mailbox::bare("carol@example.net")],
        reply_to: None,
        subject: "实验报告：TCP & UDP 第3周 (100%)".into(),
        text: Some("hello\r\n.\r\nbye".into()),
        html: Some("<p>hello</p>".into()),
        attachments: vec![Attachment {
            filename: "实验报告.txt".into(),
            content_type: "text/plain".into(),
            data: b"report".to_vec(),
        }],
        source: Source {
            rule: "test".into(),
            webmail_host: "webmail.example.test".into(),
            client: "127.0.0.1:50000".parse().unwrap(),
            proxy: "127.0.0.1:8800".parse().unwrap(),
        },
        received: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        http_head: String::new(),
        http_response_head: String::new(),
        transcript: None,
        rejected: None,
        invalid_recipients: Vec::new(),
    }
}

fn headers_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn render_shape() {
    // Bcc stays out of the headers; CJK subject is RFC 2047 encoded; mixed+alternative parts.
    let bytes = render(&record()).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let head = headers_of(&bytes);
    assert!(!text.contains("carol@example.net"), "Bcc leaked:\n{text}");
    assert!(!head.to_ascii_lowercase().contains("\nbcc:"));
    assert!(head.contains("Subject: =?utf-8?"), "{head}");
    assert!(head.contains("Message-ID: <20260101000000000000-00000000000000ab@example.com>"));
    assert!(head.contains("Date: "));
    assert!(text.contains("multipart/mixed"));
    assert!(text.contains("multipart/alternative"));
    assert!(text.contains("zhangsan@example.com") && text.contains("wangwu@example.net"));
    assert!(bytes.is_ascii(), "8-bit bytes in rendered message");
}

#[test]
fn render_single_part_and_empty_body() {
    // A text-only mail is not multipart; a mail with no body still renders.
    let mut r = record();
    r.html = None;
    r.attachments.clear();
    let text = String::from_utf8(render(&r).unwrap()).unwrap();
    assert!(!text.contains("multipart/"), "{text}");
    r.text = None;
    assert!(render(&r).is_ok());
}

#[test]
fn hostile_values_cannot_inject_headers() {
    // CR/LF/NUL in names, subject, filename and addresses never start a new header line.
    let mut r = record();
    r.subject = "Hi\r\nBcc: victim@evil.test\r\nX-Evil: 1".into();
    r.from_name = Some("Me\r\nX-Evil: 2".into());
    r.to[0].name = Some("Zh\nX-Evil: 3".into());
    r.to[1].addr = "bob@example.org\r\nX-Evil: 4".into();
    r.attachments[0].filename = "a\r\nX-Evil: 5.txt".into();
    r.attachments[0].content_type = "text/plain\r\nX-Evil: 6".into();
    let bytes = render(&r).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for line in text.split("\r\n") {
        assert!(
            !line.starts_with("X-Evil"),
            "injected header: {line:?}\n{text}"
        );
        assert!(!line.to_ascii_lowercase().starts_with("bcc:"), "{line:?}");
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\0'));
    }
}

#[test]
fn check_reasons_table() {
    // check() refuses bad recipients one by one, rejects the whole mail only for the sender,
    // Reply-To, no (valid) recipient or size, and never drops data from the record.
    type Edit = fn(&mut MailRecord);
    use RecipientField::{Bcc, Cc, To};
    type Case = (
        &'static str,
        Edit,
        Option<RejectionKind>,
        Vec<(RecipientField, &'static str)>,
    );
    let cases: Vec<Case> = vec![
        ("valid", |_| {}, None, vec![]),
        (
            "no sender",
            |r| {
                r.sender.clear();
                r.sender_source = SenderSource::Unknown;
            },
            Some(RejectionKind::NoSender),
            vec![],
        ),
        (
            "bad sender",
            |r| r.sender = "lilei@localhost".into(),
            Some(RejectionKind::InvalidAddress {
                addr: "lilei@localhost".into(),
            }),
            vec![],
        ),
        (
            "bad reply-to",
            |r| r.reply_to = Some(vec![Mailbox::bare("me@localhost")]),
            Some(RejectionKind::InvalidAddress {
                addr: "me@localhost".into(),
            }),
            vec![],
        ),
        (
            "bad cc",
            |r| r.cc[0].addr = "wangwu".into(),
            None,
            vec![(Cc, "wangwu")],
        ),
        (
            "smuggled rcpt",
            |r| r.bcc[0].addr = "c@example.net\r\nRCPT TO:<x@evil.test>".into(),
            None,
            vec![(Bcc, "c@example.net\r\nRCPT TO:<x@evil.test>")],
        ),
        (
            "name with LF",
            |r| r.to[0].name = Some("a\nb".into()),
            None,
            vec![(To, "zhangsan@example.com")],
        ),
        (
            "two bad, each named",
            |r| {
                r.to[1].addr = "alice@localhost".into();
                r.cc[0].addr = "bad addr@example.org".into();
            },
            None,
            vec![(To, "alice@localhost"), (Cc, "bad addr@example.org")],
        ),
        (
            "no valid recipient",
            |r| {
                r.to = vec![Mailbox::bare("x@"), Mailbox::bare("y@localhost")];
                r.cc.clear();
                r.bcc.clear();
            },
            Some(RejectionKind::InvalidAddress { addr: "x@".into() }),
            vec![(To, "x@"), (To, "y@localhost")],
        ),
        (
            "no recipients",
            |r| {
                r.to.clear();
                r.cc.clear();
                r.bcc.clear();
            },
            Some(RejectionKind::NoRecipients),
            vec![],
        ),
        (
            "too large",
            |r| r.attachments[0].data = vec![b'x'; 4096],
            Some(RejectionKind::TooLarge {
                size: 0,
                limit: 2048,
            }),
            vec![],
        ),
    ];
    for (what, edit, want, want_invalid) in cases {
        let mut r = record();
        edit(&mut r);
        let before = r.clone();
        check(&mut r, 2048);
        let got = r.rejected.clone().map(|j| j.kind);
        match (&got, &want) {
            (
                Some(RejectionKind::TooLarge { size, limit }),
                Some(RejectionKind::TooLarge { .. }),
            ) => {
                assert!(*size > 2048 && *limit == 2048, "{what}: {got:?}");
                let reason = &r.rejected.as_ref().unwrap().reason;
                assert!(
                    reason.contains(&size.to_string()) && reason.contains("2048"),
                    "{reason}"
                );
            }
            _ => assert_eq!(got, want, "{what}"),
        }
        if let Some(RejectionKind::InvalidAddress { addr }) = &want {
            assert!(
                r.rejected
                    .as_ref()
                    .unwrap()
                    .reason
                    .contains(&format!("{addr:?}")),
                "{what}"
            );
        }
        let got_invalid: Vec<(RecipientField, &str)> = r
            .invalid_recipients
            .iter()
            .map(|i| (i.field, i.addr.as_str()))
            .collect();
        assert_eq!(got_invalid, want_invalid, "{what}");
        for i in &r.invalid_recipients {
            // Each reason names its own address and field, and no other invalid address.
            assert!(i.reason.contains(&format!("{:?}", i.addr)), "{what}: {i:?}");
            assert!(
                i.reason.contains(&format!("{} recipient", i.field)),
                "{what}: {i:?}"
            );
            for other in r.invalid_recipients.iter().filter(|o| o.addr != i.addr) {
                assert!(!i.reason.contains(&other.addr), "{what}: {i:?}");
            }
        }
        r.rejected = None;
        r.invalid_recipients.clear();
        assert_eq!(r, before, "{what}: record changed");
    }
}

#[test]
fn refused_recipients_are_not_in_the_headers() {
    // Guards the delivered headers: only the recipients that get the mail are listed.
    let mut r = record();
    r.to[1].addr = "alice@localhost".into();
    r.cc[0].addr = "bad addr@example.org".into();
    let bytes = check(&mut r, 1 << 20).expect("rendered");
    assert!(r.rejected.is_none());
    let headers = headers_of(&bytes);
    assert!(headers.contains("zhangsan@example.com"), "{headers}");
    assert!(!headers.contains("alice@localhost"), "{headers}");
    assert!(!headers.contains("bad addr"), "{headers}");
    assert!(
        !headers.to_ascii_lowercase().contains("\r\ncc:"),
        "{headers}"
    );
}
