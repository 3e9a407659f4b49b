//! Shared client-side fixtures for the scripted-server tests: config, envelope, wire text.
//!
//! Owns only test data builders (no sockets); the scripted server is in `smtp_script.rs`.
#![allow(dead_code)]

use super::smtp_script::{e, r, Step};
use mailtap::smtp::{ClientConfig, ConnectOptions, Envelope, Timeouts, TlsMode};
use std::net::SocketAddr;

pub const MSG: &str = "From: a@x.test\r\nTo: b@y.test\r\nSubject: hi\r\n\r\nHello\r\n";

pub fn cfg(tls: TlsMode) -> ClientConfig {
    ClientConfig {
        host: "localhost".into(),
        tls,
        helo_name: Some("client.test".into()),
        timeouts: Timeouts::uniform(5),
        ..Default::default()
    }
}

pub fn opts(addr: SocketAddr) -> ConnectOptions {
    ConnectOptions {
        addr: Some(addr),
        ..Default::default()
    }
}

pub fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "a@x.test".into(),
        rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn wire(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

/// The server side of one accepted message (lockstep, no PIPELINING).
pub fn one_mail(mail_line: &str) -> Vec<Step> {
    vec![
        e(mail_line),
        r("250 2.1.0 Ok"),
        e("RCPT TO:<b@y.test>"),
        r("250 2.1.5 Ok"),
        e("DATA"),
        r("354 go ahead"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued"),
        e("QUIT"),
        r("221 2.0.0 Bye"),
    ]
}

pub fn client_mail_bytes(mail_line: &str) -> Vec<&str> {
    vec![
        mail_line,
        "RCPT TO:<b@y.test>",
        "DATA",
        "From: a@x.test",
        "To: b@y.test",
        "Subject: hi",
        "",
        "Hello",
        ".",
        "QUIT",
    ]
}
