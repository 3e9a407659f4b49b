//! Crash failpoints for the enqueue path, used by the crash tests (`queue/crash_tests.rs`).
//!
//! They exist only in the library's own test build (`cfg(test)`): in every other build —
//! the `mailtap` binary, release or not, and the library as the integration tests link it —
//! [`hit`] is an empty function and nothing reads the variable below (`tests/no_failpoints.rs`
//! checks the binary).
//!
//! In the test build, `MAILTAP_CRASH_AT=<step>` or `<step>:<n>` makes the process call
//! `std::process::abort()` the `n`-th time (default 1st) enqueue reaches `<step>`. The variable
//! is read once per process and only the enqueue path consults it. Steps, in order: `mkdir`,
//! `eml-partial`, `eml-written`, `meta-written`, `synced`, `renamed`, `dir-synced` (see
//! `store::Store::write_new`).

/// Outside the library's test build a failpoint is nothing.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn hit(_step: &'static str) {}

#[cfg(test)]
pub(crate) use armed::{hit, ENV, STEPS};

#[cfg(test)]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The steps `hit` may be called with, in the order enqueue passes them.
    pub(crate) const STEPS: [&str; 7] = [
        "mkdir",
        "eml-partial",
        "eml-written",
        "meta-written",
        "synced",
        "renamed",
        "dir-synced",
    ];

    /// Name of the environment variable.
    pub(crate) const ENV: &str = "MAILTAP_CRASH_AT";

    struct Armed {
        step: String,
        nth: u64,
        seen: AtomicU64,
    }

    fn armed() -> Option<&'static Armed> {
        static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var(ENV).ok()?;
                parse(&v).map(|(step, nth)| Armed {
                    step,
                    nth,
                    seen: AtomicU64::new(0),
                })
            })
            .as_ref()
    }

    /// Parses `step` or `step:n` (n ≥ 1); `None` for anything else.
    fn parse(v: &str) -> Option<(String, u64)> {
        let (step, nth) = match v.split_once(':') {
            Some((s, n)) => (s, n.parse::<u64>().ok().filter(|n| *n >= 1)?),
            None => (v, 1),
        };
        STEPS.contains(&step).then(|| (step.to_string(), nth))
    }

    /// Aborts the process if the armed failpoint is `step` and this is its `n`-th hit.
    pub(crate) fn hit(step: &'static str) {
        if let Some(a) = armed() {
            if a.step == step && a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
                tracing::error!(step, "failpoint: aborting the process");
                std::process::abort();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        #[test]
        fn parse_accepts_known_steps_only() {
            // Guards: a typo never arms a failpoint silently at some other step.
            let cases: &[(&str, Option<(&str, u64)>)] = &[
                ("mkdir", Some(("mkdir", 1))),
                ("renamed:3", Some(("renamed", 3))),
                ("renamed:0", None),
                ("renamed:x", None),
                ("rename", None),
                ("", None),
                (":1", None),
            ];
            for (input, want) in cases {
                let got = parse(input);
                assert_eq!(got, want.map(|(s, n)| (s.to_string(), n)), "{input:?}");
            }
        }
    }
}
