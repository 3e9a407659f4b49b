//! Wireshark, end to end: tshark captures loopback on both of a running mailtap's ports — the
//! proxy (browser ↔ mailtap HTTP) and the built-in SMTP server (mailtap ↔ server SMTP, plain,
//! `tls = "none"`) — while a webmail send goes through, then decodes the capture.
//!
//! It must find the intercepted HTTP POST with its URI and mailtap's HTTP response to it, the
//! SMTP commands EHLO, MAIL, RCPT, DATA, QUIT with their replies, and no malformed packet.
//! mailtap is started here through `App` (not `common::start`) so that the built-in server's
//! port is known from [`App::smtp_upstream`] before the capture starts, with no port guessing.
//! Needs tshark and capture rights (root); without them the test skips with a message, except
//! under `CI=true`, where it fails.

mod common;
#[path = "common/gate.rs"]
mod gate;
#[path = "common/tshark.rs"]
mod tshark;
#[path = "common/webmail.rs"]
mod webmail;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailtap::app::App;
use mailtap::config::Config;
use mailtap::queue::MailState;
use tokio::sync::oneshot;
use webmail::{post, roundcube_send, webmail_config, SEND_PATH, WEBMAIL_HOST};

const SENDER: &str = "lilei@example.com";
const SUBJECT: &str = "wireshark end to end";

/// mailtap started from `App`, its ports known, not yet serving.
struct Started {
    app: App,
    proxy: SocketAddr,
    smtp_port: u16,
    dir: tempfile::TempDir,
}

/// Starts mailtap on 127.0.0.1:0 (proxy and built-in SMTP server) with data and logs in a temp
/// dir; the built-in server must be the upstream.
async fn start_mailtap() -> Started {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::parse(&webmail_config(SENDER, &[])).expect("test config parses");
    config.proxy.listen = "127.0.0.1:0".parse().expect("address");
    config.builtin_smtp.listen = "127.0.0.1:0".parse().expect("address");
    config.paths.data = dir.path().join("data");
    config.paths.logs = dir.path().join("logs");
    let app = App::start(&config).await.expect("mailtap starts");
    let (host, smtp_port, builtin) = app.smtp_upstream();
    assert!(builtin, "no [smtp]: the built-in server is the upstream");
    assert_eq!(host, "127.0.0.1");
    Started {
        proxy: app.proxy_addr(),
        app,
        smtp_port,
        dir,
    }
}

/// Waits (bounded) until some Log-*.txt under `logs` contains `needle`; returns that log.
async fn log_with(logs: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let found = std::fs::read_dir(logs).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .find(|t| t.contains(needle))
        });
        if let Some(t) = found {
            return t;
        }
        assert!(Instant::now() < deadline, "no Log-*.txt with {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tshark_decodes_the_webmail_post_and_the_relayed_smtp() {
    // Guards: what a Wireshark user sees of one intercepted send — the HTTP POST and its
    // response on the proxy port, the whole plain SMTP dialogue on the built-in server's port,
    // both decoded by tshark, with no malformed packet anywhere in the capture.
    let Some(tshark_bin) = tshark::require() else {
        return;
    };
    let Started {
        app,
        proxy,
        smtp_port,
        dir,
    } = start_mailtap().await;
    let spool = app.spool().clone();
    let pcap = dir.path().join("e2e.pcapng");
    let filter = format!("tcp port {} or tcp port {smtp_port}", proxy.port());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stop_rx.await;
    }));
    // The browser's login (outside the capture): mailtap relays only a session it saw opened.
    common::log_in(proxy, WEBMAIL_HOST, webmail::SESSION_COOKIE).await;
    let capture = tshark::Capture::start(&tshark_bin, &filter, &pcap).await;
    let response = post(
        proxy,
        &roundcube_send("bob@example.org", "carol@example.net", SUBJECT, "hi\r\nbye"),
    )
    .await
    .unwrap_or_else(|e| panic!("post through the proxy: {e:?}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let settled = common::settled_mails(&spool).await;
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0].1, MailState::Delivered);
    // The relay ends an idle session with QUIT; wait for its 221 so the capture has it.
    let log = log_with(&dir.path().join("logs"), "S: 221").await;
    assert!(log.contains(&format!("127.0.0.1:{smtp_port}")), "{log}");
    let pcap = capture.stop().await;
    let _ = stop_tx.send(());
    tokio::time::timeout(common::WAIT * 3, task)
        .await
        .expect("mailtap stops in time")
        .expect("mailtap task");

    let decode = [(proxy.port(), "http"), (smtp_port, "smtp")];
    let read = |args: &'static [&'static str]| tshark::read(&tshark_bin, &pcap, &decode, args);

    // The intercepted POST, sent to the proxy port, with the absolute-form URI a browser uses.
    let posts = read(&[
        "-Y",
        "http.request.method == \"POST\"",
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
        "-e",
        "http.request.uri",
        "-e",
        "http.host",
    ])
    .await;
    println!("tshark POSTs (dst port, uri, host):\n{posts}");
    let want_uri = format!("http://{WEBMAIL_HOST}:9{SEND_PATH}");
    let post_rows: Vec<Vec<&str>> = posts.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(post_rows.len(), 1, "exactly one POST:\n{posts}");
    assert_eq!(
        post_rows[0],
        [proxy.port().to_string().as_str(), &want_uri, WEBMAIL_HOST],
        "{posts}"
    );

    // mailtap's response to it, from the proxy port, linked by tshark to that request.
    let responses = read(&[
        "-Y",
        "http.response",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "http.response.code",
        "-e",
        "http.response_for.uri",
    ])
    .await;
    println!("tshark responses (src port, code, for uri):\n{responses}");
    let resp_rows: Vec<Vec<&str>> = responses.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(resp_rows.len(), 1, "exactly one response:\n{responses}");
    assert_eq!(
        resp_rows[0][..2],
        [proxy.port().to_string().as_str(), "200"]
    );
    assert!(
        resp_rows[0].get(2).is_some_and(|u| u.ends_with(SEND_PATH)),
        "response not linked to the POST:\n{responses}"
    );

    // The relayed SMTP dialogue on the built-in server's port.
    let smtp = read(&[
        "-Y",
        "smtp",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-e",
        "smtp.req.command",
        "-e",
        "smtp.response.code",
        "-e",
        "tcp.port",
    ])
    .await;
    println!("tshark smtp fields (command, reply code, ports):\n{smtp}");
    let cols = tshark::columns(&smtp, 3);
    let (commands, codes) = (&cols[0], &cols[1]);
    for want in ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] {
        assert!(
            commands.iter().any(|c| c.eq_ignore_ascii_case(want)),
            "tshark did not decode {want}: {commands:?}\n{smtp}"
        );
    }
    let rcpts = commands.iter().filter(|c| c.eq_ignore_ascii_case("RCPT"));
    assert_eq!(rcpts.count(), 2, "{commands:?}");
    for want in ["220", "250", "354", "221"] {
        assert!(
            codes.iter().any(|c| c == want),
            "no {want} reply: {codes:?}"
        );
    }
    let port = smtp_port.to_string();
    assert!(
        cols[2].chunks(2).all(|p| p.contains(&port)),
        "SMTP decoded off the built-in server's port: {:?}",
        cols[2]
    );
    let subject = read(&["-Y", "imf", "-T", "fields", "-e", "imf.subject"]).await;
    assert_eq!(subject.trim(), SUBJECT, "IMF decoded from DATA");

    let malformed = read(&["-Y", "_ws.malformed"]).await;
    assert!(
        malformed.trim().is_empty(),
        "malformed packets:\n{malformed}"
    );
    let all = read(&[]).await;
    assert!(
        all.lines().count() >= 20,
        "capture holds both conversations:\n{all}"
    );
}

/// The instant in a transcript heading `=== <title> <YYYY-mm-dd HH:MM:SS.ffffff +hh:mm>`.
fn heading_time(log: &str, title: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let line = log
        .lines()
        .find(|l| l.starts_with("=== ") && l.contains(title))
        .unwrap_or_else(|| panic!("no heading {title:?} in:\n{log}"));
    let stamp = &line[line.len() - "2026-01-01 00:00:00.000000 +00:00".len()..];
    chrono::DateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.6f %:z")
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test]
async fn transcript_http_times_match_what_tshark_saw() {
    // Guards: the Log's "head received" is when the request reached the proxy and its "head
    // written" is when the response left it, as a capture on the proxy port shows them.
    let Some(tshark_bin) = tshark::require() else {
        return;
    };
    let Started {
        app, proxy, dir, ..
    } = start_mailtap().await;
    let pcap = dir.path().join("times.pcapng");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stop_rx.await;
    }));
    // The browser's login (outside the capture): mailtap relays only a session it saw opened.
    common::log_in(proxy, WEBMAIL_HOST, webmail::SESSION_COOKIE).await;
    let capture =
        tshark::Capture::start(&tshark_bin, &format!("tcp port {}", proxy.port()), &pcap).await;
    let response = post(proxy, &roundcube_send("bob@example.org", "", SUBJECT, "t"))
        .await
        .unwrap_or_else(|e| panic!("post through the proxy: {e:?}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let log = log_with(&dir.path().join("logs"), "S: 221").await;
    let pcap = capture.stop().await;
    let _ = stop_tx.send(());
    tokio::time::timeout(common::WAIT * 3, task)
        .await
        .expect("mailtap stops in time")
        .expect("mailtap task");
    let decode = [(proxy.port(), "http")];
    let frame_time = |filter: &'static str| {
        let pcap = pcap.clone();
        let tshark_bin = tshark_bin.clone();
        async move {
            let out = tshark::read(
                &tshark_bin,
                &pcap,
                &decode,
                &["-Y", filter, "-T", "fields", "-e", "frame.time_epoch"],
            )
            .await;
            let secs: f64 = out
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or_else(|| panic!("no frame for {filter}: {out:?}"));
            (secs * 1e6).round() as i64
        }
    };
    let request_frame = frame_time("http.request.method == \"POST\"").await;
    let response_frame = frame_time("http.response.code == 200").await;
    let head_at = heading_time(&log, "HTTP request (browser").timestamp_micros();
    let written_at = heading_time(&log, "HTTP response (mailtap").timestamp_micros();
    println!(
        "request: tshark {request_frame} µs, Log {head_at} µs (Δ {} µs); response: tshark \
         {response_frame} µs, Log {written_at} µs (Δ {} µs)",
        head_at - request_frame,
        written_at - response_frame
    );
    // The request is stamped after its packet arrived, the response before its packet left
    // (it is stamped as hyper writes it), each within a loaded machine's scheduling delay.
    assert!(
        (-1_000..50_000).contains(&(head_at - request_frame)),
        "request stamped {} µs from its packet",
        head_at - request_frame
    );
    assert!(
        (-50_000..1_000).contains(&(written_at - response_frame)),
        "response stamped {} µs from its packet",
        written_at - response_frame
    );
}
