//! One mail transaction on an open session: MAIL, RCPT…, DATA, with per-recipient outcomes.
//!
//! Owns the transaction rules: local refusals before anything is sent (unsafe address, SIZE
//! limit, SMTPUTF8 missing), MAIL parameters (SIZE, BODY=8BITMIME, SMTPUTF8), PIPELINING of
//! RSET+MAIL+RCPTs in one write (RFC 2920), no DATA when every recipient failed, and applying a
//! DATA-stage reply to every accepted recipient. Retry policy belongs to the relay.

use super::config::secs;
use super::error::{Error, Stage};
use super::session::Session;
use super::transcript::{Transcript, TranscriptEvent};
use crate::smtp::proto::data::{self, Prepared};
use crate::smtp::proto::reply::Reply;

/// The SMTP envelope: reverse-path and forward-paths, bare addr-specs without `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sender; empty for the null reverse-path `<>` (used for error reports).
    pub from: String,
    pub rcpts: Vec<String>,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptStatus {
    /// RCPT got 2yz and, if DATA ran, the message was accepted for it.
    Accepted(Reply),
    /// 5yz at RCPT, or at DATA / end of data for an accepted recipient.
    Rejected(Reply),
    /// 4yz at RCPT, or at DATA / end of data for an accepted recipient: retry later.
    Deferred(Reply),
}

impl RcptStatus {
    fn from_reply(reply: Reply) -> Self {
        if reply.is_positive() {
            RcptStatus::Accepted(reply)
        } else if reply.is_transient() {
            RcptStatus::Deferred(reply)
        } else {
            RcptStatus::Rejected(reply)
        }
    }
    /// The reply that decided this status.
    pub fn reply(&self) -> &Reply {
        match self {
            RcptStatus::Accepted(r) | RcptStatus::Rejected(r) | RcptStatus::Deferred(r) => r,
        }
    }
    pub fn is_accepted(&self) -> bool {
        matches!(self, RcptStatus::Accepted(_))
    }
    /// True for [`RcptStatus::Deferred`]: the same as `Error::is_transient` for its reply.
    pub fn is_transient(&self) -> bool {
        matches!(self, RcptStatus::Deferred(_))
    }
}

/// The outcome of [`Session::send`] once MAIL was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// One entry per envelope recipient, in envelope order.
    pub per_rcpt: Vec<(String, RcptStatus)>,
    /// The reply that ended DATA: the end-of-data reply, or a non-354 reply to DATA.
    /// `None` when no recipient was accepted and DATA was not sent.
    pub data_reply: Option<Reply>,
    /// Which stage `data_reply` belongs to ([`Stage::Data`] or [`Stage::DataEnd`]).
    pub data_stage: Option<Stage>,
}

impl Delivery {
    /// Recipients the server accepted the message for.
    pub fn delivered(&self) -> impl Iterator<Item = &str> {
        self.per_rcpt
            .iter()
            .filter(|(_, s)| s.is_accepted())
            .map(|(r, _)| r.as_str())
    }
    /// True when every recipient was accepted.
    pub fn all_delivered(&self) -> bool {
        self.per_rcpt.iter().all(|(_, s)| s.is_accepted())
    }
    /// Recipients the server would not take in this transaction only because it had taken
    /// enough (RFC 5321 §4.5.3.1.10: `452`, enhanced `4.5.3` when given), while it accepted the
    /// message for others: they belong in a further transaction now, not in a retry later.
    /// Empty when the message was not accepted for anyone (then a 452 is an ordinary deferral).
    pub fn over_the_limit(&self) -> Vec<String> {
        let accepted = self.data_reply.as_ref().is_some_and(Reply::is_positive)
            && self.per_rcpt.iter().any(|(_, s)| s.is_accepted());
        if !accepted {
            return Vec::new();
        }
        self.per_rcpt
            .iter()
            .filter(|(_, s)| {
                let r = s.reply();
                s.is_transient()
                    && r.code == 452
                    && r.enhanced
                        .is_none_or(|e| (e.class, e.subject, e.detail) == (4, 5, 3))
            })
            .map(|(rcpt, _)| rcpt.clone())
            .collect()
    }

    /// The DATA-stage failure as an [`Error`] (for `is_transient` and reports), if any.
    pub fn data_error(&self) -> Option<Error> {
        let reply = self.data_reply.as_ref()?;
        if reply.is_positive() {
            return None;
        }
        let stage = self.data_stage.unwrap_or(Stage::DataEnd);
        let command = if stage == Stage::Data { "DATA" } else { "." };
        Some(Error::Reply {
            stage,
            command: Some(command.into()),
            reply: reply.clone(),
        })
    }
}

impl Session {
    /// Runs one transaction for `message` (RFC 5322 bytes; any line endings). Before anything is
    /// sent, refuses unsafe addresses, a message over the server's SIZE limit, and non-ASCII
    /// addresses when SMTPUTF8 is missing. `Err` means the whole mail failed at that stage
    /// (including MAIL refused); `Ok` carries each recipient's outcome. After `Err` of the
    /// I/O/timeout/protocol kind the session is unusable ([`Session::is_usable`]).
    #[tracing::instrument(skip_all, fields(from = %env.from, rcpts = env.rcpts.len(), bytes = message.len()))]
    pub async fn send(
        &mut self,
        env: &Envelope,
        message: &[u8],
        t: &mut dyn Transcript,
    ) -> Result<Delivery, Error> {
        let r = self.send_inner(env, message, t).await;
        self.note(&r, t);
        r
    }

    async fn send_inner(
        &mut self,
        env: &Envelope,
        message: &[u8],
        t: &mut dyn Transcript,
    ) -> Result<Delivery, Error> {
        if self.broken {
            return Err(Error::Unusable);
        }
        if env.rcpts.is_empty() {
            return Err(Error::Config("envelope has no recipients".into()));
        }
        let bad_rcpt = env
            .rcpts
            .iter()
            .find(|a| a.is_empty() || !data::is_safe_path(a));
        if let Some(a) = bad_rcpt.or(Some(&env.from).filter(|f| !data::is_safe_path(f))) {
            return Err(Error::InvalidAddress { address: a.clone() });
        }
        let prepared = data::prepare(message);
        if let Some(limit) = self.caps.size_limit {
            if prepared.size as u64 > limit {
                return Err(Error::SizeExceeded {
                    limit,
                    size: prepared.size,
                });
            }
        }
        let utf8 = std::iter::once(&env.from)
            .chain(&env.rcpts)
            .find(|a| data::needs_smtputf8(a));
        if let Some(a) = utf8 {
            if !self.caps.smtputf8 {
                return Err(Error::Smtputf8Unsupported { address: a.clone() });
            }
        }
        let mail = self.mail_command(env, &prepared, utf8.is_some());
        let rcpts: Vec<String> = env.rcpts.iter().map(|r| format!("RCPT TO:<{r}>")).collect();
        let rset_first = self.transactions > 0;
        self.transactions += 1;

        let (mail_reply, rcpt_replies) = if self.caps.pipelining {
            self.pipelined(rset_first, &mail, &rcpts, t).await?
        } else {
            self.lockstep(rset_first, &mail, &rcpts, t).await?
        };
        if !mail_reply.is_positive() {
            return Err(Error::Reply {
                stage: Stage::Mail,
                command: Some(mail),
                reply: mail_reply,
            });
        }
        let mut per_rcpt: Vec<(String, RcptStatus)> = env
            .rcpts
            .iter()
            .cloned()
            .zip(rcpt_replies.into_iter().map(RcptStatus::from_reply))
            .collect();
        if !per_rcpt.iter().any(|(_, s)| s.is_accepted()) {
            // Every recipient failed: no DATA; close the transaction.
            self.reset_inner(t).await?;
            return Ok(Delivery {
                per_rcpt,
                data_reply: None,
                data_stage: None,
            });
        }
        let (stage, reply) = self.data(&prepared, t).await?;
        if !reply.is_positive() {
            // A DATA-stage reply applies to every recipient accepted at RCPT.
            for (_, s) in per_rcpt.iter_mut() {
                if s.is_accepted() {
                    *s = RcptStatus::from_reply(reply.clone());
                }
            }
        }
        Ok(Delivery {
            per_rcpt,
            data_reply: Some(reply),
            data_stage: Some(stage),
        })
    }

    fn mail_command(&self, env: &Envelope, p: &Prepared, utf8: bool) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", env.from);
        if self.caps.size {
            cmd.push_str(&format!(" SIZE={}", p.size));
        }
        if (p.eight_bit || utf8) && self.caps.eightbitmime {
            cmd.push_str(" BODY=8BITMIME");
        } else if p.eight_bit {
            tracing::warn!("8-bit message but the server lacks 8BITMIME; sending as is");
        }
        if utf8 {
            cmd.push_str(" SMTPUTF8");
        }
        cmd
    }

    /// RFC 2920: [RSET] MAIL RCPT… in one write, then all replies in order.
    async fn pipelined(
        &mut self,
        rset_first: bool,
        mail: &str,
        rcpts: &[String],
        t: &mut dyn Transcript,
    ) -> Result<(Reply, Vec<Reply>), Error> {
        let to = self.cfg.timeouts.clone();
        let mut shown: Vec<&str> = Vec::with_capacity(rcpts.len() + 2);
        if rset_first {
            shown.push("RSET");
        }
        shown.push(mail);
        shown.extend(rcpts.iter().map(String::as_str));
        let mut wire = Vec::with_capacity(shown.iter().map(|s| s.len() + 2).sum());
        for s in &shown {
            wire.extend_from_slice(s.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        self.conn
            .write_cmds(Stage::Mail, &wire, &shown, secs(to.mail_secs), t)
            .await?;
        // Read every reply, even after a failure, so the dialogue stays in step.
        let rset = if rset_first {
            Some(closing(
                Stage::Rset,
                "RSET",
                self.conn
                    .read_reply(Stage::Rset, secs(to.command_secs), t)
                    .await?,
            )?)
        } else {
            None
        };
        let mail_reply = closing(
            Stage::Mail,
            mail,
            self.conn
                .read_reply(Stage::Mail, secs(to.mail_secs), t)
                .await?,
        )?;
        let mut replies = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            replies.push(closing(
                Stage::Rcpt,
                r,
                self.conn
                    .read_reply(Stage::Rcpt, secs(to.rcpt_secs), t)
                    .await?,
            )?);
        }
        if let Some(reply) = rset.filter(|r| !r.is_positive()) {
            return Err(Error::Reply {
                stage: Stage::Rset,
                command: Some("RSET".into()),
                reply,
            });
        }
        Ok((mail_reply, replies))
    }

    /// Without PIPELINING: one command, one reply; stops after a refused MAIL.
    async fn lockstep(
        &mut self,
        rset_first: bool,
        mail: &str,
        rcpts: &[String],
        t: &mut dyn Transcript,
    ) -> Result<(Reply, Vec<Reply>), Error> {
        let to = self.cfg.timeouts.clone();
        if rset_first {
            self.reset_inner(t).await?;
        }
        let mail_reply = self
            .conn
            .command(Stage::Mail, mail, mail, secs(to.mail_secs), t)
            .await?;
        let mail_reply = closing(Stage::Mail, mail, mail_reply)?;
        let mut replies = Vec::with_capacity(rcpts.len());
        if mail_reply.is_positive() {
            for r in rcpts {
                replies.push(closing(
                    Stage::Rcpt,
                    r,
                    self.conn
                        .command(Stage::Rcpt, r, r, secs(to.rcpt_secs), t)
                        .await?,
                )?);
            }
        }
        Ok((mail_reply, replies))
    }

    /// DATA → 354 → payload → end-of-data reply. Returns the stage and reply that ended it.
    async fn data(
        &mut self,
        p: &Prepared,
        t: &mut dyn Transcript,
    ) -> Result<(Stage, Reply), Error> {
        let to = self.cfg.timeouts.clone();
        let reply = self
            .conn
            .command(Stage::Data, "DATA", "DATA", secs(to.data_init_secs), t)
            .await?;
        if reply.code != 354 {
            return Ok((Stage::Data, reply));
        }
        t.event(TranscriptEvent::DataSummary {
            header_block: &p.header_block,
            body_bytes: p.body_bytes,
        });
        if t.wants_body() {
            t.event(TranscriptEvent::Data(&p.payload[..p.payload.len() - 3]));
        }
        self.conn
            .write_data(&p.payload, secs(to.data_block_secs))
            .await?;
        t.event(TranscriptEvent::Sent("."));
        let reply = self
            .conn
            .read_reply(Stage::DataEnd, secs(to.data_end_secs), t)
            .await?;
        Ok((Stage::DataEnd, reply))
    }
}

/// RFC 5321 §3.8: 421 means the server is closing the channel; stop reading further replies
/// and surface it as an error (transient) instead of a per-recipient status.
fn closing(stage: Stage, command: &str, reply: Reply) -> Result<Reply, Error> {
    if reply.code == 421 {
        Err(Error::Reply {
            stage,
            command: Some(command.to_string()),
            reply,
        })
    } else {
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::proto::reply::ReplyParser;

    fn reply(line: &str) -> Reply {
        let mut p = ReplyParser::new(4096, 10);
        p.push(format!("{line}\r\n").as_bytes()).unwrap().unwrap()
    }

    fn delivery(rcpts: &[(&str, &str)], data: Option<&str>) -> Delivery {
        Delivery {
            per_rcpt: rcpts
                .iter()
                .map(|(r, l)| (r.to_string(), RcptStatus::from_reply(reply(l))))
                .collect(),
            data_reply: data.map(reply),
            data_stage: data.map(|_| Stage::DataEnd),
        }
    }

    #[test]
    fn over_the_limit_is_452_after_the_message_went_to_others() {
        // Guards RFC 5321 §4.5.3.1.10: only "too many recipients" refusals in a transaction that
        // delivered to someone are sent again at once; other 4yz wait for a retry.
        let ok = "250 2.1.5 Ok";
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &[("a", ok), ("b", "452 4.5.3 Too many recipients")],
                Some("250 2.0.0 queued"),
                &["b"],
            ),
            (
                &[("a", ok), ("b", "452 too many")],
                Some("250 queued"),
                &["b"],
            ),
            (
                &[("a", ok), ("b", "452 4.3.1 Insufficient storage")],
                Some("250 queued"),
                &[],
            ),
            (
                &[("a", ok), ("b", "451 4.5.3 later")],
                Some("250 queued"),
                &[],
            ),
            (
                &[("a", ok), ("b", "452 4.5.3 Too many")],
                Some("451 4.3.0 try later"),
                &[],
            ),
            (&[("a", "452 4.5.3 Too many")], None, &[]),
            (
                &[("a", ok), ("b", "550 5.1.1 unknown"), ("c", "452 4.5.3 x")],
                Some("250 ok"),
                &["c"],
            ),
        ];
        for (rcpts, data, want) in cases {
            let got = delivery(rcpts, *data).over_the_limit();
            assert_eq!(got, want.to_vec(), "{rcpts:?} {data:?}");
        }
    }
}
