//! Extraction: a pure function of (rule, request head, body bytes) → a send draft, an upload
//! capture, or "not a send".
//!
//! Owns: dispatching to the body decoders (`form`, `multipart`, `json`, `netease`), evaluating
//! skip/discriminator conditions, and applying the rule's field mapping. Does not resolve the
//! sender, correlate uploads or build the `MailRecord` (see `intercept::uploads`,
//! `intercept::sender`, `MailDraft::into_record`).

pub mod form;
pub mod json;
pub mod multipart;
pub mod netease;

use std::collections::{BTreeMap, HashSet};

use super::fields::{charset_of, Decoded, Value};
use super::rules::{Condition, Decoder, IdList, KeySource, Names, Place, Rule};
use super::ruleset::{cookie_value, HeadView};
use crate::mail::address::{parse_list, parse_mailbox};
use crate::mail::record::{Attachment, Mailbox};

/// A file captured from an upload request.
pub type UploadedFile = Attachment;

/// Why a matched request's body could not be decoded. The proxy forwards such a request
/// untouched and logs this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    MissingContentType,
    Multipart(String),
    Json(String),
    Xml(String),
    /// A field the decoder needs (e.g. 163's `var`) is absent.
    MissingField(String),
    /// More parts, fields or values than `[intercept].max_parts` allows. Unlike the others this
    /// is not forwarded: the browser is told (413).
    TooManyParts {
        limit: usize,
    },
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractError::MissingContentType => write!(f, "request has no Content-Type"),
            ExtractError::Multipart(e) => write!(f, "multipart body: {e}"),
            ExtractError::Json(e) => write!(f, "JSON body: {e}"),
            ExtractError::Xml(e) => write!(f, "XML in body: {e}"),
            ExtractError::MissingField(n) => write!(f, "body has no field {n:?}"),
            ExtractError::TooManyParts { limit } => {
                write!(f, "body has more than {limit} parts, fields or values")
            }
        }
    }
}

impl std::error::Error for ExtractError {}

/// The mail as the request carried it, before sender resolution and upload correlation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailDraft {
    pub rule: String,
    /// The request's sender, only when its field carried an address (contains `@`).
    pub from: Option<Mailbox>,
    /// Display name for From (the sender field's name, or a separate name field).
    pub from_name: Option<String>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Vec<Mailbox>>,
    pub subject: String,
    /// Plain body exactly as submitted (no newline normalisation); `None` when absent/empty.
    pub text: Option<String>,
    pub html: Option<String>,
    /// File parts carried by the send request itself.
    pub attachments: Vec<Attachment>,
    /// Ids of files uploaded earlier, in the send's list order.
    pub attachment_ids: Vec<String>,
    /// Correlation key for earlier uploads (`None` when the rule has no upload sub-rule).
    pub upload_key: Option<String>,
    /// Values for the response template, keyed `query.NAME` / `body.NAME`.
    pub vars: BTreeMap<String, String>,
}

/// What a matched request turned out to be. (Built once per request and moved straight on;
/// boxing the draft would only add an allocation.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    Send(MailDraft),
    /// Files from an upload request and its correlation key.
    Upload(Vec<UploadedFile>, String),
    /// Discriminator failed or a skip condition held (draft save, autosave, other action):
    /// the request must pass through untouched.
    NotASend,
}

/// What one request may make the decoders do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most multipart parts, form fields or JSON values (`[intercept].max_parts`).
    pub max_parts: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_parts: 1000 }
    }
}

/// Decodes `body` with `decoder` under the default [`Bounds`].
pub fn decode(
    decoder: Decoder,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Decoded, ExtractError> {
    decode_bounded(decoder, content_type, body, &Bounds::default())
}

/// Decodes `body` with `decoder`; more than `bounds.max_parts` parts is `TooManyParts`.
pub fn decode_bounded(
    decoder: Decoder,
    content_type: Option<&str>,
    body: &[u8],
    bounds: &Bounds,
) -> Result<Decoded, ExtractError> {
    let max = bounds.max_parts;
    match decoder {
        Decoder::Form => form::decode_bounded(body, charset_of(content_type), max),
        Decoder::Multipart => multipart::decode_bounded(body, content_type, max),
        Decoder::Json => json::decode_bounded(body, max),
        Decoder::NeteaseXml => netease::decode_bounded(body, charset_of(content_type), max),
    }
}

/// Tries `m`'s candidate rules of `rules` in order, like `RuleSet::extract`, under `bounds`:
/// the first rule that extracts something wins; `TooManyParts` stops at once (no other rule
/// may read such a body either); other errors are returned only when no rule succeeded.
pub fn extract_candidates<'r>(
    rules: &'r [Rule],
    m: &super::ruleset::RuleMatch,
    head: &HeadView<'_>,
    body: &[u8],
    bounds: &Bounds,
) -> Result<(Option<&'r Rule>, Extracted), ExtractError> {
    let mut first_err = None;
    for rule in m.candidates.iter().filter_map(|&i| rules.get(i)) {
        match extract_bounded(rule, head, body, bounds) {
            Ok(Extracted::NotASend) => {}
            Ok(x) => return Ok((Some(rule), x)),
            Err(e @ ExtractError::TooManyParts { .. }) => return Err(e),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((None, Extracted::NotASend)),
    }
}

struct Ctx<'a> {
    query: &'a [(String, String)],
    body: &'a Decoded,
    cookie: Option<&'a str>,
    ci: bool,
}

impl Ctx<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A body field as text for conditions: lists give their first item, objects "".
    fn body(&self, name: &str) -> Option<&str> {
        match self.body.get(name, self.ci)? {
            Value::Text(t) => Some(t),
            Value::List(l) => Some(l.first().map(String::as_str).unwrap_or("")),
            Value::Keys(_) => Some(""),
        }
    }

    fn holds(&self, c: &Condition) -> bool {
        let v = match c.place {
            Place::Query => self.query(&c.field),
            Place::Body => self.body(&c.field),
        };
        c.holds(v)
    }

    fn text(&self, names: Option<&Names>) -> Option<&str> {
        names?.iter().find_map(|n| self.body.text(n, self.ci))
    }

    fn addresses(&self, names: Option<&Names>) -> Option<Vec<Mailbox>> {
        let names = names?;
        names.iter().find_map(|n| match self.body.get(n, self.ci)? {
            Value::Text(t) => Some(parse_list(t)),
            Value::List(items) => Some(items.iter().flat_map(|i| parse_list(i)).collect()),
            Value::Keys(_) => None,
        })
    }

    fn key(&self, parts: &[KeySource]) -> String {
        parts
            .iter()
            .map(|p| match p {
                KeySource::Query(n) => self.query(n).unwrap_or(""),
                KeySource::Body(n) => self.body(n).unwrap_or(""),
                KeySource::Cookie(n) => self.cookie.and_then(|c| cookie_value(c, n)).unwrap_or(""),
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    fn ids(&self, spec: &IdList, name_re: Option<&regex::Regex>) -> Vec<String> {
        if let Some(re) = name_re {
            // First occurrence order, duplicates dropped: a set makes this linear (a list
            // search per id was quadratic — 200,000 ids took 44 CPU-seconds).
            let mut seen: HashSet<&str> = HashSet::new();
            let mut out: Vec<String> = Vec::new();
            for (n, _) in &self.body.fields {
                if let Some(id) = re.captures(n).and_then(|c| c.get(1)) {
                    if seen.insert(id.as_str()) {
                        out.push(id.as_str().to_string());
                    }
                }
            }
            return out;
        }
        let Some(field) = spec.field.as_deref() else {
            return Vec::new();
        };
        match self.body.get(field, self.ci) {
            Some(Value::Keys(k)) => k.clone(),
            Some(Value::List(l)) => l.iter().filter(|s| !s.is_empty()).cloned().collect(),
            Some(Value::Text(t)) => {
                let seps = spec.split.as_deref().unwrap_or(",");
                t.split(|c| seps.contains(c))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            None => Vec::new(),
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(String::from)
}

/// Extracts what `rule` says from a request whose head `rule` matched. A head that matches the
/// rule's upload sub-rule is treated as an upload; otherwise as a send candidate. Default
/// [`Bounds`].
pub fn extract(rule: &Rule, head: &HeadView<'_>, body: &[u8]) -> Result<Extracted, ExtractError> {
    extract_bounded(rule, head, body, &Bounds::default())
}

/// [`extract`] under `bounds`.
pub fn extract_bounded(
    rule: &Rule,
    head: &HeadView<'_>,
    body: &[u8],
    bounds: &Bounds,
) -> Result<Extracted, ExtractError> {
    let query = head.query.map(form::query_pairs).unwrap_or_default();
    let cfg = &rule.config;
    if rule.upload_head_matches(head, &query) {
        let decoded = multipart::decode_bounded(body, head.content_type, bounds.max_parts)?;
        let ctx = Ctx {
            query: &query,
            body: &decoded,
            cookie: head.cookie,
            ci: cfg.case_insensitive_keys,
        };
        let up = cfg.upload.as_ref();
        let key = up.map(|u| ctx.key(&u.key)).unwrap_or_default();
        let wanted = up.map(|u| u.file_fields.as_slice()).unwrap_or_default();
        let files: Vec<UploadedFile> = decoded
            .files
            .into_iter()
            .filter(|f| wanted.is_empty() || wanted.contains(&f.field))
            .map(|f| Attachment {
                filename: f.filename,
                content_type: f.content_type,
                data: f.data,
            })
            .collect();
        return Ok(if files.is_empty() {
            Extracted::NotASend
        } else {
            Extracted::Upload(files, key)
        });
    }
    let mut decoded = decode_bounded(cfg.decoder, head.content_type, body, bounds)?;
    // Move the file parts out (no copy of attachment bytes); `ctx` only needs the fields.
    let file_parts = std::mem::take(&mut decoded.files);
    let ctx = Ctx {
        query: &query,
        body: &decoded,
        cookie: head.cookie,
        ci: cfg.case_insensitive_keys,
    };
    if cfg.skip.iter().any(|c| ctx.holds(c))
        || !cfg.when.iter().all(|c| ctx.holds(c))
        || (!cfg.when_any.is_empty() && !cfg.when_any.iter().any(|c| ctx.holds(c)))
    {
        return Ok(Extracted::NotASend);
    }
    let f = &cfg.fields;
    let sender = ctx.text(f.from.as_ref()).and_then(parse_mailbox);
    let from_name = non_empty(ctx.text(f.from_name.as_ref()))
        .or_else(|| sender.as_ref().and_then(|m| m.name.clone()));
    let from = sender.filter(|m| m.addr.contains('@'));
    let mut text = non_empty(ctx.text(f.text.as_ref()));
    let mut html = non_empty(ctx.text(f.html.as_ref()));
    if let Some(b) = non_empty(ctx.text(f.body.as_ref())) {
        let is_html = ctx.text(f.is_html.as_ref()).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "on" | "yes"
            )
        });
        let slot = if is_html { &mut html } else { &mut text };
        if slot.is_none() {
            *slot = Some(b);
        }
    }
    let attachments = file_parts
        .into_iter()
        .filter(|p| match &f.attachment_files {
            Some(names) => names.iter().any(|n| n == p.field),
            None => !p.filename.is_empty(),
        })
        .map(|p| Attachment {
            filename: p.filename,
            content_type: p.content_type,
            data: p.data,
        })
        .collect();
    let attachment_ids = f
        .attachment_ids
        .as_ref()
        .map(|s| ctx.ids(s, rule.id_name_regex.as_ref()))
        .unwrap_or_default();
    let mut vars = BTreeMap::new();
    if let Some(t) = &cfg.response {
        for (place, name) in t.placeholders() {
            let v = if place == "query" {
                ctx.query(&name)
            } else {
                ctx.body(&name)
            };
            vars.insert(format!("{place}.{name}"), v.unwrap_or("").to_string());
        }
    }
    Ok(Extracted::Send(MailDraft {
        rule: cfg.name.clone(),
        from,
        from_name,
        to: ctx.addresses(f.to.as_ref()).unwrap_or_default(),
        cc: ctx.addresses(f.cc.as_ref()).unwrap_or_default(),
        bcc: ctx.addresses(f.bcc.as_ref()).unwrap_or_default(),
        reply_to: ctx.addresses(f.reply_to.as_ref()).filter(|l| !l.is_empty()),
        subject: ctx.text(f.subject.as_ref()).unwrap_or("").to_string(),
        text,
        html,
        attachments,
        attachment_ids,
        upload_key: cfg.upload.as_ref().map(|u| ctx.key(&u.send_key)),
        vars,
    }))
}
