//! Interception rules as data: the `[[rule]]` TOML shape (`RuleConfig`) and its compiled,
//! validated form (`Rule`).
//!
//! Owns: what a rule can say (head match, body decoder, discriminators, skips, field mapping,
//! action, relay response, sender override, upload sub-rule) and the validation that turns a
//! config into a `Rule` (bad regex → error naming the rule). Does not own matching a set of rules
//! (`ruleset`), decoding bodies (`extract`) or response rendering (`template`).

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::template::ResponseTemplate;
use crate::hostpat::HostPattern;

/// One `[[rule]]` as written in TOML. Unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; a config rule with a built-in's name replaces that built-in.
    pub name: String,
    /// Host patterns, exact (`mail.qq.com`) or `*.mail.qq.com` (the domain and every name under
    /// it). Empty = a self-hosted webmail: the rule applies to the hosts the user named as
    /// webmails (`[intercept].hosts`, `[senders]`, `[mitm].decrypt_hosts`), never to any host.
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
    /// HTTP method, case-insensitive. Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Regex over the request path (no query).
    pub path: String,
    /// Conditions on query fields that must all hold for the head to match.
    #[serde(default)]
    pub query: Vec<Condition>,
    /// Body decoder; also fixes which Content-Type the head must carry (when it carries one).
    pub decoder: Decoder,
    /// Match JSON keys / field names case-insensitively (old and new SnappyMail keys).
    #[serde(default)]
    pub case_insensitive_keys: bool,
    /// Body conditions that must all hold for a send (the discriminator).
    #[serde(default)]
    pub when: Vec<Condition>,
    /// Body conditions of which at least one must hold (when non-empty).
    #[serde(default)]
    pub when_any: Vec<Condition>,
    /// Conditions (body or query) any of which makes the request a non-send (draft save…).
    #[serde(default)]
    pub skip: Vec<Condition>,
    /// Which fields hold which mail parts.
    #[serde(default)]
    pub fields: FieldMap,
    #[serde(default)]
    pub action: Action,
    /// What the browser gets in `relay` mode.
    #[serde(default)]
    pub response: Option<ResponseTemplate>,
    /// Envelope sender for this rule when the request carries none.
    #[serde(default)]
    pub sender: Option<String>,
    /// How attachments uploaded before the send are captured and correlated.
    #[serde(default)]
    pub upload: Option<UploadConfig>,
}

fn default_method() -> String {
    "POST".into()
}

/// Body decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// application/x-www-form-urlencoded
    Form,
    /// multipart/form-data
    Multipart,
    /// application/json
    Json,
    /// NetEase js6: a urlencoded form whose `var` field holds XML.
    NeteaseXml,
}

impl Decoder {
    /// The media type a request for this decoder carries.
    pub fn media_type(self) -> &'static str {
        match self {
            Decoder::Form | Decoder::NeteaseXml => "application/x-www-form-urlencoded",
            Decoder::Multipart => "multipart/form-data",
            Decoder::Json => "application/json",
        }
    }
}

/// What mailtap does with a matched send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// mailtap delivers and answers the browser itself with the rule's response.
    #[default]
    Relay,
    /// Forward to the webmail unchanged and also queue a copy.
    Tee,
    /// Log only.
    Observe,
}

/// Where a condition looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    #[default]
    Body,
    Query,
}

/// One field test. Exactly one of `equals`, `not_equals`, `present`, `nonempty` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    /// Where to look; default `body` (a rule's `query` list always looks in the query).
    #[serde(default, rename = "in")]
    pub place: Place,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub not_equals: Option<String>,
    /// `true`: the field exists; `false`: it does not.
    #[serde(default)]
    pub present: Option<bool>,
    /// `true`: the field exists with a non-empty value; `false`: absent or empty.
    #[serde(default)]
    pub nonempty: Option<bool>,
}

impl Condition {
    fn validate(&self) -> Result<(), String> {
        let n = [
            self.equals.is_some(),
            self.not_equals.is_some(),
            self.present.is_some(),
            self.nonempty.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            return Err(format!(
                "condition on {:?} must set exactly one of equals, not_equals, present, nonempty",
                self.field
            ));
        }
        Ok(())
    }

    /// Evaluates the test given the field's value (`None` = absent). `not_equals` holds for an
    /// absent field.
    pub fn holds(&self, value: Option<&str>) -> bool {
        if let Some(want) = &self.equals {
            return value == Some(want.as_str());
        }
        if let Some(bad) = &self.not_equals {
            return value != Some(bad.as_str());
        }
        if let Some(p) = self.present {
            return value.is_some() == p;
        }
        if let Some(ne) = self.nonempty {
            return value.is_some_and(|v| !v.is_empty()) == ne;
        }
        false
    }
}

/// One field name or several alternatives (the first present wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let s: &[String] = match self {
            Names::One(n) => std::slice::from_ref(n),
            Names::Many(v) => v,
        };
        s.iter().map(String::as_str)
    }
}

/// Field mapping: which request fields hold which mail parts. Unset = the request has none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// Sender (`Name <addr>` or bare); used only when it carries an `@`.
    pub from: Option<Names>,
    /// Sender display name, when sent apart from the address (QQ `sendname`).
    pub from_name: Option<Names>,
    pub to: Option<Names>,
    pub cc: Option<Names>,
    pub bcc: Option<Names>,
    pub reply_to: Option<Names>,
    pub subject: Option<Names>,
    pub text: Option<Names>,
    pub html: Option<Names>,
    /// A body field that is HTML when `is_html` is `1`/`true`, plain text otherwise.
    pub body: Option<Names>,
    pub is_html: Option<Names>,
    /// Ids of attachments uploaded earlier, in list order.
    pub attachment_ids: Option<IdList>,
    /// Multipart file fields of the send itself that become attachments; unset = every file
    /// part with a non-empty filename.
    pub attachment_files: Option<Names>,
}

/// How to read the list of earlier-uploaded attachment ids from a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdList {
    /// Field holding the ids.
    #[serde(default)]
    pub field: Option<String>,
    /// Separator characters for a text field (e.g. `","`).
    #[serde(default)]
    pub split: Option<String>,
    /// The field is a JSON object whose keys are the ids (SnappyMail `attachments`).
    #[serde(default)]
    pub object_keys: bool,
    /// Instead of a field: every field *name* matching this regex gives its capture group 1
    /// (RainLoop `Attachments[<tempName>][]`).
    #[serde(default)]
    pub name_regex: Option<String>,
}

/// Where a correlation key part comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    Query(String),
    Body(String),
    Cookie(String),
}

/// The upload sub-rule: matches the upload request, finds its file parts, reads the file id
/// from the upload's response, and says how the send and the upload are correlated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Path regex; default: the send rule's.
    #[serde(default)]
    pub path: Option<String>,
    /// Query conditions that must all hold.
    #[serde(default)]
    pub query: Vec<Condition>,
    /// Multipart file fields carrying the files; empty = every file part.
    #[serde(default)]
    pub file_fields: Vec<String>,
    /// Regex over the response body; each match's group 1 is a file id, in file order.
    #[serde(default)]
    pub response_id_regex: Option<String>,
    /// JSON pointer (RFC 6901) to the id in a JSON response, e.g. `/Result/Attachment/tempName`.
    #[serde(default)]
    pub response_id_pointer: Option<String>,
    /// Namespace for stored uploads; rules sharing an upload endpoint share one. Default: the
    /// rule's name.
    #[serde(default)]
    pub group: Option<String>,
    /// Correlation key parts on the upload request, joined with `|`.
    #[serde(default)]
    pub key: Vec<KeySource>,
    /// Correlation key parts on the send request; must produce the same string.
    #[serde(default)]
    pub send_key: Vec<KeySource>,
}

/// A validated rule: its config plus compiled regexes.
#[derive(Debug, Clone)]
pub struct Rule {
    pub config: RuleConfig,
    pub(crate) path: Regex,
    pub(crate) upload_path: Option<Regex>,
    pub(crate) upload_id_regex: Option<Regex>,
    pub(crate) id_name_regex: Option<Regex>,
}

/// A rule that failed validation; always names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub detail: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {:?}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for RuleError {}

impl Rule {
    /// Validates and compiles a rule config: every regex compiles, every condition sets one
    /// test, the name is non-empty, the method is a token, an upload's correlation keys are
    /// paired. (Hosts were validated when the config was deserialised.)
    pub fn compile(config: RuleConfig) -> Result<Rule, RuleError> {
        let err = |detail: String| RuleError {
            rule: config.name.clone(),
            detail,
        };
        if config.name.trim().is_empty() {
            return Err(err("name is empty".into()));
        }
        if config.method.is_empty() || !config.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err(format!(
                "method {:?} is not an HTTP method",
                config.method
            )));
        }
        let re = |what: &str, src: &str| {
            Regex::new(src).map_err(|e| err(format!("{what} regex {src:?} is invalid: {e}")))
        };
        let path = re("path", &config.path)?;
        for c in config
            .query
            .iter()
            .chain(&config.when)
            .chain(&config.when_any)
            .chain(&config.skip)
        {
            c.validate().map_err(err)?;
        }
        let id_name_regex = match config.fields.attachment_ids.as_ref() {
            Some(ids) => {
                if ids.field.is_none() == ids.name_regex.is_none() {
                    return Err(err(
                        "attachment_ids needs exactly one of field, name_regex".into()
                    ));
                }
                ids.name_regex
                    .as_deref()
                    .map(|s| re("attachment_ids.name_regex", s))
                    .transpose()?
            }
            None => None,
        };
        let (mut upload_path, mut upload_id_regex) = (None, None);
        if let Some(up) = &config.upload {
            for c in &up.query {
                c.validate().map_err(err)?;
            }
            upload_path = up
                .path
                .as_deref()
                .map(|s| re("upload.path", s))
                .transpose()?;
            upload_id_regex = up
                .response_id_regex
                .as_deref()
                .map(|s| re("upload.response_id_regex", s))
                .transpose()?;
            if upload_id_regex
                .as_ref()
                .is_some_and(|r| r.captures_len() < 2)
            {
                return Err(err("upload.response_id_regex needs a capture group".into()));
            }
            if let Some(p) = &up.response_id_pointer {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(err(format!(
                        "upload.response_id_pointer {p:?} must start with /"
                    )));
                }
            }
            if up.key.is_empty() != up.send_key.is_empty() {
                return Err(err(
                    "upload.key and upload.send_key must both be set or both empty".into(),
                ));
            }
        }
        if let Some(t) = &config.response {
            t.validate().map_err(err)?;
        }
        Ok(Rule {
            path,
            upload_path,
            upload_id_regex,
            id_name_regex,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// True when the rule names hosts and `host` (no port) is one of them. A rule that names
    /// none (a self-hosted webmail) matches only the `named` hosts the user gave as webmails.
    pub fn host_matches(&self, host: &str, named: &[HostPattern]) -> bool {
        let hosts = if self.config.hosts.is_empty() {
            named
        } else {
            &self.config.hosts
        };
        crate::hostpat::any_matches(hosts, host)
    }

    /// True when the rule names no hosts (it applies to the user's named webmail hosts).
    pub fn is_any_host(&self) -> bool {
        self.config.hosts.is_empty()
    }

    /// Ids of uploaded files named in an upload response body, in order; empty when the rule
    /// reads none or the body has none.
    pub fn upload_ids_from_response(&self, body: &[u8]) -> Vec<String> {
        let Some(up) = &self.config.upload else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(body);
        if let Some(re) = &self.upload_id_regex {
            return re
                .captures_iter(&text)
                .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
                .collect();
        }
        if let Some(ptr) = &up.response_id_pointer {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return match v.pointer(ptr) {
                    Some(serde_json::Value::String(s)) => vec![s.clone()],
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect(),
                    _ => Vec::new(),
                };
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
