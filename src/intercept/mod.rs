//! Webmail interception core: rules, extractors, upload correlation and sender resolution.
//!
//! Owns everything between "the proxy has a request head (and maybe its body)" and "here is a
//! `MailRecord`": head matching (`RuleSet::match_head`, cheap, body-free), body extraction
//! (`extract`), upload capture (`UploadStore`), sender resolution and record assembly. It is
//! socket-free and sync; it does not buffer bodies, answer browsers, queue or deliver.

pub mod extract;
pub mod fields;
pub mod rules;
pub mod ruleset;
pub mod sender;
pub mod session;
pub mod template;
pub mod uploads;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use extract::{extract, Bounds, ExtractError, Extracted, MailDraft, UploadedFile};
pub use rules::{Action, Decoder, Rule, RuleConfig, RuleError};
pub use ruleset::{HeadView, MatchKind, OwnedHead, RuleMatch, RuleSet};
pub use sender::{resolve_sender, ResolvedSender};
pub use session::{cross_site, SessionBook};
pub use template::{RelayResponse, ResponseTemplate};
pub use uploads::{Taken, Ticket, UploadError, UploadStore};

use crate::mail::record::{new_id, Attachment, MailRecord, Origin, Source};

/// `[intercept]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    /// Load the built-in rules (config `[[rule]]`s still override them by name).
    pub builtin_rules: bool,
    /// Host patterns of the user's self-hosted webmails (Roundcube, SquirrelMail, SnappyMail,
    /// RainLoop, any-host `[[rule]]`s). Rules that name no host apply to these (and to hosts
    /// named in `[senders]` or `[mitm].decrypt_hosts`) and to no other host.
    pub hosts: Vec<crate::hostpat::HostPattern>,
    /// Relay (or tee) a send only when its Cookie carries a cookie the webmail set in a
    /// response mailtap forwarded (a session opened through mailtap); otherwise the send goes
    /// to the webmail unchanged. Off: any same-site send on a webmail host is taken.
    pub require_session: bool,
    /// How long a remembered webmail cookie binds sends after the response that set it.
    pub session_ttl_secs: u64,
    /// Captured uploads older than this are dropped.
    pub upload_ttl_secs: u64,
    /// Bound on the bytes all captured uploads may hold together (oldest evicted first).
    pub max_upload_bytes: u64,
    /// Bound on the number of files all captured uploads may hold together (oldest evicted
    /// first), so zero-byte files cannot pile up without limit.
    pub max_upload_files: usize,
    /// Most parts one intercepted request may carry: multipart parts, form fields, JSON values.
    /// A request with more gets 413 and is neither forwarded nor queued.
    pub max_parts: usize,
    /// An intercepted body must start arriving within this many seconds; every
    /// `body_min_rate` bytes received earn one more second (like Apache's mod_reqtimeout).
    pub body_timeout_secs: u64,
    /// Minimum average rate (bytes per second) an intercepted body must keep up; 0 turns the
    /// rate off (then only `body_max_secs` applies).
    pub body_min_rate: u64,
    /// Hard deadline for a whole intercepted body, however fast it is.
    pub body_max_secs: u64,
    /// Global budget: the bytes of intercepted bodies read or processed at the same time. A
    /// body that does not fit waits up to `budget_wait_secs`, then gets 503.
    pub max_inflight_bytes: u64,
    /// How long a body waits for room in `max_inflight_bytes` before 503.
    pub budget_wait_secs: u64,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig {
            builtin_rules: true,
            hosts: Vec::new(),
            require_session: true,
            session_ttl_secs: 86_400,
            upload_ttl_secs: 3600,
            max_upload_bytes: 256 * 1024 * 1024,
            max_upload_files: 10_000,
            max_parts: 1000,
            body_timeout_secs: 20,
            body_min_rate: 1024,
            body_max_secs: 600,
            max_inflight_bytes: 128 * 1024 * 1024,
            budget_wait_secs: 30,
        }
    }
}

impl InterceptConfig {
    /// An empty `UploadStore` with this section's TTL and bounds.
    pub fn upload_store(&self) -> UploadStore {
        UploadStore::new(
            std::time::Duration::from_secs(self.upload_ttl_secs),
            self.max_upload_bytes,
        )
        .with_max_files(self.max_upload_files)
    }

    /// Checks what serde cannot: limits that must be positive. The error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("intercept.max_parts", self.max_parts as u64),
            ("intercept.max_upload_files", self.max_upload_files as u64),
            ("intercept.body_timeout_secs", self.body_timeout_secs),
            ("intercept.body_max_secs", self.body_max_secs),
            ("intercept.max_inflight_bytes", self.max_inflight_bytes),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        Ok(())
    }

    /// An empty session book with this section's TTL.
    pub fn session_book(&self) -> SessionBook {
        SessionBook::new(std::time::Duration::from_secs(self.session_ttl_secs))
    }
}

impl MailDraft {
    /// Builds the record: attachments carried by the send first, then `uploaded` (in the
    /// send's order); sender as resolved; a fresh id. Not yet checked (`mail::check`).
    pub fn into_record(
        self,
        uploaded: Vec<Attachment>,
        sender: ResolvedSender,
        source: Source,
        received: DateTime<Utc>,
        http_head: String,
    ) -> MailRecord {
        let mut attachments = self.attachments;
        attachments.extend(uploaded);
        MailRecord {
            id: new_id(received),
            origin: Origin::Webmail,
            sender: sender.addr,
            sender_source: sender.source,
            from_name: self.from_name,
            to: self.to,
            cc: self.cc,
            bcc: self.bcc,
            reply_to: self.reply_to,
            subject: self.subject,
            text: self.text,
            html: self.html,
            attachments,
            source,
            received,
            http_head,
            http_response_head: String::new(),
            transcript: None,
            rejected: None,
            invalid_recipients: Vec::new(),
        }
    }
}

impl Rule {
    /// The relay response for a draft of this rule, `None` when the rule has no template.
    pub fn relay_response(&self, draft: &MailDraft) -> Option<RelayResponse> {
        self.config.response.as_ref().map(|t| t.render(&draft.vars))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intercept_config_defaults_and_unknown_keys() {
        // An empty section gives the documented defaults; unknown keys are errors naming them.
        let c: InterceptConfig = toml::from_str("").unwrap();
        assert_eq!(c, InterceptConfig::default());
        assert!(c.builtin_rules && c.upload_ttl_secs == 3600);
        let c: InterceptConfig =
            toml::from_str("builtin_rules = false\nupload_ttl_secs = 5").unwrap();
        assert!(!c.builtin_rules && c.upload_ttl_secs == 5);
        let e = toml::from_str::<InterceptConfig>("upload_ttl = 5").unwrap_err();
        assert!(e.to_string().contains("upload_ttl"), "{e}");
        assert_eq!(c.validate(), Ok(()));
        let zero = InterceptConfig {
            max_parts: 0,
            ..InterceptConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "intercept.max_parts");
    }
}
