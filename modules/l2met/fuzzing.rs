//! What the fuzz target `l2met_frames` (fuzz/fuzz_targets/l2met_frames.rs) and the bounded
//! randomised test on stable run on arbitrary bytes: a logplex body read frame by frame, every
//! message parsed and added to buckets, the buckets read out; and the same bytes as one syslog
//! message and as a TCP syslog stream. Nothing may panic, and the readers stay inside the input.

use std::sync::atomic::Ordering;

use super::net::{Frame, TcpFrames};
use super::parse::{syslog_line, Frames};
use super::store::{summarize, Ingest, Limits, Options, Store};

const NOW_MS: i64 = 1_374_451_590_000;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

/// Runs every reader on `data` and checks their invariants (panics when one fails).
pub fn frames(data: &[u8]) {
    // Frames: each message lies inside the input.
    let mut frames = Frames::new(data);
    let mut n = 0u64;
    for line in frames.by_ref() {
        assert!(inside(data, line.msg) && inside(data, line.procid));
        n += 1;
    }
    assert!(frames.consumed() <= data.len());

    // The whole pipeline: every frame counted, buckets within the limit, stats readable.
    let limits = Limits { deadline: 2, max_buckets: 64, max_values: 16, ..Limits::default() };
    let store = Store::new(limits);
    let resolution = 1 + u32::from(data.first().copied().unwrap_or(0)) % 120;
    let opts = Options { resolution, prefix: None, source_prefix: Some("s".into()) };
    let read = Ingest::new().logplex(&store, data, &opts, NOW_MS);
    assert_eq!(read as u64, n);
    assert_eq!(store.counters.lines.load(Ordering::Relaxed), n);
    assert!(store.len() <= limits.max_buckets);
    // Everything out at once: no bucket is too old to send with this deadline.
    store.set_limits(Limits { deadline: i64::MAX, ..limits });
    for s in summarize(store.take_ready(i64::MAX, 0)) {
        assert!(!s.name.is_empty());
    }
    assert!(store.is_empty());

    // The same bytes as one syslog message, and as a TCP syslog stream.
    let l = syslog_line(data);
    assert!(inside(data, l.msg) && inside(data, l.procid));
    let mut ingest = Ingest::new();
    ingest.syslog(&store, data, &opts, NOW_MS);
    ingest.flush(&store);
    let mut tcp = TcpFrames { buf: data, pos: 0 };
    while let Frame::Message(m) = tcp.next_frame() {
        assert!(inside(data, m));
    }
    assert!(tcp.pos <= data.len());
}
