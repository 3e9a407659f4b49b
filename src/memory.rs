//! Process-wide allocator settings, applied once at startup before any thread starts.
//!
//! Owns one decision: glibc's malloc serves blocks of 128 KiB and more with their own memory
//! mapping, always. By default glibc raises that threshold after each large block is freed
//! (up to 32 MiB), so the next large bodies land in the heap, which keeps the memory after they
//! are freed: one 9 MiB intercepted body left 104 MiB resident for good. A fixed threshold gives
//! large blocks back to the OS on free. Other allocators and platforms: nothing to do.

/// Size from which an allocation gets its own mapping (glibc's initial default, made fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies the settings; call before the runtime starts threads. Returns whether they took.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters; called before other threads exist.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
