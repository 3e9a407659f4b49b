//! Every operating-system call that std and tokio do not offer, in one place.
//!
//! mailtap runs on Unix (owner-only file modes, signals); a few of its calls are Linux only
//! and each of those has a portable path beside it, chosen by `cfg(target_os = "linux")`:
//! - the spool lock ([`try_lock_exclusive`], `flock(2)`, any Unix);
//! - making the journal's in-place rewrites durable ([`sync_filesystem`]: one `syncfs(2)` on
//!   Linux, one `fsync` per rewritten file elsewhere);
//! - a tunnel's half-close ([`shutdown_write`], `shutdown(2)` through socket2);
//! - the descriptor limit ([`raise_fd_limit`], `setrlimit(2)`);
//! - zero-copy tunnels ([`Pipe`] and [`splice`], Linux only; elsewhere the tunnel keeps its
//!   buffered copy);
//! - glibc's allocator threshold ([`tune_allocator`], glibc only; elsewhere nothing to do).
//!
//! All but the last go through the safe wrappers of rustix and socket2. `mallopt(3)` has no
//! safe wrapper, so [`tune_allocator`] is the one `unsafe` block of the crate: the library
//! says `#![deny(unsafe_code)]` and only that function is allowed it (the binary forbids
//! it). A call that ever needs `unsafe` belongs here, with the reason.

#[cfg(not(unix))]
compile_error!("mailtap supports Unix only (owner-only file modes, flock, signals)");

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::FlockOperation;

/// Takes the exclusive `flock(2)` on `file` without waiting: `Ok(false)` when another open
/// file description (another process, or another open of the file in this one) holds it. The
/// lock lasts as long as the file stays open.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Makes durable the data written in place into the files `written` (which live on the
/// filesystem holding `dir`). Linux: one `syncfs(2)` of that filesystem, far cheaper than an
/// fsync per file when an apply rewrote hundreds. Elsewhere: an fsync of each file (one that
/// is gone meanwhile has nothing left to make durable).
pub fn sync_filesystem<'a>(
    dir: &File,
    written: impl IntoIterator<Item = &'a Path>,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = written;
        rustix::fs::syncfs(dir)?;
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        for path in written {
            match File::open(path).and_then(|f| f.sync_all()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// Shuts down the sending half of a socket shared with a reader of the other half (tokio's
/// `shutdown` needs `&mut` or a split stream).
pub fn shutdown_write(socket: &tokio::net::TcpStream) -> io::Result<()> {
    socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write)
}

/// Lifts the soft limit on open descriptors to the hard one (each connection and tunnel needs
/// two or more). Failure leaves the limit as it was, which is logged and not fatal.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let below = match (lim.current, lim.maximum) {
        (Some(cur), Some(max)) => cur < max,
        (Some(_), None) => true,
        _ => false,
    };
    if below {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "could not raise the descriptor limit");
        }
    }
}

/// Turns off core files for this process (crash tests abort their children on purpose).
#[cfg(test)]
pub(crate) fn no_core_dumps() -> io::Result<()> {
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    Ok(rustix::process::setrlimit(
        rustix::process::Resource::Core,
        none,
    )?)
}

/// The signal an `abort()`ed child process reports.
#[cfg(test)]
pub(crate) const SIGABRT: i32 = libc::SIGABRT;

#[cfg(target_os = "linux")]
pub use splice::{splice, Pipe};

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::pipe::{PipeFlags, SpliceFlags};

    /// Requested pipe capacity (capped by /proc/sys/fs/pipe-max-size; the kernel default of
    /// 64 KiB stays when the request is refused).
    const PIPE_SIZE: usize = 1024 * 1024;

    /// A non-blocking pipe used as the kernel-side buffer between two sockets.
    pub struct Pipe {
        /// The end [`splice`] takes bytes out of.
        pub read: OwnedFd,
        /// The end [`splice`] puts bytes into.
        pub write: OwnedFd,
        /// Capacity in bytes (what one splice into the empty pipe can take).
        pub size: usize,
    }

    impl Pipe {
        /// A close-on-exec, non-blocking pipe of up to 1 MiB.
        pub fn new() -> io::Result<Pipe> {
            let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            let wanted = PIPE_SIZE.min(pipe_max_size());
            let size = rustix::pipe::fcntl_setpipe_size(&write, wanted)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
                .unwrap_or(64 * 1024);
            Ok(Pipe { read, write, size })
        }
    }

    /// The largest pipe an unprivileged process may ask for (`/proc/sys/fs/pipe-max-size`).
    fn pipe_max_size() -> usize {
        std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(PIPE_SIZE)
    }

    /// One `splice(2)` call between a socket and a pipe, non-blocking; `WouldBlock` when it
    /// would wait, `Ok(0)` at the end of the source's stream.
    pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
    }

    #[cfg(test)]
    mod tests {
        use super::Pipe;

        #[test]
        fn pipes_are_non_blocking_and_sized() {
            // Guards Pipe::new: a capacity of at least the kernel default, and O_NONBLOCK set
            // (a blocking pipe would stall the runtime thread).
            let pipe = Pipe::new().unwrap();
            assert!(pipe.size >= 4096, "{}", pipe.size);
            for fd in [&pipe.read, &pipe.write] {
                let flags = rustix::fs::fcntl_getfl(fd).unwrap();
                assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));
            }
        }
    }
}

/// Size from which glibc's malloc serves a block with its own memory mapping (glibc's
/// initial default, made fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold; call once at startup, before the runtime starts threads.
/// Returns whether the setting took (always `false` off glibc).
///
/// By default glibc raises the threshold after each large block is freed (up to 32 MiB), so
/// the next large bodies land in the heap, which keeps the memory after they are freed: one
/// 9 MiB intercepted body left 104 MiB resident for good. A fixed threshold gives large blocks
/// back to the OS on free.
#[allow(unsafe_code)]
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters and takes plain integers; it is
        // called before any other thread exists.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_between_opens_and_released_on_close() {
        // Guards try_lock_exclusive: a second open of the lock file is refused while the first
        // holds it (what keeps two mailtaps off one spool), and gets it once the first closes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = File::create(&path).unwrap();
        assert!(try_lock_exclusive(&first).unwrap());
        let second = File::open(&path).unwrap();
        assert!(!try_lock_exclusive(&second).unwrap());
        drop(first);
        assert!(try_lock_exclusive(&second).unwrap());
    }
}
