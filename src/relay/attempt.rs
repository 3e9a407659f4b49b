//! What the worker hands to the bookkeeping: one attempt of one mail and how its SMTP
//! exchange ended. Plain data and two address helpers; no I/O.

use std::net::SocketAddr;

use crate::mail::MailRecord;
use crate::queue::{MailId, RcptStatus};
use crate::report::Failure;
use crate::smtp;
use crate::translog::TransLog;

/// One mail's delivery attempt: what is known and said about it so far.
pub(super) struct Attempt {
    pub(super) id: MailId,
    pub(super) record: MailRecord,
    pub(super) message: Vec<u8>,
    /// 1-based attempt number.
    pub(super) attempt: u32,
    /// The server that answered, once connected.
    pub(super) remote: Option<SocketAddr>,
    pub(super) log: Option<TransLog>,
    /// Outcome lines for the console.
    pub(super) outcome: Vec<String>,
    /// Set when this attempt ended the mail (delivered or failed): the transcript's last
    /// section says so, with the error report's id when one was queued.
    pub(super) final_outcome: Option<String>,
    /// The id of the error report queued in this attempt.
    pub(super) report: Option<MailId>,
    /// Recipients refused at interception, not yet in a queued report.
    pub(super) refused: Vec<Failure>,
    /// Their statuses, recorded with this attempt's outcome.
    pub(super) refused_status: Vec<(String, RcptStatus)>,
}

impl Attempt {
    /// Records an outcome line in the transcript and for the console.
    pub(super) fn say(&mut self, line: &str) {
        if let Some(log) = self.log.as_mut() {
            log.note(line);
        }
        self.outcome.push(line.to_string());
    }
}

/// How the SMTP exchange (if any) ended.
pub(super) enum Conclusion {
    /// Rejected at interception; no SMTP.
    Rejected(crate::mail::record::Rejection),
    /// Every recipient already has a final status.
    NothingOpen,
    /// The SMTP session could not be set up; nothing was said about this mail.
    SetupFailed(Vec<String>, smtp::Error),
    /// The transaction failed as a whole for these open recipients.
    Failed(Vec<String>, smtp::Error),
    /// The transaction(s) ran; per-recipient outcomes inside.
    Sent(Transactions),
}

/// The transactions one attempt took (more than one when the server limits recipients per
/// transaction), and — when a further one could not run — its recipients and why.
pub(super) struct Transactions {
    pub(super) done: Vec<smtp::Delivery>,
    pub(super) rest: Option<(Vec<String>, smtp::Error)>,
}

/// Same mailbox: local part exactly, domain case-insensitively (RFC 5321 §2.4).
pub(super) fn same_mailbox(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

pub(super) fn local_failure(rcpt: &str, reason: &str, status: &str) -> Failure {
    Failure {
        recipient: rcpt.to_string(),
        status: status.to_string(),
        command: None,
        diagnostic: reason.to_string(),
        from_server: false,
        remote_mta: None,
    }
}
