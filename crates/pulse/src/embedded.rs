//! The embedded store: append-only files under the data directory, no other process.
//!
//! * `series.jsonl`: one line per series (`{"id":N,"m":"cpu_used","t":[["host","web1"]]}`),
//!   appended when a series is first seen.
//! * `raw/<start-ms>.seg`: the raw points of one hour, in blocks of 20-byte records
//!   (series id, time in ms, value). A whole file is deleted once it is older than the raw
//!   retention (8 h by default, like the original's `one_day` policy).
//! * `agg/<start-ms>.seg`: the aggregates of one day: per series and `aggregate-interval`
//!   bucket the mean and the count (24-byte records), written when a bucket closes — what
//!   the original's continuous query wrote into `one_week.aggregate`. Deleted past the
//!   aggregate retention (`retention` weeks).
//!
//! Every block is `magic, length, crc32, min time, max time` and its records; on start a
//! torn or corrupt tail (a crash during a write) is cut off at the last good block. A
//! block whose write fails (a full disk) is cut off again at once (the file goes back to
//! its length before the write) and stays pending in memory for the next flush, so a
//! torn write loses only itself and never hides the blocks written after it.
//!
//! Crash consistency of the series: a new series gets its id and is visible to queries
//! only once its `series.jsonl` line is written and synced; a failed write takes the
//! line back (the file is cut to its old length) and the series stays out of memory (its
//! points are dropped and counted). `open()` loads each line by its explicit id and skips
//! a bad line instead of truncating there, so a gap never shifts later ids. At most
//! [`Options::max_series`] series are held; past it new series are refused (counted,
//! logged at most once a minute). A series with no point, bucket or aggregate left within
//! retention expires from memory, and `series.jsonl` is compacted (rewritten, synced,
//! renamed) once a quarter of its lines (and at least 1,000) are expired series. Every
//! duration is turned into milliseconds saturating, so a huge retention means "forever",
//! never a negative one.
//! In memory: every series, its last few raw points (for `/latest`), its open bucket and
//! its aggregates within retention (12 bytes each: `/hourly` over a week reads 672 per
//! series without touching the disk). Alerts read the raw files of their window.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::{group, Backend, Batch, Filters, Latest, LatestQuery, RangeQuery, Row, SeriesKey};

const MAGIC: u32 = 0x5055_4c53; // "PULS"
const HEADER: usize = 28;
const RAW_RECORD: usize = 20;
const AGG_RECORD: usize = 24;
const RAW_SPAN_MS: i64 = 3_600_000;
const AGG_SPAN_MS: i64 = 86_400_000;
/// Raw points kept in memory per series (for `/latest`).
const RECENT: usize = 6;
/// A block is written once this many bytes are pending (or at every flush).
const BLOCK_BYTES: usize = 1 << 20;
const MAX_BLOCK: usize = 64 << 20;

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub raw_retention: Duration,
    pub agg_retention: Duration,
    pub agg_interval: Duration,
    /// Series held at most (`--max-series`); new ones past it are refused.
    pub max_series: usize,
}

/// Default of `--max-series`.
pub const MAX_SERIES: usize = 100_000;
/// Raw records kept pending while the disk refuses them; older ones are dropped past it.
const MAX_PENDING: usize = 16 << 20;

/// Counters of the embedded store (the server's self-metrics).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Points dropped: their series was refused (limit, failed `series.jsonl` write) or
    /// their block could not be kept pending.
    pub dropped_points: AtomicU64,
    /// New series refused at `max_series`.
    pub refused_series: AtomicU64,
    /// Writes that failed (`series.jsonl` or a segment).
    pub write_errors: AtomicU64,
    /// Series expired from memory.
    pub expired_series: AtomicU64,
}

/// A duration in milliseconds, saturating at `i64::MAX`.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Series {
    /// Shared with the relay connection that first wrote it.
    key: Arc<SeriesKey>,
    recent: VecDeque<(i64, f64)>,
    /// The open aggregate bucket: start, sum, count.
    open: Option<(i64, f64, u32)>,
    /// Closed buckets, ascending: start (epoch s), mean.
    aggs: VecDeque<(u32, f64)>,
}

#[derive(Default)]
struct Mem {
    /// By id (ids are never reused: an expired series keeps its gap).
    series: HashMap<u32, Series>,
    /// The next new series' id: above every id ever written.
    next_id: u32,
    /// Series held (`series.len()`).
    live: usize,
    /// Lines of `series.jsonl` (live or not), to decide when to compact it.
    lines: usize,
    by_key: HashMap<String, u32>,
    by_measurement: BTreeMap<String, Vec<u32>>,
    tag_keys: BTreeSet<String>,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    min: i64,
    max: i64,
}

impl Pending {
    fn push(&mut self, rec: &[u8], t: i64) {
        if self.buf.is_empty() {
            self.min = t;
            self.max = t;
        }
        self.min = self.min.min(t);
        self.max = self.max.max(t);
        self.buf.extend_from_slice(rec);
    }
}

struct Files {
    series_log: File,
    raw: Option<(i64, File)>,
    agg: Option<(i64, File)>,
    pending_raw: Pending,
    /// Pending aggregate records per day file.
    pending_agg: BTreeMap<i64, Pending>,
}

#[derive(Serialize, Deserialize)]
struct SeriesLine {
    id: u32,
    m: String,
    t: Vec<(String, String)>,
}

/// The embedded store.
pub struct Embedded {
    opts: Options,
    mem: RwLock<Mem>,
    files: Mutex<Files>,
    pub counters: StoreCounters,
    throttle: Mutex<badger_api::throttle::LogThrottle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key_string(measurement: &str, tags: &[(String, String)]) -> String {
    let mut k = String::with_capacity(measurement.len() + 32);
    k.push_str(measurement);
    for (a, b) in tags {
        k.push('\0');
        k.push_str(a);
        k.push('=');
        k.push_str(b);
    }
    k
}

fn block_header(payload: &[u8], min: i64, max: i64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h[12..20].copy_from_slice(&min.to_le_bytes());
    h[20..28].copy_from_slice(&max.to_le_bytes());
    h
}

struct BlockHead {
    len: usize,
    crc: u32,
    min: i64,
    max: i64,
}

fn parse_header(h: &[u8; HEADER]) -> Option<BlockHead> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let i64_at = |i: usize| i64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    if u32_at(0) != MAGIC {
        return None;
    }
    let len = u32_at(4) as usize;
    if len > MAX_BLOCK {
        return None;
    }
    Some(BlockHead { len, crc: u32_at(8), min: i64_at(12), max: i64_at(20) })
}

/// Reads the blocks of a segment file whose time range overlaps `[from, to]`, calling
/// `f` with each payload. Returns the offset where the valid blocks end.
fn read_blocks(path: &Path, from: i64, to: i64, mut f: impl FnMut(&[u8])) -> io::Result<u64> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut at = 0u64;
    let mut payload = Vec::new();
    loop {
        if at + HEADER as u64 > size {
            return Ok(at);
        }
        let mut h = [0u8; HEADER];
        r.read_exact(&mut h)?;
        let Some(head) = parse_header(&h) else { return Ok(at) };
        let end = at + (HEADER + head.len) as u64;
        if end > size {
            return Ok(at);
        }
        if head.max < from || head.min > to {
            r.seek_relative(head.len as i64)?;
        } else {
            payload.resize(head.len, 0);
            r.read_exact(&mut payload)?;
            if crc32fast::hash(&payload) != head.crc {
                return Ok(at);
            }
            f(&payload);
        }
        at = end;
    }
}

/// Checks every block (crc included) and cuts a torn tail off.
fn repair(path: &Path) -> io::Result<()> {
    let size = fs::metadata(path)?.len();
    let good = read_blocks(path, i64::MIN, i64::MAX, |_| {})?;
    if good < size {
        log::warn!("pulse store: {}: cutting {} bytes of a torn or corrupt tail", path.display(), size - good);
        OpenOptions::new().write(true).open(path)?.set_len(good)?;
    }
    Ok(())
}

fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let start = p.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((start, p))
        })
        .collect();
    out.sort();
    out
}

fn decode_raw(payload: &[u8]) -> impl Iterator<Item = (u32, i64, f64)> + '_ {
    payload.chunks_exact(RAW_RECORD).map(|c| {
        let id = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let t = i64::from_le_bytes(c[4..12].try_into().unwrap_or([0; 8]));
        let v = f64::from_le_bytes(c[12..20].try_into().unwrap_or([0; 8]));
        (id, t, v)
    })
}

fn decode_agg(payload: &[u8]) -> impl Iterator<Item = (u32, i64, f64, u32)> + '_ {
    payload.chunks_exact(AGG_RECORD).map(|c| {
        let id = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let t = i64::from_le_bytes(c[4..12].try_into().unwrap_or([0; 8]));
        let v = f64::from_le_bytes(c[12..20].try_into().unwrap_or([0; 8]));
        let n = u32::from_le_bytes([c[20], c[21], c[22], c[23]]);
        (id, t, v, n)
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Embedded {
    /// Opens (or creates) the store in `opts.dir`, repairing torn tails and loading the
    /// series, the aggregates within retention and the last raw points.
    pub fn open(opts: Options) -> io::Result<Embedded> {
        let dir = &opts.dir;
        create_private_dir(dir)?;
        create_private_dir(&dir.join("raw"))?;
        create_private_dir(&dir.join("agg"))?;
        let mut mem = Mem::default();
        let series_path = dir.join("series.jsonl");
        let mut skipped = 0usize;
        let mut good_end = 0u64;
        if let Ok(f) = File::open(&series_path) {
            let mut r = BufReader::new(f);
            let mut line = Vec::new();
            let mut at = 0u64;
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                at += n as u64;
                if line.last() != Some(&b'\n') {
                    // A torn last line: cut below.
                    break;
                }
                good_end = at;
                let parsed = serde_json::from_slice::<SeriesLine>(&line).ok();
                match parsed {
                    Some(s) if s.id < u32::MAX => {
                        mem.lines += 1;
                        let key = Arc::new(SeriesKey::new(&s.m, s.t));
                        let ks = key_string(&key.measurement, &key.tags);
                        if mem.by_key.contains_key(&ks) {
                            // The same series twice (revived after expiry under its id):
                            // the first id stays.
                            continue;
                        }
                        mem.next_id = mem.next_id.max(s.id + 1);
                        if mem.series.contains_key(&s.id) {
                            skipped += 1;
                            continue;
                        }
                        Self::insert_series(&mut mem, s.id, key);
                    }
                    _ => skipped += 1,
                }
            }
            if skipped > 0 {
                log::warn!("pulse store: {}: skipped {skipped} bad lines", series_path.display());
            }
            if good_end < fs::metadata(&series_path)?.len() {
                log::warn!("pulse store: {}: cutting a torn last line", series_path.display());
                OpenOptions::new().write(true).open(&series_path)?.set_len(good_end)?;
            }
        }
        let now = now_ms();
        let store = Embedded {
            mem: RwLock::new(mem),
            files: Mutex::new(Files {
                series_log: open_append(&series_path)?,
                raw: None,
                agg: None,
                pending_raw: Pending::default(),
                pending_agg: BTreeMap::new(),
            }),
            opts,
            counters: StoreCounters::default(),
            throttle: Mutex::new(badger_api::throttle::LogThrottle::default()),
        };
        store.load(now)?;
        store.expire(now);
        Ok(store)
    }

    fn insert_series(mem: &mut Mem, id: u32, key: Arc<SeriesKey>) {
        let (measurement, tags) = (&key.measurement, &key.tags);
        mem.by_key.insert(key_string(measurement, tags), id);
        mem.by_measurement.entry(measurement.to_string()).or_default().push(id);
        for (k, _) in tags {
            if !mem.tag_keys.contains(k) {
                mem.tag_keys.insert(k.clone());
            }
        }
        mem.next_id = mem.next_id.max(id.saturating_add(1));
        let s = Series { key, recent: VecDeque::with_capacity(RECENT), open: None, aggs: VecDeque::new() };
        if mem.series.insert(id, s).is_none() {
            mem.live += 1;
        }
    }

    fn remove_series(mem: &mut Mem, id: u32) {
        let Some(s) = mem.series.remove(&id) else { return };
        mem.live -= 1;
        mem.by_key.remove(&key_string(&s.key.measurement, &s.key.tags));
        if let Some(ids) = mem.by_measurement.get_mut(&s.key.measurement) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                mem.by_measurement.remove(&s.key.measurement);
            }
        }
    }

    fn load(&self, now: i64) -> io::Result<()> {
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let agg_from = now.saturating_sub(ms(self.opts.agg_retention));
        let mut aggs: HashMap<u32, BTreeMap<i64, (f64, u32)>> =
            mem.series.keys().map(|&id| (id, BTreeMap::new())).collect();
        for (_, path) in segments(&self.opts.dir.join("agg")) {
            repair(&path)?;
            read_blocks(&path, agg_from, i64::MAX, |p| {
                for (id, t, mean, count) in decode_agg(p) {
                    if let Some(m) = aggs.get_mut(&id) {
                        // A bucket written twice (a partial one at shutdown): merge by count.
                        let e = m.entry(t).or_insert((0.0, 0));
                        let total = e.1.saturating_add(count);
                        if total > 0 {
                            e.0 = (e.0 * e.1 as f64 + mean * count as f64) / total as f64;
                        }
                        e.1 = total;
                    }
                }
            })?;
        }
        for (id, m) in aggs {
            if let Some(s) = mem.series.get_mut(&id) {
                s.aggs =
                    m.into_iter().filter(|(t, _)| *t > agg_from).map(|(t, (v, _))| ((t / 1000) as u32, v)).collect();
            }
        }
        let raw = segments(&self.opts.dir.join("raw"));
        for (_, path) in &raw {
            repair(path)?;
        }
        let recent_from = now - 3_600_000;
        for (_, path) in raw.iter().filter(|(s, _)| s.saturating_add(RAW_SPAN_MS) > recent_from) {
            read_blocks(path, recent_from, i64::MAX, |p| {
                for (id, t, v) in decode_raw(p) {
                    if let Some(s) = mem.series.get_mut(&id) {
                        push_recent(&mut s.recent, t, v);
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Ids of the series of `stat` that match `filters`.
    fn matching(mem: &Mem, stat: &str, filters: &Filters) -> Vec<u32> {
        mem.by_measurement
            .get(stat)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|id| mem.series.get(id).is_some_and(|s| filters.matches(&s.key.tags)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn refuse(&self, what: &str) {
        if let Some(left) = lock(&self.throttle).allow() {
            log::warn!("pulse store: {what} ({left} more such since the last line)");
        }
    }

    /// Gives every new series of the batch an id, writing and syncing their lines first:
    /// a series enters memory only once its line is durable. A series refused (the limit,
    /// a failed write) keeps no id; its points are dropped by `write`.
    fn resolve(&self, batch: &Batch) -> Result<(), String> {
        let known = |mem: &Mem, k: &SeriesKey| k.id.get().is_some_and(|id| mem.series.contains_key(id));
        {
            let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
            if batch.points.iter().all(|(k, _)| known(&mem, k)) {
                return Ok(());
            }
        }
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let mut files = lock(&self.files);
        let mut new: Vec<(u32, Arc<SeriesKey>)> = Vec::new();
        let mut text = String::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut next = mem.next_id;
        let mut refused = 0u64;
        for (k, _) in &batch.points {
            if known(&mem, k) {
                continue;
            }
            let ks = key_string(&k.measurement, &k.tags);
            if let Some(&id) = mem.by_key.get(&ks) {
                let _ = k.id.set(id);
                continue;
            }
            if !seen.insert(ks) {
                continue;
            }
            if mem.live + new.len() >= self.opts.max_series {
                refused += 1;
                continue;
            }
            // An expired series comes back under its old id (the key still carries it).
            let id = match k.id.get() {
                Some(&id) => id,
                None if next == u32::MAX => {
                    refused += 1;
                    continue;
                }
                None => {
                    next += 1;
                    next - 1
                }
            };
            let line = serde_json::to_string(&SeriesLine { id, m: k.measurement.clone(), t: k.tags.clone() })
                .map_err(|e| e.to_string())?;
            text.push_str(&line);
            text.push('\n');
            new.push((id, k.clone()));
        }
        if refused > 0 {
            self.counters.refused_series.fetch_add(refused, Ordering::Relaxed);
            self.refuse(&format!("{refused} new series refused: {} series held (--max-series)", mem.live));
        }
        if new.is_empty() {
            return Ok(());
        }
        let f = &mut files.series_log;
        let before = f.metadata().map_err(|e| format!("series.jsonl: {e}"))?.len();
        let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_data());
        if let Err(e) = written {
            // Take the line(s) back so the file never holds a half line or an id gap.
            let _ = f.set_len(before);
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            return Err(format!("writing series.jsonl: {e}; {} new series not stored", new.len()));
        }
        mem.lines += new.len();
        for (id, k) in new {
            let _ = k.id.set(id);
            if k.id.get() == Some(&id) {
                Self::insert_series(&mut mem, id, k);
            }
        }
        Ok(())
    }

    fn agg_ms(&self) -> i64 {
        ms(self.opts.agg_interval).max(60_000)
    }

    /// Appends one block; on failure the file is cut back to its length before, so a
    /// failed or torn write loses only this block (which the caller keeps pending).
    fn write_block(dir: &Path, slot: &mut Option<(i64, File)>, span: i64, p: &Pending) -> Result<(), String> {
        let start = p.min.div_euclid(span) * span;
        if slot.as_ref().is_none_or(|(s, _)| *s != start) {
            let path = dir.join(format!("{start}.seg"));
            let f = open_append(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            *slot = Some((start, f));
        }
        let Some((_, f)) = slot.as_mut() else { return Ok(()) };
        let mut block = Vec::with_capacity(HEADER + p.buf.len());
        block.extend_from_slice(&block_header(&p.buf, p.min, p.max));
        block.extend_from_slice(&p.buf);
        let before = f.metadata().map_err(|e| format!("{}: {e}", dir.display()))?.len();
        match f.write_all(&block) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = f.set_len(before);
                Err(format!("writing {}: {e}", dir.display()))
            }
        }
    }

    /// Closes open buckets that ended before `now` (series that stopped reporting), drops
    /// what is past retention, expires idle series and compacts `series.jsonl`.
    fn expire(&self, now: i64) {
        let agg = self.agg_ms();
        let mut expired = 0u64;
        {
            let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
            let mut files = lock(&self.files);
            let agg_from = (now.saturating_sub(ms(self.opts.agg_retention)).max(0) / 1000).min(u32::MAX as i64) as u32;
            let raw_from = now.saturating_sub(ms(self.opts.raw_retention));
            let mut idle = Vec::new();
            for (&id, s) in mem.series.iter_mut() {
                if let Some((b, sum, n)) = s.open {
                    if b.saturating_add(agg) <= now - 5_000 {
                        s.open = None;
                        close_bucket(s, &mut files, id, b, sum, n);
                    }
                }
                while s.aggs.front().is_some_and(|a| a.0 <= agg_from) {
                    s.aggs.pop_front();
                }
                while s.recent.front().is_some_and(|p| p.0 <= raw_from) {
                    s.recent.pop_front();
                }
                if s.open.is_none() && s.aggs.is_empty() && s.recent.is_empty() {
                    idle.push(id);
                }
            }
            for id in idle {
                Self::remove_series(&mut mem, id);
                expired += 1;
            }
            if expired > 0 {
                self.counters.expired_series.fetch_add(expired, Ordering::Relaxed);
                log::info!("pulse store: {expired} idle series expired ({} held)", mem.live);
            }
            let dead = mem.lines.saturating_sub(mem.live);
            if dead >= 1000 && dead * 4 >= mem.lines {
                if let Err(e) = self.compact(&mut mem, &mut files) {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("pulse store: compacting series.jsonl: {e}");
                }
            }
        }
        let drop_old = |dir: &Path, span: i64, keep: Duration| {
            let limit = now.saturating_sub(ms(keep));
            for (start, path) in segments(dir) {
                if start.saturating_add(span) <= limit {
                    log::debug!("pulse store: retention: removing {}", path.display());
                    if let Err(e) = fs::remove_file(&path) {
                        log::warn!("pulse store: removing {}: {e}", path.display());
                    }
                }
            }
        };
        drop_old(&self.opts.dir.join("raw"), RAW_SPAN_MS, self.opts.raw_retention);
        drop_old(&self.opts.dir.join("agg"), AGG_SPAN_MS, self.opts.agg_retention);
    }

    /// Rewrites `series.jsonl` with the live series only: a temp file, synced, renamed,
    /// the directory synced. On failure the old file stays as it was.
    fn compact(&self, mem: &mut Mem, files: &mut Files) -> io::Result<()> {
        let path = self.opts.dir.join("series.jsonl");
        let tmp = self.opts.dir.join("series.jsonl.tmp");
        let mut text = String::new();
        let mut ids: Vec<u32> = mem.series.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(s) = mem.series.get(&id) else { continue };
            let line = SeriesLine { id, m: s.key.measurement.clone(), t: s.key.tags.clone() };
            text.push_str(&serde_json::to_string(&line).map_err(io::Error::other)?);
            text.push('\n');
        }
        let written = (|| {
            let mut f = private_options().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.opts.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        files.series_log = open_append(&path)?;
        log::info!("pulse store: series.jsonl compacted: {} lines → {}", mem.lines, mem.live);
        mem.lines = mem.live;
        Ok(())
    }

    /// Number of series, and the aggregates held in memory (for tests and self-metrics).
    pub fn counts(&self) -> (usize, usize) {
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        (mem.live, mem.series.values().map(|s| s.aggs.len()).sum())
    }

    /// Writes aggregates directly (seeding history, e.g. for the benchmark): each
    /// `(bucket start ms, mean)` for the series.
    pub fn seed_aggregates(&self, key: &SeriesKey, buckets: &[(i64, f64)]) -> Result<(), String> {
        self.resolve(&Batch {
            time_ms: 0,
            points: vec![(Arc::new(SeriesKey::new(&key.measurement, key.tags.clone())), 0.0)],
        })?;
        let id = {
            let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
            mem.by_key.get(&key_string(&key.measurement, &key.tags)).copied()
        };
        let Some(id) = id else { return Err("no series".into()) };
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let mut files = lock(&self.files);
        let Some(s) = mem.series.get_mut(&id) else { return Err("no series".into()) };
        for &(b, v) in buckets {
            close_bucket(s, &mut files, id, b, v, 1);
        }
        s.aggs.make_contiguous().sort_by_key(|a| a.0);
        drop(mem);
        drop(files);
        self.flush()
    }
}

/// Options for a file only the server's user may read (0600).
fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

fn open_append(path: &Path) -> io::Result<File> {
    private_options().create(true).append(true).open(path)
}

/// Creates a directory (and its parents) only the server's user may enter (0700).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
fn push_recent(recent: &mut VecDeque<(i64, f64)>, t: i64, v: f64) {
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back((t, v));
}

fn close_bucket(s: &mut Series, files: &mut Files, id: u32, b: i64, sum: f64, n: u32) {
    if n == 0 {
        return;
    }
    let mean = sum / n as f64;
    s.aggs.push_back(((b / 1000) as u32, mean));
    let mut rec = [0u8; AGG_RECORD];
    rec[0..4].copy_from_slice(&id.to_le_bytes());
    rec[4..12].copy_from_slice(&b.to_le_bytes());
    rec[12..20].copy_from_slice(&mean.to_le_bytes());
    rec[20..24].copy_from_slice(&n.to_le_bytes());
    let day = b.div_euclid(AGG_SPAN_MS) * AGG_SPAN_MS;
    files.pending_agg.entry(day).or_default().push(&rec, b);
}

impl Backend for Embedded {
    fn blocking(&self) -> bool {
        false
    }

    fn limit_hits(&self) -> u64 {
        self.counters.refused_series.load(Ordering::Relaxed) + self.counters.dropped_points.load(Ordering::Relaxed)
    }

    fn write(&self, batch: &Batch) -> Result<(), String> {
        // The points of series that could not be stored are dropped below; the others
        // are written even when a new series' line failed.
        let resolved = self.resolve(batch);
        let mut dropped = 0u64;
        let agg = self.agg_ms();
        let t = batch.time_ms;
        let bucket = t.div_euclid(agg) * agg;
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let mut files = lock(&self.files);
        let mut rec = [0u8; RAW_RECORD];
        rec[4..12].copy_from_slice(&t.to_le_bytes());
        for (k, v) in &batch.points {
            let Some(s) = k.id.get().and_then(|id| mem.series.get_mut(id)) else {
                dropped += 1;
                continue;
            };
            let Some(&id) = k.id.get() else { continue };
            if files.pending_raw.buf.len() >= MAX_PENDING {
                // The disk has refused blocks for a while: keep memory bounded.
                dropped += 1;
                continue;
            }
            rec[0..4].copy_from_slice(&id.to_le_bytes());
            rec[12..20].copy_from_slice(&v.to_le_bytes());
            files.pending_raw.push(&rec, t);
            push_recent(&mut s.recent, t, *v);
            match &mut s.open {
                Some((b, sum, n)) if *b == bucket => {
                    *sum += v;
                    *n += 1;
                }
                Some((b, sum, n)) if *b > bucket => {
                    // A late point of an already closed bucket: dropped from the aggregates,
                    // as a continuous query that has run would.
                    let _ = (b, sum, n);
                }
                open => {
                    if let Some((b, sum, n)) = open.take() {
                        close_bucket(s, &mut files, id, b, sum, n);
                    }
                    s.open = Some((bucket, *v, 1));
                }
            }
        }
        let big = files.pending_raw.buf.len() >= BLOCK_BYTES;
        drop(mem);
        drop(files);
        if dropped > 0 {
            self.counters.dropped_points.fetch_add(dropped, Ordering::Relaxed);
        }
        if big {
            self.flush()?;
        }
        resolved
    }

    fn flush(&self) -> Result<(), String> {
        let mut files = lock(&self.files);
        let files = &mut *files;
        // A block leaves memory only once written: a failed write keeps it pending.
        let failed = |e: String| {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            e
        };
        if !files.pending_raw.buf.is_empty() {
            Self::write_block(&self.opts.dir.join("raw"), &mut files.raw, RAW_SPAN_MS, &files.pending_raw)
                .map_err(failed)?;
            files.pending_raw = Pending::default();
        }
        while let Some((&day, p)) = files.pending_agg.iter().next() {
            Self::write_block(&self.opts.dir.join("agg"), &mut files.agg, AGG_SPAN_MS, p).map_err(failed)?;
            files.pending_agg.remove(&day);
        }
        Ok(())
    }

    fn maintain(&self, now_ms: i64) {
        self.expire(now_ms);
        // A failure is counted by flush and logged (throttled) by the writer's own flushes.
        let _ = self.flush();
    }

    fn keys(&self) -> Result<Vec<String>, String> {
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        Ok(mem.by_measurement.keys().cloned().collect())
    }

    fn tags(&self) -> Result<Vec<String>, String> {
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        Ok(mem.tag_keys.iter().cloned().collect())
    }

    fn latest(&self, q: &LatestQuery, now_ms: i64) -> Result<Latest, String> {
        let poll = ms(q.poll).clamp(1000, 86_400_000);
        let from = now_ms - 2 * poll;
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        let ids = Self::matching(&mem, &q.stat, &q.filters);
        let Some(verb) = q.verb else {
            let (extra, n) = q.filters.multi();
            let mut rows: Vec<Row> = Vec::new();
            for s in ids.iter().filter_map(|id| mem.series.get(id)) {
                for &(t, v) in s.recent.iter().filter(|p| p.0 > from) {
                    let extra =
                        extra.iter().map(|k| (k.clone(), super::store::tag_of(&s.key.tags, k).to_string())).collect();
                    rows.push(Row { time_ms: t, value: v, extra });
                }
            }
            rows.sort_by_key(|r| std::cmp::Reverse(r.time_ms));
            rows.truncate(n);
            return Ok(match rows.len() {
                0 => Latest::NotFound,
                1 => Latest::One { time_ms: rows[0].time_ms, value: rows[0].value },
                _ => Latest::Rows(rows),
            });
        };
        let mut points: Vec<(i64, f64)> = Vec::new();
        for s in ids.iter().filter_map(|id| mem.series.get(id)) {
            points.extend(s.recent.iter().filter(|p| p.0 > from && p.0 < now_ms + 1));
        }
        drop(mem);
        let grouped = group(points, from, now_ms + 1, poll, verb, None);
        Ok(match grouped.last() {
            Some(&(t, v)) => Latest::One { time_ms: t, value: v },
            None => Latest::NotFound,
        })
    }

    fn range(&self, q: &RangeQuery) -> Result<Vec<(i64, f64)>, String> {
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        let ids = Self::matching(&mem, &q.stat, &q.filters);
        let from_s = q.from_ms.div_euclid(1000);
        let mut points = Vec::new();
        for s in ids.iter().filter_map(|id| mem.series.get(id)) {
            let aggs = &s.aggs;
            let start = aggs.partition_point(|a| (a.0 as i64) < from_s);
            for &(t, v) in aggs.range(start..) {
                let t = t as i64 * 1000;
                if t >= q.to_ms {
                    break;
                }
                points.push((t, v));
            }
        }
        drop(mem);
        Ok(group(points, q.from_ms, q.to_ms, ms(q.bucket), q.verb, q.fill))
    }

    fn window_mean(&self, stat: &str, filters: &Filters, from_ms: i64, to_ms: i64) -> Result<Option<f64>, String> {
        let ids: HashSet<u32> = {
            let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
            Self::matching(&mem, stat, filters).into_iter().collect()
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let (mut sum, mut n) = (0.0, 0u64);
        let mut take = |p: &[u8]| {
            for (id, t, v) in decode_raw(p) {
                if t > from_ms && t <= to_ms && ids.contains(&id) {
                    sum += v;
                    n += 1;
                }
            }
        };
        for (start, path) in segments(&self.opts.dir.join("raw")) {
            if start.saturating_add(RAW_SPAN_MS) > from_ms && start <= to_ms {
                read_blocks(&path, from_ms, to_ms, &mut take).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        take(&lock(&self.files).pending_raw.buf);
        Ok(if n == 0 { None } else { Some(sum / n as f64) })
    }

    fn close(&self) {
        // Partial buckets are written too; on the next start they merge with the rest of
        // their bucket by count.
        {
            let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
            let mut files = lock(&self.files);
            for (&id, s) in mem.series.iter_mut() {
                if let Some((b, sum, n)) = s.open.take() {
                    close_bucket(s, &mut files, id, b, sum, n);
                }
            }
        }
        if let Err(e) = self.flush() {
            log::error!("pulse store: {e}");
        }
        let files = lock(&self.files);
        let _ = files.series_log.sync_all();
        for (_, f) in files.raw.iter().chain(files.agg.iter()) {
            let _ = f.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::Verb;
    use super::*;

    fn opts(dir: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            raw_retention: Duration::from_secs(8 * 3600),
            agg_retention: Duration::from_secs(7 * 86_400),
            agg_interval: Duration::from_secs(60),
            max_series: MAX_SERIES,
        }
    }

    fn key(m: &str, host: &str) -> Arc<SeriesKey> {
        Arc::new(SeriesKey::new(m, vec![("host".into(), host.into()), ("service".into(), "web1".into())]))
    }

    #[test]
    fn writes_survive_a_restart_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let minute = now.div_euclid(60_000) * 60_000;
        {
            let s = Embedded::open(opts(dir.path())).unwrap();
            let (a, b) = (key("cpu_used", "h1"), key("cpu_used", "h2"));
            s.write(&Batch { time_ms: minute - 90_000, points: vec![(a.clone(), 1.0), (b.clone(), 3.0)] }).unwrap();
            s.write(&Batch { time_ms: minute - 80_000, points: vec![(a.clone(), 2.0)] }).unwrap();
            // The next minute closes the bucket of the first two.
            s.write(&Batch { time_ms: minute - 1_000, points: vec![(a.clone(), 5.0), (b.clone(), 7.0)] }).unwrap();
            s.flush().unwrap();
            assert_eq!(s.keys().unwrap(), ["cpu_used"]);
            assert_eq!(s.tags().unwrap(), ["host", "service"]);
            let q = RangeQuery {
                stat: "cpu_used".into(),
                filters: Filters::default(),
                verb: Verb::Mean,
                from_ms: minute - 3_600_000,
                to_ms: now + 1,
                bucket: Duration::from_secs(60),
                fill: None,
            };
            // h1's bucket mean is 1.5 and h2's is 3: the mean of the two is 2.25.
            assert_eq!(s.range(&q).unwrap(), vec![(minute - 120_000, 2.25)]);
            assert_eq!(
                s.window_mean("cpu_used", &Filters::default(), minute - 100_000, now).unwrap(),
                Some(18.0 / 5.0)
            );
            s.close();
        }
        // A torn write at the end of the raw file is cut off on open.
        let raw = segments(&dir.path().join("raw"));
        let last = &raw.last().unwrap().1;
        OpenOptions::new().append(true).open(last).unwrap().write_all(&MAGIC.to_le_bytes()).unwrap();
        let s = Embedded::open(opts(dir.path())).unwrap();
        assert_eq!(s.counts().0, 2);
        let mut f = Filters::default();
        f.0.insert("host".into(), vec!["h1".into()]);
        let q = LatestQuery { stat: "cpu_used".into(), filters: f.clone(), verb: None, poll: Duration::from_secs(60) };
        assert_eq!(s.latest(&q, now).unwrap(), Latest::One { time_ms: minute - 1_000, value: 5.0 });
        // The closed bucket and the partial one written at shutdown both came back.
        let q = RangeQuery {
            stat: "cpu_used".into(),
            filters: f,
            verb: Verb::Mean,
            from_ms: minute - 3_600_000,
            to_ms: now + 1,
            bucket: Duration::from_secs(60),
            fill: None,
        };
        let r = s.range(&q).unwrap();
        assert_eq!(r[0], (minute - 120_000, 1.5));
        assert_eq!(r.last().unwrap(), &(minute - 60_000, 5.0));
        s.write(&Batch { time_ms: now, points: vec![(key("ram", "h1"), 1.0)] }).unwrap();
        assert_eq!(s.counts().0, 3);
    }

    #[test]
    fn retention_drops_old_files_and_aggregates() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.raw_retention = Duration::from_secs(3600);
        o.agg_retention = Duration::from_secs(2 * 86_400);
        let s = Embedded::open(o).unwrap();
        let now = now_ms();
        let k = key("x", "h1");
        s.write(&Batch { time_ms: now - 3 * 3_600_000, points: vec![(k.clone(), 1.0)] }).unwrap();
        s.flush().unwrap();
        s.seed_aggregates(&k, &[(now - 3 * 86_400_000, 1.0), (now - 3_600_000, 2.0)]).unwrap();
        assert_eq!(segments(&dir.path().join("raw")).len(), 1);
        s.maintain(now);
        assert_eq!(segments(&dir.path().join("raw")).len(), 0);
        assert_eq!(s.counts().1, 2, "the old raw point's bucket and the recent seeded one");
    }
}

#[cfg(test)]
mod crash_tests {
    use super::super::store::Verb;
    use super::*;

    fn opts(dir: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            raw_retention: Duration::from_secs(8 * 3600),
            agg_retention: Duration::from_secs(7 * 86_400),
            agg_interval: Duration::from_secs(60),
            max_series: 3,
        }
    }

    fn key(m: &str) -> Arc<SeriesKey> {
        Arc::new(SeriesKey::new(m, vec![("host".into(), "h1".into())]))
    }

    fn latest(s: &Embedded, m: &str, now: i64) -> Latest {
        let q = LatestQuery { stat: m.into(), filters: Filters::default(), verb: None, poll: Duration::from_secs(60) };
        s.latest(&q, now).unwrap()
    }

    #[test]
    fn open_loads_by_explicit_id_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let s = Embedded::open(opts(dir.path())).unwrap();
            s.write(&Batch { time_ms: now - 1000, points: vec![(key("a"), 1.0), (key("b"), 2.0), (key("c"), 3.0)] })
                .unwrap();
            s.close();
        }
        // Line of id 1 damaged, a garbage line in between, a torn last line.
        let path = dir.path().join("series.jsonl");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let damaged = format!("{}\n{{\"id\":1,\"m\":\"b\n\x00garbage\n{}\n{{\"id\":7,", lines[0], lines[2]);
        fs::write(&path, damaged).unwrap();
        let s = Embedded::open(opts(dir.path())).unwrap();
        assert_eq!(s.counts().0, 2);
        // c keeps its own value: no id shift.
        assert_eq!(latest(&s, "c", now), Latest::One { time_ms: now - 1000, value: 3.0 });
        assert_eq!(latest(&s, "a", now), Latest::One { time_ms: now - 1000, value: 1.0 });
        assert_eq!(latest(&s, "b", now), Latest::NotFound);
        assert!(fs::read_to_string(&path).unwrap().ends_with('\n'), "the torn last line is cut");
        // A new series takes a fresh id past the highest one, never a reused one.
        s.write(&Batch { time_ms: now - 500, points: vec![(key("d"), 4.0)] }).unwrap();
        assert_eq!(latest(&s, "d", now), Latest::One { time_ms: now - 500, value: 4.0 });
        assert!(fs::read_to_string(&path).unwrap().contains("{\"id\":3,\"m\":\"d\""));
    }

    #[test]
    fn max_series_refuses_new_series_and_counts_their_points() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let s = Embedded::open(opts(dir.path())).unwrap();
        let pts: Vec<(Arc<SeriesKey>, f64)> = (0..5).map(|i| (key(&format!("s{i}")), i as f64)).collect();
        s.write(&Batch { time_ms: now, points: pts }).unwrap();
        assert_eq!(s.counts().0, 3);
        assert_eq!(s.counters.refused_series.load(Ordering::Relaxed), 2);
        assert_eq!(s.counters.dropped_points.load(Ordering::Relaxed), 2);
        assert_eq!(fs::read_to_string(dir.path().join("series.jsonl")).unwrap().lines().count(), 3);
    }

    #[test]
    fn idle_series_expire_and_series_jsonl_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.max_series = 10_000;
        o.raw_retention = Duration::from_secs(3600);
        let now = now_ms();
        let s = Embedded::open(o.clone()).unwrap();
        let old: Vec<(Arc<SeriesKey>, f64)> = (0..2000).map(|i| (key(&format!("old{i}")), 1.0)).collect();
        s.write(&Batch { time_ms: now - 2 * 3_600_000, points: old.clone() }).unwrap();
        let keep = key("keep");
        s.write(&Batch { time_ms: now - 1000, points: vec![(keep.clone(), 5.0)] }).unwrap();
        assert_eq!(s.counts().0, 2001);
        // Two hours later (for the old ones) their bucket closes, and three weeks later
        // nothing of them is within any retention.
        s.maintain(now);
        assert_eq!(s.counts().0, 2001, "their closed bucket keeps them");
        s.maintain(now + 8 * 86_400_000);
        assert_eq!(s.counts().0, 0);
        assert_eq!(s.counters.expired_series.load(Ordering::Relaxed), 2001);
        assert_eq!(fs::read_to_string(dir.path().join("series.jsonl")).unwrap().lines().count(), 0, "compacted");
        // A connection still holding an expired key writes again: the series comes back
        // under its id.
        s.write(&Batch { time_ms: now, points: vec![(keep.clone(), 6.0)] }).unwrap();
        assert_eq!(latest(&s, "keep", now), Latest::One { time_ms: now, value: 6.0 });
        s.close();
        drop(s);
        let s = Embedded::open(o).unwrap();
        assert_eq!(s.counts().0, 1);
        assert_eq!(latest(&s, "keep", now), Latest::One { time_ms: now, value: 6.0 });
        let _ = Verb::Mean;
    }

    #[test]
    fn huge_retentions_saturate() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.raw_retention = Duration::from_secs(u64::MAX);
        o.agg_retention = Duration::from_secs(u64::MAX);
        let now = now_ms();
        let s = Embedded::open(o.clone()).unwrap();
        s.write(&Batch { time_ms: now - 2 * 3_600_000, points: vec![(key("x"), 1.0)] }).unwrap();
        s.close();
        drop(s);
        let s = Embedded::open(o).unwrap();
        s.maintain(now);
        assert_eq!(segments(&dir.path().join("raw")).len(), 1, "a 2-hour-old raw segment stays");
        assert_eq!(ms(Duration::from_secs(u64::MAX)), i64::MAX);
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("store");
        let s = Embedded::open(opts(&d)).unwrap();
        s.write(&Batch { time_ms: now_ms(), points: vec![(key("x"), 1.0)] }).unwrap();
        s.close();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("raw")), 0o700);
        assert_eq!(mode(&d.join("series.jsonl")), 0o600);
        assert_eq!(mode(&segments(&d.join("raw"))[0].1), 0o600);
    }
}
