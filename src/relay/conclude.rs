//! The bookkeeping after each delivery: per-recipient outcomes, spool state (complete, defer,
//! fail), error reports to the sender, the transcript's last section and the console line.
//! Runs in its own task behind the worker, bounded by [`IN_FLIGHT`](super::IN_FLIGHT) slots.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::attempt::{local_failure, same_mailbox, Attempt, Conclusion, Transactions};
use super::transcript::console_summary;
use super::Relay;
use crate::mail::record::Origin;
use crate::mail::MailRecord;
use crate::queue::{MailId, MailState, RcptStatus};
use crate::report::{self, Failure};
use crate::smtp;
use crate::translog::TransLog;

/// Back-off after the first outcome the spool could not record; doubles to [`SPOOL_BACKOFF_MAX`].
const SPOOL_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const SPOOL_BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Relay {
    /// Runs the bookkeeping of a finished exchange in its own task, holding one of the bounded
    /// in-flight slots (so memory stays flat however long the queue is).
    pub(super) async fn spawn_conclusion(
        self: &Arc<Self>,
        attempt: Attempt,
        conclusion: Conclusion,
    ) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        let relay = self.clone();
        tokio::spawn(async move {
            relay.conclude(attempt, conclusion).await;
            drop(permit);
        });
    }

    async fn conclude(&self, mut a: Attempt, conclusion: Conclusion) {
        match conclusion {
            Conclusion::NothingOpen => match self.spool.complete(&a.id, &a.refused_status).await {
                Ok(()) => {
                    self.bookkeeping_ok();
                    a.final_outcome = Some("finished (no recipient was left open)".into());
                }
                Err(e) => self.bookkeeping_failed(&a.id, "complete", &e),
            },
            Conclusion::Rejected(rejection) => {
                // Rejected at interception: nothing went to the server; the sender hears why.
                // Each recipient is told its own reason: a recipient refused on its own is
                // reported for that, the others for what sank the whole mail.
                let reason = format!("not relayed: {}", rejection.reason);
                let status = status_for_rejection(&rejection.kind);
                let mut failures: Vec<Failure> = Vec::new();
                for (field, m) in a.record.recipients_by_field() {
                    if failures.iter().any(|f| same_mailbox(&f.recipient, &m.addr)) {
                        continue;
                    }
                    failures.push(match a.record.invalid_entry(field, m) {
                        Some(inv) => local_failure(&m.addr, &inv.reason, "5.1.3"),
                        None => local_failure(&m.addr, &reason, status),
                    });
                }
                let per_rcpt: Vec<(String, RcptStatus)> = failures
                    .iter()
                    .map(|f| {
                        (
                            f.recipient.clone(),
                            RcptStatus::Failed(f.diagnostic.clone()),
                        )
                    })
                    .collect();
                if failures.is_empty() {
                    failures.push(local_failure("(no recipients)", &reason, "5.1.3"));
                }
                a.say(&reason);
                self.queue_report(&mut a, &failures).await;
                // With recipients, each one's status is recorded (all refused → failed).
                let recorded = if per_rcpt.is_empty() {
                    self.spool.fail(&a.id, &reason).await
                } else {
                    self.spool.complete(&a.id, &per_rcpt).await
                };
                match recorded {
                    Ok(()) => {
                        self.bookkeeping_ok();
                        a.final_outcome = Some(format!("FAILED: {reason}"));
                    }
                    Err(e) => self.bookkeeping_failed(&a.id, "fail", &e),
                }
            }
            Conclusion::SetupFailed(open, error) => {
                // The session could not be set up (server down, TLS, AUTH, a refusing greeting):
                // nothing is wrong with the mail itself, so it waits for the next attempt and
                // is reported only when the queue gives up on it.
                let text = error.to_string();
                a.say(&format!("deferred (all recipients): {text}"));
                let per_rcpt: Vec<(String, RcptStatus)> = open
                    .iter()
                    .map(|r| (r.clone(), RcptStatus::Deferred(text.clone())))
                    .chain(a.refused_status.iter().cloned())
                    .collect();
                self.defer(&mut a, &per_rcpt, &text).await;
            }
            Conclusion::Failed(open, error) => self.whole_mail_failed(&mut a, &open, &error).await,
            Conclusion::Sent(delivery) => self.sent(&mut a, &delivery).await,
        }
        if !a.refused.is_empty() {
            // Nothing else went wrong: the report is about the refused recipients alone.
            self.queue_report(&mut a, &[]).await;
        }
        self.finish(a);
    }

    /// Per-recipient outcome of the transactions that reached RCPT.
    async fn sent(&self, a: &mut Attempt, sent: &Transactions) {
        let mut per_rcpt = Vec::new();
        let mut failures = Vec::new();
        let mut deferred = Vec::new();
        for delivery in &sent.done {
            self.outcomes(a, delivery, &mut per_rcpt, &mut failures, &mut deferred);
        }
        if let Some((rest, error)) = &sent.rest {
            // A further transaction could not run: its recipients wait (or fail) as a whole.
            let text = error.to_string();
            for rcpt in rest {
                if error.is_transient() {
                    a.say(&format!("deferred {rcpt}: {text}"));
                    per_rcpt.push((rcpt.clone(), RcptStatus::Deferred(text.clone())));
                    deferred.push(text.clone());
                } else {
                    a.say(&format!("REJECTED {rcpt}: {text}"));
                    per_rcpt.push((rcpt.clone(), RcptStatus::Failed(text.clone())));
                    failures.push(Failure {
                        recipient: rcpt.clone(),
                        status: error
                            .reply()
                            .map_or_else(|| "5.0.0".into(), |r| status_of(r, "5.0.0")),
                        command: error.command().map(str::to_string),
                        diagnostic: error
                            .reply()
                            .map_or_else(|| text.clone(), |r| r.lines.join("\n")),
                        from_server: error.reply().is_some(),
                        remote_mta: Some(self.smtp.host.clone()),
                    });
                }
            }
        }
        self.settle(a, per_rcpt, failures, deferred).await;
    }

    /// The outcome of each recipient of one transaction, as spool status, report entries and
    /// deferral reasons.
    fn outcomes(
        &self,
        a: &mut Attempt,
        delivery: &smtp::Delivery,
        per_rcpt: &mut Vec<(String, RcptStatus)>,
        failures: &mut Vec<Failure>,
        deferred: &mut Vec<String>,
    ) {
        let data_error = delivery.data_error();
        for (rcpt, status) in &delivery.per_rcpt {
            let reply = status.reply();
            let text = reply.one_line();
            match status {
                smtp::RcptStatus::Accepted(_) => {
                    a.say(&format!("delivered to {rcpt}"));
                    per_rcpt.push((rcpt.clone(), RcptStatus::Delivered));
                }
                smtp::RcptStatus::Rejected(_) => {
                    a.say(&format!("REJECTED {rcpt}: {text}"));
                    per_rcpt.push((rcpt.clone(), RcptStatus::Failed(text.clone())));
                    let command = match &data_error {
                        Some(e) if e.reply() == Some(reply) => e.command().map(str::to_string),
                        _ => Some(format!("RCPT TO:<{rcpt}>")),
                    };
                    failures.push(Failure {
                        recipient: rcpt.clone(),
                        status: status_of(reply, "5.0.0"),
                        command,
                        diagnostic: reply.lines.join("\n"),
                        from_server: true,
                        remote_mta: Some(self.smtp.host.clone()),
                    });
                }
                smtp::RcptStatus::Deferred(_) => {
                    a.say(&format!("deferred {rcpt}: {text}"));
                    per_rcpt.push((rcpt.clone(), RcptStatus::Deferred(text.clone())));
                    deferred.push(text);
                }
            }
        }
    }

    /// Records the per-recipient outcome: a report for the failures, then complete or defer.
    async fn settle(
        &self,
        a: &mut Attempt,
        mut per_rcpt: Vec<(String, RcptStatus)>,
        failures: Vec<Failure>,
        deferred: Vec<String>,
    ) {
        if !failures.is_empty() {
            self.queue_report(a, &failures).await;
        }
        per_rcpt.extend(a.refused_status.iter().cloned());
        if deferred.is_empty() {
            match self.spool.complete(&a.id, &per_rcpt).await {
                Ok(()) => {
                    self.bookkeeping_ok();
                    a.final_outcome = Some(final_summary(&per_rcpt));
                }
                Err(e) => self.bookkeeping_failed(&a.id, "complete", &e),
            }
        } else {
            let reason = deferred.join("; ");
            self.defer(a, &per_rcpt, &reason).await;
        }
    }

    /// The whole attempt failed before any recipient had an outcome (connect, greeting, AUTH,
    /// MAIL, SIZE refusal, I/O): defer every open recipient, or fail them all.
    async fn whole_mail_failed(&self, a: &mut Attempt, open: &[String], error: &smtp::Error) {
        let text = error.to_string();
        if error.is_transient() {
            let per_rcpt: Vec<(String, RcptStatus)> = open
                .iter()
                .map(|r| (r.clone(), RcptStatus::Deferred(text.clone())))
                .chain(a.refused_status.iter().cloned())
                .collect();
            a.say(&format!("deferred (all recipients): {text}"));
            self.defer(a, &per_rcpt, &text).await;
            return;
        }
        a.say(&format!("FAILED (all recipients): {text}"));
        let failures: Vec<Failure> = open
            .iter()
            .map(|r| Failure {
                recipient: r.clone(),
                status: match (error.reply(), error) {
                    (Some(rep), _) => status_of(rep, "5.0.0"),
                    // RFC 3463 §3.4: message too big for system.
                    (None, smtp::Error::SizeExceeded { .. }) => "5.3.4".into(),
                    (None, _) => "5.0.0".into(),
                },
                command: error.command().map(str::to_string),
                diagnostic: error
                    .reply()
                    .map(|rep| rep.lines.join("\n"))
                    .unwrap_or_else(|| text.clone()),
                from_server: error.reply().is_some(),
                remote_mta: a.remote.map(|_| self.smtp.host.clone()),
            })
            .collect();
        self.queue_report(a, &failures).await;
        // Recipients refused at interception keep their own reason in the spool.
        let recorded = if a.refused_status.is_empty() {
            self.spool.fail(&a.id, &text).await
        } else {
            let per_rcpt: Vec<(String, RcptStatus)> = open
                .iter()
                .map(|r| (r.clone(), RcptStatus::Failed(text.clone())))
                .chain(a.refused_status.iter().cloned())
                .collect();
            self.spool.complete(&a.id, &per_rcpt).await
        };
        match recorded {
            Ok(()) => {
                self.bookkeeping_ok();
                a.final_outcome = Some(format!("FAILED (all recipients): {text}"));
            }
            Err(e) => self.bookkeeping_failed(&a.id, "fail", &e),
        }
    }

    /// Schedules a retry; when the queue gives up instead, reports the open recipients.
    async fn defer(&self, a: &mut Attempt, per_rcpt: &[(String, RcptStatus)], reason: &str) {
        match self.spool.defer(&a.id, per_rcpt, reason, Utc::now()).await {
            Ok(MailState::Failed) => {
                self.bookkeeping_ok();
                let gave_up = format!("gave up retrying: {reason}");
                a.say(&gave_up);
                a.final_outcome = Some(format!("FAILED: {gave_up}"));
                let failures: Vec<Failure> = per_rcpt
                    .iter()
                    .filter(|(_, s)| matches!(s, RcptStatus::Deferred(_)))
                    .map(|(r, _)| Failure {
                        recipient: r.clone(),
                        status: "4.4.7".into(),
                        command: None,
                        diagnostic: gave_up.clone(),
                        from_server: false,
                        remote_mta: a.remote.map(|_| self.smtp.host.clone()),
                    })
                    .collect();
                self.queue_report(a, &failures).await;
            }
            Ok(_) => {
                self.bookkeeping_ok();
                let next = self
                    .spool
                    .get(&a.id)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| crate::clock::console(m.next_attempt))
                    .unwrap_or_default();
                a.say(&format!("will retry at {next}"));
            }
            Err(e) => self.bookkeeping_failed(&a.id, "defer", &e),
        }
    }

    /// Queues an error report to the sender (never for a report) about `failures` and the
    /// recipients refused at interception not yet reported.
    async fn queue_report(&self, a: &mut Attempt, failures: &[Failure]) {
        let mut all = std::mem::take(&mut a.refused);
        all.extend_from_slice(failures);
        let built = report::build(
            &a.record,
            &a.message,
            &all,
            &self.report,
            &self.report_from(),
            Utc::now(),
        );
        let line = match built {
            None if a.record.origin == Origin::Report => "no report about a report".to_string(),
            None => "no error report: the mail has no sender address to report to".to_string(),
            Some((mut report, bytes)) => {
                self.start_report_transcript(&mut report, a);
                match self.enqueue_report(&report, &bytes).await {
                    Ok(rid) => {
                        let line = format!("error report to {} queued as {rid}", a.record.sender);
                        a.report = Some(rid);
                        line
                    }
                    Err(e) => format!("error report could not be queued: {e}"),
                }
            }
        };
        a.say(&line);
    }

    /// Creates the report's own transcript (named in `report.transcript`), saying which mail
    /// it reports on; its attempts are appended there.
    fn start_report_transcript(&self, report: &mut MailRecord, about: &Attempt) {
        match TransLog::create_for_mail(&self.logs_dir, report.received, &report.id, &self.log) {
            Ok(mut log) => {
                let original = about
                    .log
                    .as_ref()
                    .and_then(|l| l.path().file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "(no transcript)".into());
                log.note(&format!(
                    "error report written by mailtap about mail {} ({original}): {}",
                    about.id, report.subject
                ));
                report.transcript = log
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                if let Err(e) = log.finish() {
                    tracing::warn!(error = %e, "report transcript incomplete");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, logs = %self.logs_dir.display(), "cannot create the report's transcript")
            }
        }
    }

    /// Stores a report under its own id (the one its Message-ID shows).
    async fn enqueue_report(
        &self,
        report: &MailRecord,
        bytes: &[u8],
    ) -> Result<MailId, crate::queue::QueueError> {
        let id = MailId::parse(&report.id)?;
        self.spool.enqueue_as(id, report, bytes, Utc::now()).await
    }

    /// The spool could not record an outcome (disk full, I/O error): give the claim back so the
    /// mail is tried again in this run rather than held until a restart — but not before a
    /// back-off that doubles with every consecutive failure (1 s … 5 min), so a full disk does
    /// not turn the relay into a loop. The first failure is said loudly, the rest quietly,
    /// until the spool can be written again. At worst a recipient gets a mail twice
    /// (at-least-once), never not at all.
    fn bookkeeping_failed(&self, id: &MailId, op: &str, error: &crate::queue::QueueError) {
        let failures = self.spool_trouble.fetch_add(1, Ordering::Relaxed);
        let delay = SPOOL_BACKOFF_FIRST
            .saturating_mul(1 << failures.min(16))
            .min(SPOOL_BACKOFF_MAX);
        if failures == 0 {
            tracing::error!(%id, op, %error, "the spool cannot be written (is the disk full?); mail waits and is retried with back-off, up to every {} s, until it can", SPOOL_BACKOFF_MAX.as_secs());
        } else {
            tracing::debug!(%id, op, %error, failures, "spool still cannot be written");
        }
        let not_before = Utc::now() + delay;
        if let Err(e) = self.spool.release_until(id, not_before) {
            tracing::error!(%id, error = %e, "cannot release the claim either");
        }
    }

    /// An outcome was recorded: if the spool had been failing, say that it recovered.
    fn bookkeeping_ok(&self) {
        let failures = self.spool_trouble.swap(0, Ordering::Relaxed);
        if failures > 0 {
            tracing::warn!(failures, "the spool can be written again; delivery goes on");
        }
    }

    fn finish(&self, a: Attempt) {
        let Attempt {
            record,
            message,
            remote,
            mut log,
            mut outcome,
            final_outcome,
            report,
            ..
        } = a;
        if let (Some(log), Some(end)) = (log.as_mut(), final_outcome) {
            log.section("final outcome", Utc::now());
            log.note(&format!("mail {}: {end}", record.id));
            match report {
                Some(rid) => log.note(&format!("error report to the sender: mail {rid}")),
                None => log.note("no error report"),
            }
        }
        if let Some(log) = log {
            match log.finish() {
                Ok(path) => outcome.push(format!("transcript {}", path.display())),
                Err(e) => tracing::warn!(error = %e, "transaction log incomplete"),
            }
        }
        if self.config.console {
            console_summary(&record, &self.server_label(remote), message.len(), &outcome);
        }
    }
}

/// The last line of a finished mail's transcript: how many recipients got it, how many not.
fn final_summary(per_rcpt: &[(String, RcptStatus)]) -> String {
    let delivered = per_rcpt
        .iter()
        .filter(|(_, s)| matches!(s, RcptStatus::Delivered))
        .count();
    let refused = per_rcpt.len() - delivered;
    if refused == 0 {
        format!("DELIVERED to all {delivered} recipient(s)")
    } else {
        format!("finished: delivered to {delivered}, refused for {refused} recipient(s)")
    }
}

/// RFC 3463 codes for mail refused before any SMTP (RFC 3463 §3.2, §3.4).
fn status_for_rejection(kind: &crate::mail::record::RejectionKind) -> &'static str {
    use crate::mail::record::RejectionKind as K;
    match kind {
        K::InvalidAddress { .. } => "5.1.3",
        K::NoSender => "5.1.7",
        K::NoRecipients => "5.1.3",
        K::TooLarge { .. } => "5.3.4",
        K::Unrenderable => "5.6.0",
    }
}

/// The reply's enhanced status code, or a class-based default (`5.0.0` / `4.0.0`).
fn status_of(reply: &smtp::Reply, default: &str) -> String {
    match &reply.enhanced {
        Some(code) => code.to_string(),
        None if reply.is_transient() => "4.0.0".into(),
        None => default.to_string(),
    }
}
