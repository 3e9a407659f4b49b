//! Owner-only files and directories for everything that holds people's mail: the spool, the
//! built-in mailbox, the transcripts and the CA.
//!
//! Owns the modes (files 0600, directories 0700, set at creation so that no moment exists in
//! which another user could open them, whatever the umask) and tightening what an older version
//! left open. It does not decide which paths are private; the spool, mailbox, translog and CA
//! call it for their own.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of every file mailtap writes with mail, transcripts or keys in it.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory mailtap creates for them.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` and any missing parents with mode 0700 (existing ones are left as they are).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates the single directory `path` with mode 0700; `AlreadyExists` if it exists.
pub fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// `OpenOptions` whose files, when created, get mode 0600 (the umask can only remove bits).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Removes the group and other bits of `path` (a directory mailtap owns, or one of its files)
/// when any are set. Returns whether it changed anything; a path that does not exist is not an
/// error (`Ok(false)`).
pub fn tighten(path: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // A symlink is not ours to change (chmod would follow it).
    if meta.file_type().is_symlink() {
        return Ok(false);
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700))?;
    Ok(true)
}

/// [`tighten`] for startup: a change is logged once, naming the path; a failure is a warning
/// (mailtap still runs, and says what to do).
pub fn tighten_logged(path: &Path, what: &str) {
    match tighten(path) {
        Ok(true) => {
            tracing::info!(path = %path.display(), "{what} was readable by other users: made owner-only")
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(
            path = %path.display(), error = %e,
            "{what} is readable by other users and could not be made owner-only; chmod go= it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_paths_are_owner_only_and_tighten_keeps_owner_bits() {
        // Guards the modes whatever the umask, and that tightening only removes group/other
        // bits (an owner-only or missing path is left alone; a symlink is never followed).
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
        let one = dir.path().join("one");
        create_dir(&one).unwrap();
        assert_eq!(mode(&one), 0o700);
        assert_eq!(
            create_dir(&one).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let file = nested.join("f");
        let mut f = options().write(true).create_new(true).open(&file).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(mode(&file), 0o600);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o754)).unwrap();
        assert!(tighten(&file).unwrap());
        assert_eq!(mode(&file), 0o700);
        assert!(!tighten(&file).unwrap());
        assert!(!tighten(&dir.path().join("missing")).unwrap());
        let target = dir.path().join("open");
        fs::write(&target, "x").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(!tighten(&link).unwrap());
        assert_eq!(mode(&target), 0o644);
    }
}
