//! Buckets: the values of one identity (time window, resolution, kind, name, units, source)
//! merged, as l2met's register and store do; read out when their window has closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::parse::{Kind, LogLine, Parsed, Parser};

/// How the lines of one stream become buckets: the drain URL's query, or the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seconds per bucket (at least 1).
    pub resolution: u32,
    /// `prefix`: names become `PREFIX.NAME`.
    pub prefix: Option<String>,
    /// `source-prefix`: the source becomes `S.SOURCE`, or `S` when the line has none.
    pub source_prefix: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { resolution: 60, prefix: None, source_prefix: None }
    }
}

/// Limits of a store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A value whose bucket is more than this many resolution periods old is dropped.
    pub deadline: i64,
    /// Open buckets at most; a value that would open one more is dropped.
    pub max_buckets: usize,
    /// Values a measurement bucket keeps for its percentiles; beyond it, a uniform sample of
    /// this size (count, sum, min and max stay exact).
    pub max_values: usize,
    /// Open buckets of one source at most (so one source cannot take every bucket).
    pub max_source_buckets: usize,
    /// Values kept for percentiles over every open bucket (8 bytes each); past it a bucket's
    /// sample stops growing (its reservoir still replaces values; count, sum, min and max
    /// stay exact).
    pub max_kept_values: usize,
    /// The largest resolution (seconds) the drain accepts (a bucket is held that long).
    pub max_resolution: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: 2,
            max_buckets: 10_000,
            max_values: 10_000,
            max_source_buckets: 1_000,
            max_kept_values: 1_000_000,
            max_resolution: 3600,
        }
    }
}

/// Slack for the collection's tick when deciding that a closed bucket is too old to send.
pub const STALE_SLACK_MS: i64 = 1000;

/// A bucket more than this far in the future (a sender's clock far off) is dropped too.
pub const MAX_AHEAD_SECS: i64 = 3600;

/// Totals since the store was made.
#[derive(Debug, Default)]
pub struct Counters {
    /// Log lines (frames, syslog messages, file lines) read.
    pub lines: AtomicU64,
    /// Values added to buckets.
    pub values: AtomicU64,
    /// Values dropped because their bucket was older than the deadline (l2met's
    /// `receiver.drop`) or more than an hour ahead.
    pub dropped: AtomicU64,
    /// Values dropped because `max_buckets` buckets were open (or `max_source_buckets` of
    /// their source).
    pub overflow: AtomicU64,
    /// Messages logplex said it dropped (`L10` lines; l2met's `logplex.l10`).
    pub l10: AtomicU64,
    /// Lines ignored because their logfmt did not scan.
    pub bad_lines: AtomicU64,
    /// HTTP requests to the drain answered 200.
    pub requests: AtomicU64,
    /// HTTP requests refused (method, authentication, size).
    pub rejected: AtomicU64,
}

/// Counts of one batch, added to the [`Counters`] at once.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    values: u64,
    dropped: u64,
    overflow: u64,
    l10: u64,
    bad: u64,
}

/// The aggregate of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    Measure { count: u64, sum: f64, min: f64, max: f64, values: Vec<f64> },
    Counter(f64),
    Sample(f64),
}

impl Agg {
    fn new(kind: Kind, v: f64) -> Agg {
        match kind {
            Kind::Measure => Agg::Measure { count: 1, sum: v, min: v, max: v, values: vec![v] },
            Kind::Counter => Agg::Counter(v),
            Kind::Sample => Agg::Sample(v),
        }
    }

    fn add(&mut self, v: f64, max_values: usize, rng: &mut u64, budget: &mut usize) {
        match self {
            Agg::Measure { count, sum, min, max, values } => {
                *count += 1;
                *sum += v;
                *min = min.min(v);
                *max = max.max(v);
                if values.len() < max_values && *budget > 0 {
                    *budget -= 1;
                    values.push(v);
                } else {
                    // Reservoir sampling (Algorithm R): every value is kept with equal chance.
                    let j = (next_random(rng) % *count) as usize;
                    if j < values.len() {
                        values[j] = v;
                    }
                }
            }
            Agg::Counter(s) => *s += v,
            Agg::Sample(last) => *last = v,
        }
    }
}

/// xorshift64*: a fast generator for the reservoir, seeded per store.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// One bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the window, epoch seconds (l2met's `measure_time`).
    pub time: i64,
    pub resolution: u32,
    pub kind: Kind,
    pub name: String,
    pub units: String,
    pub source: String,
    pub agg: Agg,
    /// Values added.
    pub values: u64,
}

impl Bucket {
    /// When its window closes, epoch seconds (l2met's `ReadyAt`).
    pub fn ready_at(&self) -> i64 {
        self.time + i64::from(self.resolution)
    }
}

struct Inner {
    map: HashMap<Box<[u8]>, Bucket>,
    /// Open buckets per source.
    per_source: HashMap<String, usize>,
    /// Values that may still be kept for percentiles (`max_kept_values` minus those kept).
    budget: usize,
    limits: Limits,
    /// The earliest `ready_at` of any bucket (ms), so a collection with nothing ready is cheap.
    next_ready_ms: i64,
    rng: u64,
    key: Vec<u8>,
}

/// The shared buckets of one module; every input adds to it, the module's collection takes
/// the ready buckets out. A reload that rebuilds the module keeps its store.
pub struct Store {
    inner: Mutex<Inner>,
    pub counters: Counters,
}

impl Store {
    pub fn new(limits: Limits) -> Store {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Store {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                per_source: HashMap::new(),
                budget: limits.max_kept_values,
                limits,
                next_ready_ms: i64::MAX,
                rng: seed,
                key: Vec::new(),
            }),
            counters: Counters::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// New limits (a reload); buckets already open stay.
    pub fn set_limits(&self, limits: Limits) {
        let mut inner = self.lock();
        let kept = inner.limits.max_kept_values.saturating_sub(inner.budget);
        inner.budget = limits.max_kept_values.saturating_sub(kept);
        inner.limits = limits;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Buckets open now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes out every bucket whose window closed at least `delay_ms` before `now_ms`
    /// (epoch milliseconds), oldest first. A bucket whose window closed more than `deadline`
    /// windows (plus `delay_ms` and a second) before now is dropped instead and its values
    /// counted as dropped: its points would go out stamped far from their time (after a stall,
    /// or with a module interval longer than that).
    pub fn take_ready(&self, now_ms: i64, delay_ms: i64) -> Vec<Bucket> {
        let mut inner = self.lock();
        if inner.next_ready_ms.saturating_add(delay_ms) > now_ms {
            return Vec::new();
        }
        let ready = |b: &Bucket| b.ready_at().saturating_mul(1000).saturating_add(delay_ms) <= now_ms;
        let keys: Vec<Box<[u8]>> = inner.map.iter().filter(|(_, b)| ready(b)).map(|(k, _)| k.clone()).collect();
        let mut out: Vec<Bucket> = keys.iter().filter_map(|k| inner.map.remove(k)).collect();
        for b in &out {
            if let Agg::Measure { values, .. } = &b.agg {
                inner.budget = (inner.budget + values.len()).min(inner.limits.max_kept_values);
            }
            if let Some(n) = inner.per_source.get_mut(&b.source) {
                *n -= 1;
                if *n == 0 {
                    inner.per_source.remove(&b.source);
                }
            }
        }
        inner.next_ready_ms = inner.map.values().map(|b| b.ready_at().saturating_mul(1000)).min().unwrap_or(i64::MAX);
        let deadline = inner.limits.deadline;
        drop(inner);
        let stale = |b: &Bucket| {
            let late_ms = now_ms.saturating_sub(b.ready_at().saturating_mul(1000)).saturating_sub(delay_ms);
            late_ms
                > deadline.saturating_mul(i64::from(b.resolution)).saturating_mul(1000).saturating_add(STALE_SLACK_MS)
        };
        let dropped: u64 = out.iter().filter(|b| stale(b)).map(|b| b.values).sum();
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            out.retain(|b| !stale(b));
        }
        out.sort_by(|a, b| (a.time, &a.name, &a.source, &a.units).cmp(&(b.time, &b.name, &b.source, &b.units)));
        out
    }
}

/// l2met's `Delay`: whole resolution periods between the window starting at `time` and now,
/// both rounded to the nearest multiple of the resolution (halves up).
pub fn delay(time: i64, resolution: u32, now_ms: i64) -> i64 {
    let res_ms = i64::from(resolution.max(1)) * 1000;
    let round = |t: i64| (t + res_ms / 2).div_euclid(res_ms) * res_ms;
    (round(now_ms) - round(time.saturating_mul(1000))) / res_ms
}

/// What one input thread keeps between lines: its parser buffers, the last timestamp it
/// parsed, and counts not yet added to the store's counters.
pub struct Ingest {
    parser: Parser,
    last_time: (Vec<u8>, Option<i64>),
    tally: Tally,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest::new()
    }
}

impl Ingest {
    pub fn new() -> Ingest {
        Ingest { parser: Parser::new(), last_time: (Vec::new(), None), tally: Tally::default() }
    }

    /// Adds every frame of a logplex body; returns the number of frames.
    pub fn logplex(&mut self, store: &Store, body: &[u8], opts: &Options, now_ms: i64) -> usize {
        let mut n = 0;
        for line in super::parse::Frames::new(body) {
            self.line(store, line, opts, now_ms);
            n += 1;
        }
        self.flush(store);
        n
    }

    /// Adds one syslog message or file line (see [`super::parse::syslog_line`]); call
    /// [`Ingest::flush`] after a batch.
    pub fn syslog(&mut self, store: &Store, line: &[u8], opts: &Options, now_ms: i64) {
        self.line(store, super::parse::syslog_line(line), opts, now_ms);
    }

    /// Adds the counts since the last flush to the store's counters.
    pub fn flush(&mut self, store: &Store) {
        let t = std::mem::take(&mut self.tally);
        let c = &store.counters;
        for (counter, n) in [
            (&c.lines, t.lines),
            (&c.values, t.values),
            (&c.dropped, t.dropped),
            (&c.overflow, t.overflow),
            (&c.l10, t.l10),
            (&c.bad_lines, t.bad),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn timestamp(&mut self, field: &[u8]) -> Option<i64> {
        if self.last_time.0 != field {
            self.last_time.0.clear();
            self.last_time.0.extend_from_slice(field);
            self.last_time.1 = super::parse::parse_rfc3339(field);
        }
        self.last_time.1
    }

    /// Adds the metrics of one line.
    pub fn line(&mut self, store: &Store, line: LogLine<'_>, opts: &Options, now_ms: i64) {
        self.tally.lines += 1;
        let ts = line.time.and_then(|t| self.timestamp(t)).unwrap_or_else(|| now_ms.div_euclid(1000));
        let m = match self.parser.message(line.procid, line.msg) {
            Parsed::Metrics(m) => m,
            Parsed::L10(n) => {
                self.tally.l10 += n;
                return;
            }
            Parsed::Bad => {
                self.tally.bad += 1;
                return;
            }
        };
        if m.is_empty() {
            return;
        }
        let res = i64::from(opts.resolution.max(1));
        let time = ts.div_euclid(res) * res;
        let mut inner = store.lock();
        let inner = &mut *inner;
        let limits = inner.limits;
        if delay(time, opts.resolution, now_ms) > limits.deadline || time > now_ms.div_euclid(1000) + MAX_AHEAD_SECS {
            self.tally.dropped += m.len() as u64;
            return;
        }
        let source = m.source();
        for metric in m.iter() {
            let key = &mut inner.key;
            key.clear();
            key.push(metric.kind.code());
            key.extend_from_slice(&opts.resolution.to_le_bytes());
            key.extend_from_slice(&time.to_le_bytes());
            // name = [prefix "."] name_prefix name; then units; then source: each length-prefixed.
            let at = key.len();
            key.extend_from_slice(&[0; 4]);
            if let Some(p) = &opts.prefix {
                key.extend_from_slice(p.as_bytes());
                key.push(b'.');
            }
            key.extend_from_slice(metric.name_prefix.as_bytes());
            key.extend_from_slice(metric.name);
            let len = (key.len() - at - 4) as u32;
            key[at..at + 4].copy_from_slice(&len.to_le_bytes());
            key.extend_from_slice(&(metric.units.len() as u32).to_le_bytes());
            key.extend_from_slice(metric.units);
            let src_at = key.len();
            match &opts.source_prefix {
                Some(sp) if source.is_empty() => key.extend_from_slice(sp.as_bytes()),
                Some(sp) => {
                    key.extend_from_slice(sp.as_bytes());
                    key.push(b'.');
                    key.extend_from_slice(source);
                }
                None => key.extend_from_slice(source),
            }
            if let Some(b) = inner.map.get_mut(&key[..]) {
                b.agg.add(metric.value, limits.max_values, &mut inner.rng, &mut inner.budget);
                b.values += 1;
                self.tally.values += 1;
                continue;
            }
            if inner.map.len() >= limits.max_buckets {
                self.tally.overflow += 1;
                continue;
            }
            let source_name = String::from_utf8_lossy(&key[src_at..]).into_owned();
            let of_source = inner.per_source.get(&source_name).copied().unwrap_or(0);
            if of_source >= limits.max_source_buckets {
                self.tally.overflow += 1;
                continue;
            }
            inner.per_source.insert(source_name.clone(), of_source + 1);
            // A bucket's first value is always kept (bounded by `max_buckets`).
            let agg = Agg::new(metric.kind, metric.value);
            if metric.kind == Kind::Measure {
                inner.budget = inner.budget.saturating_sub(1);
            }
            let name_end = at + 4 + len as usize;
            let bucket = Bucket {
                time,
                resolution: opts.resolution,
                kind: metric.kind,
                name: String::from_utf8_lossy(&key[at + 4..name_end]).into_owned(),
                units: String::from_utf8_lossy(metric.units).into_owned(),
                source: source_name,
                agg,
                values: 1,
            };
            inner.next_ready_ms = inner.next_ready_ms.min(bucket.ready_at().saturating_mul(1000));
            inner.map.insert(key.as_slice().into(), bucket);
            self.tally.values += 1;
        }
    }
}

/// The statistics of a measurement, as l2met computes them: on the values sorted ascending,
/// the median is the value at index ⌊n/2⌋ (the upper median for even n), perc95 at
/// ⌊n·0.95⌋ and perc99 at ⌊n·0.99⌋.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub perc95: f64,
    pub perc99: f64,
}

/// What a series reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stats {
    Measure(MeasureStats),
    /// A counter's sum.
    Counter(f64),
    /// A sample's last value.
    Sample(f64),
}

/// The buckets of one series (name, units, source, kind, resolution) that closed between two
/// collections, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub units: String,
    pub source: String,
    pub kind: Kind,
    pub resolution: u32,
    /// Start of the earliest window merged (epoch seconds).
    pub time: i64,
    /// Windows merged (1 unless the collection ran less often than the resolution, or late
    /// values reopened an older window).
    pub windows: usize,
    pub stats: Stats,
}

/// l2met's index rule on sorted values; all zero for none.
pub fn measure_stats(count: u64, sum: f64, min: f64, max: f64, values: &mut [f64]) -> MeasureStats {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let at = |i: usize| values.get(i.min(n.saturating_sub(1))).copied().unwrap_or(0.0);
    MeasureStats {
        count,
        sum,
        min,
        max,
        mean: if count > 0 { sum / count as f64 } else { 0.0 },
        median: at(n / 2),
        perc95: at((n as f64 * 0.95) as usize),
        perc99: at((n as f64 * 0.99) as usize),
    }
}

/// Merges ready buckets (as [`Store::take_ready`] returns them, oldest first) into one
/// [`Series`] each, sorted by name, source, units.
pub fn summarize(mut buckets: Vec<Bucket>) -> Vec<Series> {
    // Stable: within a series, the buckets stay oldest first (the sample's last value wins).
    buckets.sort_by(|a, b| {
        (&a.name, &a.source, &a.units, a.kind, a.resolution).cmp(&(&b.name, &b.source, &b.units, b.kind, b.resolution))
    });
    let mut out: Vec<Series> = Vec::new();
    let mut pending: Option<(Bucket, usize)> = None;
    let finish = |(b, windows): (Bucket, usize), out: &mut Vec<Series>| {
        let stats = match b.agg {
            Agg::Measure { count, sum, min, max, mut values } => {
                Stats::Measure(measure_stats(count, sum, min, max, &mut values))
            }
            Agg::Counter(s) => Stats::Counter(s),
            Agg::Sample(v) => Stats::Sample(v),
        };
        out.push(Series {
            name: b.name,
            units: b.units,
            source: b.source,
            kind: b.kind,
            resolution: b.resolution,
            time: b.time,
            windows,
            stats,
        });
    };
    for b in buckets {
        match &mut pending {
            Some((p, windows))
                if p.name == b.name
                    && p.source == b.source
                    && p.units == b.units
                    && p.kind == b.kind
                    && p.resolution == b.resolution =>
            {
                *windows += 1;
                p.time = p.time.min(b.time);
                match (&mut p.agg, b.agg) {
                    (
                        Agg::Measure { count, sum, min, max, values },
                        Agg::Measure { count: c2, sum: s2, min: mi2, max: ma2, values: v2 },
                    ) => {
                        *count += c2;
                        *sum += s2;
                        *min = min.min(mi2);
                        *max = max.max(ma2);
                        values.extend(v2);
                    }
                    (Agg::Counter(s), Agg::Counter(s2)) => *s += s2,
                    (Agg::Sample(v), Agg::Sample(v2)) => *v = v2,
                    _ => {}
                }
            }
            _ => {
                if let Some(p) = pending.take() {
                    finish(p, &mut out);
                }
                pending = Some((b, 1));
            }
        }
    }
    if let Some(p) = pending.take() {
        finish(p, &mut out);
    }
    out
}
