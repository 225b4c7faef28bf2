//! The agent's use of glibc's allocator: how many arenas it keeps, and giving freed memory
//! back to the kernel. Elsewhere (musl, another OS) both are no-ops.

/// Sets glibc's malloc up for the agent; call it before the threads start. The Pulse server,
/// whose API and relay threads allocate a lot at once, does not call it.
///
/// * Two arenas. By default every thread that allocates gets an arena of its own (up to 8
///   per core), each with its own free pages: the agent's module and emitter threads
///   allocate a few kilobytes a tick, so sharing costs nothing in contention and saves about
///   30 KB of RSS per thread.
/// * A fixed mmap threshold of 128 KiB. By default glibc raises the threshold to the size of
///   the largest mmapped block freed so far, so after an outage's first big batch the next
///   ones are carved out of the heap, where they fragment it and keep RSS up after the
///   backlog has drained; fixed, blocks that large are always mapped and unmapped.
pub fn tune_for_agent() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, both of them ones glibc knows.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
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
