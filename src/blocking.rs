//! A small pool of threads for blocking work (file I/O, fsync, DNS, CPU-heavy decoding), used
//! instead of `tokio::task::spawn_blocking` and `block_in_place`.
//!
//! Owns one guarantee: submitting work never panics. tokio panics ("OS can't spawn worker
//! thread") when the OS refuses a thread (thread limit, `vm.max_map_count` reached) and no
//! blocking thread exists; here a refused spawn is logged and the job waits for a thread that
//! exists, or — when there is none — runs on the caller's thread (slower, but answered). Threads
//! are started on demand up to a bound and leave after being idle for a while. It does not
//! bound the work itself: callers bound what they submit.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Most threads the shared pool starts (each keeps its own malloc arena, so few is better).
const MAX_THREADS: usize = 16;

/// An idle thread leaves after this long without work.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How the pool starts a thread; replaceable in tests to simulate a refusing OS.
pub type Spawner = fn(Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()>;

/// Why blocking work gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockingError {
    /// The job panicked (its result is lost; the pool is fine).
    Panicked,
}

impl std::fmt::Display for BlockingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockingError::Panicked => f.write_str("a blocking job panicked"),
        }
    }
}

impl std::error::Error for BlockingError {}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// Spawn failures so far (logged at the first and then every 1000th).
    refused: u64,
}

struct Inner {
    state: Mutex<State>,
    ready: Condvar,
    max: usize,
    spawner: Spawner,
}

/// A bounded, lazily grown thread pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

fn os_spawner(f: Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mailtap-blocking".into())
        .spawn(f)
        .map(drop)
}

impl Pool {
    /// A pool of at most `max` threads (at least 1) started by `spawner`.
    pub fn with_spawner(max: usize, spawner: Spawner) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                max: max.max(1),
                spawner,
            }),
        }
    }

    /// The process-wide pool.
    pub fn shared() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool::with_spawner(MAX_THREADS, os_spawner))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock still holds a consistent state.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the async runtime.
    /// When no pool thread exists and none can be started, `f` runs on the calling thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BlockingError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(out.map_err(|_| BlockingError::Panicked));
        });
        if let Some(job) = self.submit(job) {
            // No thread at all: do it here.
            job();
        }
        rx.await.unwrap_or(Err(BlockingError::Panicked))
    }

    /// Queues `job`; returns it back when it must run on the caller (no thread could be had).
    fn submit(&self, job: Job) -> Option<Job> {
        let mut st = self.state();
        st.jobs.push_back(job);
        if st.idle >= st.jobs.len() {
            drop(st);
            self.inner.ready.notify_one();
            return None;
        }
        if st.threads >= self.inner.max {
            // Every thread is busy; the job waits for the next free one.
            return None;
        }
        st.threads += 1;
        drop(st);
        let pool = self.clone();
        match (self.inner.spawner)(Box::new(move || pool.work())) {
            Ok(()) => None,
            Err(e) => {
                let mut st = self.state();
                st.threads -= 1;
                st.refused += 1;
                if st.refused % 1000 == 1 {
                    tracing::warn!(error = %e, threads = st.threads, refused = st.refused,
                        "the OS refused a thread for blocking work");
                }
                if st.threads > 0 {
                    // A running thread will take it.
                    None
                } else {
                    // Nobody else will: take the job back (it is the newest one).
                    st.jobs.pop_back()
                }
            }
        }
    }

    /// A pool thread's loop: run jobs, leave after `IDLE` without one.
    fn work(&self) {
        let mut st = self.state();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = self.state();
                continue;
            }
            st.idle += 1;
            let (next, timeout) = self
                .inner
                .ready
                .wait_timeout(st, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }

    /// Threads currently started.
    pub fn threads(&self) -> usize {
        self.state().threads
    }
}

/// Runs `f` on the shared pool (see [`Pool::run`]).
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BlockingError> {
    Pool::shared().run(f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(_: Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::WouldBlock))
    }

    #[tokio::test]
    async fn a_refused_thread_runs_the_job_inline_instead_of_panicking() {
        // Guards "no panic on a failed thread spawn": with the OS refusing every thread the job
        // still runs and answers.
        let pool = Pool::with_spawner(4, refuse);
        for i in 0..10u32 {
            assert_eq!(pool.run(move || i * 2).await, Ok(i * 2));
        }
        assert_eq!(pool.threads(), 0);
    }

    #[tokio::test]
    async fn jobs_run_on_at_most_max_threads_and_panics_are_errors() {
        // Guards the bound and isolation: 50 concurrent jobs use at most 3 threads; a panicking
        // job is an error for its caller only.
        let pool = Pool::with_spawner(3, os_spawner);
        let mut handles = Vec::new();
        for i in 0..50u64 {
            let pool = pool.clone();
            handles.push(tokio::spawn(async move {
                pool.run(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    i
                })
                .await
            }));
        }
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap().unwrap();
            assert!(pool.threads() <= 3);
        }
        assert_eq!(sum, (0..50).sum::<u64>());
        let r: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(BlockingError::Panicked));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
