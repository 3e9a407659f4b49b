//! Log-*.txt files on disk: naming and collisions, never overwriting, content format,
//! redaction of HTTP secrets and AUTH payloads, DATA summary vs full body.

use std::fs;
use std::net::SocketAddr;

use chrono::{Local, TimeZone, Utc};
use mailtap::translog::{file_name, LogConfig, TransLog};
use regex::Regex;

fn fixed_now() -> chrono::DateTime<Utc> {
    Local
        .with_ymd_and_hms(2026, 11, 23, 10, 15, 30)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn same_second_logs_get_suffixes_and_never_overwrite() {
    // Guards: three logs in one second → base, -2, -3; an existing file keeps its content.
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let now = fixed_now();
    let a = TransLog::create(&logs, now).unwrap();
    let b = TransLog::create(&logs, now).unwrap();
    let c = TransLog::create(&logs, now).unwrap();
    let names: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|l| l.path().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Log-20261123101530.txt",
            "Log-20261123101530-2.txt",
            "Log-20261123101530-3.txt"
        ]
    );
    drop((a, b, c));
    fs::write(logs.join(file_name(now, 4)), "keep me").unwrap();
    let d = TransLog::create(&logs, now).unwrap();
    assert_eq!(d.path(), logs.join("Log-20261123101530-5.txt"));
    drop(d);
    assert_eq!(
        fs::read_to_string(logs.join(file_name(now, 4))).unwrap(),
        "keep me"
    );
}

#[test]
fn transcript_format_redaction_and_summary() {
    // Guards: timestamps with microseconds, C:/S: markers, no secret reaches the file.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = TransLog::create(tmp.path(), Utc::now()).unwrap();
    log.http_request_head(
        "POST /?_task=mail&_action=send HTTP/1.1\r\nHost: webmail.example.test\r\n\
         Cookie: roundcube_sessid=SECRETSESSION\r\nAuthorization: Basic U0VDUkVUQVVUSA==\r\n\r\n",
    );
    log.http_response_head("HTTP/1.1 200 OK\r\nSet-Cookie: sid=SECRETSET; HttpOnly\r\n\r\n");
    let local: SocketAddr = "127.0.0.1:50312".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:2525".parse().unwrap();
    log.smtp_attempt(1, local, remote, "smtp.example.com");
    log.received("220 smtp.example.com ESMTP\r\n");
    log.sent("EHLO mailtap\r\n");
    log.tls("TLSv1.3", "TLS_AES_256_GCM_SHA384");
    log.sent("AUTH LOGIN");
    log.received("334 VXNlcm5hbWU6");
    log.sent("U0VDUkVUVVNFUg==");
    log.received("334 UGFzc3dvcmQ6");
    log.sent("U0VDUkVUUEFTUw==");
    log.received("235 2.7.0 Authentication successful");
    log.sent("MAIL FROM:<lilei@example.com>");
    log.received("250 2.1.0 Ok\r\n250 injected");
    log.data_message(b"Subject: hi\r\nTo: a@example.org\r\n\r\nSECRETBODY line\r\nmore\r\n");
    log.note("delivered to a@example.org");
    let path = log.finish().unwrap();
    let text = fs::read_to_string(path).unwrap();

    for secret in [
        "SECRETSESSION",
        "U0VDUkVUQVVUSA",
        "SECRETSET",
        "U0VDUkVUVVNFUg",
        "U0VDUkVUUEFTUw",
        "SECRETBODY",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("\nCookie: <redacted>\n"), "{text}");
    assert!(text.contains("\nSet-Cookie: <redacted>\n"), "{text}");
    assert!(
        text.contains("=== SMTP attempt 1: 127.0.0.1:50312 -> smtp.example.com (127.0.0.1:2525)")
    );
    let line = Regex::new(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6} (C:|S:|--) ").unwrap();
    let stamped: Vec<&str> = text.lines().filter(|l| line.is_match(l)).collect();
    let shown: Vec<&str> = stamped.iter().map(|l| &l[27..]).collect();
    assert_eq!(
        shown,
        [
            "S: 220 smtp.example.com ESMTP",
            "C: EHLO mailtap",
            "-- TLS established: TLSv1.3 TLS_AES_256_GCM_SHA384",
            "C: AUTH LOGIN",
            "S: 334 VXNlcm5hbWU6",
            "C: <redacted>",
            "S: 334 UGFzc3dvcmQ6",
            "C: <redacted>",
            "S: 235 2.7.0 Authentication successful",
            "C: MAIL FROM:<lilei@example.com>",
            "S: 250 2.1.0 Ok\\r\\n250 injected",
            "C: Subject: hi",
            "C: To: a@example.org",
            "C: [body: 23 bytes]",
            "-- delivered to a@example.org",
        ]
    );
}

#[test]
fn log_body_writes_the_whole_message() {
    // Guards: with log_body = true the DATA content appears in full.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig { log_body: true };
    let mut log = TransLog::create_with(tmp.path(), Utc::now(), &cfg).unwrap();
    log.data_message(b"Subject: hi\r\n\r\nvisible body\r\n");
    let text = fs::read_to_string(log.finish().unwrap()).unwrap();
    assert!(text.contains(" C: visible body\n"), "{text}");
    assert!(!text.contains("[body:"), "{text}");
}

#[test]
fn unusable_logs_dir_is_an_error_not_a_panic() {
    // Guards: a logs path that is a regular file yields an io::Error from create.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    assert!(TransLog::create(&file, Utc::now()).is_err());
}
