//! A real browser through mailtap: Debian's headless Chromium, proxied by mailtap and trusting
//! its CA only by SPKI hash (not a blanket ignore), loads a compose page from a local HTTPS fake
//! webmail whose script submits it; mailtap decrypts, intercepts the send into the spool and the
//! browser ends on the webmail's "sent" response.
//!
//! Without Chromium the test prints why and passes locally; with `CI=true` it fails instead
//! (`.ci/run` installs the `chromium` package).

mod common;
#[path = "common/gate.rs"]
mod gate;
mod mitm_support;

use std::process::Stdio;
use std::time::Duration;

use mailtap::proxy::mitm::CertAuthority;
use mitm_support::*;

/// Bound for the whole browser run (start-up included).
const BROWSER_WAIT: Duration = Duration::from_secs(90);

fn find_chromium() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate.display().to_string());
            }
        }
    }
    None
}

#[tokio::test]
async fn headless_chromium_sends_a_webmail_form_over_decrypted_https() {
    // Guards the whole feature in a real browser: CONNECT, mailtap's leaf accepted via the CA's
    // SPKI hash, TLS 1.2/HTTP 1.1 inside, the send intercepted and answered with "sent".
    let Some(chromium) = find_chromium() else {
        // The shared gate: a skip is recorded for .ci/run, and under CI=true it fails.
        gate::skip("no chromium on PATH (install the chromium package to run this test)");
        return;
    };
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(pki_dir.path(), "webmail");
    let webmail = https_origin(&pki, &["webmail.example.test"]).await;
    let config = format!(
        "[resolve]\n\"webmail.example.test\" = \"127.0.0.1\"\n\
         [mitm]\ndecrypt_hosts = [\"webmail.example.test\"]\nextra_roots = [{:?}]\n",
        pki.ca_path.display().to_string()
    );
    let mt = common::start(&config, None).await;
    let ca = CertAuthority::load_or_create(&mt.dir.path().join("data/ca")).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "https://webmail.example.test:{}/compose",
        webmail.addr.port()
    );
    let child = tokio::process::Command::new(&chromium)
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
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--proxy-server=http://{}", mt.addr),
            "--proxy-bypass-list=<-loopback>",
            &format!(
                "--ignore-certificate-errors-spki-list={}",
                ca.spki_sha256_base64()
            ),
            // Lets the page's own script submit the form and the answer load before the dump.
            "--virtual-time-budget=15000",
            "--dump-dom",
            &url,
        ])
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
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains("Message sent successfully."),
        "the browser shows the sent page\n--- DOM ---\n{dom}\n--- stderr ---\n{stderr}"
    );
    let mails = common::settled_mails(&mt.spool).await;
    assert_eq!(mails.len(), 1, "one intercepted mail in the spool");
    let r = &mails[0].2;
    assert_eq!(r.sender, "lilei@example.com");
    let to: Vec<&str> = r.to.iter().map(|m| m.addr.as_str()).collect();
    assert_eq!(to, ["zhangsan@example.com", "bob@example.org"]);
    assert_eq!(r.subject, "Browser test 浏览器");
    assert_eq!(
        r.text.as_deref().map(str::trim),
        Some("Hello from headless Chromium over HTTPS.")
    );
    assert_eq!(r.source.webmail_host, "webmail.example.test");
    let seen = webmail.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.target == "/compose"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.method != "POST"),
        "the send never reached the webmail: {seen:?}"
    );
}
