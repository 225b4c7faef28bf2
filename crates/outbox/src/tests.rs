use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use badger_api::duration::parse_duration;
use std::time::{Duration, Instant};

use super::*;
use badger_api::plugin::PluginConf;

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(Mutex::new(Instant::now())))
    }
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
    fn clock(&self) -> Clock {
        let c = self.clone();
        Arc::new(move || c.now())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ok,
    Fail,
    Reject,
}

/// A transport that does what it is told and records what it got.
struct Fake {
    mode: Mode,
    /// Outcomes for the next sends, before `mode` applies.
    script: VecDeque<Mode>,
    /// Every attempt: the records offered.
    attempts: Vec<Vec<String>>,
    /// Accepted batches.
    batches: Vec<Vec<String>>,
    rejected: Vec<String>,
    /// Accepted and rejected records, in the order they left the outbox.
    gone: Vec<String>,
    clock: Option<(TestClock, Duration)>,
    /// Watches the outbox's memory on every send.
    watch: Option<Arc<OutboxStats>>,
    max_queued_bytes: u64,
}

impl Fake {
    fn new(mode: Mode) -> Fake {
        Fake {
            mode,
            script: VecDeque::new(),
            attempts: Vec::new(),
            batches: Vec::new(),
            rejected: Vec::new(),
            gone: Vec::new(),
            clock: None,
            watch: None,
            max_queued_bytes: 0,
        }
    }
    fn delivered(&self) -> Vec<String> {
        self.batches.concat()
    }
}

impl Transport for Fake {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let recs: Vec<String> = records.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
        self.attempts.push(recs.clone());
        if let Some((c, d)) = &self.clock {
            c.advance(*d);
        }
        if let Some(s) = &self.watch {
            self.max_queued_bytes = self.max_queued_bytes.max(s.queued_bytes.load(Ordering::Relaxed));
        }
        match self.script.pop_front().unwrap_or(self.mode) {
            Mode::Ok => {
                self.gone.extend(recs.iter().cloned());
                self.batches.push(recs);
                Ok(())
            }
            Mode::Fail => Err(SendError::Retry("connection refused".into())),
            Mode::Reject => {
                self.gone.extend(recs.iter().cloned());
                self.rejected.extend(recs);
                Err(SendError::Reject("HTTP 400: bad line".into()))
            }
        }
    }
}

fn outbox(cfg: &OutboxConfig) -> (Outbox, TestClock) {
    outbox_named("test", cfg)
}

fn outbox_named(name: &str, cfg: &OutboxConfig) -> (Outbox, TestClock) {
    let clock = TestClock::new();
    let mut ob = Outbox::new(name, cfg).unwrap();
    ob.set_clock(clock.clock());
    (ob, clock)
}

/// A record `<name>` padded with dots to `len` bytes.
fn rec(name: &str, len: usize) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(len.max(name.len()), b'.');
    v
}

fn names(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim_end_matches('.').to_string()).collect()
}

fn seq(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn stat(s: &AtomicU64) -> u64 {
    s.load(Ordering::Relaxed)
}

fn spool_cfg(dir: &Path) -> OutboxConfig {
    OutboxConfig { spool_dir: Some(dir.to_path_buf()), ..OutboxConfig::default() }
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Decodes every record in the segment files of `dir`, oldest first (test-side reader).
fn read_spool(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in seg_files(dir) {
        let b = fs::read(&p).unwrap();
        let mut off = 0;
        while off + 12 <= b.len() {
            let len = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            let body = &b[off + 8..off + 8 + len];
            assert_eq!(crc32fast::hash(body), u32::from_be_bytes(b[off + 4..off + 8].try_into().unwrap()));
            out.push(String::from_utf8_lossy(&body[4..]).trim_end_matches('.').to_string());
            off += 8 + len;
        }
        assert_eq!(off, b.len(), "{} ends in a partial frame", p.display());
    }
    out
}

/// One framed record as the spool writes it.
fn frame(data: &[u8], points: u32) -> Vec<u8> {
    let mut body = points.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

fn drain(ob: &mut Outbox, t: &mut Fake, clock: &TestClock) {
    for _ in 0..10_000 {
        match ob.pump(t) {
            Pump::Drained => return,
            Pump::BudgetSpent => {}
            Pump::Failed | Pump::BackingOff => clock.advance(Duration::from_secs(61)),
        }
    }
    panic!("the outbox never drained");
}

// ---- memory: order, backoff, drops, rejects, batching, budget ----

#[test]
fn order_is_kept_across_failures() {
    let (mut ob, clock) = outbox(&OutboxConfig::default());
    let mut t = Fake::new(Mode::Fail);
    ob.push("r0", 1);
    ob.push("r1", 1);
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    ob.push("r2", 1);
    assert_eq!(ob.pump(&mut t), Pump::BackingOff);
    assert_eq!(t.attempts.len(), 1, "no send while backing off");
    clock.advance(Duration::from_millis(1300));
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    assert_eq!(t.attempts, vec![seq("r", 0..2), seq("r", 0..3)]);
    t.mode = Mode::Ok;
    ob.push("r3", 1);
    clock.advance(Duration::from_millis(2500));
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(t.delivered(), seq("r", 0..4));
    let s = ob.stats();
    assert_eq!((stat(&s.sent_records), stat(&s.sent_points), stat(&s.sent_batches)), (4, 4, 1));
    assert_eq!(stat(&s.retries), 2);
    assert_eq!((stat(&s.queued_records), stat(&s.queued_bytes), stat(&s.dropped_records)), (0, 0, 0));
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap_and_resets_after_a_success() {
    let cfg =
        OutboxConfig { retry_initial: Duration::from_secs(1), retry_max: Duration::from_secs(8), ..Default::default() };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    ob.push("r0", 1);
    for n in 0..7u32 {
        let before = t.attempts.len();
        assert_eq!(ob.pump(&mut t), Pump::Failed);
        assert_eq!(t.attempts.len(), before + 1);
        let wait = ob.retry_at.unwrap() - clock.now();
        let base = Duration::from_secs(1 << n.min(3));
        assert!(wait >= base.mul_f64(0.8) - Duration::from_micros(1), "failure {n}: {wait:?}");
        assert!(wait <= base.mul_f64(1.2).min(Duration::from_secs(8)), "failure {n}: {wait:?}");
        clock.advance(wait - Duration::from_millis(1));
        assert_eq!(ob.pump(&mut t), Pump::BackingOff);
        assert_eq!(t.attempts.len(), before + 1, "no send while backing off");
        clock.advance(Duration::from_millis(1));
    }
    t.mode = Mode::Ok;
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(ob.retry_at, None);
    t.mode = Mode::Fail;
    ob.push("r1", 1);
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    let wait = ob.retry_at.unwrap() - clock.now();
    assert!(wait >= Duration::from_millis(800) && wait <= Duration::from_millis(1200), "reset: {wait:?}");
}

#[test]
fn retry_after_replaces_the_backoff_up_to_retry_max() {
    let cfg = OutboxConfig {
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(30),
        ..Default::default()
    };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    ob.push("r0", 1);
    // Nothing failed yet: no effect.
    ob.retry_after(Duration::from_secs(7));
    assert_eq!(ob.retry_at, None);
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    ob.retry_after(Duration::from_secs(7));
    assert_eq!(ob.retry_at.unwrap() - clock.now(), Duration::from_secs(7));
    clock.advance(Duration::from_millis(6999));
    assert_eq!(ob.pump(&mut t), Pump::BackingOff);
    clock.advance(Duration::from_millis(1));
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    ob.retry_after(Duration::from_secs(3600));
    assert_eq!(ob.retry_at.unwrap() - clock.now(), Duration::from_secs(30));
    t.mode = Mode::Ok;
    clock.advance(Duration::from_secs(30));
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(t.delivered(), ["r0"]);
}

#[test]
fn jitter_spreads_the_waits() {
    let (mut ob, _clock) = outbox(&OutboxConfig::default());
    ob.failures = 3;
    let waits: Vec<Duration> = (0..50).map(|_| ob.backoff()).collect();
    assert!(waits.iter().all(|w| *w >= Duration::from_millis(3200) && *w <= Duration::from_millis(4800)));
    let distinct: std::collections::HashSet<_> = waits.iter().collect();
    assert!(distinct.len() > 40, "{waits:?}");
}

fn full_buffer(when_full: WhenFull) -> (Outbox, TestClock) {
    let cfg = OutboxConfig { buffer_bytes: 1024, when_full, ..Default::default() };
    let (mut ob, clock) = outbox(&cfg);
    // 15 records of 100 bytes holding 1..=15 points; 10 fit in 1024 bytes.
    for i in 0..15 {
        ob.push(rec(&format!("r{i}"), 100), i as u64 + 1);
        assert!(stat(&ob.stats().queued_bytes) <= 1024);
    }
    (ob, clock)
}

#[test]
fn drop_oldest_drops_exactly_the_oldest_records() {
    let (mut ob, _clock) = full_buffer(WhenFull::DropOldest);
    let s = ob.stats();
    assert_eq!(stat(&s.dropped_records), 5);
    assert_eq!(stat(&s.dropped_points), 1 + 2 + 3 + 4 + 5);
    assert_eq!((stat(&s.queued_records), stat(&s.queued_bytes)), (10, 1000));
    let mut t = Fake::new(Mode::Ok);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(names(&t.delivered()), seq("r", 5..15));
    assert_eq!(stat(&s.sent_points), (6..=15).sum::<u64>());
}

#[test]
fn drop_newest_refuses_exactly_the_newest_records() {
    let (mut ob, _clock) = full_buffer(WhenFull::DropNewest);
    let s = ob.stats();
    assert_eq!(stat(&s.dropped_records), 5);
    assert_eq!(stat(&s.dropped_points), 11 + 12 + 13 + 14 + 15);
    let mut t = Fake::new(Mode::Ok);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(names(&t.delivered()), seq("r", 0..10));
}

#[test]
fn a_record_larger_than_the_buffer_is_dropped_and_counted() {
    let cfg = OutboxConfig { buffer_bytes: 1024, ..Default::default() };
    let (mut ob, _clock) = outbox(&cfg);
    ob.push("small", 1);
    ob.push(rec("big", 2000), 7);
    ob.push(Vec::new(), 0);
    let s = ob.stats();
    assert_eq!((stat(&s.dropped_records), stat(&s.dropped_points), stat(&s.queued_records)), (1, 7, 1));
}

#[test]
fn rejected_records_are_dropped_and_counted_without_backoff() {
    let (mut ob, _clock) = outbox(&OutboxConfig::default());
    let mut t = Fake::new(Mode::Ok);
    t.script.push_back(Mode::Reject);
    ob.push("r0", 2);
    ob.push("r1", 3);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    ob.push("r2", 1);
    assert_eq!(ob.pump(&mut t), Pump::Drained, "a rejection does not back off");
    assert_eq!(t.rejected, seq("r", 0..2));
    assert_eq!(t.delivered(), vec!["r2"]);
    let s = ob.stats();
    assert_eq!((stat(&s.rejected_records), stat(&s.rejected_points)), (2, 5));
    assert_eq!((stat(&s.retries), stat(&s.dropped_records), stat(&s.sent_records)), (0, 0, 1));
    assert_eq!(ob.retry_at, None);
}

#[test]
fn batches_hold_at_most_max_batch_bytes_and_a_bigger_record_goes_alone() {
    let cfg = OutboxConfig { max_batch_bytes: 1024, ..Default::default() };
    let (mut ob, _clock) = outbox(&cfg);
    for (i, len) in [400, 400, 400, 2000, 100, 100, 1024].iter().enumerate() {
        ob.push(rec(&format!("r{i}"), *len), 1);
    }
    let mut t = Fake::new(Mode::Ok);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    let batches: Vec<Vec<String>> = t.batches.iter().map(|b| names(b)).collect();
    assert_eq!(
        batches,
        vec![seq("r", 0..2), seq("r", 2..3), seq("r", 3..4), seq("r", 4..6), seq("r", 6..7)],
        "400+400 | 400 | 2000 alone | 100+100 | 1024"
    );
    assert_eq!(stat(&ob.stats().sent_batches), 5);
}

#[test]
fn one_pump_sends_for_send_budget_at_most() {
    let cfg = OutboxConfig { max_batch_bytes: 1024, send_budget: Duration::from_secs(2), ..Default::default() };
    let (mut ob, clock) = outbox(&cfg);
    for i in 0..5 {
        ob.push(rec(&format!("r{i}"), 1000), 1);
    }
    let mut t = Fake::new(Mode::Ok);
    t.clock = Some((clock.clone(), Duration::from_secs(1)));
    assert_eq!(ob.pump(&mut t), Pump::BudgetSpent);
    assert_eq!(t.batches.len(), 2);
    assert_eq!(ob.pump(&mut t), Pump::BudgetSpent);
    assert_eq!(t.batches.len(), 4);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(names(&t.delivered()), seq("r", 0..5));
    assert_eq!(stat(&ob.stats().last_send_micros), 1_000_000);
}

#[test]
fn close_without_a_spool_counts_what_is_lost() {
    let (mut ob, clock) = outbox(&OutboxConfig::default());
    let mut t = Fake::new(Mode::Fail);
    for i in 0..3 {
        ob.push(format!("r{i}"), 2);
    }
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    // Backing off, but close tries once more.
    let closed = ob.close(&mut t, clock.now() + Duration::from_secs(5));
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(closed, Closed { lost_records: 3, lost_points: 6, ..Default::default() });
    let s = ob.stats();
    assert_eq!((stat(&s.dropped_records), stat(&s.dropped_points), stat(&s.queued_records)), (3, 6, 0));
}

#[test]
fn close_sends_what_it_can_before_the_deadline() {
    let cfg = OutboxConfig { max_batch_bytes: 1024, ..Default::default() };
    let (mut ob, clock) = outbox(&cfg);
    for i in 0..4 {
        ob.push(rec(&format!("r{i}"), 1000), 1);
    }
    let mut t = Fake::new(Mode::Ok);
    t.clock = Some((clock.clone(), Duration::from_secs(1)));
    let closed = ob.close(&mut t, clock.now() + Duration::from_millis(1500));
    assert_eq!(names(&t.delivered()), seq("r", 0..2));
    assert_eq!(closed, Closed { sent_records: 2, lost_records: 2, lost_points: 2, ..Default::default() });
}

// ---- the spool ----

#[test]
fn records_queued_during_an_outage_are_on_disk_and_sent_first_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = spool_cfg(tmp.path());
    let (mut ob, clock) = outbox(&cfg);
    let dir = tmp.path().join("test");
    let mut t = Fake::new(Mode::Ok);
    ob.push("ok0", 1);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert!(seg_files(&dir).is_empty(), "nothing is written while sends succeed");
    t.mode = Mode::Fail;
    for i in 0..10 {
        ob.push(format!("r{i}"), 1);
        ob.pump(&mut t);
        clock.advance(Duration::from_millis(700));
        assert_eq!(read_spool(&dir), seq("r", 0..i + 1), "written through as queued");
    }
    assert!(stat(&ob.stats().spooled_bytes) > 0);
    drop(ob); // a crash: no close

    let (mut ob, clock) = outbox(&cfg);
    assert_eq!(stat(&ob.stats().queued_records), 10);
    ob.push("new0", 1);
    ob.push("new1", 1);
    let mut t = Fake::new(Mode::Ok);
    drain(&mut ob, &mut t, &clock);
    let mut want = seq("r", 0..10);
    want.extend(seq("new", 0..2));
    assert_eq!(t.delivered(), want);
    assert!(seg_files(&dir).is_empty(), "sent records are removed");
    assert!(!dir.join("head.offset").exists());
    assert_eq!((stat(&ob.stats().spooled_bytes), stat(&ob.stats().queued_records)), (0, 0));
}

#[test]
fn close_spools_the_rest_for_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = spool_cfg(tmp.path());
    let (mut ob, clock) = outbox(&cfg);
    for i in 0..5 {
        ob.push(format!("r{i}"), 3);
    }
    let mut t = Fake::new(Mode::Fail);
    let closed = ob.close(&mut t, clock.now() + Duration::from_secs(1));
    assert_eq!(closed, Closed { spooled_records: 5, spooled_points: 15, ..Default::default() });
    assert_eq!(read_spool(&tmp.path().join("test")), seq("r", 0..5));
    assert_eq!(stat(&ob.stats().dropped_records), 0);
    drop(ob);

    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Ok);
    drain(&mut ob, &mut t, &clock);
    assert_eq!(t.delivered(), seq("r", 0..5));
    assert_eq!(stat(&ob.stats().sent_points), 15);
}

#[test]
fn a_partly_sent_spool_is_not_sent_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig { max_batch_bytes: 1024, ..spool_cfg(tmp.path()) };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    for i in 0..50 {
        ob.push(rec(&format!("r{i}"), 300), 1);
        ob.pump(&mut t);
    }
    // Three batches go through, then the server fails again; then badger dies.
    t.mode = Mode::Ok;
    t.script.extend([Mode::Ok, Mode::Ok, Mode::Ok, Mode::Fail]);
    t.mode = Mode::Fail;
    clock.advance(Duration::from_secs(61));
    assert_eq!(ob.pump(&mut t), Pump::Failed);
    let first = names(&t.delivered());
    assert_eq!(first, seq("r", 0..9));
    drop(ob);

    let (mut ob, clock) = outbox(&cfg);
    assert_eq!(stat(&ob.stats().queued_records), 41);
    let mut t = Fake::new(Mode::Ok);
    drain(&mut ob, &mut t, &clock);
    assert_eq!(names(&t.delivered()), seq("r", 9..50));
}

#[test]
fn corrupt_spool_files_are_reported_and_skipped_after_their_good_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("test");
    fs::create_dir_all(&dir).unwrap();
    // 1: good, good, bad crc, good.
    let mut f1 = [frame(b"a0", 1), frame(b"a1", 1)].concat();
    let mut bad = frame(b"a2", 1);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    f1.extend(bad);
    f1.extend(frame(b"a3", 1));
    fs::write(dir.join("0000000000000001.seg"), f1).unwrap();
    // 2: good, then a truncated record.
    let mut f2 = frame(b"b0", 2);
    f2.extend(&frame(b"b1-cut-short", 1)[..9]);
    fs::write(dir.join("0000000000000002.seg"), f2).unwrap();
    // 3: garbage (its "length" runs far past the end).
    fs::write(dir.join("0000000000000003.seg"), b"\xff\xff\xff\x00 this is not a spool file").unwrap();
    // 4: an impossible length, 5: all good.
    fs::write(dir.join("0000000000000004.seg"), [0u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    fs::write(dir.join("0000000000000005.seg"), [frame(b"c0", 1), frame(b"c1", 1)].concat()).unwrap();
    fs::write(dir.join("notes.txt"), "not a segment").unwrap();

    let (mut ob, clock) = outbox(&spool_cfg(tmp.path()));
    let s = ob.stats();
    assert_eq!(stat(&s.spool_errors), 4);
    assert_eq!(stat(&s.queued_records), 5);
    ob.push("new", 1);
    let mut t = Fake::new(Mode::Ok);
    drain(&mut ob, &mut t, &clock);
    assert_eq!(t.delivered(), vec!["a0", "a1", "b0", "c0", "c1", "new"]);
    assert_eq!(stat(&s.sent_points), 7);
    assert!(seg_files(&dir).is_empty());
    assert!(dir.join("notes.txt").exists(), "other files are left alone");
}

#[test]
fn the_spool_cap_drops_the_oldest_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        OutboxConfig { buffer_bytes: 4096, max_batch_bytes: 2048, spool_max_bytes: 64 * 1024, ..spool_cfg(tmp.path()) };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    let s = ob.stats();
    for i in 0..200 {
        ob.push(rec(&format!("r{i}"), 1000), 2);
        ob.pump(&mut t);
        assert!(stat(&s.spooled_bytes) <= 64 * 1024);
        assert!(stat(&s.queued_bytes) <= 4096);
    }
    assert!(seg_files(&tmp.path().join("test")).len() > 1, "rolled into several segments");
    let dropped = stat(&s.dropped_records);
    assert!(dropped > 100, "{dropped}");
    assert_eq!(stat(&s.dropped_points), 2 * dropped);
    assert_eq!(stat(&s.queued_records), 200 - dropped);
    t.mode = Mode::Ok;
    drain(&mut ob, &mut t, &clock);
    assert_eq!(names(&t.delivered()), seq("r", dropped as usize..200), "the newest are kept, in order");
}

#[test]
fn the_spool_cap_with_drop_newest_keeps_the_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        buffer_bytes: 4096,
        max_batch_bytes: 2048,
        spool_max_bytes: 64 * 1024,
        when_full: WhenFull::DropNewest,
        ..spool_cfg(tmp.path())
    };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    let s = ob.stats();
    for i in 0..200 {
        ob.push(rec(&format!("r{i}"), 1000), 1);
        ob.pump(&mut t);
        assert!(stat(&s.spooled_bytes) <= 64 * 1024);
        assert!(stat(&s.queued_bytes) <= 4096);
    }
    let dropped = stat(&s.dropped_records);
    // 64 frames of 1012 bytes fit the spool, 4 records the memory.
    assert_eq!(dropped, 200 - 64 - 4);
    t.mode = Mode::Ok;
    drain(&mut ob, &mut t, &clock);
    assert_eq!(names(&t.delivered()), seq("r", 0..68));
}

#[test]
fn memory_stays_within_buffer_bytes_while_the_spool_holds_more() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig { buffer_bytes: 4096, max_batch_bytes: 1024, ..spool_cfg(tmp.path()) };
    let (mut ob, clock) = outbox(&cfg);
    let s = ob.stats();
    let mut t = Fake::new(Mode::Fail);
    for i in 0..500 {
        ob.push(rec(&format!("r{i}"), 100), 1);
        ob.pump(&mut t);
        assert!(stat(&s.queued_bytes) <= 4096);
    }
    assert!(stat(&s.spooled_bytes) > 10 * 4096);
    assert_eq!(stat(&s.queued_records), 500);
    t.mode = Mode::Ok;
    t.watch = Some(s.clone());
    drain(&mut ob, &mut t, &clock);
    // Read back at most max_batch_bytes ahead (and never more than buffer_bytes).
    assert!(t.max_queued_bytes > 0 && t.max_queued_bytes <= 1024, "{}", t.max_queued_bytes);
    assert_eq!(names(&t.delivered()), seq("r", 0..500));
    assert!(t.batches.iter().all(|b| b.len() <= 10));
}

#[test]
fn a_drained_outage_lets_the_spools_write_buffer_go() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig { buffer_bytes: 4096, ..spool_cfg(tmp.path()) };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    for i in 0..20 {
        ob.push(rec(&format!("r{i}"), 3000), 1);
        ob.pump(&mut t);
    }
    assert!(ob.spool_scratch_capacity() >= 3000, "the outage's records went through the spool");
    t.mode = Mode::Ok;
    drain(&mut ob, &mut t, &clock);
    assert_eq!(names(&t.delivered()), seq("r", 0..20));
    assert_eq!(ob.spool_scratch_capacity(), 0);
}

#[test]
fn a_second_outbox_waits_for_the_spool_and_sends_its_records_first() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = spool_cfg(tmp.path());
    let (mut old, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    old.push("old0", 1);
    old.pump(&mut t);
    old.push("old1", 1);
    // A reload builds the new instance while the old one still runs.
    let (mut new, _) = outbox(&cfg);
    new.set_clock(clock.clock());
    new.push("new0", 1);
    assert_eq!(new.pump(&mut t), Pump::Failed);
    assert!(matches!(new.spool, SpoolState::Waiting { .. }));
    old.close(&mut t, clock.now());
    clock.advance(Duration::from_secs(2));
    t.mode = Mode::Ok;
    drain(&mut new, &mut t, &clock);
    assert_eq!(t.delivered(), vec!["old0", "old1", "new0"]);
}

#[test]
fn an_uncreatable_spool_dir_is_unavailable_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let cfg = spool_cfg(&file);
    match Outbox::new("influx", &cfg) {
        Err(BuildError::Unavailable(m)) => assert!(m.contains(&file.join("influx").display().to_string()), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("built"),
    }
}

#[test]
fn emitter_names_become_safe_directory_names() {
    assert_eq!(dir_name("influx-1.main"), "influx-1.main");
    assert_eq!(dir_name("a/b c"), "a_b_c");
    assert_eq!(dir_name(".."), "_..");
    assert_eq!(dir_name(""), "_");
}

/// Random pushes, failures, rejections, crashes and restarts: every record leaves the
/// outbox exactly once (sent or rejected), in order.
#[test]
fn random_outages_and_restarts_lose_and_repeat_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        OutboxConfig { buffer_bytes: 4096, max_batch_bytes: 1024, spool_max_bytes: 64 * 1024, ..spool_cfg(tmp.path()) };
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut ob, mut clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Ok);
    let mut pushed = Vec::new();
    for i in 0..3000 {
        match next(100) {
            0..=59 => {
                let name = format!("r{i}");
                pushed.push(name.clone());
                let len = name.len() + next(300) as usize;
                ob.push(rec(&name, len), 1);
                ob.pump(&mut t);
            }
            60..=69 => t.mode = if t.mode == Mode::Ok { Mode::Fail } else { Mode::Ok },
            70..=71 => t.script.push_back(Mode::Reject),
            72..=89 => clock.advance(Duration::from_millis(next(5000))),
            90..=91 => {
                drop(ob);
                (ob, clock) = outbox(&cfg);
            }
            92..=93 => {
                ob.close(&mut t, clock.now() + Duration::from_secs(1));
                drop(ob);
                (ob, clock) = outbox(&cfg);
            }
            _ => {
                ob.pump(&mut t);
            }
        }
        assert!(stat(&ob.stats().spooled_bytes) <= 64 * 1024);
    }
    t.mode = Mode::Ok;
    t.script.clear();
    drain(&mut ob, &mut t, &clock);
    assert_eq!(stat(&ob.stats().dropped_records), 0);
    assert_eq!(names(&t.gone), pushed);
    assert!(!t.rejected.is_empty() && t.batches.len() > 100);
}

// ---- config ----

fn conf(text: &str) -> PluginConf {
    PluginConf::from_text("influx", Path::new("/etc/badger/conf.d/influx.conf"), text)
}

#[test]
fn config_defaults() {
    let cfg = OutboxConfig::from_conf(&conf(r#"{"url": "http://x", "interval": 5}"#)).unwrap();
    assert_eq!(cfg, OutboxConfig::default());
    assert_eq!(cfg.buffer_bytes, 32 << 20);
    assert_eq!(cfg.when_full, WhenFull::DropOldest);
    assert_eq!((cfg.retry_initial, cfg.retry_max), (Duration::from_secs(1), Duration::from_secs(60)));
    assert_eq!((cfg.max_batch_bytes, cfg.send_budget), (1 << 20, Duration::from_secs(2)));
    assert_eq!((cfg.spool_dir, cfg.spool_max_bytes), (None, 256 << 20));
}

#[test]
fn config_units_and_relative_spool_dir() {
    let cfg = OutboxConfig::from_conf(&conf(
        r#"{"buffer_bytes": "1.5GiB", "max_batch_bytes": "256 KB", "spool_max_bytes": 1048576,
            "retry_initial": "500ms", "retry_max": "1m", "send_budget": 0.25,
            "when_full": "drop_newest", "spool_dir": "spool"}"#,
    ))
    .unwrap();
    assert_eq!(cfg.buffer_bytes, 1536 << 20);
    assert_eq!(cfg.max_batch_bytes, 256_000);
    assert_eq!(cfg.spool_max_bytes, 1 << 20);
    assert_eq!(cfg.retry_initial, Duration::from_millis(500));
    assert_eq!(cfg.retry_max, Duration::from_secs(60));
    assert_eq!(cfg.send_budget, Duration::from_millis(250));
    assert_eq!(cfg.when_full, WhenFull::DropNewest);
    assert_eq!(cfg.spool_dir.as_deref(), Some(Path::new("/etc/badger/conf.d/spool")));
    let abs = OutboxConfig::from_conf(&conf(r#"{"spool_dir": "/var/lib/badger"}"#)).unwrap();
    assert_eq!(abs.spool_dir.as_deref(), Some(Path::new("/var/lib/badger")));
}

#[test]
fn size_and_duration_parsers() {
    for (text, want) in [
        ("32MiB", 32 << 20),
        ("256 MB", 256_000_000),
        ("1.5GiB", 1536 << 20),
        ("1024", 1024),
        ("2k", 2000),
        ("4 kib", 4096),
        ("10B", 10),
        (" 3 GB ", 3_000_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(want), "{text}");
    }
    for bad in ["", "MiB", "12 parsecs", "-1KiB", "1.2.3MB", "99999999999999999999TiB"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-1").is_err());
}

#[test]
fn bad_config_values_name_their_key() {
    for (text, key) in [
        (r#"{"buffer_bytes": 10}"#, "buffer_bytes"),
        (r#"{"buffer_bytes": "12 parsecs"}"#, "buffer_bytes"),
        (r#"{"buffer_bytes": -5}"#, "buffer_bytes"),
        (r#"{"buffer_bytes": true}"#, "buffer_bytes"),
        (r#"{"max_batch_bytes": 100}"#, "max_batch_bytes"),
        (r#"{"when_full": "drop_all"}"#, "when_full"),
        (r#"{"retry_initial": "5s", "retry_max": "1s"}"#, "retry_initial"),
        (r#"{"retry_initial": 0}"#, "retry_initial"),
        (r#"{"retry_max": "soon"}"#, "retry_max"),
        (r#"{"retry_max": "2days"}"#, "retry_max"),
        (r#"{"send_budget": -1}"#, "send_budget"),
        (r#"{"send_budget": "0s"}"#, "send_budget"),
        (r#"{"spool_dir": ""}"#, "spool_dir"),
        (r#"{"spool_dir": 5}"#, "spool_dir"),
        (r#"{"spool_max_bytes": "1KiB"}"#, "spool_max_bytes"),
    ] {
        let err = OutboxConfig::from_conf(&conf(&format!("{{\n\"url\": \"x\",\n{}", &text[1..]))).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
        assert_eq!(err.line, Some(3), "{text}: {err}");
        assert!(err.to_string().starts_with("/etc/badger/conf.d/influx.conf, line 3, key"), "{err}");
    }
}

#[test]
fn an_emitter_config_hides_the_outbox_keys() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Influx {
        url: String,
    }
    let c = conf(r#"{"url": "http://x", "buffer_bytes": "8MiB", "spool_dir": "/tmp/s"}"#);
    assert_eq!(c.parse_except::<Influx>(OUTBOX_KEYS).unwrap().url, "http://x");
    assert_eq!(OutboxConfig::from_conf(&c).unwrap().buffer_bytes, 8 << 20);
    assert!(c.parse::<Influx>().is_err());
}

#[test]
fn a_record_corrupted_on_disk_while_running_is_reported_and_the_rest_of_its_file_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig { buffer_bytes: 1024, max_batch_bytes: 1024, ..spool_cfg(tmp.path()) };
    let (mut ob, clock) = outbox(&cfg);
    let mut t = Fake::new(Mode::Fail);
    for i in 0..20 {
        ob.push(rec(&format!("r{i}"), 100), 1);
        ob.pump(&mut t);
    }
    // r0..r9 are held in memory (1000 bytes of read-ahead); r10.. are only on disk, and
    // the reader has looked at r10's header already. Frames are 112 bytes: damage r15.
    let seg = &seg_files(&tmp.path().join("test"))[0];
    let mut bytes = fs::read(seg).unwrap();
    bytes[15 * 112 + 12 + 50] ^= 0x01;
    fs::write(seg, bytes).unwrap();
    ob.push("n0", 1);
    t.mode = Mode::Ok;
    drain(&mut ob, &mut t, &clock);
    assert_eq!(names(&t.delivered()), seq("r", 0..15), "r15..r19 and n0 follow the damage in the same file");
    let s = ob.stats();
    assert_eq!((stat(&s.spool_errors), stat(&s.dropped_records), stat(&s.dropped_points)), (1, 6, 6));
    ob.push("n1", 1);
    assert_eq!(ob.pump(&mut t), Pump::Drained);
    assert_eq!(t.delivered().last().map(String::as_str), Some("n1"));
    assert!(seg_files(&tmp.path().join("test")).is_empty());
}
