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
    let hosts = set.hosts_for_https();
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
    let mut c = parse(MINI);
    c.hosts.push("bad host/".into());
    assert!(Rule::compile(c).is_err());
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
        assert_eq!(r.host_matches(host), want, "{host}");
    }
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
    let set = RuleSet::builtin().unwrap();
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
