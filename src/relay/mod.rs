//! The relay: workers that take due mail from the spool and deliver it with the SMTP client.
//!
//! Owns delivery policy — which recipients are still open, reusing one SMTP session for
//! consecutive mails (RSET between them), turning each outcome into complete / defer / fail,
//! and queuing an error report to the sender for every permanent failure. The protocol is
//! `smtp`'s, retry arithmetic is `queue`'s, report content is `report`'s.
//!
//! # Layout
//! - this file: [`RelayConfig`] and [`Relay`], what every worker shares.
//! - `worker`: the delivery loop — claim due mail, run the SMTP exchange on the worker's
//!   session, hand the outcome over.
//! - `conclude`: the bookkeeping after each delivery — per-recipient outcomes, spool state,
//!   error reports, the transcript's last section and the console line.
//! - `attempt`: what the two pass between them (one `Attempt` and its `Conclusion`).
//! - `transcript`: the Log-*.txt observer of the SMTP client, and the console summary.
//!
//! Dependencies run one way: `worker` → `conclude` → `attempt`; all of them use this file's
//! types, and this file uses none of theirs.

mod attempt;
mod conclude;
mod transcript;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::mail::MailRecord;
use crate::queue::Spool;
use crate::report::ReportConfig;
use crate::smtp::{ClientConfig, ConnectOptions};
use crate::translog::LogConfig;

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
}
