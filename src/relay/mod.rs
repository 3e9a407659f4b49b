//! The relay: workers that take due mail from the spool and deliver it with the SMTP client.
//!
//! Owns delivery policy — which recipients are still open, reusing one SMTP session for
//! consecutive mails (RSET between them), turning each outcome into complete / defer / fail,
//! and queuing an error report to the sender for every permanent failure. The protocol is
//! `smtp`'s, retry arithmetic is `queue`'s, report content is `report`'s.

mod transcript;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::mail::record::Origin;
use crate::mail::MailRecord;
use crate::queue::{Claimed, MailState, RcptStatus, Spool};
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

/// Everything a worker needs; shared by all workers.
pub struct Relay {
    pub spool: Spool<MailRecord>,
    pub smtp: ClientConfig,
    pub connect: ConnectOptions,
    pub logs_dir: PathBuf,
    pub log: LogConfig,
    pub report: ReportConfig,
    pub config: RelayConfig,
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
    fn server_label(&self, remote: Option<std::net::SocketAddr>) -> String {
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
    }

    async fn worker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut session: Option<Session> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            // Register for a wake-up before looking, so an enqueue in between is not missed.
            let wake = self.spool.notified();
            let claimed = match self.spool.claim_due(Utc::now(), 1).await {
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
                    .and_then(|t| (t - Utc::now()).to_std().ok())
                    .unwrap_or(Duration::from_secs(60))
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(sleep) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            for mail in claimed {
                self.deliver(mail, &mut session).await;
            }
        }
        if let Some(s) = session.take() {
            let _ = s.quit(&mut NullTranscript).await;
        }
    }

    /// One delivery attempt of one mail, with its own Log-*.txt.
    #[tracing::instrument(level = "debug", skip_all, fields(id = %mail.id))]
    async fn deliver(&self, mail: Claimed<MailRecord>, session: &mut Option<Session>) {
        let Claimed {
            id, meta, message, ..
        } = mail;
        let record = meta.record;
        let attempt = meta.attempts + 1;
        let mut log = match TransLog::create_with(&self.logs_dir, Utc::now(), &self.log) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, logs = %self.logs_dir.display(), "cannot create the transaction log; delivering anyway");
                None
            }
        };
        if let Some(log) = log.as_mut() {
            log.http_request_head(&record.http_head);
            if !record.http_response_head.is_empty() {
                log.http_response_head(&record.http_response_head);
            }
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
        let mut outcome: Vec<String> = Vec::new();
        let mut remote = None;

        if let Some(rejection) = &record.rejected {
            // Rejected at interception: nothing goes to the server; the sender hears why.
            let reason = format!("not relayed: {}", rejection.reason);
            let failures: Vec<Failure> = record
                .recipients()
                .map(|m| local_failure(&m.addr, &reason, status_for_rejection(&rejection.kind)))
                .collect();
            let failures = if failures.is_empty() {
                vec![local_failure("(no recipients)", &reason, "5.1.3")]
            } else {
                failures
            };
            note(&mut log, &reason);
            outcome.push(reason.clone());
            self.queue_report(&record, &message, &failures, &mut log, &mut outcome)
                .await;
            if let Err(e) = self.spool.fail(&id, &reason).await {
                tracing::error!(%id, error = %e, "cannot mark mail failed");
            }
            self.finish(log, &record, remote, message.len(), &outcome);
            return;
        }

        let open: Vec<String> = record
            .recipients()
            .map(|m| m.addr.clone())
            .filter(|a| meta.recipients.get(a).is_none_or(RcptStatus::is_open))
            .collect();
        if open.is_empty() {
            let _ = self.spool.complete(&id, &[]).await;
            return;
        }
        let envelope = smtp::Envelope {
            // RFC 5321 §4.5.5: delivery reports go out with the null reverse-path.
            from: if record.origin == Origin::Report {
                String::new()
            } else {
                record.sender.clone()
            },
            rcpts: open.clone(),
        };

        let mut t = LogTranscript {
            log: log.as_mut(),
            attempt,
            log_body: self.log.log_body,
            remote: None,
        };
        if session.as_ref().is_some_and(|s| !s.is_usable()) {
            *session = None;
        }
        if let Some(s) = session.as_ref() {
            let (local, peer) = s.addrs();
            if let Some(log) = t.log.as_deref_mut() {
                log.smtp_attempt(attempt, local, peer, &self.smtp.host);
                log.note("reusing the open SMTP session (RSET starts the transaction)");
            }
            t.remote = Some(peer);
        } else {
            match Session::connect(&self.smtp, &self.connect, &mut t).await {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    remote = t.remote;
                    self.whole_mail_failed(
                        &id,
                        &record,
                        &message,
                        &open,
                        &e,
                        remote,
                        &mut log,
                        &mut outcome,
                    )
                    .await;
                    self.finish(log, &record, remote, message.len(), &outcome);
                    return;
                }
            }
        }
        let Some(s) = session.as_mut() else { return };
        let result = s.send(&envelope, &message, &mut t).await;
        // Nothing else due: end the session now, so this transcript shows the QUIT too.
        let more_due = self.spool.next_due().is_some_and(|due| due <= Utc::now());
        if !more_due || !s.is_usable() {
            if let Some(s) = session.take() {
                let _ = s.quit(&mut t).await;
            }
        }
        remote = t.remote;
        match result {
            Err(e) => {
                self.whole_mail_failed(
                    &id,
                    &record,
                    &message,
                    &open,
                    &e,
                    remote,
                    &mut log,
                    &mut outcome,
                )
                .await;
            }
            Ok(delivery) => {
                let data_error = delivery.data_error();
                let mut per_rcpt = Vec::new();
                let mut failures = Vec::new();
                let mut deferred = Vec::new();
                for (rcpt, status) in &delivery.per_rcpt {
                    let reply = status.reply();
                    let text = reply.one_line();
                    match status {
                        smtp::RcptStatus::Accepted(_) => {
                            outcome.push(format!("delivered to {rcpt}"));
                            per_rcpt.push((rcpt.clone(), RcptStatus::Delivered));
                        }
                        smtp::RcptStatus::Rejected(_) => {
                            outcome.push(format!("REJECTED {rcpt}: {text}"));
                            per_rcpt.push((rcpt.clone(), RcptStatus::Failed(text.clone())));
                            let command = match &data_error {
                                Some(e) if reply_is(e, reply) => e.command().map(str::to_string),
                                _ => Some(format!("RCPT TO:<{rcpt}>")),
                            };
                            failures.push(Failure {
                                recipient: rcpt.clone(),
                                status: status_of(reply, "5.0.0"),
                                command,
                                diagnostic: reply.lines.join("\n"),
                                from_server: true,
                                remote_mta: Some(self.server_label(remote)),
                            });
                        }
                        smtp::RcptStatus::Deferred(_) => {
                            outcome.push(format!("deferred {rcpt}: {text}"));
                            per_rcpt.push((rcpt.clone(), RcptStatus::Deferred(text.clone())));
                            deferred.push(text);
                        }
                    }
                }
                for line in &outcome {
                    note(&mut log, line);
                }
                if !failures.is_empty() {
                    self.queue_report(&record, &message, &failures, &mut log, &mut outcome)
                        .await;
                }
                if deferred.is_empty() {
                    if let Err(e) = self.spool.complete(&id, &per_rcpt).await {
                        tracing::error!(%id, error = %e, "cannot mark mail delivered");
                    }
                } else {
                    let reason = deferred.join("; ");
                    self.defer(
                        &id,
                        &record,
                        &message,
                        &per_rcpt,
                        &reason,
                        remote,
                        &mut log,
                        &mut outcome,
                    )
                    .await;
                }
            }
        }
        self.finish(log, &record, remote, message.len(), &outcome);
    }

    /// The whole attempt failed before any recipient had an outcome (connect, greeting, AUTH,
    /// MAIL, SIZE refusal, I/O): defer every open recipient, or fail them all.
    #[allow(clippy::too_many_arguments)]
    async fn whole_mail_failed(
        &self,
        id: &crate::queue::MailId,
        record: &MailRecord,
        message: &[u8],
        open: &[String],
        error: &smtp::Error,
        remote: Option<std::net::SocketAddr>,
        log: &mut Option<TransLog>,
        outcome: &mut Vec<String>,
    ) {
        let text = error.to_string();
        if error.is_transient() {
            let per_rcpt: Vec<(String, RcptStatus)> = open
                .iter()
                .map(|r| (r.clone(), RcptStatus::Deferred(text.clone())))
                .collect();
            outcome.push(format!("deferred (all recipients): {text}"));
            note(log, outcome.last().map(String::as_str).unwrap_or_default());
            self.defer(id, record, message, &per_rcpt, &text, remote, log, outcome)
                .await;
            return;
        }
        outcome.push(format!("FAILED (all recipients): {text}"));
        note(log, &text);
        let failures: Vec<Failure> = open
            .iter()
            .map(|r| Failure {
                recipient: r.clone(),
                status: error
                    .reply()
                    .map(|rep| status_of(rep, "5.0.0"))
                    .unwrap_or_else(|| "5.0.0".into()),
                command: error.command().map(str::to_string),
                diagnostic: error
                    .reply()
                    .map(|rep| rep.lines.join("\n"))
                    .unwrap_or_else(|| text.clone()),
                from_server: error.reply().is_some(),
                remote_mta: remote.map(|r| self.server_label(Some(r))),
            })
            .collect();
        self.queue_report(record, message, &failures, log, outcome)
            .await;
        if let Err(e) = self.spool.fail(id, &text).await {
            tracing::error!(%id, error = %e, "cannot mark mail failed");
        }
    }

    /// Schedules a retry; when the queue gives up instead, reports the open recipients.
    #[allow(clippy::too_many_arguments)]
    async fn defer(
        &self,
        id: &crate::queue::MailId,
        record: &MailRecord,
        message: &[u8],
        per_rcpt: &[(String, RcptStatus)],
        reason: &str,
        remote: Option<std::net::SocketAddr>,
        log: &mut Option<TransLog>,
        outcome: &mut Vec<String>,
    ) {
        match self.spool.defer(id, per_rcpt, reason, Utc::now()).await {
            Ok(MailState::Failed) => {
                let gave_up = format!("gave up retrying: {reason}");
                outcome.push(gave_up.clone());
                note(log, &gave_up);
                let failures: Vec<Failure> = per_rcpt
                    .iter()
                    .filter(|(_, s)| matches!(s, RcptStatus::Deferred(_)))
                    .map(|(r, _)| Failure {
                        recipient: r.clone(),
                        status: "4.4.7".into(),
                        command: None,
                        diagnostic: gave_up.clone(),
                        from_server: false,
                        remote_mta: remote.map(|r| self.server_label(Some(r))),
                    })
                    .collect();
                self.queue_report(record, message, &failures, log, outcome)
                    .await;
            }
            Ok(_) => {
                let next = self
                    .spool
                    .get(id)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| {
                        m.next_attempt
                            .with_timezone(&chrono::Local)
                            .format("%H:%M:%S")
                            .to_string()
                    })
                    .unwrap_or_default();
                let line = format!("will retry at {next}");
                note(log, &line);
                outcome.push(line);
            }
            Err(e) => tracing::error!(%id, error = %e, "cannot defer mail"),
        }
    }

    /// Queues an error report to the sender (never for a report).
    async fn queue_report(
        &self,
        record: &MailRecord,
        message: &[u8],
        failures: &[Failure],
        log: &mut Option<TransLog>,
        outcome: &mut Vec<String>,
    ) {
        let built = report::build(
            record,
            message,
            failures,
            &self.report,
            &self.report_from(),
            Utc::now(),
        );
        let line = match built {
            None if record.origin == Origin::Report => "no report about a report".to_string(),
            None => "no error report: the mail has no sender address to report to".to_string(),
            Some((report, bytes)) => match self.spool.enqueue(&report, &bytes).await {
                Ok(rid) => format!("error report to {} queued as {rid}", record.sender),
                Err(e) => format!("error report could not be queued: {e}"),
            },
        };
        note(log, &line);
        outcome.push(line);
    }

    fn finish(
        &self,
        log: Option<TransLog>,
        record: &MailRecord,
        remote: Option<std::net::SocketAddr>,
        bytes: usize,
        outcome: &[String],
    ) {
        let mut outcome = outcome.to_vec();
        if let Some(log) = log {
            match log.finish() {
                Ok(path) => outcome.push(format!("transcript {}", path.display())),
                Err(e) => tracing::warn!(error = %e, "transaction log incomplete"),
            }
        }
        if self.config.console {
            console_summary(record, &self.server_label(remote), bytes, &outcome);
        }
    }
}

fn note(log: &mut Option<TransLog>, text: &str) {
    if let Some(log) = log.as_mut() {
        log.note(text);
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

fn reply_is(error: &smtp::Error, reply: &smtp::Reply) -> bool {
    error.reply() == Some(reply)
}
