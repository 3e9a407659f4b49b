//! The relay: workers that take due mail from the spool and deliver it with the SMTP client.
//!
//! Owns delivery policy — which recipients are still open, reusing one SMTP session for
//! consecutive mails (RSET between them), turning each outcome into complete / defer / fail,
//! and queuing an error report to the sender for every permanent failure. The protocol is
//! `smtp`'s, retry arithmetic is `queue`'s, report content is `report`'s.

mod transcript;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};

use crate::mail::record::Origin;
use crate::mail::MailRecord;
use crate::queue::{Claimed, MailId, MailState, RcptStatus, Spool};
use crate::report::{self, Failure, ReportConfig};
use crate::smtp::{self, ClientConfig, ConnectOptions, NullTranscript, Session};
use crate::translog::{LogConfig, TransLog};

pub use transcript::{console_summary, LogTranscript};

/// `[relay]`: how many deliveries run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Concurrent SMTP sessions (each worker keeps its own and reuses it for consecutive mail).
    pub workers: usize,
    /// Print the per-mail summary on standard output.
    pub console: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            workers: 4,
            console: true,
        }
    }
}

/// Concluded deliveries whose bookkeeping may run at once behind the workers.
pub const IN_FLIGHT: usize = 64;
/// Most mails one worker claims at once (one spool read for all of them). A worker takes its
/// share of what is waiting, so a short queue still spreads over every worker.
const CLAIM_BATCH: usize = 8;
/// Longest wait for the browser's response to reach a new mail's transcript before the first
/// attempt appends to it.
const HTTP_SECTION_WAIT: Duration = Duration::from_secs(2);
/// Back-off after the first outcome the spool could not record; doubles to [`SPOOL_BACKOFF_MAX`].
const SPOOL_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const SPOOL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Everything a worker needs; shared by all workers.
pub struct Relay {
    pub spool: Spool<MailRecord>,
    pub smtp: ClientConfig,
    pub connect: ConnectOptions,
    pub logs_dir: PathBuf,
    pub log: LogConfig,
    pub report: ReportConfig,
    pub config: RelayConfig,
    /// Bounds the bookkeeping tasks running behind the workers.
    pub in_flight: Arc<Semaphore>,
    /// Consecutive outcomes the spool could not record (0 = healthy).
    pub spool_trouble: AtomicU32,
}

impl Relay {
    /// The From address of error reports.
    fn report_from(&self) -> String {
        if !self.report.from.is_empty() {
            return self.report.from.clone();
        }
        match &self.smtp.username {
            Some(u) if u.contains('@') => u.clone(),
            _ => "mailtap@localhost".to_string(),
        }
    }

    /// `name (ip:port)` of the upstream, for the console and reports.
    fn server_label(&self, remote: Option<SocketAddr>) -> String {
        match remote {
            Some(r) => format!("{} ({r})", self.smtp.host),
            None => format!("{}:{}", self.smtp.host, self.smtp.effective_port()),
        }
    }

    /// Runs `workers` delivery loops until `stop` turns true; in-flight deliveries finish.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.config.workers.max(1) {
            tasks.spawn(self.clone().worker(stop.clone()));
        }
        while tasks.join_next().await.is_some() {}
        // Wait for the bookkeeping of the last deliveries.
        let _ = self.in_flight.acquire_many(IN_FLIGHT as u32).await;
    }

    async fn worker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut session: Option<Session> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            // Register for a wake-up before looking, so an enqueue in between is not missed.
            let wake = self.spool.notified();
            let workers = self.config.workers.max(1);
            let now = Utc::now();
            let share = self.spool.due(now, workers * CLAIM_BATCH) / workers;
            let claimed = match self.spool.claim_due(now, share.clamp(1, CLAIM_BATCH)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim mail from the spool");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                // Idle: close the SMTP session rather than hold it open.
                if let Some(s) = session.take() {
                    let _ = s.quit(&mut NullTranscript).await;
                }
                let sleep = self
                    .spool
                    .next_due()
                    .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(60))
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(sleep) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let mut claimed = claimed.into_iter().peekable();
            while let Some(mail) = claimed.next() {
                if *stop.borrow() {
                    // Shutting down: hand the rest of the batch back untouched.
                    for rest in std::iter::once(mail).chain(claimed.by_ref()) {
                        if let Err(e) = self.spool.release(&rest.id) {
                            tracing::warn!(id = %rest.id, error = %e, "could not release a claim");
                        }
                    }
                    break;
                }
                let more = claimed.peek().is_some();
                self.deliver(mail, &mut session, more).await;
            }
        }
        if let Some(s) = session.take() {
            let _ = s.quit(&mut NullTranscript).await;
        }
    }

    /// One delivery attempt of one mail, with its own Log-*.txt. The SMTP exchange happens
    /// here, on the worker's session; the bookkeeping after it (spool state, reports, log, console)
    /// is handed to a task so the session can go on with the next mail while the spool records it.
    /// `more` says this worker has further mail in hand (so the session stays open).
    #[tracing::instrument(level = "debug", skip_all, fields(id = %mail.id))]
    async fn deliver(
        self: &Arc<Self>,
        mail: Claimed<MailRecord>,
        session: &mut Option<Session>,
        more: bool,
    ) {
        if mail.meta.attempts == 0 {
            // The browser's response is written just after the mail is stored: let its
            // section reach the transcript first, so the file reads in order.
            crate::translog::http_written(mail.id.as_str(), HTTP_SECTION_WAIT).await;
        }
        let (mut a, open) = self.begin(mail);
        if a.record.transcript.is_none() {
            self.remember_transcript(&mut a).await;
        }
        if let Some(rejection) = a.record.rejected.clone() {
            return self
                .spawn_conclusion(a, Conclusion::Rejected(rejection))
                .await;
        }
        if open.is_empty() {
            return self.spawn_conclusion(a, Conclusion::NothingOpen).await;
        }
        let envelope = smtp::Envelope {
            // RFC 5321 §4.5.5: delivery reports go out with the null reverse-path.
            from: if a.record.origin == Origin::Report {
                String::new()
            } else {
                a.record.sender.clone()
            },
            rcpts: open.clone(),
        };
        let mut t = LogTranscript {
            log: a.log.as_mut(),
            attempt: a.attempt,
            log_body: self.log.log_body,
            remote: None,
        };
        if session.as_ref().is_some_and(|s| !s.is_usable()) {
            *session = None;
        }
        if let Some(s) = session.as_ref() {
            let (local, peer) = s.addrs();
            if let Some(log) = t.log.as_deref_mut() {
                log.smtp_attempt(t.attempt, local, peer, &self.smtp.host);
                log.note("reusing the open SMTP session (RSET starts the transaction)");
            }
            t.remote = Some(peer);
        } else {
            match Session::connect(&self.smtp, &self.connect, &mut t).await {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    a.remote = t.remote;
                    return self
                        .spawn_conclusion(a, Conclusion::SetupFailed(open, e))
                        .await;
                }
            }
        }
        let Some(s) = session.as_mut() else { return };
        let result = send_in_transactions(s, envelope, &a.message, &mut t).await;
        // Nothing else due: end the session now, so this transcript shows the QUIT too.
        let more_due = more || self.spool.next_due().is_some_and(|due| due <= Utc::now());
        if !more_due || !s.is_usable() {
            if let Some(s) = session.take() {
                let _ = s.quit(&mut t).await;
            }
        }
        a.remote = t.remote;
        let conclusion = match result {
            Err(e) => Conclusion::Failed(open, e),
            Ok(sent) => Conclusion::Sent(sent),
        };
        self.spawn_conclusion(a, conclusion).await;
    }

    /// Opens the mail's transcript (appending) and lists the recipients still open.
    fn begin(&self, mail: Claimed<MailRecord>) -> (Attempt, Vec<String>) {
        let Claimed {
            id, meta, message, ..
        } = mail;
        let mut record = meta.record;
        if record.id != id.as_str() {
            // A record queued before ids were unified: show the spool's id everywhere now.
            record.id = id.as_str().to_string();
        }
        let attempt = meta.attempts + 1;
        let mut log = transcript::open_for_attempt(&self.logs_dir, &self.log, &record);
        if let Some(log) = log.as_mut() {
            log.note(&format!(
                "mail {} ({:?}), attempt {attempt}: sender {} ({:?}), {} recipient(s), {} bytes",
                record.id,
                record.origin,
                if record.sender.is_empty() {
                    "<>"
                } else {
                    &record.sender
                },
                record.sender_source,
                record.recipients().count(),
                message.len()
            ));
        }
        let mut open: Vec<String> = Vec::new();
        for addr in record.valid_recipients().map(|(_, m)| &m.addr) {
            // One RCPT per address even when it is in To and Bcc alike.
            let open_here = meta.recipients.get(addr).is_none_or(RcptStatus::is_open);
            if open_here && !open.iter().any(|o| same_mailbox(o, addr)) {
                open.push(addr.clone());
            }
        }
        // Recipients refused at interception, each with its own reason: recorded and reported
        // with this attempt's outcome, once (afterwards the spool has them as failed).
        let mut refused = Vec::new();
        if record.rejected.is_none() {
            for inv in &record.invalid_recipients {
                let new_here = meta
                    .recipients
                    .get(&inv.addr)
                    .is_none_or(RcptStatus::is_open);
                if new_here
                    && !open.contains(&inv.addr)
                    && !refused.iter().any(|f: &Failure| f.recipient == inv.addr)
                {
                    refused.push(local_failure(&inv.addr, &inv.reason, "5.1.3"));
                }
            }
        }
        let mut attempt = Attempt {
            id,
            record,
            message,
            attempt,
            remote: None,
            log,
            outcome: Vec::new(),
            final_outcome: None,
            report: None,
            refused_status: refused
                .iter()
                .map(|f| {
                    (
                        f.recipient.clone(),
                        RcptStatus::Failed(f.diagnostic.clone()),
                    )
                })
                .collect(),
            refused: Vec::new(),
        };
        for f in &refused {
            attempt.say(&format!("REJECTED {}: {}", f.recipient, f.diagnostic));
        }
        attempt.refused = refused;
        (attempt, open)
    }

    /// A mail from before transcripts were named in the record (or whose transcript could not
    /// be created when it was taken): remember the one this attempt opened, so later attempts
    /// append to it.
    async fn remember_transcript(&self, a: &mut Attempt) {
        let Some(name) = a
            .log
            .as_ref()
            .and_then(|l| l.path().file_name())
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return;
        };
        a.record.transcript = Some(name);
        if let Err(e) = self.spool.update_record(&a.id, &a.record).await {
            tracing::warn!(id = %a.id, error = %e, "cannot remember the transcript's name; a later attempt starts a new one");
        }
    }

    /// Runs the bookkeeping of a finished exchange in its own task, holding one of the bounded
    /// in-flight slots (so memory stays flat however long the queue is).
    async fn spawn_conclusion(self: &Arc<Self>, attempt: Attempt, conclusion: Conclusion) {
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

/// One mail's delivery attempt: what is known and said about it so far.
struct Attempt {
    id: MailId,
    record: MailRecord,
    message: Vec<u8>,
    /// 1-based attempt number.
    attempt: u32,
    /// The server that answered, once connected.
    remote: Option<SocketAddr>,
    log: Option<TransLog>,
    /// Outcome lines for the console.
    outcome: Vec<String>,
    /// Set when this attempt ended the mail (delivered or failed): the transcript's last
    /// section says so, with the error report's id when one was queued.
    final_outcome: Option<String>,
    /// The id of the error report queued in this attempt.
    report: Option<MailId>,
    /// Recipients refused at interception, not yet in a queued report.
    refused: Vec<Failure>,
    /// Their statuses, recorded with this attempt's outcome.
    refused_status: Vec<(String, RcptStatus)>,
}

impl Attempt {
    /// Records an outcome line in the transcript and for the console.
    fn say(&mut self, line: &str) {
        if let Some(log) = self.log.as_mut() {
            log.note(line);
        }
        self.outcome.push(line.to_string());
    }
}

/// How the SMTP exchange (if any) ended.
enum Conclusion {
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
struct Transactions {
    done: Vec<smtp::Delivery>,
    rest: Option<(Vec<String>, smtp::Error)>,
}

/// Most transactions one attempt runs for one mail (each must deliver to someone).
const MAX_TRANSACTIONS: usize = 1000;

/// Sends `envelope` in as many transactions as the server needs: RFC 5321 §4.5.3.1.10 — the
/// recipients a server refuses with `452 4.5.3` (too many recipients) after accepting the
/// message for others go in a further transaction on the same session at once. Each further
/// transaction must make progress, so this ends. `Err` only when the first transaction failed
/// as a whole.
async fn send_in_transactions(
    s: &mut Session,
    mut envelope: smtp::Envelope,
    message: &[u8],
    t: &mut LogTranscript<'_>,
) -> Result<Transactions, smtp::Error> {
    let mut done: Vec<smtp::Delivery> = Vec::new();
    loop {
        let mut delivery = match s.send(&envelope, message, t).await {
            Ok(d) => d,
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => {
                return Ok(Transactions {
                    done,
                    rest: Some((envelope.rcpts, e)),
                })
            }
        };
        let more = delivery.over_the_limit();
        if more.is_empty() || done.len() + 1 >= MAX_TRANSACTIONS || !s.is_usable() {
            done.push(delivery);
            return Ok(Transactions { done, rest: None });
        }
        if let Some(log) = t.log.as_deref_mut() {
            log.note(&format!(
                "the server takes {} recipient(s) per transaction (452 4.5.3): the other {} go in a new transaction now (RFC 5321 §4.5.3.1.10)",
                delivery.per_rcpt.len() - more.len(),
                more.len()
            ));
        }
        delivery.per_rcpt.retain(|(r, _)| !more.contains(r));
        done.push(delivery);
        envelope.rcpts = more;
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

/// Same mailbox: local part exactly, domain case-insensitively (RFC 5321 §2.4).
fn same_mailbox(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

fn local_failure(rcpt: &str, reason: &str, status: &str) -> Failure {
    Failure {
        recipient: rcpt.to_string(),
        status: status.to_string(),
        command: None,
        diagnostic: reason.to_string(),
        from_server: false,
        remote_mta: None,
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
