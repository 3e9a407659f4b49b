//! mailtap in a real headless Chromium (Debian's `chromium`), for what only a browser can show:
//! how the PAC file routes every built-in webmail host, and that a hostile web page cannot make
//! mailtap send mail (issue 10, High 1; issue 9's PAC defect).
//!
//! Everything stays on loopback: Chromium's `--host-resolver-rules` sends every name to a local
//! fake origin, and mailtap's `[resolve]` does the same for the hosts it must reach. Without
//! Chromium the tests print why and pass locally; under `CI=true` they fail (the shared gate).

mod common;
#[path = "common/gate.rs"]
mod gate;
mod mitm_support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mitm_support::LogCapture;
use tokio::net::TcpListener;

/// Bound for one browser run (start-up included).
const BROWSER_WAIT: Duration = Duration::from_secs(90);

/// The Chromium binary, or `None` (skip) when absent and this is not CI.
fn chromium() -> Option<std::path::PathBuf> {
    let found = gate::find_executable(&gate::search_dirs(), "chromium")
        .ok_or_else(|| "no `chromium` on PATH (install the chromium package)".to_string());
    gate::act(gate::gate(gate::ci_env(), found, true, ""))
}

/// Runs headless Chromium on `url` with `args`; returns the dumped DOM and stderr.
async fn browse(chromium: &std::path::Path, args: &[String], url: &str) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let out = tokio::time::timeout(BROWSER_WAIT, child.wait_with_output())
        .await
        .expect("chromium finished in time")
        .expect("chromium output");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request as the fake origin received it.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    /// The `Host` header without its port.
    host: String,
    path: String,
    body: Vec<u8>,
    cookie: Option<String>,
}

/// A fake origin for every host (told apart by `Host`): `/login?next=URL` sets a session cookie
/// and sends the browser on; `/compose` is a webmail page whose script submits a Roundcube send
/// to its own host; `/evil` is the attacker's page (`evil`); anything else answers
/// `origin saw <host>`. Records every request.
/// The attacker's page, set once the origin's port is known.
type Page = Arc<Mutex<String>>;

async fn origin() -> (SocketAddr, Arc<Mutex<Vec<Hit>>>, Page) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let evil: Page = Arc::default();
    let page = evil.clone();
    let rec = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (rec, evil) = (rec.clone(), evil.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (rec, evil) = (rec.clone(), evil.clone());
                    async move { Ok::<_, hyper::Error>(answer(req, &rec, &evil).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits, page)
}

async fn answer(
    req: Request<Incoming>,
    rec: &Mutex<Vec<Hit>>,
    evil: &Page,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let host = header("host").unwrap_or_default();
    let bare = host.split(':').next().unwrap_or("").to_string();
    rec.lock().unwrap().push(Hit {
        method: parts.method.to_string(),
        host: bare.clone(),
        path: parts.uri.path().to_string(),
        body: body.to_vec(),
        cookie: header("cookie"),
    });
    let html = |s: String| {
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(s)))
            .unwrap()
    };
    match parts.uri.path() {
        "/login" => {
            let next = parts
                .uri
                .query()
                .and_then(|q| q.strip_prefix("next="))
                .unwrap_or("/");
            Response::builder()
                .header("content-type", "text/html")
                .header("set-cookie", "roundcube_sessid=b1nd; Path=/; HttpOnly")
                .body(Full::new(Bytes::from(format!(
                    "<html><body>logged in<script>location.href = {next:?};</script></body></html>"
                ))))
                .unwrap()
        }
        "/compose" => html(format!(
            "<html><body><form id=f method=post action=\"/?_task=mail&_unlock=loading1&_framed=1\">\
             {}</form><script>document.getElementById('f').submit();</script></body></html>",
            form_fields("Legit send")
        )),
        "/evil" => html(evil.lock().unwrap().clone()),
        _ => html(format!("<html><body>origin saw {bare}</body></html>")),
    }
}

/// Hidden inputs of a Roundcube send with `subject`.
fn form_fields(subject: &str) -> String {
    [
        ("_token", "t"),
        ("_task", "mail"),
        ("_action", "send"),
        ("_id", "1"),
        ("_from", "1"),
        ("_to", "victim@example.org"),
        ("_subject", subject),
        ("_is_html", "0"),
        ("_message", "wire the money"),
        ("_draft", ""),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=hidden name={k} value=\"{v}\">"))
    .collect()
}

/// mailtap's built-in mailbox and spool are empty (after a moment for the relay).
async fn assert_nothing_sent(mt: &common::Running) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued: usize = mailtap::queue::MailState::ALL
        .iter()
        .map(|s| mt.spool.list(*s).len())
        .sum();
    assert_eq!(queued, 0, "a mail was queued");
    assert!(mt.mailbox().is_empty(), "a mail reached the SMTP server");
}

#[tokio::test]
async fn chromium_routes_every_builtin_webmail_host_through_the_pac() {
    // Guards the PAC as Chromium evaluates it: every built-in webmail host — mail.163.com
    // itself included (issue 9) — goes through mailtap, loopback and an unknown host go
    // direct. No host is in [resolve]: the PAC's hosts come from the rules alone.
    let Some(chromium) = chromium() else {
        return;
    };
    let logs = LogCapture::default();
    let _guard = logs.install();
    let (direct, hits, page_slot) = origin().await;
    // A send body over the cap: mailtap answers 413 itself (logging the host) and dials
    // nothing, so no name needs resolving beyond loopback.
    let mt = common::start("[limits]\nmax_intercept_body_bytes = 1024\n", None).await;
    let through = [
        ("mail.163.com", "/js6/s?func=mbox:compose"),
        ("hw.mail.163.com", "/js6/s?func=mbox:compose"),
        ("mail.126.com", "/js6/s?func=mbox:compose"),
        ("hz.mail.126.com", "/js6/s?func=mbox:compose"),
        ("mail.yeah.net", "/js6/s?func=mbox:compose"),
        ("a.mail.yeah.net", "/js6/s?func=mbox:compose"),
        ("mail.qq.com", "/cgi-bin/compose_send"),
        ("set1.mail.qq.com", "/cgi-bin/compose_send"),
        ("exmail.qq.com", "/cgi-bin/compose_send"),
    ];
    // The list covers every built-in host pattern: each exact host, each `*.domain`'s domain
    // and a name under it.
    for pattern in mailtap::intercept::RuleSet::builtin()
        .unwrap()
        .hosts_for_https()
    {
        let d = pattern.domain();
        assert!(
            through.iter().any(|(h, _)| *h == d),
            "{pattern} itself not tried"
        );
        if pattern.is_wildcard() {
            assert!(
                through.iter().any(|(h, _)| h.ends_with(&format!(".{d}"))),
                "no name under {pattern} tried"
            );
        }
    }
    let port = direct.port();
    let unknown = format!("http://unknown-host.test:{port}/js6/s?func=mbox:compose");
    let loopback = format!("http://127.0.0.1:{port}/js6/s?func=mbox:compose");
    let mut urls: Vec<String> = through
        .iter()
        .map(|(h, p)| format!("http://{h}{p}"))
        .collect();
    urls.push(unknown);
    urls.push(loopback);
    let page = format!(
        "<html><body><script>\
         const big = 'a=' + 'x'.repeat(4096);\
         Promise.allSettled({urls:?}.map(u => fetch(u, {{method: 'POST', mode: 'no-cors', \
           headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: big}})))\
           .then(() => {{ document.body.innerHTML = '<p id=done>done</p>'; }});\
         </script></body></html>"
    );
    // Served from loopback (which the PAC sends direct): Chromium lets a loopback page reach
    // hosts that resolve to loopback, which a public or data: page may not.
    *page_slot.lock().unwrap() = page;
    let page_url = format!("http://127.0.0.1:{port}/evil");
    let (dom, stderr) = browse(
        &chromium,
        &[
            format!("--proxy-pac-url=http://{}/proxy.pac", mt.addr),
            format!("--host-resolver-rules=MAP * 127.0.0.1:{port}, EXCLUDE 127.0.0.1"),
        ],
        &page_url,
    )
    .await;
    assert!(dom.contains("id=\"done\""), "page ran\n{dom}\n{stderr}");
    let log = logs.text();
    let hits = hits.lock().unwrap().clone();
    for (host, _) in through {
        assert!(
            log.lines()
                .any(|l| l.contains("over the limit: 413") && l.contains(&format!("host={host} "))),
            "{host} did not arrive at mailtap\n{log}\n{stderr}"
        );
        assert!(
            hits.iter().all(|h| h.host != host),
            "{host} went direct: {hits:?}"
        );
    }
    for host in ["unknown-host.test", "127.0.0.1"] {
        assert!(
            hits.iter().any(|h| h.host == host && h.method == "POST"),
            "{host} did not go direct: {hits:?}\n{stderr}"
        );
        assert!(
            !log.contains(&format!("host={host} ")),
            "{host} went through mailtap\n{log}"
        );
    }
    mt.shutdown().await;
}

#[tokio::test]
async fn a_hostile_page_cannot_make_mailtap_send_mail() {
    // Guards issue 10 High 1 in a real browser: a logged-in user visits a page on another
    // site that posts a Roundcube form and SnappyMail-shaped JSON (fetch, no Content-Type) to a
    // listed webmail and to an unlisted host: no mail leaves, and the listed webmail receives
    // each send unchanged (its own CSRF check decides). A same-origin send then is relayed, so
    // the setup can send.
    let Some(chromium) = chromium() else {
        return;
    };
    let (web, hits, evil) = origin().await;
    let port = web.port();
    let listed = format!("http://webmail.example.test:{port}");
    let unlisted = format!("http://unlisted-webmail.test:{port}");
    let json = r#"{"Action":"SendMessage","IdentityID":"","From":"CEO <ceo@bank.example>","To":"victim@example.org","Subject":"json","Text":"wire the money","TextIsHtml":0,"Attachments":[]}"#;
    let form_body = "_token=t&_task=mail&_action=send&_id=1&_from=1&_to=victim%40example.org\
                     &_subject=fetch&_is_html=0&_message=wire&_draft=";
    *evil.lock().unwrap() = format!(
        "<html><body><form id=f method=post action=\"{listed}/?_task=mail&_unlock=loading1&_framed=1\">{fields}</form>\
         <script>\
         const json = {json:?}, form = {form_body:?};\
         const shots = [];\
         for (const base of [{listed:?}, {unlisted:?}]) {{\
           shots.push(fetch(base + '/?/Json/&q[]=/0/', {{method: 'POST', mode: 'no-cors', credentials: 'include', body: new Blob([json])}}));\
           shots.push(fetch(base + '/?_task=mail&_unlock=loading2&_framed=1', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
             headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: form}}));\
         }}\
         Promise.allSettled(shots).then(() => document.getElementById('f').submit());\
         </script></body></html>",
        fields = form_fields("form")
    );
    // Only webmail.example.test is named; the unlisted host and the attacker resolve too.
    let mt = common::start(
        "[intercept]\nhosts = [\"webmail.example.test\"]\n\
         [senders]\n\"webmail.example.test\" = \"lilei@example.com\"\n\
         [resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         \"unlisted-webmail.test\" = \"127.0.0.1\"\n\"attacker.test\" = \"127.0.0.1\"\n\
         [relay]\nconsole = false\n",
        None,
    )
    .await;
    let proxy = [
        format!("--proxy-server=http://{}", mt.addr),
        "--proxy-bypass-list=<-loopback>".to_string(),
    ];
    // The user logs in to the webmail (through mailtap), then lands on the attacker's page.
    let start = format!("{listed}/login?next=http://attacker.test:{port}/evil");
    let (dom, stderr) = browse(&chromium, &proxy, &start).await;
    assert!(
        dom.contains("origin saw webmail.example.test"),
        "the form navigation ended on the webmail\n{dom}\n{stderr}"
    );
    assert_nothing_sent(&mt).await;
    let hits_now = hits.lock().unwrap().clone();
    let posts: Vec<&Hit> = hits_now.iter().filter(|h| h.method == "POST").collect();
    // Each fetch reached its host with the body the page sent (the webmail decides).
    let want: [(&str, &str, &[u8]); 4] = [
        ("webmail.example.test", "/", json.as_bytes()),
        ("webmail.example.test", "/", form_body.as_bytes()),
        ("unlisted-webmail.test", "/", json.as_bytes()),
        ("unlisted-webmail.test", "/", form_body.as_bytes()),
    ];
    for (host, path, body) in want {
        assert!(
            posts
                .iter()
                .any(|h| h.host == *host && h.path == *path && h.body == *body),
            "{host} did not get {:?} unchanged: {posts:#?}",
            String::from_utf8_lossy(body)
        );
    }
    // The top-level form submission (which carries the session cookie) reached the webmail.
    assert!(
        posts.iter().any(|h| h.host == "webmail.example.test"
            && String::from_utf8_lossy(&h.body).contains("_subject=form")
            && h.cookie.as_deref() == Some("roundcube_sessid=b1nd")),
        "{posts:#?}"
    );

    // The same user on the webmail's own compose page: mailtap relays it.
    let start = format!("{listed}/login?next={listed}/compose");
    let (dom, stderr) = browse(&chromium, &proxy, &start).await;
    let mails = common::settled_mails(&mt.spool).await;
    assert_eq!(
        mails.len(),
        1,
        "the webmail's own send is relayed\n{dom}\n{stderr}"
    );
    assert_eq!(mails[0].2.subject, "Legit send");
    mt.shutdown().await;
}
