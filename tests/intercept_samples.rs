//! Conformance: every webmail sample (shared/samples/webmail and samples/webmail) replayed
//! through head matching → extraction → upload store → MailRecord → check yields exactly its
//! expected.json, is claimed by the right rule, and drafts/non-send posts pass through.

use std::path::Path;
use std::time::Instant;

use mailtap::hostpat::HostMap;
use mailtap::intercept::{resolve_sender, Extracted, MatchKind, OwnedHead, RuleSet, UploadStore};
use mailtap::mail::record::{redact_head, MailRecord, Source};
use serde_json::Value;

mod common;
use common::samples::*;

/// The rule a fixture must be claimed by, from its file-name prefix.
fn rule_for(file: &str) -> &'static str {
    let table = [
        ("roundcube", "roundcube"),
        ("squirrelmail15", "squirrelmail-1.5"),
        ("squirrelmail", "squirrelmail-1.4"),
        ("snappymail", "snappymail"),
        ("rainloop", "rainloop"),
        ("qqmail", "qqmail"),
        ("netease", "netease"),
    ];
    table
        .iter()
        .find(|(p, _)| file.starts_with(p))
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("no rule for {file}"))
}

struct Replay {
    record: MailRecord,
    rule: String,
    response: Option<mailtap::intercept::RelayResponse>,
}

/// Replays `NAME-upload*.http` (with their `.response.http`) then `NAME.http`.
/// The built-in rules with the samples' self-hosted webmail host named (as a user's
/// `[intercept].hosts` would), so the any-host rules apply to it.
fn sample_rules() -> RuleSet {
    RuleSet::builtin()
        .unwrap()
        .with_named_hosts(vec![SAMPLE_WEBMAIL.parse().unwrap()])
}

/// The host of the self-hosted webmail samples.
const SAMPLE_WEBMAIL: &str = "webmail.example.test";

fn replay(set: &RuleSet, dir: &Path, name: &str) -> Replay {
    let mut order = files(dir, |f| {
        f.starts_with(&format!("{name}-upload"))
            && f.ends_with(".http")
            && !f.ends_with(".response.http")
    });
    order.push(format!("{name}.http"));
    let mut store = UploadStore::new(std::time::Duration::from_secs(3600), 64 << 20);
    let now = Instant::now();
    for file in &order {
        let path = dir.join(file);
        let req = parse_request(&path);
        let owned = OwnedHead::from_parts(&req.method, &req.uri, &req.headers);
        let head = owned.view();
        let m = set
            .match_head(&head)
            .unwrap_or_else(|| panic!("{file}: no rule matched the head"));
        let (rule, x) = set
            .extract(&m, &head, &req.body)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let rule = rule.unwrap_or_else(|| panic!("{file}: not a send/upload"));
        match x {
            Extracted::Upload(up, key) => {
                assert_eq!(m.kind, MatchKind::Upload, "{file}");
                let ticket = store.capture(rule.upload_group(), &key, up, now).unwrap();
                let resp = dir.join(file.replace(".http", ".response.http"));
                if resp.exists() {
                    let bytes = std::fs::read(&resp).unwrap();
                    let (_, _, body) = split_message(&bytes, &resp);
                    assert!(
                        store.note_response(ticket, rule, &body) > 0,
                        "{resp:?}: no id read"
                    );
                }
            }
            Extracted::Send(draft) => {
                assert_eq!(file, &format!("{name}.http"), "send before the last file");
                let taken = store.take_for(rule, &draft);
                assert!(
                    taken.missing.is_empty(),
                    "{file}: uploads not found: {:?}",
                    taken.missing
                );
                let senders: HostMap<String> = [(
                    owned
                        .host
                        .parse()
                        .expect("the sample's host is a host pattern"),
                    "configured@example.com".to_string(),
                )]
                .into_iter()
                .collect();
                let sender = resolve_sender(
                    draft.from.as_ref(),
                    rule.config.sender.as_deref(),
                    &senders,
                    &owned.host,
                    None,
                );
                let source = Source {
                    rule: rule.name().into(),
                    webmail_host: owned.host.clone(),
                    client: "127.0.0.1:50123".parse().unwrap(),
                    proxy: "127.0.0.1:8800".parse().unwrap(),
                };
                let response = rule.relay_response(&draft);
                let head_text = redact_head(&req.method, &req.uri, &req.headers);
                let mut record =
                    draft.into_record(taken.files, sender, source, chrono::Utc::now(), head_text);
                mailtap::mail::check(&mut record, 10 << 20);
                return Replay {
                    record,
                    rule: rule.name().into(),
                    response,
                };
            }
            Extracted::NotASend => unreachable!("extract returned a rule for NotASend"),
        }
    }
    panic!("{name}: no send in replay");
}

fn conformance(dir: &Path, min: usize) -> Vec<Replay> {
    let set = sample_rules();
    let names: Vec<String> = files(dir, |f| f.ends_with(".expected.json"))
        .into_iter()
        .map(|f| f.trim_end_matches(".expected.json").to_string())
        .collect();
    assert!(names.len() >= min, "{dir:?}: only {} samples", names.len());
    let mut out = Vec::new();
    for name in names {
        let mut want: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let rejected = want.as_object_mut().unwrap().remove("rejected");
        let r = replay(&set, dir, &name);
        assert_eq!(as_expected(&r.record), want, "{name}");
        assert_eq!(r.rule, rule_for(&name), "{name}");
        let got_kind = r.record.rejected.as_ref().map(|j| kind_name(&j.kind));
        assert_eq!(
            got_kind,
            rejected.as_ref().and_then(Value::as_str),
            "{name}: {:?}",
            r.record.rejected
        );
        out.push(r);
    }
    out
}

#[test]
fn shared_samples_yield_expected_json() {
    // The lab's reference captures extract exactly as their expected.json says.
    let [shared, _] = dirs();
    let replays = conformance(&shared, 4);
    let rc = replays.iter().find(|r| r.rule == "roundcube").unwrap();
    let page = String::from_utf8(rc.response.clone().unwrap().body).unwrap();
    assert!(
        page.contains("parent.rcmail.iframe_loaded(\"loading1723456800123\")"),
        "{page}"
    );
    assert!(
        page.contains("parent.rcmail.remove_compose_data(\"1376487249665f0c2b1a3d4\")"),
        "{page}"
    );
    assert!(
        page.contains("sent_successfully(\"confirmation\""),
        "{page}"
    );
    for r in &replays {
        assert!(
            !r.record.http_head.contains("roundcube_sessid=")
                && !r.record.http_head.contains("smtoken="),
            "{}",
            r.record.http_head
        );
        assert!(
            r.record.http_head.contains("cookie: <redacted>"),
            "{}",
            r.record.http_head
        );
        assert!(r.response.is_some(), "{}: no relay response", r.rule);
    }
}

#[test]
fn own_samples_yield_expected_json() {
    // mailtap's own fixtures (163, SquirrelMail 1.5, old SnappyMail, RainLoop, GB18030, …).
    let [_, own] = dirs();
    let replays = conformance(&own, 7);
    let ne = replays.iter().find(|r| r.rule == "netease").unwrap();
    assert_eq!(
        ne.response.as_ref().unwrap().body,
        b"{'code':'S_OK','var':'c:1723456800123'}"
    );
    let sm = replays
        .iter()
        .find(|r| r.rule == "squirrelmail-1.5")
        .unwrap();
    let resp = sm.response.as_ref().unwrap();
    assert_eq!(resp.status, 302);
    assert!(resp
        .headers
        .iter()
        .any(|(k, v)| k == "Location" && v.starts_with("right_main.php")));
}

#[test]
fn every_fixture_is_claimed_by_the_right_rule_or_passes_through() {
    // Sends/uploads match their webmail's rule; drafts and other posts are never intercepted.
    let set = sample_rules();
    let mut seen = 0;
    for dir in dirs() {
        for file in files(&dir, |f| {
            f.ends_with(".http") && !f.ends_with(".response.http")
        }) {
            seen += 1;
            let req = parse_request(&dir.join(&file));
            let owned = OwnedHead::from_parts(&req.method, &req.uri, &req.headers);
            let head = owned.view();
            let m = set.match_head(&head);
            if file.ends_with(".passthrough.http") {
                if let Some(m) = m {
                    let (rule, x) = set.extract(&m, &head, &req.body).unwrap();
                    assert!(
                        rule.is_none() && x == Extracted::NotASend,
                        "{file} was intercepted"
                    );
                }
                continue;
            }
            let m = m.unwrap_or_else(|| panic!("{file}: head not matched"));
            let (rule, x) = set.extract(&m, &head, &req.body).unwrap();
            let rule = rule.unwrap_or_else(|| panic!("{file}: NotASend"));
            let want_kind = if file.contains("-upload") {
                MatchKind::Upload
            } else {
                MatchKind::Send
            };
            assert_eq!(m.kind, want_kind, "{file}");
            assert!(
                matches!(
                    (&x, want_kind),
                    (Extracted::Upload(..), MatchKind::Upload)
                        | (Extracted::Send(_), MatchKind::Send)
                ),
                "{file}"
            );
            if want_kind == MatchKind::Send {
                assert_eq!(rule.name(), rule_for(&file), "{file}");
            }
        }
    }
    assert!(seen >= 20, "only {seen} fixtures found");
}

#[test]
fn origin_form_head_matches_like_absolute_form() {
    // After TLS interception the same request arrives in origin form with a Host header.
    let set = sample_rules();
    let [shared, _] = dirs();
    let req = parse_request(&shared.join("qqmail.http"));
    let uri: http::Uri = format!("{}?{}", req.uri.path(), req.uri.query().unwrap())
        .parse()
        .unwrap();
    let mut headers = req.headers.clone();
    headers.insert(http::header::HOST, "MAIL.QQ.COM:443".parse().unwrap());
    let owned = OwnedHead::from_parts(&req.method, &uri, &headers);
    assert_eq!(owned.host, "mail.qq.com");
    let m = set.match_head(&owned.view()).unwrap();
    let (rule, _) = set.extract(&m, &owned.view(), &req.body).unwrap();
    assert_eq!(rule.unwrap().name(), "qqmail");
}
