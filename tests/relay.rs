//! Interception → spool → relay → built-in SMTP server, end to end over real sockets: delivery,
//! per-recipient outcomes, error reports, retries across a restart, and the Log-*.txt transcript.

mod common;
#[path = "common/webmail.rs"]
mod webmail;

use std::time::{Duration, Instant};

use common::*;
use mailtap::mail::record::Origin;
use mailtap::queue::MailState;
use webmail::{roundcube_send, SESSION_COOKIE, WEBMAIL_HOST};

const SENDER: &str = "lilei@example.com";

fn config(extra: &str) -> String {
    format!(
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n[senders]\n\"webmail.example.test\" = \"{SENDER}\"\n\
         [relay]\nconsole = false\n{extra}"
    )
}

#[tokio::test]
async fn a_webmail_send_is_delivered_with_a_transcript() {
    // Guards the whole path: browser answered, mail on the server with its envelope, Log file.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    let response = raw_exchange(
        mt.addr,
        &roundcube_send(
            "Bob <bob@example.org>, carol@example.net",
            "dave@example.com",
            "实验 lab 3",
            "hello\r\n.\r\nend",
        ),
    )
    .await;
    assert!(response.contains("sent_successfully"), "{response}");
    let mail = mt.mailbox_with(1).await;
    let env = &mail[0].envelope;
    assert_eq!(env.sender, SENDER);
    assert_eq!(
        env.recipients,
        ["bob@example.org", "carol@example.net", "dave@example.com"]
    );
    let eml = std::fs::read_to_string(&mail[0].eml_path).unwrap();
    assert!(
        eml.contains("\r\n.\r\nend") || eml.contains("\n.\nend") || eml.contains("=2E"),
        "dot line lost: {eml}"
    );
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, MailState::Delivered);
    let logs = mt.transcripts();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let (name, text) = &logs[0];
    assert!(
        name.starts_with("Log-")
            && name.ends_with(".txt")
            && name.len() == "Log-20261123101530.txt".len(),
        "{name}"
    );
    assert!(
        text.contains("=== HTTP request (browser 127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("POST http://webmail.example.test:9/roundcube/"),
        "{text}"
    );
    assert!(
        text.contains("cookie: <redacted>") && !text.contains("SECRET1234"),
        "{text}"
    );
    assert!(
        text.contains("=== HTTP response (mailtap 127.0.0.1:") && text.contains("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.contains("=== SMTP attempt 1: 127.0.0.1:"), "{text}");
    for line in [
        "S: 220 ",
        "C: EHLO mailtap",
        "C: MAIL FROM:<lilei@example.com>",
        "C: RCPT TO:<bob@example.org>",
        "C: DATA",
        "S: 354",
        "C: QUIT",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("[body: "), "{text}");
    // Every conversation line carries a microsecond timestamp.
    let stamped =
        regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} (C|S|--):").unwrap();
    assert!(stamped.find_iter(text).count() >= 10, "{text}");
    mt.shutdown().await;
}

#[tokio::test]
async fn an_unknown_recipient_gets_a_report_and_the_others_their_mail() {
    // Guards per-recipient outcome: 550 on one RCPT → others delivered, sender gets RFC 3464 report.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send(
            "bob@example.org, nobody@example.net",
            "carol@example.com",
            "to three",
            "hi",
        ),
    )
    .await;
    let mail = mt.mailbox_with(2).await;
    let original = mail
        .iter()
        .find(|m| m.envelope.sender == SENDER)
        .expect("original delivered");
    assert_eq!(
        original.envelope.recipients,
        ["bob@example.org", "carol@example.com"]
    );
    let report = mail
        .iter()
        .find(|m| m.envelope.sender.is_empty())
        .expect("report with null sender");
    assert_eq!(report.envelope.recipients, [SENDER]);
    let text = std::fs::read_to_string(&report.eml_path).unwrap();
    assert!(
        text.contains("multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(text.contains("RCPT TO:<nobody@example.net>"), "{text}");
    assert!(text.contains("550 5.1.1"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; nobody@example.net"),
        "{text}"
    );
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    let meta = mt.spool.get(&settled[0].0).await.unwrap().unwrap();
    assert!(matches!(
        meta.recipients["nobody@example.net"],
        mailtap::queue::RcptStatus::Failed(_)
    ));
    assert!(matches!(
        meta.recipients["bob@example.org"],
        mailtap::queue::RcptStatus::Delivered
    ));
    mt.shutdown().await;
}

#[tokio::test]
async fn invalid_addresses_and_oversize_mail_become_reports() {
    // Guards the rejected-at-interception and SIZE paths: no mail, a report with the reason.
    let mt = start(&config("[builtin_smtp]\nmax_message_bytes = 3000\n"), None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("chengli@, alice@localhost", "", "bad address", "x"),
    )
    .await;
    raw_exchange(
        mt.addr,
        &roundcube_send(
            "bob@example.org",
            "",
            "too long",
            &"long line of text ".repeat(400),
        ),
    )
    .await;
    let mail = mt.mailbox_with(2).await;
    assert!(
        mail.iter().all(|m| m.envelope.sender.is_empty()),
        "an undeliverable mail went out"
    );
    let texts: Vec<String> = mail
        .iter()
        .map(|m| std::fs::read_to_string(&m.eml_path).unwrap())
        .collect();
    let bad = texts
        .iter()
        .find(|t| t.contains("chengli@"))
        .expect("report for the bad address");
    assert!(bad.contains("Status: 5.1.3"), "{bad}");
    // Every recipient of a mail with no valid one is named with its own reason.
    for addr in ["chengli@", "alice@localhost"] {
        let block = bad
            .split(&format!("Final-Recipient: rfc822; {addr}\r\n"))
            .nth(1)
            .and_then(|b| b.split("\r\n\r\n").next())
            .unwrap_or_else(|| panic!("no block for {addr}: {bad}"));
        assert!(block.contains(&format!("\"{addr}\"")), "{addr}: {block}");
    }
    let big = texts
        .iter()
        .find(|t| t.contains("SIZE") || t.contains("5.3.4"))
        .expect("report for the big mail");
    assert!(
        big.contains("Final-Recipient: rfc822; bob@example.org"),
        "{big}"
    );
    let settled = settled_mails(&mt.spool).await;
    assert!(
        settled
            .iter()
            .all(|(_, state, _)| *state == MailState::Failed),
        "{settled:?}"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn no_report_about_a_report() {
    // Guards loop prevention: a report that cannot be delivered is failed, never reported.
    let cfg = "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n[senders]\n\"webmail.example.test\" = \"nobody@example.com\"\n[relay]\nconsole = false\n";
    let mt = start(cfg, None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("nobody@example.org", "", "loop?", "x"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        let f = mt.spool.list(MailState::Failed);
        if f.len() >= 2 {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "expected the mail and its report to fail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: usize = [
        MailState::Active,
        MailState::Deferred,
        MailState::Delivered,
        MailState::Failed,
    ]
    .iter()
    .map(|s| mt.spool.list(*s).len())
    .sum();
    assert_eq!(all, 2, "a report about a report was queued");
    let mut origins = Vec::new();
    for s in failed {
        origins.push(mt.spool.get(&s.id).await.unwrap().unwrap().record.origin);
    }
    origins.sort_by_key(|o| *o == Origin::Report);
    assert_eq!(origins, [Origin::Webmail, Origin::Report]);
    assert!(mt.mailbox().is_empty());
    mt.shutdown().await;
}

#[tokio::test]
async fn deferred_mail_is_delivered_after_a_restart() {
    // Guards retries surviving restarts: 4yz → deferred on disk → new process delivers it.
    let mt = start(
        &config("[builtin_smtp]\ntemp_fail_first_n = 1\n[queue]\nfirst_retry_secs = 1\n"),
        None,
    )
    .await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("bob@example.org", "", "retry me", "x"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while mt.spool.list(MailState::Deferred).is_empty() {
        assert!(Instant::now() < deadline, "mail never deferred");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mt.mailbox().is_empty());
    let dir = mt.stop_keep_dir().await;
    let mt = start_in(dir, &config("[queue]\nfirst_retry_secs = 1\n"), None).await;
    let mail = mt.mailbox_with(1).await;
    assert_eq!(mail[0].envelope.recipients, ["bob@example.org"]);
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, MailState::Delivered);
    let meta = mt.spool.get(&settled[0].0).await.unwrap().unwrap();
    assert_eq!(meta.attempts, 2);
    // One mail, one transcript: the 451 attempt and the delivery after the restart.
    let logs = mt.transcripts();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].1.contains("S: 451"), "{logs:?}");
    assert!(logs[0].1.contains("SMTP attempt 2"), "{logs:?}");
    mt.shutdown().await;
}

#[tokio::test]
async fn a_recipient_listed_twice_gets_one_rcpt() {
    // Guards envelope de-duplication: To and Cc naming one mailbox → one RCPT, one copy.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("bob@example.org", "bob@EXAMPLE.org", "twice", "x"),
    )
    .await;
    let mail = mt.mailbox_with(1).await;
    assert_eq!(mail[0].envelope.recipients, ["bob@example.org"]);
    mt.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_defers_instead_of_failing() {
    // Guards setup failures (refused connection, TLS, AUTH): the mail waits for a retry and no
    // report is sent yet.
    let port = closed_port();
    let mt = start(
        &config(&format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
        )),
        None,
    )
    .await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("bob@example.org", "", "later", "x"),
    )
    .await;
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, MailState::Deferred, "{settled:?}");
    let all: usize = [
        MailState::Active,
        MailState::Deferred,
        MailState::Delivered,
        MailState::Failed,
    ]
    .iter()
    .map(|s| mt.spool.list(*s).len())
    .sum();
    assert_eq!(
        all, 1,
        "a report was queued for a mail that is only deferred"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn session_tokens_in_the_request_never_reach_the_transcript() {
    // Guards redaction end to end: QQ Mail's session id travels in the request line (sid=) and
    // its cookies; the Log file shows the request but neither value.
    let mt = start(
        "[relay]\nconsole = false\n[resolve]\n\"set1.mail.qq.com\" = \"127.0.0.1\"\n",
        None,
    )
    .await;
    log_in(
        mt.addr,
        "set1.mail.qq.com",
        "qm_username=lilei.example; sid=secret",
    )
    .await;
    let request = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/webmail/qqmail-gbk.http"
    ))
    .unwrap();
    let response = raw_exchange(mt.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    mt.mailbox_with(1).await;
    settled_mails(&mt.spool).await;
    let logs = mt.transcripts();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let text = &logs[0].1;
    assert!(
        text.contains("POST http://set1.mail.qq.com/cgi-bin/compose_send?sid=<redacted> HTTP/1.1"),
        "{text}"
    );
    assert!(!text.contains("GbKsid123"), "{text}");
}

#[tokio::test]
async fn invalid_recipients_are_refused_one_by_one_and_the_valid_ones_get_the_mail() {
    // Guards independent recipients: the valid one is delivered; the report names each invalid
    // address with its own reason (one RFC 3464 block each) and never the valid one.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    let response = raw_exchange(
        mt.addr,
        &roundcube_send(
            "zhangsan@example.com; alice@localhost; \"x\"<bad addr@example.org>",
            "",
            "three recipients",
            "hi",
        ),
    )
    .await;
    assert!(response.contains("sent_successfully"), "{response}");
    let mail = mt.mailbox_with(2).await;
    let original = mail
        .iter()
        .find(|m| m.envelope.sender == SENDER)
        .expect("the valid recipient got the mail");
    assert_eq!(original.envelope.recipients, ["zhangsan@example.com"]);
    let eml = std::fs::read_to_string(&original.eml_path).unwrap();
    assert!(
        !eml.contains("alice@localhost") && !eml.contains("bad addr"),
        "invalid addresses in the delivered headers: {eml}"
    );
    let report = mail
        .iter()
        .find(|m| m.envelope.sender.is_empty())
        .expect("report with null sender");
    assert_eq!(report.envelope.recipients, [SENDER]);
    let text = std::fs::read_to_string(&report.eml_path).unwrap();
    let blocks: Vec<&str> = text
        .split("Final-Recipient: rfc822; ")
        .skip(1)
        .map(|b| b.split("\r\n\r\n").next().unwrap_or(b))
        .collect();
    assert_eq!(blocks.len(), 2, "{text}");
    let alice = blocks
        .iter()
        .find(|b| b.starts_with("alice@localhost\r\n"))
        .unwrap_or_else(|| panic!("no block for alice: {text}"));
    let bad = blocks
        .iter()
        .find(|b| b.starts_with("bad addr@example.org\r\n"))
        .unwrap_or_else(|| panic!("no block for the third address: {text}"));
    assert!(alice.contains("Status: 5.1.3") && bad.contains("Status: 5.1.3"));
    assert!(
        alice.contains("\"alice@localhost\"") && !alice.contains("bad addr"),
        "{alice}"
    );
    assert!(
        bad.contains("\"bad addr@example.org\"") && !bad.contains("alice"),
        "{bad}"
    );
    assert!(
        !text.contains("Final-Recipient: rfc822; zhangsan"),
        "{text}"
    );
    // The spool says what happened to each recipient.
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1, MailState::Delivered);
    let meta = mt.spool.get(&settled[0].0).await.unwrap().unwrap();
    use mailtap::queue::RcptStatus;
    assert_eq!(
        meta.recipients["zhangsan@example.com"],
        RcptStatus::Delivered
    );
    for addr in ["alice@localhost", "bad addr@example.org"] {
        match &meta.recipients[addr] {
            RcptStatus::Failed(reason) => assert!(reason.contains(addr), "{addr}: {reason}"),
            other => panic!("{addr}: {other:?}"),
        }
    }
    mt.shutdown().await;
}

#[tokio::test]
async fn an_invalid_sender_still_refuses_the_whole_mail() {
    // Guards the sender rule: with an invalid sender nothing is relayed and the browser is
    // told the mail was not sent (no report could reach anyone).
    let cfg = "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n[relay]\nconsole = false\n\
               [intercept]\nhosts = [\"webmail.example.test\"]\n";
    let mt = start(cfg, None).await;
    log_in(mt.addr, WEBMAIL_HOST, SESSION_COOKIE).await;
    // Roundcube's literal `_from` carries the (invalid) sender.
    let body = "_token=t&_task=mail&_action=send&_id=77&_from=lilei%40localhost&_to=bob%40example.org&_cc=&_bcc=&_subject=s&_is_html=0&_message=hi&_draft=";
    let raw = format!(
        "POST http://webmail.example.test:9/roundcube/?_task=mail&_unlock=loading9&_framed=1 HTTP/1.1\r\n\
         Host: webmail.example.test\r\nCookie: {SESSION_COOKIE}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = raw_exchange(mt.addr, raw.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 422"), "{response}");
    assert!(response.contains("NOT sent"), "{response}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mt.mailbox().is_empty(), "something was relayed");
    mt.shutdown().await;
}
