//! Test helper: may a test that needs a system tool (Postfix, tshark) run on this machine?
//!
//! Owns finding executables (PATH plus the sbin directories) and the one rule: a missing tool
//! or missing root skips the test with a printed reason, except under `CI=true`, where the
//! test fails instead — so CI can never go green by skipping. It starts nothing itself.
//! Every skip is also appended to [`skip_log`] (under `target/tmp/`, where `.ci/run` counts
//! and lists them), because cargo hides a passing test's output and a skip counts as passed.
#![allow(dead_code)]

use std::path::PathBuf;

/// What a test should do given what this machine has.
#[derive(Debug)]
pub enum Gate<T> {
    Run(T),
    /// Unusable here and this is not CI: the test returns early, saying why.
    Skip(String),
    /// Unusable and `CI=true`: the test must fail.
    Fail(String),
}

/// True when the environment says this is a CI run (`CI=true` or `CI=1`, any case).
pub fn ci_env() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// True when this process runs as root (private Postfix masters and captures need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `PATH` plus the sbin directories Debian puts Postfix in (often absent from a user's PATH).
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The first regular file named `name` with an execute bit in `dirs`.
pub fn find_executable(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// The pure decision: run when found and root; otherwise fail under CI, skip elsewhere.
/// `needs_root` names what root is needed for, for the message.
pub fn gate<T>(ci: bool, found: Result<T, String>, root: bool, needs_root: &str) -> Gate<T> {
    let why = match (found, root) {
        (Ok(t), true) => return Gate::Run(t),
        (Ok(_), false) => format!("{needs_root} needs root"),
        (Err(e), _) => e,
    };
    if ci {
        Gate::Fail(why)
    } else {
        Gate::Skip(why)
    }
}

/// The file every skip is appended to, one `SKIPPED: <test>: <why>` line each. `.ci/run`
/// empties it before the run and prints it after.
pub fn skip_log() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mailtap-skipped-tests.txt")
}

/// Records that the running test skips, and why: on stderr and in [`skip_log`]. Under `CI=true`
/// there is no skip: it panics with a message starting `CI=true and`.
pub fn skip(why: &str) {
    if ci_env() {
        panic!("CI=true and a required tool is unusable: {why}");
    }
    record_skip(why);
}

/// Records a skip already decided (by [`gate`], from its `ci` argument): on stderr and in
/// [`skip_log`].
fn record_skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    // Best effort: a skip that cannot be recorded still skips (and said so on stderr).
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Acts on a [`Gate`]: `Some` to run, `None` to skip (reason printed), panics on
/// [`Gate::Fail`] with a message starting `CI=true and`.
pub fn act<T>(g: Gate<T>) -> Option<T> {
    match g {
        Gate::Run(t) => Some(t),
        Gate::Skip(why) => {
            record_skip(&why);
            None
        }
        Gate::Fail(why) => panic!("CI=true and a required tool is unusable: {why}"),
    }
}
