//! `badger_api::memory::release_start_up_pages` on the main thread (this test has no
//! harness, so `main` is the process's main thread): the stack pages a deep call left
//! resident are released, and the stack works as before.

/// Resident kB of the `[stack]` mapping (/proc/self/smaps).
#[cfg(target_os = "linux")]
fn stack_rss_kb() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut in_stack = false;
    for line in smaps.lines() {
        if line.split_whitespace().nth(1).is_some_and(|perms| perms.len() == 4) && line.contains('-') {
            in_stack = line.ends_with("[stack]");
        } else if in_stack && line.starts_with("Rss:") {
            return line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("Rss");
        }
    }
    panic!("no [stack] in smaps");
}

/// Writes 1 KiB of stack a level, `depth` levels deep; returns a sum so nothing is elided.
#[inline(never)]
fn deep(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    let below = if depth == 0 { 0 } else { deep(depth - 1) };
    below + u64::from(frame[512])
}

#[cfg(target_os = "linux")]
fn main() {
    assert_eq!(deep(512), (1..=512u64).map(|d| d % 256).sum::<u64>());
    let before = stack_rss_kb();
    assert!(before >= 512, "the deep call left {before} kB of stack resident");
    let released = badger_api::memory::release_start_up_pages();
    let after = stack_rss_kb();
    assert!(after + 400 <= before, "stack Rss {before} kB before the release, {after} kB after");
    assert!(released >= 400 * 1024, "released {released} bytes");
    // The released pages come back, zeroed, to the next deep call.
    assert_eq!(deep(512), (1..=512u64).map(|d| d % 256).sum::<u64>());
    assert!(stack_rss_kb() >= 512);
    println!("main_stack: {before} kB of stack resident, {after} kB after the release: ok");
}

#[cfg(not(target_os = "linux"))]
fn main() {}
