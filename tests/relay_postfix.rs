//! End to end through a real MTA: a webmail send through mailtap's proxy, relayed over STARTTLS
//! to a private Postfix, checked in Postfix's own maildirs.
//!
//! Each test starts its own Postfix (tests/common/postfix.rs) and its own mailtap whose `[smtp]`
//! points at it (host `localhost`, `tls = "starttls"`, the instance's certificate as
//! `extra_roots`). What counts is what Postfix stored, not what mailtap believes. Without Postfix
//! (or root) the tests skip with a message, except under `CI=true`, where they fail.

mod common;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/postfix.rs"]
mod postfix;
#[path = "common/webmail.rs"]
mod webmail;

use std::time::{Duration, Instant};

use common::{settled_mails, start, Running};
use mailtap::queue::{MailState, RcptStatus};
use postfix::{Postfix, SIZE_LIMIT};
use webmail::{post, roundcube_send, webmail_config};

/// The webmail user: a Postfix mailbox, so error reports land where the test can read them.
const SENDER: &str = "alice@a.test";

/// A private Postfix and a mailtap relaying to it.
struct Rig {
    pf: Postfix,
    mt: Running,
    /// Holds the `extra_roots` PEM file.
    _certs: tempfile::TempDir,
}

impl Rig {
    /// Starts both, or `None` (skip) when this machine has no Postfix and it is not CI.
    async fn start() -> Option<Rig> {
        let bins = postfix::require()?;
        let pf = tokio::task::spawn_blocking(move || Postfix::start(&bins))
            .await
            .expect("postfix start task")
            .unwrap_or_else(|e| panic!("private postfix did not start: {e}"));
        let certs = tempfile::tempdir().expect("temp dir for the certificate");
        let pem = certs.path().join("postfix-test-ca.pem");
        std::fs::write(&pem, &pf.cert_pem).expect("write the certificate");
        let extra = format!(
            "{}[smtp]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\n\
             helo_name = \"mailtap.test\"\nextra_roots = [{:?}]\n\
             [smtp.timeouts]\nconnect_secs = 15\ngreeting_secs = 15\ncommand_secs = 15\n\
             mail_secs = 15\nrcpt_secs = 15\ndata_init_secs = 15\ndata_block_secs = 15\n\
             data_end_secs = 15\n",
            webmail_config(SENDER, &[("localhost", "127.0.0.1")]),
            pf.addr.port(),
            pem.display().to_string(),
        );
        let mt = start(&extra, None).await;
        common::log_in(mt.addr, webmail::WEBMAIL_HOST, webmail::SESSION_COOKIE).await;
        Some(Rig {
            pf,
            mt,
            _certs: certs,
        })
    }

    /// Posts a Roundcube send through the proxy; the browser must be told it was sent.
    async fn send(&self, to: &str, cc: &str, subject: &str, body: &str) {
        let response = post(self.mt.addr, &roundcube_send(to, cc, subject, body))
            .await
            .unwrap_or_else(|e| panic!("post through the proxy: {e:?}"));
        assert!(
            response.starts_with("HTTP/1.1 200") && response.contains("sent_successfully"),
            "{response}"
        );
    }

    /// Waits (bounded, without blocking the runtime) until `address`'s maildir holds `n`
    /// messages; returns them as text.
    async fn messages(&self, address: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + postfix::WAIT;
        loop {
            let got = self.pf.messages(address);
            if got.len() >= n {
                return got
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{address}: {} of {n} messages after {:?}\nlogs: {:#?}\nmaillog:\n{}",
                got.len(),
                postfix::WAIT,
                self.mt.transcripts(),
                self.pf.maillog()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Log-*.txt of the webmail mail's attempt (not the report's).
    fn webmail_log(&self) -> String {
        let logs = self.mt.transcripts();
        let mine: Vec<&String> = logs
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.contains("(Webmail), attempt 1"))
            .collect();
        assert_eq!(mine.len(), 1, "one webmail transcript expected: {logs:#?}");
        mine[0].clone()
    }

    async fn stop(self) {
        self.mt.shutdown().await;
        // Postfix's drop runs `postfix stop` (blocking, bounded): off the runtime's threads.
        let pf = self.pf;
        let _ = tokio::task::spawn_blocking(move || drop(pf)).await;
    }
}

/// Position of the first line of `text` at or after line `from` that contains `needle`.
fn line_at(text: &str, from: usize, needle: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_domains_over_starttls_reach_three_maildirs() {
    // Guards: one webmail send to three domains is stored once in each Postfix maildir, over
    // STARTTLS, and Log-*.txt shows STARTTLS, the TLS version/cipher and the re-EHLO.
    let Some(rig) = Rig::start().await else {
        return;
    };
    rig.send(
        "Bob <bob@b.test>, carol@c.test",
        SENDER,
        "three domains",
        "hello from the proxy\r\n.\r\nlast line",
    )
    .await;
    let mut received_headers = Vec::new();
    for rcpt in ["alice@a.test", "bob@b.test", "carol@c.test"] {
        let got = rig.messages(rcpt, 1).await;
        assert_eq!(got.len(), 1, "{rcpt}: {got:#?}");
        let m = &got[0];
        assert!(m.contains("Subject: three domains"), "{rcpt}: {m}");
        assert!(m.contains(&format!("Return-Path: <{SENDER}>")), "{m}");
        assert!(m.contains("hello from the proxy"), "{m}");
        // Postfix stores the dot line un-stuffed: the body keeps its lone ".".
        assert!(m.contains("\n.\nlast line"), "dot line altered: {m}");
        // smtpd_tls_received_header: Postfix itself says the session was encrypted.
        let received = m
            .lines()
            .skip_while(|l| !l.starts_with("Received: from mailtap.test"))
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(received.contains("(using TLSv1."), "{rcpt}: {m}");
        received_headers.push(received);
    }
    let settled = settled_mails(&rig.mt.spool).await;
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0].1, MailState::Delivered);

    let log = rig.webmail_log();
    let attempt = line_at(&log, 0, "=== SMTP attempt 1: 127.0.0.1:")
        .unwrap_or_else(|| panic!("no attempt line:\n{log}"));
    assert!(
        log.contains(&format!("-> localhost (127.0.0.1:{})", rig.pf.addr.port())),
        "{log}"
    );
    let ehlo1 = line_at(&log, attempt, "C: EHLO mailtap.test").expect("first EHLO");
    let offered = line_at(&log, ehlo1, "S: 250-STARTTLS").expect("STARTTLS offered");
    let starttls = line_at(&log, offered, "C: STARTTLS").expect("STARTTLS sent");
    let ready = line_at(&log, starttls, "S: 220 ").expect("220 to STARTTLS");
    let tls = line_at(&log, ready, "-- TLS established: TLSv1.").expect("TLS note");
    let ehlo2 = line_at(&log, tls, "C: EHLO mailtap.test").expect("re-EHLO after TLS");
    let mail = line_at(&log, ehlo2, "C: MAIL FROM:<alice@a.test>").expect("MAIL");
    assert_eq!(ready, starttls + 1, "220 answers STARTTLS directly:\n{log}");
    assert!(
        ehlo1 < offered && tls < ehlo2 && ehlo2 < mail,
        "order:\n{log}"
    );
    // The post-TLS EHLO reply must not offer STARTTLS again (RFC 3207 §4.2).
    let after_tls: Vec<&str> = log
        .lines()
        .skip(ehlo2)
        .take_while(|l| !l.contains("C: MAIL"))
        .collect();
    assert!(
        !after_tls.iter().any(|l| l.contains("STARTTLS")),
        "{after_tls:#?}"
    );
    // The version and cipher mailtap logged are the ones Postfix recorded in Received.
    let note = log.lines().nth(tls).unwrap_or_default();
    let (_, negotiated) = note
        .split_once("TLS established: ")
        .unwrap_or_else(|| panic!("{note}"));
    let mut parts = negotiated.split_whitespace();
    let (version, cipher) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    for r in &received_headers {
        assert!(
            r.contains(&format!("using {version} with cipher {cipher}")),
            "log says {version} {cipher}; Postfix says {r}"
        );
    }
    for rcpt in ["alice@a.test", "bob@b.test", "carol@c.test"] {
        let line = format!("C: RCPT TO:<{rcpt}>");
        assert!(line_at(&log, mail, &line).is_some(), "{line}:\n{log}");
    }
    assert!(log.contains("C: QUIT") && log.contains("S: 221"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_recipient_is_reported_to_the_senders_mailbox() {
    // Guards: Postfix's 550 5.1.1 on one RCPT → the two known recipients get the mail and the
    // sender's Postfix mailbox gets an RFC 3464 report quoting the command and the reply.
    let Some(rig) = Rig::start().await else {
        return;
    };
    rig.send(
        "bob@b.test, unknown@c.test",
        "carol@c.test",
        "one unknown",
        "hi",
    )
    .await;
    for rcpt in ["bob@b.test", "carol@c.test"] {
        let got = rig.messages(rcpt, 1).await;
        assert!(got[0].contains("Subject: one unknown"), "{rcpt}: {got:#?}");
    }
    let reports = rig.messages(SENDER, 1).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    // Postfix records the envelope sender: reports use the null reverse-path.
    assert!(r.contains("Return-Path: <>"), "{r}");
    assert!(r.contains("Delivered-To: alice@a.test"), "{r}");
    assert!(
        r.contains("multipart/report; report-type=delivery-status"),
        "{r}"
    );
    assert!(r.contains("Auto-Submitted: auto-replied"), "{r}");
    assert!(r.contains("mailtap said: RCPT TO:<unknown@c.test>"), "{r}");
    assert!(r.contains("550 5.1.1 <unknown@c.test>"), "{r}");
    assert!(r.contains("Final-Recipient: rfc822; unknown@c.test"), "{r}");
    assert!(r.contains("Status: 5.1.1"), "{r}");
    assert!(r.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{r}");
    assert!(
        !r.contains("Final-Recipient: rfc822; bob@b.test"),
        "delivered recipient reported: {r}"
    );
    // The original's headers come back in the text/rfc822-headers part.
    assert!(r.contains("text/rfc822-headers"), "{r}");
    assert!(r.contains("Subject: one unknown"), "{r}");

    let settled = settled_mails(&rig.mt.spool).await;
    assert_eq!(settled.len(), 1, "{settled:?}");
    let meta = rig.mt.spool.get(&settled[0].0).await.unwrap().unwrap();
    assert!(
        matches!(meta.recipients["unknown@c.test"], RcptStatus::Failed(_)),
        "{:?}",
        meta.recipients
    );
    for ok in ["bob@b.test", "carol@c.test"] {
        assert!(
            matches!(meta.recipients[ok], RcptStatus::Delivered),
            "{:?}",
            meta.recipients
        );
    }
    let log = rig.webmail_log();
    assert!(log.contains("S: 550 5.1.1 <unknown@c.test>"), "{log}");
    assert!(log.contains("C: DATA"), "{log}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_over_postfixs_size_limit_is_reported_not_sent() {
    // Guards: a mail larger than Postfix's message_size_limit is never sent (refused on the
    // EHLO SIZE before DATA), and the sender's mailbox gets a report naming the SIZE limit.
    let Some(rig) = Rig::start().await else {
        return;
    };
    let body = "a line of a long lab report\r\n".repeat(SIZE_LIMIT as usize / 28 + 100);
    assert!(body.len() as u64 > SIZE_LIMIT);
    rig.send("bob@b.test", "", "far too long", &body).await;
    let reports = rig.messages(SENDER, 1).await;
    let r = &reports[0];
    assert!(r.contains("Return-Path: <>"), "{r}");
    assert!(
        r.contains(&format!(
            "exceeds the server's SIZE limit of {SIZE_LIMIT} bytes"
        )),
        "{r}"
    );
    assert!(r.contains("Final-Recipient: rfc822; bob@b.test"), "{r}");
    // A permanent failure (RFC 3463 class 5); the detail code is the relay's choice.
    // (Postfix stores maildir files with LF line ends.)
    assert!(r.contains("Action: failed\nStatus: 5."), "{r}");
    assert!(r.contains("Subject: far too long"), "{r}");
    assert!(
        (r.len() as u64) < SIZE_LIMIT,
        "the report must not carry the body"
    );

    let settled = settled_mails(&rig.mt.spool).await;
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0].1, MailState::Failed);
    let log = rig.webmail_log();
    assert!(log.contains(&format!("S: 250-SIZE {SIZE_LIMIT}")), "{log}");
    // Refused on the announced SIZE: not even MAIL FROM goes out.
    assert!(
        !log.contains("C: MAIL FROM") && !log.contains("C: DATA"),
        "transaction started for an oversize mail:\n{log}"
    );
    // Nothing reached bob, and Postfix never queued a message for him.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.pf.messages("bob@b.test").is_empty());
    assert!(
        !rig.pf.maillog().contains("to=<bob@b.test>"),
        "{}",
        rig.pf.maillog()
    );
    rig.stop().await;
}
