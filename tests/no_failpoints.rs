//! The shipped binary carries no crash switch: the enqueue failpoints (an environment variable
//! that makes the process `abort()`) exist only in the library's own test build.
//!
//! Checked on the `mailtap` binary cargo builds for these tests: the failpoints depend on
//! `cfg(test)` alone (not on the profile), so what holds for it holds for the release build.

use std::path::Path;

/// Whether `needle` occurs in `hay` (a plain loop: fast enough unoptimised on 100+ MB).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let last_start = match hay.len().checked_sub(needle.len()) {
        Some(n) => n,
        None => return false,
    };
    let mut i = 0;
    while i <= last_start {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            return true;
        }
        i += 1;
    }
    false
}

#[test]
fn the_binary_has_no_failpoint() {
    // Guards issue 11.6: no environment variable can make the mailtap binary abort mid-enqueue.
    let path = Path::new(env!("CARGO_BIN_EXE_mailtap"));
    let bin = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    // The scan reads the right thing: the enqueue path's own error context is in the binary.
    assert!(
        contains(&bin, b"rename into active"),
        "the spool's enqueue code is not in {}",
        path.display()
    );
    // Assembled at run time so that this test's own binary does not hold the names whole.
    for needle in [
        ["MAILTAP_", "CRASH_AT"].concat(),
        ["failpoint: ", "aborting the process"].concat(),
    ] {
        assert!(
            !contains(&bin, needle.as_bytes()),
            "{} contains {needle:?}",
            path.display()
        );
    }
}
