//! Unit tests for rule validation, host matching, head matching and discriminators.

use super::*;
use crate::intercept::extract::{extract, Extracted};
use crate::intercept::ruleset::{HeadView, MatchKind, RuleSet};

fn parse(toml_text: &str) -> RuleConfig {
    toml::from_str(toml_text).unwrap()
}

const MINI: &str = r#"
name = "mini"
hosts = ["mail.example.test", "*.corp.test"]
path = '^/send$'
decoder = "form"
query = [{ field = "op", equals = "send" }]
when = [{ field = "kind", equals = "mail" }]
skip = [{ field = "draft", equals = "1" }, { field = "dry", in = "query", present = true }]
[fields]
to = "to"
subject = "s"
"#;

fn head<'a>(
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    ct: Option<&'a str>,
) -> HeadView<'a> {
    HeadView {
        method: "POST",
        host,
        path,
        query,
        content_type: ct,
        cookie: None,
    }
}

#[test]
fn builtin_rules_parse_and_compile() {
    // The shipped TOML is valid and contains every required webmail family.
    let set = RuleSet::builtin().unwrap();
    for name in [
        "roundcube",
        "snappymail",
        "rainloop",
        "squirrelmail-1.4",
        "squirrelmail-1.5",
        "qqmail",
        "netease",
    ] {
        let r = set.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert!(r.config.response.is_some(), "{name} has no relay response");
    }
    let hosts: Vec<String> = set
        .hosts_for_https()
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert!(
        hosts.contains(&"mail.qq.com".to_string()) && hosts.contains(&"*.mail.163.com".to_string()),
        "{hosts:?}"
    );
}

#[test]
fn validation_names_the_rule() {
    // Bad regexes, empty conditions and unknown keys are errors that name the rule.
    let mut c = parse(MINI);
    c.path = "(".into();
    let e = Rule::compile(c).unwrap_err();
    assert_eq!(e.rule, "mini");
    assert!(e.to_string().contains("path regex"), "{e}");
    let mut c = parse(MINI);
    c.when.push(Condition {
        field: "x".into(),
        place: Place::Body,
        equals: None,
        not_equals: None,
        present: None,
        nonempty: None,
    });
    assert!(Rule::compile(c).unwrap_err().detail.contains("exactly one"));
    let e = toml::from_str::<RuleConfig>(&MINI.replace("*.corp.test", "bad host/")).unwrap_err();
    assert!(e.to_string().contains("bad host/"), "{e}");
    assert!(toml::from_str::<RuleConfig>(&format!("{MINI}\nbogus = 1")).is_err());
    let e = RuleSet::with_config(true, vec![parse(MINI), parse(MINI)]).unwrap_err();
    assert!(e.detail.contains("twice"));
}

#[test]
fn config_rule_overrides_builtin_and_goes_first() {
    // A config rule named like a built-in replaces it; new config rules are tried first.
    let mut over = parse(MINI);
    over.name = "qqmail".into();
    let set = RuleSet::with_config(true, vec![over, parse(MINI)]).unwrap();
    assert_eq!(set.rules()[0].name(), "qqmail");
    assert_eq!(set.rules()[0].config.path, "^/send$");
    assert_eq!(
        set.rules().iter().filter(|r| r.name() == "qqmail").count(),
        1
    );
    let only = RuleSet::with_config(false, vec![parse(MINI)]).unwrap();
    assert_eq!(only.rules().len(), 1);
}

#[test]
fn host_matching_table() {
    // Exact and wildcard hosts match case-insensitively; lookalike hosts do not.
    let r = Rule::compile(parse(MINI)).unwrap();
    for (host, want) in [
        ("mail.example.test", true),
        ("MAIL.example.test", true),
        ("corp.test", true),
        ("a.b.corp.test", true),
        ("evilcorp.test", false),
        ("mail.example.test.evil", false),
        ("", false),
    ] {
        assert_eq!(r.host_matches(host, &[]), want, "{host}");
    }
}

#[test]
fn any_host_rules_match_only_named_hosts() {
    // Guards issue 10 High 1: a rule naming no host (Roundcube…) applies to the hosts the user
    // named as webmails, never to any host; rules naming hosts keep their own.
    let named: Vec<crate::hostpat::HostPattern> = vec![
        "webmail.example.test".parse().unwrap(),
        "*.corp.test".parse().unwrap(),
    ];
    let bare = RuleSet::builtin().unwrap();
    let set = RuleSet::builtin().unwrap().with_named_hosts(named);
    let form = Some("application/x-www-form-urlencoded");
    for (host, want) in [
        ("webmail.example.test", true),
        ("WEBMAIL.example.test.", true),
        ("corp.test", true),
        ("mail.corp.test", true),
        ("attacker.test", false),
        ("webmail.example.test.attacker.test", false),
        ("127.0.0.1", false),
    ] {
        let h = head(host, "/", Some("_task=mail&_action=send"), form);
        assert_eq!(set.match_head(&h).is_some(), want, "{host}");
        assert!(bare.match_head(&h).is_none(), "zero-config takes {host}");
    }
    // Hosted webmails keep their hosts with or without named hosts.
    let qq = head("mail.qq.com", "/cgi-bin/compose_send", None, form);
    assert!(bare.match_head(&qq).is_some() && set.match_head(&qq).is_some());
}

#[test]
fn head_matching_table() {
    // Method, host, path, query and content type must all fit; nothing else is buffered.
    let set = RuleSet::with_config(false, vec![parse(MINI)]).unwrap();
    let form = Some("application/x-www-form-urlencoded; charset=UTF-8");
    let cases = [
        (
            head("mail.example.test", "/send", Some("op=send"), form),
            true,
        ),
        (
            head("mail.example.test", "/send", Some("op=send"), None),
            true,
        ),
        (
            head("mail.example.test", "/send", Some("op=save"), form),
            false,
        ),
        (head("mail.example.test", "/send", None, form), false),
        (head("other.test", "/send", Some("op=send"), form), false),
        (
            head("mail.example.test", "/send2", Some("op=send"), form),
            false,
        ),
        (
            head(
                "mail.example.test",
                "/send",
                Some("op=send"),
                Some("application/json"),
            ),
            false,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(set.match_head(&h).is_some(), want, "{h:?}");
    }
    let mut get = head("mail.example.test", "/send", Some("op=send"), form);
    get.method = "GET";
    assert!(set.match_head(&get).is_none());
}

#[test]
fn discriminators_and_skips() {
    // when/skip decide send vs pass-through; query skips see the query.
    let rule = Rule::compile(parse(MINI)).unwrap();
    let h = head("mail.example.test", "/send", Some("op=send"), None);
    let send = |q: Option<&str>, body: &str| {
        let h = HeadView { query: q, ..h };
        matches!(
            extract(&rule, &h, body.as_bytes()).unwrap(),
            Extracted::Send(_)
        )
    };
    assert!(send(Some("op=send"), "kind=mail&to=a@b.org&s=hi"));
    assert!(!send(Some("op=send"), "kind=other&to=a@b.org"));
    assert!(!send(Some("op=send"), "to=a@b.org"));
    assert!(!send(Some("op=send"), "kind=mail&draft=1"));
    assert!(send(Some("op=send"), "kind=mail&draft=0"));
    assert!(!send(Some("op=send&dry"), "kind=mail"));
}

#[test]
fn condition_semantics() {
    // Each test kind treats absent and empty values as documented.
    let c = |equals: Option<&str>,
             not_equals: Option<&str>,
             present: Option<bool>,
             nonempty: Option<bool>| Condition {
        field: "f".into(),
        place: Place::Body,
        equals: equals.map(Into::into),
        not_equals: not_equals.map(Into::into),
        present,
        nonempty,
    };
    let table = [
        (c(Some("a"), None, None, None), [false, false, true, false]),
        (c(None, Some("a"), None, None), [true, true, false, true]),
        (c(None, None, Some(true), None), [false, true, true, true]),
        (
            c(None, None, Some(false), None),
            [true, false, false, false],
        ),
        (c(None, None, None, Some(true)), [false, false, true, true]),
        (c(None, None, None, Some(false)), [true, true, false, false]),
    ];
    for (cond, want) in table {
        let got = [
            cond.holds(None),
            cond.holds(Some("")),
            cond.holds(Some("a")),
            cond.holds(Some("b")),
        ];
        assert_eq!(got, want, "{cond:?}");
    }
}

#[test]
fn upload_head_goes_first() {
    // Roundcube's upload shares the send path and query; it is classified as an upload.
    let set = RuleSet::builtin()
        .unwrap()
        .with_named_hosts(vec!["webmail.example.test".parse().unwrap()]);
    let h = head(
        "webmail.example.test",
        "/",
        Some("_task=mail&_id=1&_action=upload"),
        Some("multipart/form-data; boundary=x"),
    );
    let m = set.match_head(&h).unwrap();
    assert_eq!(m.kind, MatchKind::Upload);
    assert_eq!(set.rules()[m.candidates[0]].name(), "roundcube");
    let h = head(
        "webmail.example.test",
        "/",
        Some("_task=mail"),
        Some("application/x-www-form-urlencoded"),
    );
    assert_eq!(set.match_head(&h).unwrap().kind, MatchKind::Send);
    let h = head(
        "webmail.example.test",
        "/",
        Some("_task=addressbook"),
        Some("application/x-www-form-urlencoded"),
    );
    assert!(set.match_head(&h).is_none());
}

#[test]
fn upload_ids_from_responses() {
    // Ids come from a regex (every match, in order) or a JSON pointer; junk yields none.
    let set = RuleSet::builtin().unwrap();
    let rc = set.get("roundcube").unwrap();
    let body = br#"{"exec":"this.add2attachment_list(\"rcmfile111\",{});this.add2attachment_list(\"rcmfile222\",{});"}"#;
    assert_eq!(rc.upload_ids_from_response(body), ["111", "222"]);
    assert!(rc
        .upload_ids_from_response(b"<html>error</html>")
        .is_empty());
    let sm = set.get("snappymail").unwrap();
    assert_eq!(
        sm.upload_ids_from_response(br#"{"Result":{"Attachment":{"TempName":"t1.txt"}}}"#),
        ["t1.txt"]
    );
    let mut c = parse(MINI);
    c.upload = Some(UploadConfig {
        group: None,
        path: None,
        query: vec![],
        file_fields: vec![],
        response_id_regex: None,
        response_id_pointer: Some("/files/0/id".into()),
        key: vec![],
        send_key: vec![],
    });
    let r = Rule::compile(c).unwrap();
    assert_eq!(
        r.upload_ids_from_response(br#"{"files":[{"id":"abc"}]}"#),
        ["abc"]
    );
    assert!(r.upload_ids_from_response(b"not json").is_empty());
    assert!(set
        .get("qqmail")
        .unwrap()
        .upload_ids_from_response(b"x")
        .is_empty());
}

#[test]
fn made_up_webmail_from_config() {
    // A rule added in the config works without recompiling: JSON decoder, ids, template.
    let cfg: RuleConfig = parse(
        r#"
name = "acme"
hosts = ["mail.acme.test"]
path = '^/api/messages$'
decoder = "json"
case_insensitive_keys = true
when = [{ field = "op", equals = "send" }]
skip = [{ field = "draft", equals = "true" }]
sender = "desk@acme.test"
action = "tee"
[fields]
to = "rcpt"
cc = "copy"
subject = "title"
body = "content"
is_html = "rich"
[response]
content_type = "application/json"
body = '{"ok":true,"ref":"{body.ref}"}'
"#,
    );
    let set = RuleSet::with_config(false, vec![cfg]).unwrap();
    let h = head(
        "mail.acme.test",
        "/api/messages",
        None,
        Some("application/json"),
    );
    let m = set.match_head(&h).unwrap();
    let body = br#"{"OP":"send","Rcpt":["A <a@x.org>","b@y.org"],"copy":"c@z.org","Title":"t","Content":"<b>x</b>","Rich":true,"ref":"r\"1"}"#;
    let (rule, x) = set.extract(&m, &h, body).unwrap();
    let rule = rule.unwrap();
    assert_eq!(rule.config.action, Action::Tee);
    let Extracted::Send(d) = x else {
        panic!("not a send")
    };
    let to: Vec<_> = d.to.iter().map(|m| m.addr.as_str()).collect();
    assert_eq!(to, ["a@x.org", "b@y.org"]);
    assert_eq!(d.cc[0].addr, "c@z.org");
    assert_eq!(d.html.as_deref(), Some("<b>x</b>"));
    assert_eq!(d.text, None);
    assert_eq!(
        rule.relay_response(&d).unwrap().body,
        br#"{"ok":true,"ref":"r\u00221"}"#
    );
    let draft = br#"{"op":"send","draft":"true","rcpt":"a@x.org"}"#;
    assert_eq!(set.extract(&m, &h, draft).unwrap().1, Extracted::NotASend);
}

#[test]
fn head_helpers() {
    // Hosts are normalised (case, port, IPv6 brackets, trailing dot); cookies found by name.
    use crate::hostpat::normalize_host;
    use crate::intercept::ruleset::cookie_value;
    for (raw, want) in [
        ("Mail.QQ.com", "mail.qq.com"),
        ("mail.qq.com:443", "mail.qq.com"),
        ("[::1]:8080", "::1"),
        ("example.test.", "example.test"),
        ("", ""),
    ] {
        assert_eq!(normalize_host(raw), want, "{raw}");
    }
    let c = "a=1; roundcube_sessid=xyz ;b=2";
    assert_eq!(cookie_value(c, "roundcube_sessid"), Some("xyz"));
    assert_eq!(cookie_value(c, "sessid"), None);
    assert_eq!(cookie_value("", "a"), None);
}
