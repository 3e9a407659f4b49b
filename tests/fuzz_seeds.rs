//! Replays the fuzz targets' committed inputs on stable: every seed (`fuzz/seeds/<target>/`)
//! and every minimised finding (`fuzz/regressions/<target>/`) goes through the same property
//! checks the cargo fuzz binaries run, so a finding stays covered without nightly.
//!
//! The checks live in `fuzz/src/lib.rs` and are compiled here as a module; this file only
//! walks the directories and names the input that failed.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for ent in rd.flatten() {
            if ent.path().is_file() {
                out.push(ent.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs `check` on every input of `target`; fails naming each input whose check panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seeds for fuzz target {target}");
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: properties fail on {failed:?}");
}

#[test]
fn form_seeds() {
    // Form decoding round-trips and counts fields on every committed form input.
    replay("form", checks::form);
}

#[test]
fn multipart_seeds() {
    // Multipart file parts stay within the body and round-trip on every committed input.
    replay("multipart", checks::multipart);
}

#[test]
fn json_seeds() {
    // JSON bodies decode exactly when they are objects and round-trip.
    replay("json", checks::json);
}

#[test]
fn netease_seeds() {
    // NetEase `var` XML round-trips through the tolerant parser.
    replay("netease", checks::netease);
}

#[test]
fn address_seeds() {
    // Valid addresses never carry CR/LF or other controls and lists round-trip.
    replay("address", checks::address);
}

#[test]
fn rules_seeds() {
    // Built-in rule matching and extraction of every sample request keep their invariants.
    replay("rules", checks::rules);
}

#[test]
fn smtp_reply_seeds() {
    // SMTP replies stay within the caps and cannot forge transcript lines.
    replay("smtp_reply", checks::smtp_reply);
}

#[test]
fn smtp_command_seeds() {
    // The built-in server's line reader loses no byte and MAIL/RCPT paths are safe.
    replay("smtp_command", checks::smtp_command);
}

#[test]
fn journal_seeds() {
    // Journal framing round-trips and torn tails hold no record.
    replay("journal", checks::journal);
}

#[test]
fn meta_seeds() {
    // meta.json reads and writes back to a fixed point with a safe id.
    replay("meta", checks::meta);
}

#[test]
fn meta_seeds_still_load() {
    // The generated meta.json seeds match today's on-disk shape (else they only test errors).
    for f in inputs("meta") {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        if f.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")) {
            let r = serde_json::from_slice::<
                mailtap::queue::MailMeta<mailtap::mail::record::MailRecord>,
            >(&data);
            assert!(r.is_ok(), "{}: {r:?}", f.display());
        }
    }
}
