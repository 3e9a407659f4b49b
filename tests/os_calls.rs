//! mailtap's operating-system boundary is one module: `unsafe` is denied everywhere and allowed
//! only in `src/sys.rs` (mallopt), and the crates that reach the OS directly (libc, rustix,
//! socket2) are named only there.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively (bounded by the tree's size).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn os_calls_live_in_sys_and_unsafe_is_forbidden() {
    // Guards issue 11.7: a new raw OS call goes to src/sys.rs, behind a safe wrapper, with its
    // platform cfg there — not into whichever module happens to need it.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (root, lint) in [
        ("lib.rs", "#![deny(unsafe_code)]"),
        ("main.rs", "#![forbid(unsafe_code)]"),
    ] {
        let text = fs::read_to_string(src.join(root)).unwrap_or_default();
        assert!(text.contains(lint), "src/{root} lacks {lint}");
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        if file.ends_with("src/sys.rs") {
            continue;
        }
        let text = fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if ["libc::", "rustix::", "socket2::", "allow(unsafe_code)"]
                .iter()
                .any(|c| line.contains(c))
            {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "OS calls outside src/sys.rs:\n{}",
        offenders.join("\n")
    );
}
