//! The outbox of a network emitter (InfluxDB, Graphite, Kafka): a bounded buffer of encoded
//! records, sent oldest first through the emitter's [`Transport`], with retries, backoff
//! and an optional disk spool.
//!
//! An emitter encodes each payload into one *record* (e.g. its line-protocol text),
//! [`Outbox::push`]es it with the number of points it holds, and calls [`Outbox::pump`]
//! after every `emit` and from `idle`; its `flush` calls [`Outbox::close`]. The outbox logs
//! drops, failures and rejections itself (at most one line a minute of each kind, saying
//! how many since the last line) and counts everything in [`OutboxStats`].
//!
//! # Guarantees
//! * **Bounded memory.** Records held in memory never exceed `buffer_bytes`, however much
//!   the spool holds (the one exception: to make progress, one record is read back from
//!   the spool even when memory is full of records the spool could not take). When full,
//!   `when_full` decides: `drop_oldest` (the default) drops the oldest records,
//!   `drop_newest` refuses the new one. Every drop is counted (records and points). A record
//!   bigger than `buffer_bytes` is dropped at once.
//! * **Order.** Records are sent oldest first, across failures, retries and restarts (the
//!   spool's records before any new one). A batch is at most `max_batch_bytes` (a bigger
//!   record goes alone).
//! * **At-least-once delivery** while the buffer (and the spool) have room: a record is
//!   removed only after the transport accepted it, or rejected it for good
//!   ([`SendError::Reject`], e.g. HTTP 400: counted as rejected and logged). A record can be
//!   sent twice only when a send failed (e.g. timed out) after the server had accepted it,
//!   or badger died between a send and saving the spool's read position. InfluxDB
//!   overwrites a point with the same series and timestamp, so there a duplicate is harmless.
//! * **Retries.** After a failed send ([`SendError::Retry`]) nothing is sent for
//!   `retry_initial`, doubled on every further failure up to `retry_max`, ±20% jitter
//!   (never more than `retry_max`); `pump` returns at once meanwhile. A success resets it.
//!   An emitter whose server says how long to wait (HTTP `Retry-After`) sets that wait
//!   instead with [`Outbox::retry_after`] (at most `retry_max` too).
//!   One `pump` sends for `send_budget` at most (it stops after the send that used it up),
//!   so an emitter thread is never held for long.
//! * **Shutdown.** [`Outbox::close`] makes one last attempt regardless of the backoff,
//!   until its deadline; what is left goes to the spool, or without one is counted as
//!   dropped and logged ("N points lost").
//!
//! # The spool
//! With `spool_dir`, the outbox keeps `spool_dir/<emitter name>/`. As long as sends
//! succeed, records stay in memory only. From a failed send on (an *outage*, which lasts
//! until the queue is empty again) every queued record is written through to the spool
//! when it is pushed (those in memory at the failure first), so a crash, even SIGKILL,
//! loses nothing written; the data is written with `write(2)` and synced at `close`, so a
//! power cut may lose the last seconds. The outbox then reads records back from disk a
//! few at a time (at most `min(buffer_bytes, max_batch_bytes)` ahead), never a whole segment.
//!
//! * Records are appended to *segment files* `0000000000000001.seg`, `…2.seg`, … (ids only
//!   grow), rolled at 4 MiB (at `spool_max_bytes / 8` when that is less, 4 KiB at least).
//! * Each record is framed as `u32 BE body length`, `u32 BE crc32 (IEEE) of the body`,
//!   then the body: `u32 BE number of points` followed by the record's bytes.
//! * Sent records are removed by deleting a segment once all of it was sent; within the
//!   oldest segment the position of the next unsent record is saved in `head.offset`
//!   (`"<segment id> <byte offset>\n"`, written to a temporary file and renamed) after every
//!   send. When the outage ends, every segment is deleted.
//! * At start ([`Outbox::new`]) the segments left by an earlier run are checked record by
//!   record and sent first, in order, before anything new. A corrupt record (bad length,
//!   bad crc, a truncated tail) is logged with the file's name and the rest of that file is
//!   skipped; the good records before it are sent. It is never fatal. A file with nothing
//!   left to send is deleted.
//! * The unsent bytes on disk count against `spool_max_bytes`; when a record does not fit,
//!   `drop_oldest` deletes the oldest segments (counting their records as dropped) and
//!   `drop_newest` keeps the record in memory instead, where the memory rules apply.
//! * A lock (`flock` on `lock` in the directory) keeps two outboxes of the same emitter
//!   apart: after a reload that changed the emitter's settings the new one holds its
//!   records in memory until the old one has closed, then takes over the spool.
//!
//! # Config keys
//! Every network emitter takes these keys (see [`OUTBOX_KEYS`]). Sizes are a number of bytes
//! or a string with a unit (`"32MiB"`, `"256 MB"`, `"1.5GiB"`; `KB`/`MB`/`GB` are powers of
//! 1000, `KiB`/`MiB`/`GiB` of 1024); durations are a number of seconds or a string
//! (`"500ms"`, `"1m"`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `buffer_bytes` | `"32MiB"` | bytes of records kept in memory at most (at least 1KiB) |
//! | `when_full` | `"drop_oldest"` | when the buffer or the spool is full: `"drop_oldest"` drops the oldest records, `"drop_newest"` refuses new ones; drops are counted and logged |
//! | `retry_initial` | `"1s"` | wait after a failed send; doubled on every further failure |
//! | `retry_max` | `"60s"` | longest wait between retries (at most a day) |
//! | `max_batch_bytes` | `"1MiB"` | bytes sent in one request at most; a bigger record is sent alone (at least 1KiB) |
//! | `send_budget` | `"2s"` | how long one round of sending may go on before the emitter turns to new data |
//! | `spool_dir` | none | directory for the disk spool (relative to the config file's directory); without it, what is unsent at shutdown is lost |
//! | `spool_max_bytes` | `"256MiB"` | bytes the spool may hold on disk (at least 64KiB) |

mod config;
mod spool;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{parse_size, OutboxConfig, WhenFull, OUTBOX_KEYS};
use spool::{Opened, Pos, Spool};

use badger_api::plugin::BuildError;
use badger_api::throttle::LogThrottle;

/// The largest record the outbox takes (its spool frame length must fit a `u32`).
const MAX_RECORD: u64 = u32::MAX as u64 - spool::POINTS;
const LOG_EVERY: Duration = Duration::from_secs(60);
const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// How an emitter sends records; implemented by each network emitter.
pub trait Transport {
    /// Sends records (oldest first) in one request. `Ok` removes them from the outbox;
    /// `Retry` keeps them and backs off; `Reject` drops them as undeliverable. A transport
    /// should bound its own time (connect and write timeouts).
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError>;
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Temporary (connection refused, timeout, HTTP 5xx/429): keep the records, retry later.
    Retry(String),
    /// The server will never take these records (e.g. HTTP 400): drop them, counted.
    Reject(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Retry(m) => write!(f, "{m}"),
            SendError::Reject(m) => write!(f, "rejected: {m}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Counters of one outbox, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Bytes of records held in memory.
    pub queued_bytes: AtomicU64,
    /// Records waiting to be sent, in memory or in the spool.
    pub queued_records: AtomicU64,
    /// Bytes of unsent records in the spool (frames included).
    pub spooled_bytes: AtomicU64,
    pub sent_records: AtomicU64,
    pub sent_points: AtomicU64,
    /// Successful sends.
    pub sent_batches: AtomicU64,
    /// Failed sends (each one is retried later).
    pub retries: AtomicU64,
    /// Records (and their points) dropped: buffer or spool full, no spool at shutdown,
    /// corrupt spool records.
    pub dropped_records: AtomicU64,
    pub dropped_points: AtomicU64,
    /// Records (and their points) the server rejected for good.
    pub rejected_records: AtomicU64,
    pub rejected_points: AtomicU64,
    /// Spool troubles: corrupt files, failed writes, reads or deletes.
    pub spool_errors: AtomicU64,
    /// How long the last send took, in microseconds.
    pub last_send_micros: AtomicU64,
}

impl badger_api::telemetry::Source for OutboxStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, badger_api::point::Value)) {
        let v =
            |c: &AtomicU64| badger_api::point::Value::Int(i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        f("queued_bytes", v(&self.queued_bytes));
        f("queued_records", v(&self.queued_records));
        f("spooled_bytes", v(&self.spooled_bytes));
        f("sent_batches", v(&self.sent_batches));
        f("sent_points", v(&self.sent_points));
        f("retries", v(&self.retries));
        f("dropped_points", v(&self.dropped_points));
        f("rejected_points", v(&self.rejected_points));
        f("spool_errors", v(&self.spool_errors));
        f("write_micros", v(&self.last_send_micros));
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What one [`Outbox::pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// Everything was sent (or there was nothing to send).
    Drained,
    /// The send budget was used up; more is queued.
    BudgetSpent,
    /// A send failed; the outbox backs off.
    Failed,
    /// Still backing off after an earlier failure: nothing was tried.
    BackingOff,
}

/// What [`Outbox::close`] did with what was queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    /// Records sent during the close.
    pub sent_records: u64,
    /// Records (and points) left in the spool for the next start.
    pub spooled_records: u64,
    pub spooled_points: u64,
    /// Records (and points) lost: no spool, or it could not take them.
    pub lost_records: u64,
    pub lost_points: u64,
}

/// The time source of an outbox (tests drive it by hand).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Rec {
    data: Vec<u8>,
    points: u64,
    /// Where it is in the spool (records read back from it).
    pos: Option<Pos>,
}

enum SpoolState {
    Off,
    /// Configured but not held: another outbox has its lock, or it could not be opened.
    Waiting {
        dir: PathBuf,
        max_bytes: u64,
        next_try: Option<Instant>,
    },
    Open(Box<Spool>),
}

enum Sent {
    Nothing,
    Done,
    Failed,
}

/// A bounded, ordered, retrying buffer of records in front of a [`Transport`]; see the
/// module doc.
pub struct Outbox {
    name: String,
    buffer_bytes: u64,
    max_batch_bytes: u64,
    /// How far ahead records are read back from the spool.
    readahead: u64,
    when_full: WhenFull,
    retry_initial: Duration,
    retry_max: Duration,
    send_budget: Duration,
    /// Records read back from the spool (oldest first): a prefix of its unsent records.
    head: VecDeque<Rec>,
    /// Records in memory only, newer than everything in the spool.
    tail: VecDeque<Rec>,
    head_bytes: u64,
    tail_bytes: u64,
    spool: SpoolState,
    /// From a failed send until the queue is empty again: records go through the spool.
    outage: bool,
    failures: u32,
    retry_at: Option<Instant>,
    rng: u64,
    clock: Clock,
    stats: Arc<OutboxStats>,
    drop_log: LogThrottle,
    /// Drops since the last drop line: records, points, and the latest reason.
    pending_drops: (u64, u64, &'static str),
    error_log: LogThrottle,
    reject_log: LogThrottle,
    spool_log: LogThrottle,
}

impl Outbox {
    /// An outbox for the emitter `name`. With a spool, opens `spool_dir/<name>/` and loads
    /// what an earlier run left there (sent before anything new).
    pub fn new(name: &str, cfg: &OutboxConfig) -> Result<Outbox, BuildError> {
        let mut ob = Outbox {
            name: name.to_string(),
            buffer_bytes: cfg.buffer_bytes.max(1),
            max_batch_bytes: cfg.max_batch_bytes.max(1),
            readahead: cfg.max_batch_bytes.clamp(1, cfg.buffer_bytes.max(1)),
            when_full: cfg.when_full,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max.max(cfg.retry_initial),
            send_budget: cfg.send_budget,
            head: VecDeque::new(),
            tail: VecDeque::new(),
            head_bytes: 0,
            tail_bytes: 0,
            spool: SpoolState::Off,
            outage: false,
            failures: 0,
            retry_at: None,
            rng: seed(),
            clock: Arc::new(Instant::now),
            stats: Arc::default(),
            drop_log: LogThrottle::default(),
            pending_drops: (0, 0, ""),
            error_log: LogThrottle::default(),
            reject_log: LogThrottle::default(),
            spool_log: LogThrottle::default(),
        };
        if let Some(root) = &cfg.spool_dir {
            let dir = root.join(dir_name(name));
            match Spool::open(&dir, name, cfg.spool_max_bytes) {
                Ok(Opened::Open(s)) => ob.adopt(s),
                Ok(Opened::Busy) => {
                    log::info!(
                        "emitter \"{name}\": spool {} is held by the emitter's previous instance; records stay in memory until it lets go",
                        dir.display()
                    );
                    ob.spool = SpoolState::Waiting { dir, max_bytes: cfg.spool_max_bytes, next_try: None };
                }
                Err(e) => return Err(BuildError::Unavailable(e)),
            }
        }
        ob.sync_stats();
        Ok(ob)
    }

    /// Replaces the time source (tests).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The counters, to report them.
    pub fn stats(&self) -> Arc<OutboxStats> {
        self.stats.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records waiting, in memory or in the spool.
    pub fn len(&self) -> u64 {
        self.spool_records() + self.tail.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    fn spool_records(&self) -> u64 {
        match &self.spool {
            SpoolState::Open(s) => s.records(),
            _ => 0,
        }
    }

    /// Queues a record holding `points` points. It is not sent here: call [`Outbox::pump`].
    /// An empty record is ignored.
    pub fn push(&mut self, record: impl Into<Vec<u8>>, points: u64) {
        let data = record.into();
        if data.is_empty() {
            return;
        }
        let len = data.len() as u64;
        if len > self.buffer_bytes || len > MAX_RECORD {
            self.count_drop(1, points, "a record larger than buffer_bytes");
        } else {
            self.enqueue(Rec { data, points, pos: None });
        }
        self.sync_stats();
    }

    fn enqueue(&mut self, rec: Rec) {
        let mut rec = rec;
        if self.outage && matches!(self.spool, SpoolState::Open(_)) {
            self.flush_tail_to_spool();
            if self.tail.is_empty() {
                match self.spool_append(rec) {
                    None => return,
                    Some(r) => rec = r,
                }
            }
        }
        self.push_memory(rec);
    }

    /// Keeps a record in memory (the tail), applying `when_full`.
    fn push_memory(&mut self, rec: Rec) {
        let len = rec.data.len() as u64;
        if self.head_bytes + self.tail_bytes + len > self.buffer_bytes {
            // Records read back from the spool are still on disk: forget them first.
            self.evict_head();
        }
        while self.tail_bytes + len > self.buffer_bytes {
            match self.when_full {
                WhenFull::DropOldest => {
                    let Some(old) = self.tail.pop_front() else { break };
                    self.tail_bytes -= old.data.len() as u64;
                    self.count_drop(1, old.points, "buffer full");
                }
                WhenFull::DropNewest => {
                    self.count_drop(1, rec.points, "buffer full");
                    return;
                }
            }
        }
        self.tail_bytes += len;
        self.tail.push_back(rec);
    }

    fn evict_head(&mut self) {
        let SpoolState::Open(spool) = &mut self.spool else { return };
        let Some(first) = self.head.front().and_then(|r| r.pos) else { return };
        spool.rewind(first, self.head.iter().filter_map(|r| r.pos.map(|p| (p.seg, r.points))));
        self.head.clear();
        self.head_bytes = 0;
    }

    /// Writes a record to the spool; gives it back when the spool cannot take it (full with
    /// `drop_newest`, larger than the spool, or a write error).
    fn spool_append(&mut self, rec: Rec) -> Option<Rec> {
        let SpoolState::Open(spool) = &mut self.spool else { return Some(rec) };
        let frame = spool::frame_len(rec.data.len());
        if frame > spool.max_bytes {
            return Some(rec);
        }
        let mut dropped = (0, 0);
        while spool.bytes() + frame > spool.max_bytes {
            if self.when_full == WhenFull::DropNewest {
                return Some(rec);
            }
            let Some((id, records, points)) = spool.drop_front() else { break };
            dropped.0 += records;
            dropped.1 += points;
            while self.head.front().is_some_and(|r| r.pos.is_some_and(|p| p.seg == id)) {
                if let Some(r) = self.head.pop_front() {
                    self.head_bytes -= r.data.len() as u64;
                }
            }
        }
        let fully_read = spool.fully_read();
        let written = spool.write(&rec.data, rec.points);
        let result = match written {
            Ok(pos) => {
                let len = rec.data.len() as u64;
                if fully_read && self.head_bytes + len <= self.readahead {
                    // Keep it in memory too, so it is not read back.
                    spool.mark_read(pos, rec.points);
                    self.head_bytes += len;
                    self.head.push_back(Rec { pos: Some(pos), ..rec });
                }
                None
            }
            Err(e) => {
                let now = (self.clock)();
                if let Some(more) = self.spool_log.allow_at(now) {
                    log::error!(
                        "emitter \"{}\": spool {}: cannot write: {e}; keeping records in memory ({more} more spool errors since the last line)",
                        self.name,
                        spool.dir().display()
                    );
                }
                Some(rec)
            }
        };
        if dropped.0 > 0 {
            self.count_drop(dropped.0, dropped.1, "spool full");
        }
        result
    }

    /// Moves the records held only in memory to the spool, oldest first, while it takes them.
    fn flush_tail_to_spool(&mut self) {
        while let Some(rec) = self.tail.pop_front() {
            let len = rec.data.len() as u64;
            self.tail_bytes -= len;
            if let Some(rec) = self.spool_append(rec) {
                self.tail_bytes += len;
                self.tail.push_front(rec);
                break;
            }
        }
    }

    /// Reads records back from the spool, up to `readahead` bytes (at least one record).
    fn refill(&mut self) {
        if let SpoolState::Open(spool) = &mut self.spool {
            while self.head_bytes < self.readahead {
                let Some(len) = spool.peek() else { break };
                if !self.head.is_empty()
                    && (self.head_bytes + len > self.readahead
                        || self.head_bytes + self.tail_bytes + len > self.buffer_bytes)
                {
                    break;
                }
                let Some(l) = spool.read() else { break };
                self.head_bytes += l.data.len() as u64;
                self.head.push_back(Rec { data: l.data, points: l.points, pos: Some(l.pos) });
            }
        }
        self.take_spool_losses();
    }

    /// True when something is left to send (after [`Outbox::refill`]).
    fn has_more(&mut self) -> bool {
        !self.head.is_empty()
            || !self.tail.is_empty()
            || match &mut self.spool {
                SpoolState::Open(s) => !s.fully_read(),
                _ => false,
            }
    }

    /// The spool's write buffer capacity, 0 without a spool (tests).
    #[cfg(test)]
    fn spool_scratch_capacity(&self) -> usize {
        match &self.spool {
            SpoolState::Open(s) => s.scratch_capacity(),
            _ => 0,
        }
    }

    /// Everything was sent: the outage is over and the spool is emptied.
    fn drained(&mut self) {
        let after_outage = std::mem::take(&mut self.outage);
        if let SpoolState::Open(s) = &mut self.spool {
            s.reset();
        }
        self.take_spool_losses();
        if after_outage {
            // The backlog is gone: give its memory back, so RSS returns to where it was
            // before the outage (the queues keep no capacity, the allocator no free pages).
            self.head.shrink_to_fit();
            self.tail.shrink_to_fit();
            badger_api::memory::release_free_memory();
        }
    }

    /// Sends queued records until the queue is empty, a send fails, or `send_budget` is
    /// used up. Returns at once while backing off after a failure.
    pub fn pump(&mut self, t: &mut dyn Transport) -> Pump {
        let now = self.now();
        self.poll_spool(now, false);
        self.flush_drop_log(now);
        let result = self.pump_at(t, now);
        self.sync_stats();
        result
    }

    fn pump_at(&mut self, t: &mut dyn Transport, started: Instant) -> Pump {
        if self.retry_at.is_some_and(|at| started < at) {
            return Pump::BackingOff;
        }
        loop {
            self.refill();
            if !self.has_more() {
                self.drained();
                return Pump::Drained;
            }
            match self.send_batch(t) {
                Sent::Nothing => {
                    self.drained();
                    return Pump::Drained;
                }
                Sent::Failed => return Pump::Failed,
                Sent::Done => {}
            }
            if self.now().saturating_duration_since(started) >= self.send_budget {
                self.refill();
                if self.has_more() {
                    return Pump::BudgetSpent;
                }
                self.drained();
                return Pump::Drained;
            }
        }
    }

    /// Sends one batch from the front of the queue.
    fn send_batch(&mut self, t: &mut dyn Transport) -> Sent {
        let (mut n_head, mut n_tail, mut bytes) = (0usize, 0usize, 0u64);
        for r in &self.head {
            let len = r.data.len() as u64;
            if n_head > 0 && bytes + len > self.max_batch_bytes {
                break;
            }
            bytes += len;
            n_head += 1;
        }
        let rest_in_memory = n_head == self.head.len()
            && match &mut self.spool {
                SpoolState::Open(s) => s.fully_read(),
                _ => true,
            };
        if rest_in_memory {
            for r in &self.tail {
                let len = r.data.len() as u64;
                if n_head + n_tail > 0 && bytes + len > self.max_batch_bytes {
                    break;
                }
                bytes += len;
                n_tail += 1;
            }
        }
        if n_head + n_tail == 0 {
            return Sent::Nothing;
        }
        self.sync_stats();
        let t0 = self.now();
        let result = {
            let records: Vec<&[u8]> =
                self.head.iter().take(n_head).chain(self.tail.iter().take(n_tail)).map(|r| r.data.as_slice()).collect();
            t.send(&records)
        };
        let t1 = self.now();
        self.stats.last_send_micros.store(t1.saturating_duration_since(t0).as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => {
                let (records, points) = self.remove_front(n_head, n_tail);
                add(&self.stats.sent_records, records);
                add(&self.stats.sent_points, points);
                add(&self.stats.sent_batches, 1);
                self.succeeded();
                Sent::Done
            }
            Err(SendError::Reject(msg)) => {
                let (records, points) = self.remove_front(n_head, n_tail);
                add(&self.stats.rejected_records, records);
                add(&self.stats.rejected_points, points);
                if let Some(more) = self.reject_log.allow_at(t1) {
                    log::error!(
                        "emitter \"{}\": {records} records ({points} points) rejected as undeliverable and dropped: {msg} ({more} more rejections since the last line)",
                        self.name
                    );
                }
                self.succeeded();
                Sent::Done
            }
            Err(SendError::Retry(msg)) => {
                add(&self.stats.retries, 1);
                self.failed(t1, &msg);
                Sent::Failed
            }
        }
    }

    /// Removes the first `n_head` + `n_tail` records (sent or rejected); returns how many
    /// records and points they were.
    fn remove_front(&mut self, n_head: usize, n_tail: usize) -> (u64, u64) {
        let (mut records, mut points) = (0u64, 0u64);
        let mut acked = Vec::with_capacity(n_head);
        for r in self.head.drain(..n_head) {
            self.head_bytes -= r.data.len() as u64;
            records += 1;
            points += r.points;
            if let Some(pos) = r.pos {
                acked.push((pos, r.points));
            }
        }
        if let SpoolState::Open(s) = &mut self.spool {
            s.ack(acked.into_iter());
        }
        for r in self.tail.drain(..n_tail) {
            self.tail_bytes -= r.data.len() as u64;
            records += 1;
            points += r.points;
        }
        (records, points)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            log::info!("emitter \"{}\": sending again after {} failed attempts", self.name, self.failures);
        }
        self.failures = 0;
        self.retry_at = None;
    }

    fn failed(&mut self, now: Instant, msg: &str) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff();
        self.retry_at = Some(now.checked_add(delay).unwrap_or(now));
        self.outage = true;
        self.flush_tail_to_spool();
        if let Some(more) = self.error_log.allow_at(now) {
            log::error!(
                "emitter \"{}\": send failed: {msg}; retrying in {:.1}s with {} records queued ({more} more failures since the last line)",
                self.name,
                delay.as_secs_f64(),
                self.len()
            );
        }
    }

    /// The server said when to try again (HTTP `Retry-After`) on the send that just failed:
    /// nothing is sent for `wait` (at most `retry_max`) instead of the backoff. Does nothing
    /// when the last send did not fail.
    pub fn retry_after(&mut self, wait: Duration) {
        if self.retry_at.is_none() {
            return;
        }
        let now = self.now();
        let wait = wait.min(self.retry_max);
        self.retry_at = Some(now.checked_add(wait).unwrap_or(now));
        log::debug!(
            "emitter \"{}\": the server asked to wait {:.1}s before the next send",
            self.name,
            wait.as_secs_f64()
        );
    }

    /// The wait after the current run of failures: capped exponential, ±20% jitter.
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(30);
        let base = self.retry_initial.saturating_mul(1u32 << exp).min(self.retry_max);
        let factor = 0.8 + 0.4 * self.next_unit();
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base).min(self.retry_max)
    }

    /// xorshift64: a number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// At shutdown: sends what is queued until `deadline` (one last attempt even while
    /// backing off, stopping at the first failure), then writes the rest to the spool, or
    /// without one counts it as dropped and logs how many points were lost. Lets go of the
    /// spool (its lock) so the emitter's next instance can take it.
    pub fn close(&mut self, t: &mut dyn Transport, deadline: Instant) -> Closed {
        let now = self.now();
        self.poll_spool(now, true);
        let sent_before = self.stats.sent_records.load(Ordering::Relaxed);
        loop {
            self.refill();
            if !self.has_more() || self.now() >= deadline {
                break;
            }
            match self.send_batch(t) {
                Sent::Done => {}
                Sent::Nothing | Sent::Failed => break,
            }
        }
        let mut closed =
            Closed { sent_records: self.stats.sent_records.load(Ordering::Relaxed) - sent_before, ..Closed::default() };
        self.refill();
        if !self.has_more() {
            self.drained();
        } else {
            if matches!(self.spool, SpoolState::Open(_)) {
                self.outage = true;
                self.flush_tail_to_spool();
            }
            for r in self.tail.drain(..) {
                closed.lost_records += 1;
                closed.lost_points += r.points;
            }
            self.tail_bytes = 0;
            if closed.lost_records > 0 {
                add(&self.stats.dropped_records, closed.lost_records);
                add(&self.stats.dropped_points, closed.lost_points);
                let why = if matches!(self.spool, SpoolState::Open(_)) {
                    "the spool could not take them"
                } else {
                    "there is no spool_dir to keep them"
                };
                log::warn!(
                    "emitter \"{}\": shutting down with {} records unsent: {} points lost ({why})",
                    self.name,
                    closed.lost_records,
                    closed.lost_points
                );
            }
            if let SpoolState::Open(s) = &mut self.spool {
                s.sync();
                closed.spooled_records = s.records();
                closed.spooled_points = s.points();
                log::info!(
                    "emitter \"{}\": {} records ({} points) kept in the spool {}, sent at the next start",
                    self.name,
                    closed.spooled_records,
                    closed.spooled_points,
                    s.dir().display()
                );
            }
        }
        self.head.clear();
        self.head_bytes = 0;
        self.take_spool_losses();
        if let SpoolState::Open(s) = &self.spool {
            let (dir, max_bytes) = (s.dir().to_path_buf(), s.max_bytes);
            // Dropping the spool closes its files and its lock.
            self.spool = SpoolState::Waiting { dir, max_bytes, next_try: None };
        }
        self.outage = false;
        self.flush_drop_log(now);
        self.sync_stats();
        closed
    }

    /// Takes the spool when it was busy or failed to open (every second at most, or now).
    fn poll_spool(&mut self, now: Instant, force: bool) {
        let SpoolState::Waiting { dir, max_bytes, next_try } = &mut self.spool else { return };
        if !force && next_try.is_some_and(|t| now < t) {
            return;
        }
        match Spool::open(dir, &self.name, *max_bytes) {
            Ok(Opened::Open(s)) => {
                log::info!("emitter \"{}\": took the spool {}", self.name, s.dir().display());
                self.adopt(s);
            }
            Ok(Opened::Busy) => *next_try = Some(now + SPOOL_RETRY),
            Err(e) => {
                *next_try = Some(now + LOG_EVERY);
                if let Some(more) = self.spool_log.allow_at(now) {
                    log::error!("emitter \"{}\": {e} ({more} more spool errors since the last line)", self.name);
                }
            }
        }
    }

    fn adopt(&mut self, s: Box<Spool>) {
        let (records, points) = (s.records(), s.points());
        if records > 0 {
            self.outage = true;
            log::info!(
                "emitter \"{}\": {records} records ({points} points) left in the spool {} by an earlier run are sent first",
                self.name,
                s.dir().display()
            );
        }
        self.spool = SpoolState::Open(s);
        self.take_spool_losses();
    }

    /// Moves the spool's losses and errors into the counters.
    fn take_spool_losses(&mut self) {
        let SpoolState::Open(s) = &mut self.spool else { return };
        let lost = (std::mem::take(&mut s.lost_records), std::mem::take(&mut s.lost_points));
        add(&self.stats.spool_errors, std::mem::take(&mut s.errors));
        if lost.0 > 0 {
            self.count_drop(lost.0, lost.1, "corrupt spool records");
        }
    }

    fn count_drop(&mut self, records: u64, points: u64, reason: &'static str) {
        add(&self.stats.dropped_records, records);
        add(&self.stats.dropped_points, points);
        self.pending_drops.0 += records;
        self.pending_drops.1 += points;
        self.pending_drops.2 = reason;
        let now = self.now();
        self.flush_drop_log(now);
    }

    /// Logs the drops since the last line, at most once a minute.
    fn flush_drop_log(&mut self, now: Instant) {
        if self.pending_drops.0 == 0 || self.drop_log.allow_at(now).is_none() {
            return;
        }
        let (records, points, reason) = std::mem::take(&mut self.pending_drops);
        log::warn!(
            "emitter \"{}\": dropped {records} records ({points} points) since the last line, latest for {reason} (when_full = {}); {} records ({} points) in all",
            self.name,
            self.when_full.as_str(),
            self.stats.dropped_records.load(Ordering::Relaxed),
            self.stats.dropped_points.load(Ordering::Relaxed)
        );
    }

    fn sync_stats(&mut self) {
        self.take_spool_losses();
        let spooled = match &self.spool {
            SpoolState::Open(s) => s.bytes(),
            _ => 0,
        };
        self.stats.queued_bytes.store(self.head_bytes + self.tail_bytes, Ordering::Relaxed);
        self.stats.queued_records.store(self.len(), Ordering::Relaxed);
        self.stats.spooled_bytes.store(spooled, Ordering::Relaxed);
    }
}

/// The spool's subdirectory for an emitter name: anything but `[A-Za-z0-9._-]` becomes `_`.
fn dir_name(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        format!("_{s}")
    } else {
        s
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x2545_f491_4f6c_dd1d);
    let x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    if x == 0 {
        1
    } else {
        x
    }
}
