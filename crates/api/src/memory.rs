//! The agent's memory: glibc's allocator (how many arenas it keeps, giving freed memory back
//! to the kernel) and the pages of badger's own executable that only start-up needed.
//! Elsewhere (musl, another OS) these are no-ops.

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

/// The pages of badger's own executable that are an unmodified copy of the file: its code,
/// constants and ELF headers (the whole pages of its loaded segments that are not writable),
/// and the pages of its RELRO region (vtables, the GOT: written by the dynamic linker, then
/// made read-only before `main`) that the dynamic linker did not write.
///
/// Why release them: start-up (the command line, the config parser, building the plan and the
/// plugins, each module's first collection) runs code and reads constants that the ticks never
/// use again, and the kernel maps the 64 KiB around each page fault. The agent releases them at
/// each step of start-up (when `main` begins, after the command line, the config file and the
/// plan, when the first tick is due and its threads have started), so that one step's pages are
/// gone before the next step's come in and the peak is the largest step's rather than their
/// sum, and again after its first ticks; the next ticks fault back in, from the page cache, the
/// pages they use, and nothing else. The released pages stay in the page cache, as file cache
/// that no process maps (reclaimed first). Shared libraries are left alone: other processes map
/// the same pages, so unmapping them here would lower this process's RSS and free nothing.
#[derive(Debug, Default)]
pub struct ExecutablePages {
    /// Page-aligned `(start, end)` address ranges.
    ranges: Vec<(usize, usize)>,
}

impl ExecutablePages {
    /// Finds them in the executable's program headers. Done once: reading the headers
    /// again after a release would map their page back.
    pub fn find() -> ExecutablePages {
        #[cfg(target_os = "linux")]
        {
            ExecutablePages { ranges: linux::read_only_ranges() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            ExecutablePages::default()
        }
    }

    /// Unmaps them (`MADV_DONTNEED`), all but the pages that are no longer the file's: a
    /// debugger's breakpoint or a uprobe (bpftrace, `perf probe -x`) is a private copy of
    /// its page, which dropping would silently remove, so those pages stay
    /// (`/proc/self/pagemap` tells them apart), and neither are the RELRO pages the dynamic
    /// linker wrote. Returns the bytes unmapped. Never inlined: `scripts/symbol-order.sh`
    /// cuts its profiles at each call.
    #[inline(never)]
    pub fn release(&self) -> usize {
        #[cfg(target_os = "linux")]
        {
            linux::release(&self.ranges)
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    }
}

/// Releases the executable's start-up pages ([`ExecutablePages::release`], found on the
/// first call) and, called on the main thread, the pages of its stack below the caller's
/// frame: the deepest calls of start-up (the command line's parser, the config's
/// deserialisers) leave tens of kilobytes of the main thread's stack resident that its
/// loop never touches again. Returns the bytes unmapped. For the steps of the agent's
/// start-up, which run in `main` and in the scheduler, on the main thread.
pub fn release_start_up_pages() -> usize {
    static PAGES: std::sync::OnceLock<ExecutablePages> = std::sync::OnceLock::new();
    let code = PAGES.get_or_init(ExecutablePages::find).release();
    #[cfg(target_os = "linux")]
    {
        code + linux::release_stack()
    }
    #[cfg(not(target_os = "linux"))]
    {
        code
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::c_void;

    use std::fs::File;
    use std::os::unix::fs::FileExt;

    type Ranges = Vec<(usize, usize)>;

    /// /proc/self/pagemap: one 64-bit entry a page; bit 63 the page is mapped, bit 61
    /// it is a page of the file (or shared memory), not a private copy.
    pub(super) const PRESENT: u64 = 1 << 63;
    pub(super) const FILE: u64 = 1 << 61;

    /// Unmaps the pages of `ranges` (page-aligned, of private file mappings) that are not a
    /// private copy; returns the bytes unmapped.
    pub(super) fn release(ranges: &[(usize, usize)]) -> usize {
        let Ok(pagemap) = File::open("/proc/self/pagemap") else {
            return 0;
        };
        let page = rustix::param::page_size();
        let mut released = 0;
        let mut buf = [0u8; 4096];
        for &(start, end) in ranges {
            // The run of releasable pages being built, from its first page's address.
            let mut run: Option<usize> = None;
            let mut addr = start;
            while addr < end {
                let n = ((end - addr) / page).min(buf.len() / 8);
                let Some(chunk) = buf.get_mut(..n * 8) else { break };
                if pagemap.read_exact_at(chunk, (addr / page * 8) as u64).is_err() {
                    return released;
                }
                for entry in chunk.chunks_exact(8) {
                    let e = entry.try_into().map(u64::from_ne_bytes).unwrap_or(PRESENT);
                    let private_copy = e & PRESENT != 0 && e & FILE == 0;
                    match (private_copy, run) {
                        (false, None) => run = Some(addr),
                        (true, Some(from)) => {
                            released += dont_need(from, addr);
                            run = None;
                        }
                        _ => {}
                    }
                    addr += page;
                }
            }
            if let Some(from) = run {
                released += dont_need(from, addr);
            }
        }
        released
    }

    /// Room left below this call's frame: for the madvise call, the one made after the
    /// cut (reading the maps is done by then), with room to spare. Pages below the stack
    /// pointer hold nothing live, so the margin is about re-faulting, not correctness:
    /// pages a later call reaches fault back in zeroed. 32 KiB kept 16 KB more of
    /// start-up's deep calls resident (issue 13, `scripts/bench-steps.sh`).
    const STACK_MARGIN: usize = 8 * 1024;

    /// On the main thread: unmaps the pages of its stack (the `[stack]` mapping) more than
    /// `STACK_MARGIN` below this call's frame, which no live frame holds; the next calls
    /// that deep get zeroed pages, as a new stack does. Returns the bytes unmapped; 0 on
    /// another thread.
    pub(super) fn release_stack() -> usize {
        if rustix::thread::gettid() != rustix::process::getpid() {
            return 0;
        }
        let here = std::hint::black_box(0u8);
        let here = &raw const here as usize;
        let Some((low, high)) = main_stack() else { return 0 };
        let page = rustix::param::page_size();
        let top = here.saturating_sub(STACK_MARGIN) / page * page;
        if !(low..high).contains(&here) || top <= low {
            return 0;
        }
        // SAFETY: `[low, top)` is in the main thread's stack mapping, below this function's
        // frame by STACK_MARGIN: memory no live frame or Rust reference can point into (the
        // stack grows down, and this is the main thread, the only one running on it). A
        // signal delivered to this thread runs its handler after the call returns, on
        // pages that then fault in zeroed.
        match unsafe { libc::madvise(low as *mut c_void, top - low, libc::MADV_DONTNEED) } {
            0 => top - low,
            _ => 0,
        }
    }

    /// The `[stack]` mapping of /proc/self/maps: the main thread's stack.
    pub(super) fn main_stack() -> Option<(usize, usize)> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
        let (low, high) = line.split_whitespace().next()?.split_once('-')?;
        Some((usize::from_str_radix(low, 16).ok()?, usize::from_str_radix(high, 16).ok()?))
    }

    /// MADV_DONTNEED over `[from, to)`; returns the bytes unmapped.
    fn dont_need(from: usize, to: usize) -> usize {
        // SAFETY: `release`'s caller passes whole pages of private file mappings of this
        // executable that nothing can write (segments without PF_W: Rust binaries have no
        // text relocations; the RELRO region, read-only since before `main`), and `release`
        // leaves out every page that is a private copy (what the dynamic linker relocated
        // there among them), so each page here is the file's content: MADV_DONTNEED only
        // drops the page-table entries and the next access maps the same bytes back from the
        // file (a thread running this code meanwhile just takes that fault). No Rust
        // reference is invalidated.
        match unsafe { libc::madvise(from as *mut c_void, to - from, libc::MADV_DONTNEED) } {
            0 => to - from,
            _ => 0,
        }
    }

    /// The whole pages of the executable's loaded segments that are not writable (a page
    /// shared with a writable segment is left out), and the pages of its RELRO region, as the
    /// dynamic linker made them read-only (from the page its start is in to the page its end
    /// is in, that one left out: glibc's `_dl_protect_relro`).
    pub(super) fn read_only_ranges() -> Ranges {
        let mut found = Found::default();
        // SAFETY: the callback only reads the program headers the dynamic linker hands it,
        // for as long as the call lasts, and `data` is `found`.
        unsafe { libc::dl_iterate_phdr(Some(executable), (&raw mut found).cast()) };
        let page = rustix::param::page_size();
        let segments = found.segments.into_iter().map(|(start, end)| (start.next_multiple_of(page), end - end % page));
        let relro = found.relro.map(|(start, end)| (start - start % page, end - end % page));
        segments.chain(relro).filter(|(start, end)| start < end).collect()
    }

    /// What [`executable`] finds: the address ranges of the PT_LOAD segments without PF_W,
    /// and of PT_GNU_RELRO.
    #[derive(Default)]
    struct Found {
        segments: Ranges,
        relro: Option<(usize, usize)>,
    }

    /// dl_iterate_phdr's callback: the first object is the executable; collects its
    /// PT_LOAD segments without PF_W and its PT_GNU_RELRO, and stops.
    unsafe extern "C" fn executable(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info for the call's duration, and `data`
        // is the `Found` that read_only_ranges passed.
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Found>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for ph in phdrs {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let range = (start, start + ph.p_memsz as usize);
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W == 0 {
                found.segments.push(range);
            } else if ph.p_type == libc::PT_GNU_RELRO {
                found.relro = Some(range);
            }
        }
        1
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Rss of this process's non-writable mappings of its executable (/proc/self/smaps).
    fn resident() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let (mut ours, mut total) = (false, 0);
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            match (f.next(), f.next()) {
                (Some("Rss:"), Some(kb)) if ours => total += kb.parse::<u64>().unwrap_or(0),
                (Some(range), Some(perms)) if range.contains('-') && perms.len() == 4 => {
                    ours = !perms.contains('w') && line.ends_with(exe.to_string_lossy().as_ref());
                }
                _ => {}
            }
        }
        total
    }

    #[test]
    fn the_executables_read_only_pages_are_unmapped_and_fault_back_in_on_use() {
        let before = resident();
        assert!(before > 0, "the test binary runs code from its own mapping");
        let pages = ExecutablePages::find();
        assert!(pages.release() > 0);
        let after = resident();
        assert!(after < before, "resident {after} kB after, {before} kB before");
        // Code and constants fault back in, unchanged.
        let text = format!("{:?}", (1.5f64, "still runs", [1u8, 2, 3]));
        assert_eq!(text, r#"(1.5, "still runs", [1, 2, 3])"#);
        // Found once, released as often as asked.
        assert_eq!(pages.release(), pages.release());
    }

    /// A constant with a pointer in it: in a position-independent executable (the test
    /// binaries) it lives in the RELRO region, where the dynamic linker wrote its address.
    static RELOCATED: &str = "relocated";

    #[test]
    fn the_relro_pages_are_found_and_the_ones_the_dynamic_linker_wrote_are_kept() {
        let at = std::hint::black_box(&raw const RELOCATED) as usize;
        let pages = ExecutablePages::find();
        assert!(
            pages.ranges.iter().any(|&(start, end)| (start..end).contains(&at)),
            "{at:#x} is in {:x?}",
            pages.ranges
        );
        pages.release();
        assert_eq!(page_state(at), (true, false), "the relocated page is a private copy, kept");
        assert_eq!(std::hint::black_box(RELOCATED), "relocated");
    }

    #[test]
    fn the_stack_is_released_on_the_main_thread_only() {
        // The test harness runs each test on a thread of its own.
        assert_eq!(linux::release_stack(), 0);
        assert!(linux::main_stack().is_some_and(|(low, high)| low < high));
    }

    /// Is the page at `addr` mapped, and is it the file's (`/proc/self/pagemap`)?
    fn page_state(addr: usize) -> (bool, bool) {
        use std::os::unix::fs::FileExt;
        let mut e = [0u8; 8];
        let f = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        f.read_exact_at(&mut e, (addr / rustix::param::page_size() * 8) as u64).expect("read");
        let e = u64::from_ne_bytes(e);
        (e & linux::PRESENT != 0, e & linux::FILE != 0)
    }

    #[test]
    fn a_page_that_is_a_private_copy_is_kept_and_the_files_pages_are_unmapped() {
        use std::os::fd::AsRawFd;
        let page = rustix::param::page_size();
        let mut file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, &vec![7u8; 3 * page]).expect("write");
        // SAFETY: a fresh private mapping of a file this test owns, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let at = |i: usize| (base as usize + i * page) as *mut u8;
        // SAFETY: the three pages are mapped above; as a breakpoint does, page 1 is written
        // (a private copy) and pages 0 and 2 only read.
        unsafe {
            *at(1) = 42;
            assert_eq!((*at(0), *at(2)), (7, 7));
        }
        assert_eq!(page_state(at(0) as usize), (true, true));
        assert_eq!(page_state(at(1) as usize), (true, false), "page 1 is a private copy");
        assert_eq!(linux::release(&[(base as usize, base as usize + 3 * page)]), 2 * page);
        assert!(!page_state(at(0) as usize).0, "page 0 unmapped");
        assert!(!page_state(at(2) as usize).0, "page 2 unmapped");
        // SAFETY: as above; then the mapping is dropped.
        unsafe {
            assert_eq!(*at(1), 42, "the private copy is kept");
            assert_eq!((*at(0), *at(2)), (7, 7), "the file's pages come back");
            libc::munmap(base, 3 * page);
        }
    }
}
