//! Who can make mailtap send mail (issue 10, High 1), over real sockets: a send is taken only on
//! a host the user named as a webmail (or a hosted webmail's own host), only when the webmail's
//! own page made it (not another site's), and only with a session cookie that webmail set
//! through mailtap. Every refused send reaches the webmail byte for byte, and nothing is queued
//! or delivered.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST: &str = "webmail.example.test";
const COOKIE: &str = "roundcube_sessid=77aa; roundcube_sessauth=s3cr3t";

/// One request as the fake webmail received it: head text and body bytes.
type Received = (String, Vec<u8>);

/// A fake webmail origin that records each request and answers `webmail ok` (closing).
async fn webmail() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let rec = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let head = String::from_utf8_lossy(&read_head(&mut s).await).into_owned();
                let len = content_length(&head).unwrap_or(0);
                let mut body = vec![0; len];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                rec.lock().unwrap().push((head, body));
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nwebmail ok")
                    .await;
            });
        }
    });
    (addr, got)
}

/// `[resolve]` for the webmail and attacker hosts, built-in SMTP as the upstream, plus `extra`.
fn config(extra: &str) -> String {
    format!(
        "[resolve]\n\"{HOST}\" = \"127.0.0.1\"\n\"attacker.test\" = \"127.0.0.1\"\n\
         [relay]\nconsole = false\n{extra}"
    )
}

/// The sender configured for the webmail, which also names it as a webmail.
const NAMED: &str = "[senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n";

/// A Roundcube-shaped send (form) to `host:port` with `extra` header lines.
fn roundcube(host: &str, port: u16, extra: &str) -> (Vec<u8>, String) {
    let body = "_token=t&_task=mail&_action=send&_id=1&_from=1&_to=victim%40example.org\
                &_subject=pay&_is_html=0&_message=wire+the+money&_draft="
        .to_string();
    let req = format!(
        "POST http://{host}:{port}/?_task=mail&_unlock=loading1&_framed=1 HTTP/1.1\r\n\
         Host: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (req.into_bytes(), body)
}

/// A SnappyMail-shaped send (JSON) to `host:port` with `extra` header lines.
fn snappymail(host: &str, port: u16, extra: &str) -> (Vec<u8>, String) {
    let body = r#"{"Action":"SendMessage","IdentityID":"","From":"CEO <ceo@bank.example>","To":"victim@example.org","Subject":"pay","Text":"wire the money","TextIsHtml":0,"Attachments":[]}"#.to_string();
    let req = format!(
        "POST http://{host}:{port}/?/Json/&q[]=/0/ HTTP/1.1\r\nHost: {host}:{port}\r\n\
         Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (req.into_bytes(), body)
}

/// Sends `req`; asserts the webmail got it with `body` unchanged and the browser its answer.
async fn assert_forwarded(
    mt: &Running,
    got: &Arc<Mutex<Vec<Received>>>,
    (req, body): (Vec<u8>, String),
    what: &str,
) {
    let before = got.lock().unwrap().len();
    let answer = raw_exchange(mt.addr, &req).await;
    assert!(answer.ends_with("webmail ok"), "{what}: {answer}");
    let all = got.lock().unwrap().clone();
    assert_eq!(all.len(), before + 1, "{what}: the webmail got it once");
    let (head, received) = &all[before];
    assert_eq!(received, body.as_bytes(), "{what}: body changed");
    assert!(head.starts_with("POST /"), "{what}: {head}");
}

/// Waits a moment for anything the relay might do, then asserts nothing was queued or delivered.
async fn assert_nothing_sent(mt: &Running) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = mailtap::queue::MailState::ALL
        .iter()
        .map(|s| mt.spool.list(*s).len())
        .sum::<usize>();
    assert_eq!(queued, 0, "a mail was queued");
    assert!(mt.mailbox().is_empty(), "a mail reached the SMTP server");
}

#[tokio::test]
async fn zero_config_takes_no_self_hosted_webmail_send() {
    // Guards "any-host rules intercept only named hosts": unnamed, a logged-in Roundcube or
    // SnappyMail send passes to the webmail; named via [intercept].hosts it is taken.
    let (web, got) = webmail().await;
    let mt = start(&config(""), None).await;
    log_in(mt.addr, HOST, COOKIE).await;
    let cookie = format!("Cookie: {COOKIE}\r\n");
    assert_forwarded(&mt, &got, roundcube(HOST, web.port(), &cookie), "roundcube").await;
    assert_forwarded(
        &mt,
        &got,
        snappymail(HOST, web.port(), &cookie),
        "snappymail",
    )
    .await;
    assert_nothing_sent(&mt).await;
    mt.shutdown().await;

    let mt = start(
        &config(&format!(
            "[intercept]\nhosts = [\"*.EXAMPLE.test\"]\n{NAMED}"
        )),
        None,
    )
    .await;
    log_in(mt.addr, HOST, COOKIE).await;
    let answer = raw_exchange(mt.addr, &roundcube(HOST, web.port(), &cookie).0).await;
    assert!(answer.contains("sent_successfully"), "{answer}");
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);
    mt.shutdown().await;
}

#[tokio::test]
async fn cross_site_sends_go_to_the_webmail_unchanged() {
    // Guards the provenance check: a send another site's page made (Sec-Fetch-Site cross-site
    // or same-site, a foreign or null Origin, a foreign Referer) is never taken, even with the
    // session cookie; the same send from the webmail's own page is.
    let (web, got) = webmail().await;
    let port = web.port();
    let mt = start(&config(NAMED), None).await;
    log_in(mt.addr, HOST, COOKIE).await;
    let cookie = format!("Cookie: {COOKIE}\r\n");
    for hostile in [
        "Sec-Fetch-Site: cross-site\r\n".to_string(),
        "Sec-Fetch-Site: same-site\r\n".to_string(),
        "Origin: http://attacker.test\r\n".to_string(),
        "Origin: null\r\n".to_string(),
        format!("Origin: http://{HOST}:{}\r\n", port + 1),
        "Referer: http://attacker.test/page\r\n".to_string(),
        format!("Sec-Fetch-Site: same-origin\r\nOrigin: http://{HOST}.attacker.test:{port}\r\n"),
    ] {
        let extra = format!("{cookie}{hostile}");
        assert_forwarded(&mt, &got, roundcube(HOST, port, &extra), &hostile).await;
        assert_forwarded(&mt, &got, snappymail(HOST, port, &extra), &hostile).await;
    }
    assert_nothing_sent(&mt).await;
    let own = format!(
        "{cookie}Sec-Fetch-Site: same-origin\r\nOrigin: http://{HOST}:{port}\r\n\
         Referer: http://{HOST}:{port}/?_task=mail&_action=compose\r\n"
    );
    let answer = raw_exchange(mt.addr, &roundcube(HOST, port, &own).0).await;
    assert!(answer.contains("sent_successfully"), "{answer}");
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);
    mt.shutdown().await;
}

#[tokio::test]
async fn a_send_without_a_session_mailtap_saw_opened_is_forwarded() {
    // Guards the session binding: no cookie, or a cookie the webmail never set through mailtap,
    // → forwarded unchanged; after a login through mailtap → taken; after the webmail deletes
    // the cookie (logout) → forwarded again.
    let (web, got) = webmail().await;
    let port = web.port();
    let mt = start(&config(NAMED), None).await;
    assert_forwarded(&mt, &got, roundcube(HOST, port, ""), "no cookie").await;
    let cookie = format!("Cookie: {COOKIE}\r\n");
    assert_forwarded(
        &mt,
        &got,
        roundcube(HOST, port, &cookie),
        "cookie never seen",
    )
    .await;
    // A cookie set by another host (the attacker's page) does not count for the webmail.
    log_in(mt.addr, "attacker.test", COOKIE).await;
    assert_forwarded(
        &mt,
        &got,
        roundcube(HOST, port, &cookie),
        "cookie from another host",
    )
    .await;
    assert_nothing_sent(&mt).await;

    log_in(mt.addr, HOST, COOKIE).await;
    let answer = raw_exchange(mt.addr, &roundcube(HOST, port, &cookie).0).await;
    assert!(answer.contains("sent_successfully"), "{answer}");
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);

    log_in(mt.addr, HOST, "roundcube_sessid=; roundcube_sessauth=").await;
    assert_forwarded(&mt, &got, roundcube(HOST, port, &cookie), "after logout").await;
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);
    mt.shutdown().await;
}

#[tokio::test]
async fn the_home_page_lists_the_named_webmails_and_how_to_add_one() {
    // Guards the home page: the named hosts (from every place) and the [intercept] hint.
    let empty = start(&config(""), None).await;
    let home = raw_exchange(empty.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        home.contains("no self-hosted webmail is intercepted"),
        "{home}"
    );
    assert!(home.contains("[intercept]\nhosts = ["), "{home}");
    empty.shutdown().await;
    let mt = start(
        &config(&format!(
            "[intercept]\nhosts = [\"*.Mail.Example.org\"]\n{NAMED}"
        )),
        None,
    )
    .await;
    let home = raw_exchange(mt.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        home.contains("<li><code>*.mail.example.org</code></li>")
            && home.contains("<li><code>webmail.example.test</code></li>"),
        "{home}"
    );
    mt.shutdown().await;
}

#[tokio::test]
async fn a_hosted_webmail_page_on_a_sibling_host_is_its_own() {
    // Guards the sibling rule: QQ Mail's page on mail.qq.com posting to set1.mail.qq.com (one
    // pattern of its rule, *.mail.qq.com, covers both) is taken; the same post from a page on
    // another qq.com host is not.
    let (web, got) = webmail().await;
    let port = web.port();
    let mt = start(
        "[resolve]\n\"*.qq.com\" = \"127.0.0.1\"\n[relay]\nconsole = false\n",
        None,
    )
    .await;
    log_in(
        mt.addr,
        "set1.mail.qq.com",
        "qm_username=lilei.example; sid=secret",
    )
    .await;
    let sample = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/webmail/qqmail-gbk.http"
    ))
    .unwrap();
    let text = String::from_utf8_lossy(&sample).into_owned();
    let send = |page: &str| {
        let head_end = sample.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = text[..head_end].replacen(
            "http://set1.mail.qq.com/",
            &format!("http://set1.mail.qq.com:{port}/"),
            1,
        );
        let mut out =
            format!("{head}\r\nSec-Fetch-Site: same-site\r\nOrigin: http://{page}:{port}")
                .into_bytes();
        out.extend_from_slice(&sample[head_end..]);
        let body = String::from_utf8_lossy(&sample[head_end + 4..]).into_owned();
        (out, body)
    };
    let (foreign, body) = send("blog.qq.com");
    let before = got.lock().unwrap().len();
    let answer = raw_exchange(mt.addr, &foreign).await;
    assert!(answer.ends_with("webmail ok"), "{answer}");
    assert_eq!(got.lock().unwrap()[before].1, body.as_bytes());
    assert_nothing_sent(&mt).await;
    let answer = raw_exchange(mt.addr, &send("mail.qq.com").0).await;
    assert!(answer.contains("\"errcode\""), "{answer}");
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);
    mt.shutdown().await;
}

#[tokio::test]
async fn require_session_false_takes_a_same_site_send_without_a_login() {
    // Guards the documented opt-out: with [intercept].require_session = false a cookie-less
    // send on a named host is taken, while a cross-site one is still forwarded.
    let (web, got) = webmail().await;
    let port = web.port();
    let mt = start(
        &config(&format!("[intercept]\nrequire_session = false\n{NAMED}")),
        None,
    )
    .await;
    let hostile = "Origin: http://attacker.test\r\n";
    assert_forwarded(&mt, &got, roundcube(HOST, port, hostile), "cross-site").await;
    assert_nothing_sent(&mt).await;
    let answer = raw_exchange(mt.addr, &roundcube(HOST, port, "").0).await;
    assert!(answer.contains("sent_successfully"), "{answer}");
    assert_eq!(settled_mails(&mt.spool).await.len(), 1);
    mt.shutdown().await;
}
