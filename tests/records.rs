//! Records a user compares with Wireshark: one Log-*.txt per mail with the HTTP exchange at the
//! times it happened, every SMTP attempt appended (across retries and restarts), one id for a
//! mail everywhere, and a spool whose files agree with mailtap soon after it goes quiet.

mod common;
#[path = "common/webmail.rs"]
mod webmail;

use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use common::*;
use mailtap::queue::MailState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webmail::roundcube_send;

/// The cookie every send here carries (webmail::SESSION_COOKIE, and the RainLoop sample's),
/// set by the webmail through mailtap before the sends (mailtap relays only such sessions).
const SEND_COOKIE: &str = "roundcube_sessid=SECRET1234; rltoken=tok; RL_SESSION=s1";

const SENDER: &str = "lilei@example.com";

fn config(extra: &str) -> String {
    format!(
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n[senders]\n\"webmail.example.test\" = \"{SENDER}\"\n\
         [relay]\nconsole = false\n{extra}"
    )
}

/// Waits (bounded) until some transcript contains `needle`; returns every transcript.
async fn transcripts_with(mt: &Running, needle: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let logs = mt.transcripts();
        if logs.iter().any(|(_, t)| t.contains(needle)) {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "no transcript with {needle:?}: {logs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The local time in `line` right after `prefix` (`YYYY-mm-dd HH:MM:SS.ffffff`).
fn time_after(text: &str, prefix: &str) -> DateTime<Local> {
    let line = text
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no line with {prefix:?} in:\n{text}"));
    let at = line.find(prefix).unwrap() + prefix.len();
    let stamp = line[at..].trim_start();
    let naive = NaiveDateTime::parse_from_str(&stamp[..26], "%Y-%m-%d %H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    Local.from_local_datetime(&naive).single().unwrap()
}

/// The instant at the end of the heading starting with `prefix` (`... +hh:mm`).
fn heading_time(text: &str, prefix: &str) -> DateTime<chrono::FixedOffset> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no heading {prefix:?} in:\n{text}"));
    let stamp = &line[line.len() - "2026-01-01 00:00:00.000000 +00:00".len()..];
    DateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.6f %:z")
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The time stamp that starts a conversation line containing `needle`.
fn line_time(text: &str, needle: &str) -> DateTime<Local> {
    let line = text
        .lines()
        .find(|l| l.contains(needle) && l.len() > 26)
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
    let naive = NaiveDateTime::parse_from_str(&line[..26], "%Y-%m-%d %H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    Local.from_local_datetime(&naive).single().unwrap()
}

#[tokio::test]
async fn http_times_are_when_the_head_and_body_arrived_and_the_response_was_written() {
    // Guards: a head sent 300 ms before its body is stamped 300 ms earlier; the HTTP section
    // shows browser ip:port -> proxy ip:port and the whole response head as written.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, SEND_COOKIE).await;
    let request = roundcube_send("bob@example.org", "", "timed", "x");
    let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut s = TcpStream::connect(mt.addr).await.unwrap();
    let browser = s.local_addr().unwrap();
    s.write_all(&request[..split]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&request[split..]).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&response).contains("sent_successfully") {
        assert!(Instant::now() < deadline, "no response");
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let logs = transcripts_with(&mt, "=== final outcome").await;
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let text = &logs[0].1;
    let heading = format!(
        "=== HTTP request (browser {browser} -> mailtap {}), head received",
        mt.addr
    );
    let head_at = time_after(text, &heading);
    let body_at = line_time(text, "-- request body complete:");
    let waited = (body_at - head_at).num_milliseconds();
    assert!(
        waited >= 290,
        "head and body stamped {waited} ms apart:\n{text}"
    );
    let resp_heading = format!(
        "=== HTTP response (mailtap {} -> browser {browser}), head written",
        mt.addr
    );
    let written = time_after(text, &resp_heading);
    assert!(
        written >= body_at,
        "response stamped before the body arrived:\n{text}"
    );
    let smtp_at = line_time(text, "S: 220 ");
    assert!(smtp_at >= written, "file out of order:\n{text}");
    // Every field of the head the browser got is in the transcript.
    let head_end = response.find("\r\n\r\n").unwrap();
    let section = &text[text.find(&resp_heading).unwrap()..];
    for field in response[..head_end].lines().skip(1) {
        let (name, value) = field.split_once(':').unwrap();
        let shown = format!("{}:{value}", name.to_ascii_lowercase());
        assert!(section.contains(&shown), "missing {shown:?} in:\n{section}");
    }
    assert!(section.contains("-- response body written: "), "{section}");
    mt.shutdown().await;
}

#[tokio::test]
async fn one_mail_has_one_transcript_across_retries_and_a_restart() {
    // Guards "one Log per mail": the HTTP exchange once, every attempt appended to the same
    // file (in this run and after a restart), then the final outcome.
    let mt = start(
        &config("[builtin_smtp]\ntemp_fail_first_n = 2\n[queue]\nfirst_retry_secs = 1\n"),
        None,
    )
    .await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, SEND_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("bob@example.org", "", "retry me", "x"),
    )
    .await;
    transcripts_with(&mt, "SMTP attempt 2").await;
    let deadline = Instant::now() + WAIT;
    while mt.spool.list(MailState::Deferred).iter().any(|m| m.claimed)
        || mt.spool.list(MailState::Deferred).is_empty()
    {
        assert!(Instant::now() < deadline, "mail never deferred twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = mt.stop_keep_dir().await;
    let mt = start_in(dir, &config("[queue]\nfirst_retry_secs = 1\n"), None).await;
    mt.mailbox_with(1).await;
    let logs = transcripts_with(&mt, "=== final outcome").await;
    assert_eq!(logs.len(), 1, "one mail, one file: {logs:#?}");
    let text = &logs[0].1;
    assert_eq!(text.matches("=== HTTP request").count(), 1, "{text}");
    assert_eq!(text.matches("=== HTTP response").count(), 1, "{text}");
    for n in 1..=3 {
        assert_eq!(
            text.matches(&format!("=== SMTP attempt {n}:")).count(),
            1,
            "{text}"
        );
    }
    assert_eq!(text.matches("S: 451").count(), 2, "{text}");
    let tail = &text[text.find("=== final outcome").unwrap()..];
    assert!(tail.contains("DELIVERED"), "{tail}");
    assert!(tail.contains("no error report"), "{tail}");
    // Named from the time the mail was taken: the header's time.
    let taken = time_after(text, ", taken ");
    assert_eq!(
        logs[0].0,
        format!("Log-{}.txt", taken.format("%Y%m%d%H%M%S")),
        "{text}"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn one_mail_has_one_id_everywhere() {
    // Guards: spool dir, record, transcript header, Message-ID, the mailbox envelope and the
    // report's reference all name the mail by the same id; the report's own id is a spool id.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, SEND_COOKIE).await;
    raw_exchange(
        mt.addr,
        &roundcube_send("bob@example.org, nobody@example.net", "", "ids", "x"),
    )
    .await;
    let mail = mt.mailbox_with(2).await;
    let settled = settled_mails(&mt.spool).await;
    assert_eq!(settled.len(), 1);
    let (id, _, record) = &settled[0];
    let id = id.as_str().to_string();
    assert_eq!(record.id, id, "record and spool disagree");
    assert!(mt.spool.dir().join("delivered").join(&id).is_dir());
    let original = mail.iter().find(|m| m.envelope.sender == SENDER).unwrap();
    let eml = std::fs::read_to_string(&original.eml_path).unwrap();
    assert!(eml.contains(&format!("Message-ID: <{id}@")), "{eml}");
    let env_json = std::fs::read_to_string(original.eml_path.with_extension("json")).unwrap();
    assert!(
        env_json.contains(&id),
        "mailbox envelope does not show the id: {env_json}"
    );
    let logs = transcripts_with(&mt, "=== final outcome").await;
    let text = &logs
        .iter()
        .find(|(_, t)| t.contains("=== HTTP request"))
        .unwrap()
        .1;
    assert!(text.contains(&format!("mail {id}, taken ")), "{text}");
    let report_line = text
        .lines()
        .find(|l| l.contains("-- error report to the sender: mail "))
        .unwrap_or_else(|| panic!("{text}"));
    let rid = report_line.rsplit(' ').next().unwrap();
    let report = mail.iter().find(|m| m.envelope.sender.is_empty()).unwrap();
    let report_eml = std::fs::read_to_string(&report.eml_path).unwrap();
    assert!(
        report_eml.contains(&format!("Message-ID: <{rid}@")),
        "{report_eml}"
    );
    assert!(
        report_eml.contains(&format!("Original-Envelope-Id: {id}")),
        "{report_eml}"
    );
    let rid = mailtap::queue::MailId::parse(rid).unwrap();
    let report_meta = mt
        .spool
        .get(&rid)
        .await
        .unwrap()
        .expect("report in the spool");
    assert_eq!(report_meta.record.id, rid.as_str());
    mt.shutdown().await;
}

#[tokio::test]
async fn meta_json_on_disk_agrees_with_mailtap_soon_after_it_goes_quiet() {
    // Guards: a delivered mail's meta.json says delivered (not "active", attempts 0) within a
    // few seconds of the relay going idle, while mailtap still runs.
    let mt = start(&config(""), None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, SEND_COOKIE).await;
    raw_exchange(mt.addr, &roundcube_send("bob@example.org", "", "disk", "x")).await;
    mt.mailbox_with(1).await;
    let settled = settled_mails(&mt.spool).await;
    let id = settled[0].0.as_str().to_string();
    let meta_path = mt.spool.dir().join("delivered").join(&id).join("meta.json");
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        if meta["state"] == "delivered" && meta["attempts"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "meta.json still says state {} attempts {} after 4 s",
            meta["state"],
            meta["attempts"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mt.shutdown().await;
}

/// A sample request with its target pointed at `port` (host name kept; `[resolve]` maps it).
fn retarget(bytes: &[u8], port: u16) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let line_end = text.find("\r\n").unwrap();
    let line = &text[..line_end];
    let fixed = line.replacen(
        "http://webmail.example.test/",
        &format!("http://webmail.example.test:{port}/"),
        1,
    );
    let mut out = fixed.into_bytes();
    out.extend_from_slice(&bytes[line_end..]);
    out
}

#[tokio::test]
async fn an_upload_that_belongs_to_the_send_is_in_its_transcript() {
    // Guards: the attachment's upload (RainLoop) appears in the send's Log with its request
    // and response heads and their times, before the send's own request.
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/webmail");
    let canned: &'static [u8] = Box::leak(
        std::fs::read(format!("{samples}/rainloop-upload.response.http"))
            .unwrap()
            .into_boxed_slice(),
    );
    let (origin, seen) = raw_origin(canned).await;
    let mt = start(&config(""), None).await;
    log_in(mt.addr, webmail::WEBMAIL_HOST, SEND_COOKIE).await;
    let upload = std::fs::read(format!("{samples}/rainloop-upload.http")).unwrap();
    let answer = raw_exchange(mt.addr, &retarget(&upload, origin.port())).await;
    assert!(answer.contains("TempName"), "{answer}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the upload reached the webmail"
    );
    let send = std::fs::read(format!("{samples}/rainloop.http")).unwrap();
    raw_exchange(mt.addr, &retarget(&send, origin.port())).await;
    let logs = transcripts_with(&mt, "=== final outcome").await;
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let text = &logs[0].1;
    let up = text
        .find("=== HTTP upload request (browser 127.0.0.1:")
        .unwrap_or_else(|| panic!("{text}"));
    let up_resp = text
        .find("=== HTTP upload response (webmail -> mailtap")
        .unwrap_or_else(|| panic!("{text}"));
    let send_at = text.find("=== HTTP request (browser").unwrap();
    assert!(up < up_resp && up_resp < send_at, "{text}");
    assert!(text[up..up_resp].contains("/rainloop/?/Upload/"), "{text}");
    assert!(
        text[up..up_resp].contains("-- upload body complete: "),
        "{text}"
    );
    assert!(text[up_resp..send_at].contains("HTTP/1.1 200 OK"), "{text}");
    assert!(
        !text.contains("RL_SESSION=s1"),
        "session cookie leaked:\n{text}"
    );
    let uploaded = heading_time(text, "=== HTTP upload request (browser");
    let sent = heading_time(text, "=== HTTP request (browser");
    assert!(uploaded <= sent, "{text}");
    mt.shutdown().await;
}
