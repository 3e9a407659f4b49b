//! Interop of mailtap's SMTP client with a real MTA: a private Postfix on loopback.
//!
//! Each test starts its own Postfix (tests/common/postfix.rs) and checks what Postfix actually
//! did — maildir files and replies — not what our client believes. Without Postfix (or root)
//! the tests skip with a message, except under `CI=true`, where they fail.

#[path = "common/gate.rs"]
mod gate;
#[path = "common/postfix.rs"]
mod postfix;

use gate::Gate;
use mailtap::smtp::{Envelope, RcptStatus};
use mailtap::smtp::{Error, Session, Stage, TlsMode, VecTranscript};
use postfix::{Binaries, Postfix, SIZE_LIMIT};

/// Starts a private Postfix, or returns `None` (skip) when this machine cannot and it is not CI.
async fn start() -> Option<Postfix> {
    let bins = postfix::require()?;
    let pf = tokio::task::spawn_blocking(move || Postfix::start(&bins))
        .await
        .expect("start task");
    match pf {
        Ok(pf) => Some(pf),
        Err(e) => panic!("private postfix did not start: {e}"),
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "sender@example.test".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
    }
}

/// A message whose body has the lines SMTP must dot-stuff: a lone ".", leading dots.
fn message(subject: &str, to: &str) -> String {
    format!(
        "From: Sender <sender@example.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@client.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{BODY}",
        subject.replace(' ', "-")
    )
}

const BODY: &str = "first line\r\n.\r\n.leading dot\r\n..two dots\r\n. dot space\r\n\
                    \r\n...\r\nmiddle . dot\r\n.\r\nlast line\r\n";

/// The body of a delivered maildir file (after the first empty line), LF line endings.
fn stored_body(msg: &[u8]) -> &[u8] {
    let at = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header/body separator in stored message");
    &msg[at + 2..]
}

fn header_block(msg: &[u8]) -> String {
    let at = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..at]).into_owned()
}

async fn connect(pf: &Postfix, tls: TlsMode, t: &mut VecTranscript) -> Session {
    Session::connect(&pf.client_cfg(tls), &pf.connect_opts(), t)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{:#?}\nmaillog:\n{}", t.lines, pf.maillog()))
}

#[test]
fn gate_table() {
    // Guards: the skip/fail decision — missing Postfix or no root fails under CI, skips otherwise.
    let bins = || {
        Ok(Binaries {
            postfix: "/usr/sbin/postfix".into(),
            smtp_sink: None,
        })
    };
    let missing = || Err("no postfix".to_string());
    let cases: [(bool, Result<Binaries, String>, bool, &str); 6] = [
        (true, bins(), true, "run"),
        (false, bins(), true, "run"),
        (true, missing(), true, "fail"),
        (false, missing(), true, "skip"),
        (true, bins(), false, "fail"),
        (false, bins(), false, "skip"),
    ];
    for (ci, found, root, want) in cases {
        let got = match gate::gate(ci, found, root, "a private master") {
            Gate::Run(_) => "run",
            Gate::Skip(_) => "skip",
            Gate::Fail(_) => "fail",
        };
        assert_eq!(got, want, "ci={ci} root={root}");
    }
}

#[test]
fn missing_postfix_fails_under_ci_and_skips_otherwise() {
    // Guards: with no postfix binary on the search path, CI=true makes the test fail (panic),
    // not skip; without CI it skips; a found binary is returned.
    let empty = tempfile::tempdir().unwrap();
    let dirs = vec![empty.path().to_path_buf()];
    let under_ci = std::panic::catch_unwind(|| postfix::require_in(true, &dirs));
    let msg = under_ci.expect_err("CI=true without postfix must panic");
    let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("CI=true") && text.contains("postfix"),
        "{text}"
    );
    // Without CI the gate decides to skip (decided, not acted on: acting would record a skip
    // of this test in .ci/run's list).
    assert!(matches!(
        gate::gate(
            false,
            postfix::find_binaries(&dirs),
            true,
            "a private master"
        ),
        Gate::Skip(_)
    ));

    // A fake executable named postfix is found (and a non-executable file is not).
    use std::os::unix::fs::PermissionsExt;
    let fake = empty.path().join("postfix");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    assert!(
        postfix::find_binaries(&dirs).is_err(),
        "mode 0644 is not executable"
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let found = postfix::find_binaries(&dirs).unwrap();
    assert_eq!(found.postfix, fake);
    assert_eq!(found.smtp_sink, None);
}

#[tokio::test]
async fn three_domains_delivered_body_byte_exact() {
    // Guards: one mail, three recipients in three domains, all delivered by a real MTA, and the
    // stored body equals ours byte for byte (LF endings) after Postfix un-stuffs the dots.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::None, &mut t).await;
    assert_eq!(s.capabilities().size_limit, Some(SIZE_LIMIT));
    let rcpts = ["alice@a.test", "bob@b.test", "carol@c.test"];
    let msg = message("three domains", &rcpts.join(", "));
    let d = s.send(&env(&rcpts), msg.as_bytes(), &mut t).await.unwrap();
    assert!(d.all_delivered(), "{d:#?}\n{:#?}", t.lines);
    assert_eq!(d.data_stage, Some(Stage::DataEnd));
    assert_eq!(d.data_reply.as_ref().map(|r| r.code), Some(250));
    s.quit(&mut t).await.unwrap();
    // The single-dot line went out stuffed.
    let want_body = BODY.replace("\r\n", "\n");
    for rcpt in rcpts {
        let got = pf.wait_messages(rcpt, 1).unwrap();
        assert_eq!(got.len(), 1, "{rcpt}: exactly one copy");
        let body = stored_body(&got[0]);
        assert_eq!(
            String::from_utf8_lossy(body),
            want_body,
            "{rcpt}: body differs"
        );
        let head = header_block(&got[0]);
        assert!(head.contains(&format!("Delivered-To: {rcpt}")), "{head}");
        assert!(head.contains("Subject: three domains"), "{head}");
        assert!(
            head.contains("Return-Path: <sender@example.test>"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn unknown_recipient_gets_550_5_1_1_others_delivered() {
    // Guards: a 5yz RCPT (Postfix's 550 5.1.1 for an unlisted mailbox) rejects only that
    // recipient; the other two are delivered in the same transaction.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::None, &mut t).await;
    let rcpts = ["alice@a.test", "nobody@b.test", "carol@c.test"];
    let msg = message("one unknown", &rcpts.join(", "));
    let d = s.send(&env(&rcpts), msg.as_bytes(), &mut t).await.unwrap();
    let status: Vec<(&str, &RcptStatus)> =
        d.per_rcpt.iter().map(|(a, s)| (a.as_str(), s)).collect();
    assert!(
        status[0].1.is_accepted() && status[2].1.is_accepted(),
        "{d:#?}"
    );
    let RcptStatus::Rejected(reply) = status[1].1 else {
        panic!("nobody@b.test not rejected: {d:#?}");
    };
    assert_eq!(reply.code, 550);
    let e = reply.enhanced.expect("enhanced status code");
    assert_eq!((e.class, e.subject, e.detail), (5, 1, 1));
    assert!(reply.one_line().contains("nobody@b.test"), "{reply:?}");
    assert!(!status[1].1.is_transient());
    assert_eq!(
        d.delivered().collect::<Vec<_>>(),
        ["alice@a.test", "carol@c.test"]
    );
    s.quit(&mut t).await.unwrap();
    for rcpt in ["alice@a.test", "carol@c.test"] {
        assert_eq!(pf.wait_messages(rcpt, 1).unwrap().len(), 1);
    }
    assert!(pf.messages("bob@b.test").is_empty());
    pf.wait_log_line(&["reject: RCPT", "550 5.1.1 <nobody@b.test>"])
        .unwrap();
}

#[tokio::test]
async fn oversize_refused_before_data_by_size() {
    // Guards: RFC 1870 — a message over Postfix's SIZE is refused locally before MAIL/DATA,
    // naming the server's limit; the session stays usable for the next mail.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::None, &mut t).await;
    let mut big = message("too big", "alice@a.test");
    let line = "x".repeat(76) + "\r\n";
    while big.len() as u64 <= SIZE_LIMIT + 1000 {
        big.push_str(&line);
    }
    let before = t.lines.len();
    let err = s
        .send(&env(&["alice@a.test"]), big.as_bytes(), &mut t)
        .await
        .unwrap_err();
    match &err {
        Error::SizeExceeded { limit, size } => {
            assert_eq!(*limit, SIZE_LIMIT);
            assert!(*size as u64 > SIZE_LIMIT);
        }
        other => panic!("want SizeExceeded, got {other:?}"),
    }
    assert!(err.to_string().contains(&SIZE_LIMIT.to_string()), "{err}");
    assert!(!err.is_transient());
    let sent_after: Vec<&String> = t.lines[before..]
        .iter()
        .filter(|l| l.starts_with("C: "))
        .collect();
    assert!(sent_after.is_empty(), "nothing may be sent: {sent_after:?}");
    assert!(s.is_usable());
    let small = message("small after big", "alice@a.test");
    let d = s
        .send(&env(&["alice@a.test"]), small.as_bytes(), &mut t)
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:#?}");
    s.quit(&mut t).await.unwrap();
    let got = pf.wait_messages("alice@a.test", 1).unwrap();
    assert_eq!(got.len(), 1);
    assert!(header_block(&got[0]).contains("Subject: small after big"));
}

#[tokio::test]
async fn starttls_path_delivers_and_re_ehlos() {
    // Guards: RFC 3207 against Postfix — STARTTLS, certificate verified via extra roots,
    // EHLO again inside TLS, mail delivered and Postfix records it came over TLS; without the
    // test root the handshake fails instead of silently continuing.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::Starttls, &mut t).await;
    let info = s.tls_info().cloned().expect("TLS info after STARTTLS");
    assert_eq!(info.verified_name, "localhost");
    let version = info.version.clone().unwrap_or_default();
    assert!(
        matches!(version.as_str(), "TLSv1.2" | "TLSv1.3"),
        "{info:?}"
    );
    let d = s
        .send(
            &env(&["bob@b.test"]),
            message("over tls", "bob@b.test").as_bytes(),
            &mut t,
        )
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:#?}");
    s.quit(&mut t).await.unwrap();
    let dialogue = t.dialogue();
    let ehlo: Vec<usize> = (0..dialogue.len())
        .filter(|i| dialogue[*i] == "C: EHLO client.test")
        .collect();
    let starttls = dialogue
        .iter()
        .position(|l| *l == "C: STARTTLS")
        .expect("STARTTLS sent");
    assert!(
        dialogue[starttls + 1].starts_with("S: 220"),
        "{dialogue:#?}"
    );
    assert_eq!(ehlo.len(), 2, "{dialogue:#?}");
    assert!(ehlo[0] < starttls && starttls < ehlo[1], "{dialogue:#?}");
    let got = pf.wait_messages("bob@b.test", 1).unwrap();
    let head = header_block(&got[0]);
    assert!(head.contains("(using TLSv1."), "Received shows TLS: {head}");

    // Same server, no trusted root: verification fails, never a silent plaintext fallback.
    let mut t2 = VecTranscript::new();
    let mut o = pf.connect_opts();
    o.extra_roots.clear();
    let err = Session::connect(&pf.client_cfg(TlsMode::Starttls), &o, &mut t2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(!t2.dialogue().iter().any(|l| l.starts_with("C: MAIL")));
}

#[tokio::test]
async fn smtputf8_recipient_when_offered() {
    // Guards: RFC 6531 — when Postfix offers SMTPUTF8, a non-ASCII recipient goes out with
    // MAIL … SMTPUTF8 and lands in its mailbox; when it does not, the client refuses locally.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::None, &mut t).await;
    let rcpt = "张三@c.test";
    let msg = message("utf8 rcpt", rcpt);
    let r = s.send(&env(&[rcpt]), msg.as_bytes(), &mut t).await;
    if !s.capabilities().smtputf8 {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::Smtputf8Unsupported { .. }), "{err:?}");
        eprintln!("this Postfix does not offer SMTPUTF8: local refusal checked instead");
        return;
    }
    let d = r.unwrap();
    assert!(d.all_delivered(), "{d:#?}\n{:#?}", t.lines);
    let mail = t
        .dialogue()
        .into_iter()
        .find(|l| l.starts_with("C: MAIL FROM:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(mail.ends_with(" SMTPUTF8"), "{mail}");
    s.quit(&mut t).await.unwrap();
    let got = pf.wait_messages(rcpt, 1).unwrap();
    assert!(header_block(&got[0]).contains("Delivered-To: 张三@c.test"));
}

#[tokio::test]
async fn reused_session_rset_between_mails_and_all_rejected_skips_data() {
    // Guards: on one session Postfix accepts the pipelined RSET+MAIL+RCPT group of later
    // transactions; a mail whose every recipient is unknown sends no DATA and leaves the
    // session usable; each delivered mail arrives exactly once.
    let Some(pf) = start().await else { return };
    let mut t = VecTranscript::new();
    let mut s = connect(&pf, TlsMode::None, &mut t).await;
    assert!(s.capabilities().pipelining, "Postfix offers PIPELINING");
    let first = message("reuse one", "alice@a.test");
    let d = s
        .send(&env(&["alice@a.test"]), first.as_bytes(), &mut t)
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:#?}");

    let before = t.dialogue().len();
    let nobody = message("nobody at all", "x@a.test");
    let d = s
        .send(&env(&["x@a.test", "y@b.test"]), nobody.as_bytes(), &mut t)
        .await
        .unwrap();
    assert!(
        d.per_rcpt.iter().all(|(_, st)| st.reply().code == 550),
        "{d:#?}"
    );
    assert_eq!(d.data_reply, None);
    let sent: Vec<String> = t.dialogue()[before..]
        .iter()
        .filter(|l| l.starts_with("C: "))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        sent.first().map(String::as_str),
        Some("C: RSET"),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|l| l == "C: DATA"), "{sent:?}");
    assert!(s.is_usable());

    let second = message("reuse two", "alice@a.test, bob@b.test");
    let d = s
        .send(
            &env(&["alice@a.test", "bob@b.test"]),
            second.as_bytes(),
            &mut t,
        )
        .await
        .unwrap();
    assert!(d.all_delivered(), "{d:#?}\n{:#?}", t.lines);
    s.quit(&mut t).await.unwrap();
    let alice = pf.wait_messages("alice@a.test", 2).unwrap();
    assert_eq!(alice.len(), 2);
    let bob = pf.wait_messages("bob@b.test", 1).unwrap();
    assert!(header_block(&bob[0]).contains("Subject: reuse two"));
    let subjects: Vec<String> = alice.iter().map(|m| header_block(m)).collect();
    assert!(subjects.iter().any(|h| h.contains("Subject: reuse one")));
    assert!(subjects.iter().any(|h| h.contains("Subject: reuse two")));
    // Postfix's own count for the session: three MAILs, two DATAs (none for the rejected one).
    let disconnect = pf.wait_log_line(&["disconnect from", " mail="]).unwrap();
    assert!(
        disconnect.contains(" mail=3 ") && disconnect.contains(" data=2 "),
        "{disconnect}"
    );
}
