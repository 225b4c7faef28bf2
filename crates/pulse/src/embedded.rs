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
//! torn or corrupt tail (a crash during a write) is cut off at the last good block.
//! In memory: every series, its last few raw points (for `/latest`), its open bucket and
//! its aggregates within retention (12 bytes each: `/hourly` over a week reads 672 per
//! series without touching the disk). Alerts read the raw files of their window.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
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
    series: Vec<Series>,
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
        fs::create_dir_all(dir.join("raw"))?;
        fs::create_dir_all(dir.join("agg"))?;
        let mut mem = Mem::default();
        let series_path = dir.join("series.jsonl");
        if let Ok(f) = File::open(&series_path) {
            let mut good = 0u64;
            let mut r = BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = r.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                let Ok(s) = serde_json::from_str::<SeriesLine>(&line) else { break };
                if s.id as usize != mem.series.len() {
                    break;
                }
                Self::insert_series(&mut mem, Arc::new(SeriesKey::new(&s.m, s.t)));
                good += n as u64;
            }
            if good < fs::metadata(&series_path)?.len() {
                log::warn!("pulse store: {}: cutting a torn tail", series_path.display());
                OpenOptions::new().write(true).open(&series_path)?.set_len(good)?;
            }
        }
        let now = now_ms();
        let store = Embedded {
            mem: RwLock::new(mem),
            files: Mutex::new(Files {
                series_log: OpenOptions::new().create(true).append(true).open(&series_path)?,
                raw: None,
                agg: None,
                pending_raw: Pending::default(),
                pending_agg: BTreeMap::new(),
            }),
            opts,
        };
        store.expire(now);
        store.load(now)?;
        Ok(store)
    }

    fn insert_series(mem: &mut Mem, key: Arc<SeriesKey>) -> u32 {
        let id = mem.series.len() as u32;
        let (measurement, tags) = (&key.measurement, &key.tags);
        mem.by_key.insert(key_string(measurement, tags), id);
        mem.by_measurement.entry(measurement.to_string()).or_default().push(id);
        for (k, _) in tags {
            if !mem.tag_keys.contains(k) {
                mem.tag_keys.insert(k.clone());
            }
        }
        mem.series.push(Series { key, recent: VecDeque::with_capacity(RECENT), open: None, aggs: VecDeque::new() });
        id
    }

    fn load(&self, now: i64) -> io::Result<()> {
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let n = mem.series.len();
        let agg_from = now - self.opts.agg_retention.as_millis() as i64;
        let mut aggs: Vec<BTreeMap<i64, (f64, u32)>> = (0..n).map(|_| BTreeMap::new()).collect();
        for (_, path) in segments(&self.opts.dir.join("agg")) {
            repair(&path)?;
            read_blocks(&path, agg_from, i64::MAX, |p| {
                for (id, t, mean, count) in decode_agg(p) {
                    if let Some(m) = aggs.get_mut(id as usize) {
                        // A bucket written twice (a partial one at shutdown): merge by count.
                        let e = m.entry(t).or_insert((0.0, 0));
                        let total = e.1 + count;
                        if total > 0 {
                            e.0 = (e.0 * e.1 as f64 + mean * count as f64) / total as f64;
                        }
                        e.1 = total;
                    }
                }
            })?;
        }
        for (s, m) in mem.series.iter_mut().zip(aggs) {
            s.aggs = m.into_iter().filter(|(t, _)| *t > agg_from).map(|(t, (v, _))| ((t / 1000) as u32, v)).collect();
        }
        let raw = segments(&self.opts.dir.join("raw"));
        for (_, path) in &raw {
            repair(path)?;
        }
        let recent_from = now - 3_600_000;
        for (start, path) in raw.iter().filter(|(s, _)| s + RAW_SPAN_MS > recent_from) {
            let _ = start;
            read_blocks(path, recent_from, i64::MAX, |p| {
                for (id, t, v) in decode_raw(p) {
                    if let Some(s) = mem.series.get_mut(id as usize) {
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
            .map(|ids| ids.iter().copied().filter(|&id| filters.matches(&mem.series[id as usize].key.tags)).collect())
            .unwrap_or_default()
    }

    fn resolve(&self, batch: &Batch) -> Result<(), String> {
        if batch.points.iter().all(|(k, _)| k.id.get().is_some()) {
            return Ok(());
        }
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let mut files = lock(&self.files);
        for (k, _) in &batch.points {
            if k.id.get().is_some() {
                continue;
            }
            let ks = key_string(&k.measurement, &k.tags);
            let id = match mem.by_key.get(&ks) {
                Some(&id) => id,
                None => {
                    let id = Self::insert_series(&mut mem, k.clone());
                    let mut line =
                        serde_json::to_string(&SeriesLine { id, m: k.measurement.clone(), t: k.tags.clone() })
                            .map_err(|e| e.to_string())?;
                    line.push('\n');
                    files.series_log.write_all(line.as_bytes()).map_err(|e| format!("writing series.jsonl: {e}"))?;
                    id
                }
            };
            let _ = k.id.set(id);
        }
        Ok(())
    }

    fn agg_ms(&self) -> i64 {
        (self.opts.agg_interval.as_millis() as i64).max(60_000)
    }

    fn write_block(dir: &Path, slot: &mut Option<(i64, File)>, span: i64, p: &Pending) -> Result<(), String> {
        let start = p.min.div_euclid(span) * span;
        if slot.as_ref().is_none_or(|(s, _)| *s != start) {
            let path = dir.join(format!("{start}.seg"));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("opening {}: {e}", path.display()))?;
            *slot = Some((start, f));
        }
        let Some((_, f)) = slot.as_mut() else { return Ok(()) };
        let mut block = Vec::with_capacity(HEADER + p.buf.len());
        block.extend_from_slice(&block_header(&p.buf, p.min, p.max));
        block.extend_from_slice(&p.buf);
        f.write_all(&block).map_err(|e| format!("writing {}: {e}", dir.display()))
    }

    /// Closes open buckets that ended before `now` (series that stopped reporting) and
    /// drops what is past retention.
    fn expire(&self, now: i64) {
        let agg = self.agg_ms();
        {
            let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
            let mut files = lock(&self.files);
            let agg_from = ((now - self.opts.agg_retention.as_millis() as i64) / 1000) as u32;
            for id in 0..mem.series.len() {
                let s = &mut mem.series[id];
                if let Some((b, sum, n)) = s.open {
                    if b + agg <= now - 5_000 {
                        s.open = None;
                        close_bucket(s, &mut files, id as u32, b, sum, n);
                    }
                }
                while s.aggs.front().is_some_and(|a| a.0 <= agg_from) {
                    s.aggs.pop_front();
                }
            }
        }
        let drop_old = |dir: &Path, span: i64, keep: Duration| {
            let limit = now - keep.as_millis() as i64;
            for (start, path) in segments(dir) {
                if start + span <= limit {
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

    /// Number of series, and the aggregates held in memory (for tests and self-metrics).
    pub fn counts(&self) -> (usize, usize) {
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        (mem.series.len(), mem.series.iter().map(|s| s.aggs.len()).sum())
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
        let s = &mut mem.series[id as usize];
        for &(b, v) in buckets {
            close_bucket(s, &mut files, id, b, v, 1);
        }
        s.aggs.make_contiguous().sort_by_key(|a| a.0);
        drop(mem);
        drop(files);
        self.flush()
    }
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

    fn write(&self, batch: &Batch) -> Result<(), String> {
        self.resolve(batch)?;
        let agg = self.agg_ms();
        let t = batch.time_ms;
        let bucket = t.div_euclid(agg) * agg;
        let mut mem = self.mem.write().unwrap_or_else(|e| e.into_inner());
        let mut files = lock(&self.files);
        let mut rec = [0u8; RAW_RECORD];
        rec[4..12].copy_from_slice(&t.to_le_bytes());
        for (k, v) in &batch.points {
            let Some(&id) = k.id.get() else { continue };
            rec[0..4].copy_from_slice(&id.to_le_bytes());
            rec[12..20].copy_from_slice(&v.to_le_bytes());
            files.pending_raw.push(&rec, t);
            let Some(s) = mem.series.get_mut(id as usize) else { continue };
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
        if big {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let mut files = lock(&self.files);
        let files = &mut *files;
        if !files.pending_raw.buf.is_empty() {
            let p = std::mem::take(&mut files.pending_raw);
            Self::write_block(&self.opts.dir.join("raw"), &mut files.raw, RAW_SPAN_MS, &p)?;
        }
        for (_, p) in std::mem::take(&mut files.pending_agg) {
            Self::write_block(&self.opts.dir.join("agg"), &mut files.agg, AGG_SPAN_MS, &p)?;
        }
        Ok(())
    }

    fn maintain(&self, now_ms: i64) {
        self.expire(now_ms);
        if let Err(e) = self.flush() {
            log::error!("pulse store: {e}");
        }
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
        let poll = (q.poll.as_millis() as i64).max(1000);
        let from = now_ms - 2 * poll;
        let mem = self.mem.read().unwrap_or_else(|e| e.into_inner());
        let ids = Self::matching(&mem, &q.stat, &q.filters);
        let Some(verb) = q.verb else {
            let (extra, n) = q.filters.multi();
            let mut rows: Vec<Row> = Vec::new();
            for id in ids {
                let s = &mem.series[id as usize];
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
        for id in ids {
            points.extend(mem.series[id as usize].recent.iter().filter(|p| p.0 > from && p.0 < now_ms + 1));
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
        for id in ids {
            let aggs = &mem.series[id as usize].aggs;
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
        Ok(group(points, q.from_ms, q.to_ms, q.bucket.as_millis() as i64, q.verb, q.fill))
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
            if start + RAW_SPAN_MS > from_ms && start <= to_ms {
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
            for id in 0..mem.series.len() {
                let s = &mut mem.series[id];
                if let Some((b, sum, n)) = s.open.take() {
                    close_bucket(s, &mut files, id as u32, b, sum, n);
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
