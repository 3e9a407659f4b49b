//! Webmail interception through a running mailtap: every sample replayed over a real socket
//! lands in the durable spool exactly as its expected.json says, the browser gets the webmail's
//! own "sent" answer, and everything that is not a send reaches the webmail byte-exact.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::samples::*;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the fake webmail received it.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// A fake webmail: answers each request with the next canned response (default `200 ok`) and
/// records what it received.
struct Webmail {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    next_response: Arc<Mutex<Option<Vec<u8>>>>,
}

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nwebmail ok\n";

async fn webmail() -> Webmail {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let next_response: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (rx, nx) = (received.clone(), next_response.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (rx, nx) = (rx.clone(), nx.clone());
            tokio::spawn(async move {
                // One request per connection is enough for these tests; bounded loop anyway.
                for _ in 0..100 {
                    let head = read_head(&mut s).await;
                    if head.is_empty() {
                        return;
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let len = content_length(&head).unwrap_or(0);
                    let mut body = vec![0; len];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    rx.lock().unwrap().push(Received { head, body });
                    let response = nx.lock().unwrap().take().unwrap_or_else(|| OK.to_vec());
                    if s.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Webmail {
        addr,
        received,
        next_response,
    }
}

/// The sample's bytes with its request target pointed at `port` (the host name stays, and
/// `[resolve]` sends it to 127.0.0.1); the `Origin` and `Referer` the browser sent name the
/// same port, as they would had the webmail been served there.
fn retarget(bytes: &[u8], port: u16) -> Vec<u8> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&bytes[..head_end]).unwrap();
    let (line, fields) = head.split_once("\r\n").unwrap_or((head, ""));
    let (method, rest) = line.split_once(' ').unwrap();
    let (target, version) = rest.rsplit_once(' ').unwrap();
    let after_scheme = target.strip_prefix("http://").unwrap();
    let (host, path) = after_scheme.split_at(after_scheme.find('/').unwrap_or(after_scheme.len()));
    let fields = fields
        .replace(
            &format!("http://{host}/"),
            &format!("http://{host}:{port}/"),
        )
        .replace(
            &format!("http://{host}\r\n"),
            &format!("http://{host}:{port}\r\n"),
        );
    let fields = match fields.strip_suffix(&format!("http://{host}")) {
        Some(f) => format!("{f}http://{host}:{port}"),
        None => fields,
    };
    let mut out = format!("{method} http://{host}:{port}{path} {version}\r\n{fields}").into_bytes();
    out.extend_from_slice(&bytes[head_end..]);
    out
}

fn sample_hosts() -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for dir in dirs() {
        for f in files(&dir, |f| {
            f.ends_with(".http") && !f.ends_with(".response.http")
        }) {
            let req = parse_request(&dir.join(f));
            hosts.insert(req.uri.host().unwrap().to_string());
        }
    }
    hosts
}

/// `[resolve]` for every sample host, and the self-hosted samples' host named as a webmail.
fn resolve_all() -> String {
    let mut s = String::from("[intercept]\nhosts = [\"webmail.example.test\"]\n[resolve]\n");
    for h in sample_hosts() {
        s.push_str(&format!("\"{h}\" = \"127.0.0.1\"\n"));
    }
    s
}

/// `resolve_all()` plus a configured sender for the sample webmails that send no address
/// (Roundcube, SquirrelMail and RainLoop send an identity id).
fn with_sender() -> String {
    format!(
        "{}\n[senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n",
        resolve_all()
    )
}

/// Replays one sample (uploads first, with their canned responses) and returns the response to
/// the send.
async fn replay(mt: &Running, web: &Webmail, dir: &Path, name: &str) -> String {
    let mut order = files(dir, |f| {
        f.starts_with(&format!("{name}-upload"))
            && f.ends_with(".http")
            && !f.ends_with(".response.http")
    });
    order.push(format!("{name}.http"));
    // The browser logged in through mailtap before it sent: the webmail set the cookies the
    // sample's requests carry.
    let send = parse_request(&dir.join(format!("{name}.http")));
    if let Some(cookie) = send.headers.get("cookie").and_then(|v| v.to_str().ok()) {
        log_in(mt.addr, send.uri.host().unwrap(), cookie).await;
    }
    let mut last = String::new();
    for file in order {
        let canned = dir.join(file.replace(".http", ".response.http"));
        if canned.exists() {
            *web.next_response.lock().unwrap() = Some(std::fs::read(&canned).unwrap());
        }
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        last = raw_exchange(mt.addr, &retarget(&bytes, web.addr.port())).await;
    }
    last
}

/// Every intercepted mail once the relay has handled it, with its spool id.
async fn queued_with_ids(mt: &Running) -> Vec<(mailtap::queue::MailId, mailtap::mail::MailRecord)> {
    settled_mails(&mt.spool)
        .await
        .into_iter()
        .map(|(id, _, r)| (id, r))
        .collect()
}

async fn queued(mt: &Running) -> Vec<mailtap::mail::MailRecord> {
    queued_with_ids(mt)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

async fn conformance(dir: &Path) {
    let web = webmail().await;
    let mt = start(&with_sender(), None).await;
    let names: Vec<String> = files(dir, |f| f.ends_with(".expected.json"))
        .into_iter()
        .map(|f| f.trim_end_matches(".expected.json").to_string())
        .collect();
    assert!(!names.is_empty());
    for name in &names {
        let before = web.received.lock().unwrap().len();
        let uploads = files(dir, |f| {
            f.starts_with(&format!("{name}-upload"))
                && f.ends_with(".http")
                && !f.ends_with(".response.http")
        })
        .len();
        let response = replay(&mt, &web, dir, name).await;
        // The send never reaches the webmail (relay mode); the uploads do.
        assert_eq!(
            web.received.lock().unwrap().len() - before,
            uploads,
            "{name}"
        );
        assert!(
            !response.starts_with("HTTP/1.1 5") && !response.contains("webmail ok"),
            "{name}: {response}"
        );
        let mut want: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let rejected = want.as_object_mut().unwrap().remove("rejected");
        let records = queued(&mt).await;
        let record = records
            .iter()
            .find(|r| as_expected(r) == want)
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no queued record equals expected.json; queued: {:#?}",
                    records.iter().map(as_expected).collect::<Vec<_>>()
                )
            });
        assert_eq!(
            record.rejected.as_ref().map(|r| kind_name(&r.kind)),
            rejected.as_ref().and_then(Value::as_str),
            "{name}"
        );
        assert_eq!(
            record.source.client.ip(),
            std::net::IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(record.source.proxy, mt.addr);
        // Every replayed send carries the session cookie (tests log in first): the stored head
        // keeps the Cookie line, with its value redacted.
        let cookie_lines: Vec<&str> = record
            .http_head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
            .collect();
        assert!(
            !cookie_lines.is_empty()
                && cookie_lines
                    .iter()
                    .all(|l| l.trim_end().ends_with("<redacted>")),
            "{name}: {}",
            record.http_head
        );
        assert!(
            !record.http_response_head.is_empty(),
            "{name}: response head not kept"
        );
    }
    assert_eq!(queued(&mt).await.len(), names.len());
    mt.shutdown().await;
}

#[tokio::test]
async fn shared_samples_land_in_the_spool_as_expected() {
    // Guards the conformance line: ../shared samples through a live proxy equal expected.json.
    let [shared, _] = dirs();
    conformance(&shared).await;
}

#[tokio::test]
async fn own_samples_land_in_the_spool_as_expected() {
    // Guards mailtap's own fixtures (163, SquirrelMail 1.5, old SnappyMail, RainLoop, GB18030…).
    let [_, own] = dirs();
    conformance(&own).await;
}

#[tokio::test]
async fn roundcube_gets_its_own_sent_page() {
    // Guards the relay response: Roundcube's iframe page with _unlock and _id filled in.
    let web = webmail().await;
    let mt = start(&with_sender(), None).await;
    let [shared, _] = dirs();
    let response = replay(&mt, &web, &shared, "roundcube").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("parent.rcmail.iframe_loaded(\"loading1723456800123\")"),
        "{response}"
    );
    assert!(response.contains("sent_successfully("), "{response}");
    mt.shutdown().await;
}

#[tokio::test]
async fn drafts_and_other_posts_reach_the_webmail_byte_exact() {
    // Guards pass-through: drafts, autosaves and non-send posts are forwarded unchanged.
    let web = webmail().await;
    let mt = start(&resolve_all(), None).await;
    let mut count = 0;
    for dir in dirs() {
        for file in files(&dir, |f| f.ends_with(".passthrough.http")) {
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            let original = parse_request(&dir.join(&file));
            let response = raw_exchange(mt.addr, &retarget(&bytes, web.addr.port())).await;
            assert!(response.contains("webmail ok"), "{file}: {response}");
            let got = web.received.lock().unwrap().last().cloned().unwrap();
            assert_eq!(got.body, original.body, "{file}: body changed");
            // Every end-to-end header arrives with its value (hop-by-hop ones are dropped).
            for (name, value) in &original.headers {
                if ["proxy-connection", "connection", "keep-alive", "host"].contains(&name.as_str())
                {
                    continue;
                }
                let line = format!("{}: {}", name, value.to_str().unwrap()).to_ascii_lowercase();
                assert!(
                    got.head.to_ascii_lowercase().contains(&line),
                    "{file}: {line} missing in {}",
                    got.head
                );
            }
            count += 1;
        }
    }
    assert!(count >= 6, "only {count} pass-through fixtures");
    assert!(queued(&mt).await.is_empty());
    // A POST to a webmail host that no rule matches is forwarded byte-exact too.
    let body = "_task=settings&_action=save-pref&x=%2B1";
    let raw = format!(
        "POST http://webmail.example.test:{}/roundcube/?_task=settings HTTP/1.1\r\nHost: webmail.example.test\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        web.addr.port(),
        body.len()
    );
    let response = raw_exchange(mt.addr, raw.as_bytes()).await;
    assert!(response.contains("webmail ok"), "{response}");
    assert_eq!(
        web.received.lock().unwrap().last().unwrap().body,
        body.as_bytes()
    );
    mt.shutdown().await;
}

/// The session cookie of the hand-made sends below; the tests log in with it first.
const COOKIE: &str = "sess=c0ffee";

/// Starts mailtap with `config` and logs the browser in to each of `hosts` (which the config
/// resolves to loopback), so that mailtap has seen the webmail set [`COOKIE`].
async fn start_logged_in(config: &str, hosts: &[&str]) -> Running {
    let mt = start(config, None).await;
    for host in hosts {
        log_in(mt.addr, host, COOKIE).await;
    }
    mt
}

fn form_send(port: u16, to: &str, subject: &str) -> Vec<u8> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let body = format!(
        "_token=t&_task=mail&_action=send&_id=42&_from=1&_to={}&_cc=&_bcc=&_subject={}&_is_html=0&_message=hello&_draft=",
        enc(to),
        enc(subject)
    );
    format!(
        "POST http://webmail.example.test:{port}/roundcube/?_task=mail&_unlock=loading7&_framed=1 HTTP/1.1\r\n\
         Host: webmail.example.test\r\nCookie: {COOKIE}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn invalid_and_hostile_addresses_are_stored_rejected_with_the_reason() {
    // Guards "nothing is lost": bad input is queued rejected (for an error report), never dropped,
    // and CR/LF in values never becomes a header or an SMTP command.
    let web = webmail().await;
    let mt = start_logged_in(&with_sender(), &["webmail.example.test"]).await;
    let port = web.addr.port();
    raw_exchange(mt.addr, &form_send(port, "bob@example.org, chengli@", "ok")).await;
    raw_exchange(mt.addr, &form_send(port, "", "nobody")).await;
    raw_exchange(
        mt.addr,
        &form_send(
            port,
            "bob@example.org\r\nRCPT TO:<evil@example.net>",
            "x\r\nBcc: evil@example.net",
        ),
    )
    .await;
    raw_exchange(mt.addr, &form_send(port, "bob@example.org", "fine")).await;
    let records = queued(&mt).await;
    assert_eq!(records.len(), 4);
    let by_subject = |s: &str| records.iter().find(|r| r.subject.starts_with(s)).unwrap();
    // One invalid recipient is refused on its own; the mail itself is not rejected.
    let bad = by_subject("ok");
    assert!(bad.rejected.is_none(), "{:?}", bad.rejected);
    assert_eq!(
        bad.invalid_recipients.len(),
        1,
        "{:?}",
        bad.invalid_recipients
    );
    assert_eq!(bad.invalid_recipients[0].addr, "chengli@");
    assert!(bad.invalid_recipients[0].reason.contains("chengli@"));
    let none = by_subject("nobody")
        .rejected
        .as_ref()
        .expect("no recipients not rejected");
    assert!(none.reason.contains("no recipients"), "{}", none.reason);
    let hostile = by_subject("x");
    assert!(
        hostile.rejected.is_some(),
        "hostile CR/LF recipient accepted"
    );
    let fine = by_subject("fine");
    assert!(fine.rejected.is_none(), "{:?}", fine.rejected);
    assert_eq!(fine.sender, "lilei@example.com");
    // The stored message of the hostile one has no injected header.
    let (id, _) = queued_with_ids(&mt)
        .await
        .into_iter()
        .find(|(_, r)| r.subject.starts_with('x'))
        .unwrap();
    let eml = std::fs::read(mt.spool.message_path(&id).unwrap()).unwrap();
    let text = String::from_utf8_lossy(&eml);
    assert!(
        !text.contains("\r\nBcc:") && !text.contains("\r\nRCPT TO"),
        "{text}"
    );
    assert!(
        web.received.lock().unwrap().is_empty(),
        "a send reached the webmail"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_cap_get_413_and_are_not_forwarded() {
    // Guards [limits].max_intercept_body_bytes: 413 with a clear text, nothing forwarded half.
    let web = webmail().await;
    let config = format!(
        "{}\n[limits]\nmax_intercept_body_bytes = 4096\n",
        resolve_all()
    );
    let mt = start_logged_in(&config, &["webmail.example.test"]).await;
    let big = "y".repeat(10_000);
    let response = raw_exchange(
        mt.addr,
        &form_send(web.addr.port(), "bob@example.org", &big),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("max_intercept_body_bytes"), "{response}");
    assert!(web.received.lock().unwrap().is_empty());
    assert!(queued(&mt).await.is_empty());
    mt.shutdown().await;
}

#[tokio::test]
async fn a_config_rule_intercepts_a_made_up_webmail() {
    // Guards [[rule]] from the config file: a new webmail works without recompiling.
    let web = webmail().await;
    let config = format!(
        "{}\n\"mail.made-up.test\" = \"127.0.0.1\"\n\
         [[rule]]\nname = \"made-up\"\nhosts = [\"mail.made-up.test\"]\npath = \"^/api/send$\"\ndecoder = \"json\"\n\
         sender = \"me@made-up.test\"\n\
         [rule.fields]\nto = \"rcpt\"\nsubject = \"title\"\ntext = \"body\"\n\
         [rule.response]\ncontent_type = \"application/json\"\nbody = '{{\"ok\":true}}'\n",
        resolve_all()
    );
    let mt = start_logged_in(&config, &["mail.made-up.test"]).await;
    let body =
        r#"{"rcpt":"Bob <bob@example.org>; carol@example.net","title":"made up","body":"hi"}"#;
    let raw = format!(
        "POST http://mail.made-up.test:{}/api/send HTTP/1.1\r\nHost: mail.made-up.test\r\nCookie: {COOKIE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        web.addr.port(),
        body.len()
    );
    let response = raw_exchange(mt.addr, raw.as_bytes()).await;
    assert!(response.ends_with("{\"ok\":true}"), "{response}");
    let records = queued(&mt).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.source.rule, "made-up");
    assert_eq!(r.sender, "me@made-up.test");
    assert_eq!(
        r.to.iter().map(|m| m.addr.as_str()).collect::<Vec<_>>(),
        ["bob@example.org", "carol@example.net"]
    );
    assert_eq!(r.to[0].name.as_deref(), Some("Bob"));
    assert_eq!(r.text.as_deref(), Some("hi"));
    assert!(web.received.lock().unwrap().is_empty());
    mt.shutdown().await;
}

#[tokio::test]
async fn tee_forwards_and_queues_observe_only_forwards() {
    // Guards the rule actions: tee = the webmail gets the send unchanged AND a copy is queued;
    // observe = the webmail gets it and nothing is queued.
    let web = webmail().await;
    let rule = |name: &str, action: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\nhosts = [\"{name}.example.test\"]\npath = \"^/send$\"\ndecoder = \"form\"\n\
             action = \"{action}\"\nsender = \"me@example.test\"\n[rule.fields]\nto = \"to\"\nsubject = \"subject\"\ntext = \"body\"\n"
        )
    };
    let config = format!(
        "[resolve]\n\"tee.example.test\" = \"127.0.0.1\"\n\"observe.example.test\" = \"127.0.0.1\"\n{}{}",
        rule("tee", "tee"),
        rule("observe", "observe")
    );
    let mt = start_logged_in(&config, &["tee.example.test", "observe.example.test"]).await;
    for host in ["tee", "observe"] {
        let body = format!("to=bob%40example.org&subject={host}&body=hi");
        let raw = format!(
            "POST http://{host}.example.test:{}/send HTTP/1.1\r\nHost: {host}.example.test\r\n\
             Cookie: {COOKIE}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            web.addr.port(),
            body.len()
        );
        let response = raw_exchange(mt.addr, raw.as_bytes()).await;
        assert!(
            response.contains("webmail ok"),
            "{host}: the webmail's own answer: {response}"
        );
        let got = web.received.lock().unwrap().last().cloned().unwrap();
        assert_eq!(got.body, body.as_bytes(), "{host}: forwarded unchanged");
    }
    let records = queued(&mt).await;
    assert_eq!(records.len(), 1, "only the tee rule queues: {records:?}");
    assert_eq!(records[0].subject, "tee");
    assert_eq!(records[0].source.rule, "tee");
    mt.shutdown().await;
}

#[tokio::test]
async fn a_send_without_any_sender_is_refused_not_swallowed() {
    // Guards "nothing silently dropped": no sender address anywhere → the browser hears that
    // the mail was not sent (it could neither be relayed nor reported), nothing is queued.
    let web = webmail().await;
    let mt = start_logged_in(&resolve_all(), &["webmail.example.test"]).await;
    let response = raw_exchange(
        mt.addr,
        &form_send(web.addr.port(), "bob@example.org", "who am i"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 422"), "{response}");
    assert!(
        response.contains("NOT sent") && response.contains("[senders]"),
        "{response}"
    );
    assert!(queued(&mt).await.is_empty());
    assert!(web.received.lock().unwrap().is_empty());
    mt.shutdown().await;
}

#[tokio::test]
async fn a_relay_rule_without_a_response_still_answers_itself() {
    // Guards against double sending: a relay rule with no [rule.response] gets mailtap's own
    // answer; the webmail never sees the send.
    let web = webmail().await;
    let config = format!(
        "{}\n\"plain.example.test\" = \"127.0.0.1\"\n[[rule]]\nname = \"plain\"\nhosts = [\"plain.example.test\"]\n\
         path = \"^/send$\"\ndecoder = \"form\"\nsender = \"me@example.test\"\n[rule.fields]\nto = \"to\"\nsubject = \"subject\"\n",
        resolve_all()
    );
    let mt = start_logged_in(&config, &["plain.example.test"]).await;
    let body = "to=bob%40example.org&subject=hi";
    let raw = format!(
        "POST http://plain.example.test:{}/send HTTP/1.1\r\nHost: plain.example.test\r\n\
         Cookie: {COOKIE}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        web.addr.port(),
        body.len()
    );
    let response = raw_exchange(mt.addr, raw.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("queued for delivery"),
        "{response}"
    );
    assert!(
        web.received.lock().unwrap().is_empty(),
        "the webmail got the send too"
    );
    assert_eq!(queued(&mt).await.len(), 1);
    mt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_large_send_is_decoded_off_the_runtime_thread_and_kept_whole() {
    // Guards the large-body path (decode + render under block_in_place, as in the product's
    // one-worker runtime): a 1.5 MiB message body is queued whole, and the proxy keeps serving
    // another client meanwhile.
    let web = webmail().await;
    let mt = start_logged_in(&with_sender(), &["webmail.example.test"]).await;
    let text: String = (0..30_000)
        .map(|i| format!("line {i:05} of the report\n"))
        .collect();
    assert!(text.len() > 512 * 1024);
    let body = format!(
        "_token=t&_task=mail&_action=send&_id=42&_from=1&_to=bob%40example.org&_cc=&_bcc=&_subject=big&_is_html=0&_message={}&_draft=",
        percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
    );
    let port = web.addr.port();
    let request = format!(
        "POST http://webmail.example.test:{port}/roundcube/?_task=mail&_unlock=loading7&_framed=1 HTTP/1.1\r\n\
         Host: webmail.example.test\r\nCookie: {COOKIE}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let get = format!(
        "GET http://webmail.example.test:{port}/inbox HTTP/1.1\r\nHost: webmail.example.test\r\n\r\n"
    );
    let (sent, other) = tokio::join!(
        raw_exchange(mt.addr, request.as_bytes()),
        raw_exchange(mt.addr, get.as_bytes())
    );
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    let records = queued(&mt).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].text.as_deref().map(str::len), Some(text.len()));
    assert!(records[0].text.as_deref() == Some(text.as_str()));
    mt.shutdown().await;
}
