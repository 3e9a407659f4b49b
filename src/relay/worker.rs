//! The delivery loop: each worker claims due mail, runs the SMTP exchange on its own session
//! (reused for consecutive mail) and hands the outcome to `conclude`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::attempt::{local_failure, same_mailbox, Attempt, Conclusion, Transactions};
use super::transcript::{self, LogTranscript};
use super::{Relay, IN_FLIGHT};
use crate::mail::record::Origin;
use crate::mail::MailRecord;
use crate::queue::{Claimed, RcptStatus};
use crate::report::Failure;
use crate::smtp::{self, NullTranscript, Session};

/// Most mails one worker claims at once (one spool read for all of them). A worker takes its
/// share of what is waiting, so a short queue still spreads over every worker.
const CLAIM_BATCH: usize = 8;
/// Longest wait for the browser's response to reach a new mail's transcript before the first
/// attempt appends to it.
const HTTP_SECTION_WAIT: Duration = Duration::from_secs(2);

impl Relay {
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
