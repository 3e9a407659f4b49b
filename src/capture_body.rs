//! Reading an intercepted request body under three bounds: its size, its time, and the global
//! memory budget shared by every intercepted body in flight.
//!
//! Owns: the body deadline (`[intercept].body_timeout_secs`, extended by every
//! `body_min_rate` bytes received, capped by `body_max_secs` — the scheme of Apache's
//! mod_reqtimeout), the byte budget (`max_inflight_bytes`, waited for up to
//! `budget_wait_secs`), and reading into one buffer sized from `Content-Length` (no second
//! copy of the body). It does not decide what a body means or answer the browser
//! (`capture` turns a [`BodyError`] into the response).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Budget accounting unit (bytes per semaphore permit).
const UNIT: u64 = 1024;

/// How much more budget a body without `Content-Length` reserves each time it outgrows its
/// reservation.
const CHUNKED_STEP: u64 = 1024 * 1024;

/// The limits a body is read under.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Largest body (`[limits].max_intercept_body_bytes`).
    pub max_bytes: usize,
    /// First allowance for the body to arrive.
    pub timeout: Duration,
    /// Bytes per second that earn one more second; 0 = no rate, only `max_time`.
    pub min_rate: u64,
    /// Hard deadline for the whole body.
    pub max_time: Duration,
    /// How long to wait for room in the budget.
    pub budget_wait: Duration,
}

/// The global byte budget for intercepted bodies in flight. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    units: u64,
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Budget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64 / 2);
        Budget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The budget's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.units * UNIT
    }

    /// Bytes currently free.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Reserves room for `bytes` more (all of the budget at most), waiting until `deadline`.
    async fn reserve(&self, bytes: u64, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.units);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        let acquire = Arc::clone(&self.permits).acquire_many_owned(units);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Some(permit),
            // A closed semaphore (never closed here) or the wait ran out.
            _ => None,
        }
    }
}

/// A body's share of the budget; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permits: Vec<OwnedSemaphorePermit>,
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Over `max_bytes` (declared or received).
    TooLarge { limit: usize },
    /// It fell behind its deadline after `received` bytes in `elapsed`.
    TooSlow { received: u64, elapsed: Duration },
    /// No room in the budget within `budget_wait`.
    NoBudget { budget: u64, waited: Duration },
    /// The connection failed or the client aborted.
    Read(hyper::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            BodyError::TooSlow { received, elapsed } => write!(
                f,
                "body too slow: {received} bytes in {:.1} s",
                elapsed.as_secs_f64()
            ),
            BodyError::NoBudget { budget, waited } => write!(
                f,
                "no room in the {budget}-byte budget for bodies in flight after {} s",
                waited.as_secs()
            ),
            BodyError::Read(e) => write!(f, "could not read the body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The deadline for a body that started at `start` and has `received` bytes so far.
fn deadline(limits: &BodyLimits, start: Instant, received: u64) -> Instant {
    let hard = start + limits.max_time;
    if limits.min_rate == 0 {
        return hard;
    }
    let earned = Duration::from_secs_f64(received as f64 / limits.min_rate as f64);
    (start + limits.timeout + earned).min(hard)
}

/// Reads `body` (declared `Content-Length` if any) under `limits`, holding its share of
/// `budget` from before the first byte is read; the share is returned with the body and must
/// be kept as long as the body (or what is decoded from it) is in memory.
pub async fn read(
    mut body: Incoming,
    declared: Option<u64>,
    limits: &BodyLimits,
    budget: &Budget,
) -> Result<(Bytes, Reservation), BodyError> {
    let limit = limits.max_bytes;
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let wait_start = Instant::now();
    let wait_until = wait_start + limits.budget_wait;
    let no_budget = || BodyError::NoBudget {
        budget: budget.bytes(),
        waited: limits.budget_wait,
    };
    let mut reserved = declared.unwrap_or(CHUNKED_STEP).max(1);
    let first = budget
        .reserve(reserved, wait_until)
        .await
        .ok_or_else(no_budget)?;
    let mut permits = vec![first];
    // The time allowance starts once the body is admitted: waiting for budget is mailtap's
    // doing, not the client's (TCP flow control holds the client meanwhile).
    let start = Instant::now();
    let mut data: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let received = data.len() as u64;
        let frame =
            match tokio::time::timeout_at(deadline(limits, start, received), body.frame()).await {
                Err(_) => {
                    return Err(BodyError::TooSlow {
                        received,
                        elapsed: start.elapsed(),
                    })
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Read(e)),
                Ok(Some(Ok(frame))) => frame,
            };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        let need = (data.len() + chunk.len()) as u64;
        if need > reserved && reserved < budget.bytes() {
            // A body without Content-Length (or longer than it said) grows its share in steps.
            let more = (need - reserved).max(CHUNKED_STEP);
            let p = budget
                .reserve(more, Instant::now() + limits.budget_wait)
                .await
                .ok_or_else(no_budget)?;
            reserved += more;
            permits.push(p);
        }
        data.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(data), Reservation { _permits: permits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_grows_with_bytes_and_stops_at_the_hard_limit() {
        // Guards the mod_reqtimeout arithmetic: base + received/rate, never past max_time.
        let limits = BodyLimits {
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(20),
            min_rate: 1000,
            max_time: Duration::from_secs(600),
            budget_wait: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        assert_eq!(deadline(&limits, t0, 0), t0 + Duration::from_secs(20));
        assert_eq!(deadline(&limits, t0, 10_000), t0 + Duration::from_secs(30));
        assert_eq!(
            deadline(&limits, t0, 10_000_000),
            t0 + Duration::from_secs(600)
        );
        let no_rate = BodyLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(deadline(&no_rate, t0, 0), t0 + Duration::from_secs(600));
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_released() {
        // Guards the global budget: a reservation blocks others until dropped; a request larger
        // than the whole budget takes all of it rather than never fitting.
        let b = Budget::new(10 * UNIT);
        let soon = || Instant::now() + Duration::from_millis(50);
        let big = b
            .reserve(100 * UNIT, soon())
            .await
            .expect("takes everything");
        assert_eq!(b.available(), 0);
        assert!(b.reserve(1, soon()).await.is_none());
        drop(big);
        assert_eq!(b.available(), 10 * UNIT);
        let a = b.reserve(6 * UNIT, soon()).await.unwrap();
        assert!(b.reserve(5 * UNIT, soon()).await.is_none());
        assert!(b.reserve(4 * UNIT, soon()).await.is_some());
        drop(a);
    }
}
