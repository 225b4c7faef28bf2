//! The agent's use of glibc's allocator: how many arenas it keeps, and giving freed memory
//! back to the kernel. Elsewhere (musl, another OS) both are no-ops.

/// Keeps glibc's malloc to `n` arenas. By default every thread that allocates gets an arena
/// of its own (up to 8 per core), each with its own free pages: the agent's module and
/// emitter threads allocate a few kilobytes a tick, so one shared arena costs nothing in
/// contention and saves about 30 KB of RSS per thread. Call it before the threads start.
/// The Pulse server, whose API and relay threads allocate a lot at once, does not call it.
pub fn limit_arenas(n: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX is one glibc knows.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// Returns the allocator's free pages to the kernel (glibc's `malloc_trim`, which also
/// releases free pages in the middle of the heap). The outbox calls it when an outage's
/// backlog has drained, so RSS comes back to where it was before the outage.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
