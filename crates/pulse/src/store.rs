//! What every storage backend of the server takes and answers: points in, and the few
//! queries the HTTP API and the alerts need out. The embedded store ([`super::embedded`])
//! and InfluxDB ([`super::influx`]) implement [`Backend`].

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One series: a measurement (the stat name) and its tags, sorted by key, `host` included.
#[derive(Debug)]
pub struct SeriesKey {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    /// The embedded store's id of this series, set on first write.
    pub(crate) id: OnceLock<u32>,
    /// InfluxDB's escaped `measurement,tag=v,…` prefix, set on first write.
    pub(crate) line: OnceLock<String>,
}

impl SeriesKey {
    pub fn new(measurement: &str, mut tags: Vec<(String, String)>) -> SeriesKey {
        // Stable: of two tags with the same key the first stays.
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        tags.dedup_by(|later, first| later.0 == first.0);
        SeriesKey { measurement: measurement.to_string(), tags, id: OnceLock::new(), line: OnceLock::new() }
    }

    /// The value of a tag, `""` when the series does not have it (as InfluxDB compares).
    pub fn tag(&self, key: &str) -> &str {
        tag_of(&self.tags, key)
    }
}

pub fn tag_of<'a>(tags: &'a [(String, String)], key: &str) -> &'a str {
    tags.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// The points of one `got`, stamped with the time the server received it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub time_ms: i64,
    pub points: Vec<(Arc<SeriesKey>, f64)>,
}

/// Tag filters: every key must have one of its values (`?service=a&service=b` OR-s).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    pub fn matches(&self, tags: &[(String, String)]) -> bool {
        self.0.iter().all(|(k, vals)| {
            let v = tag_of(tags, k);
            vals.iter().any(|x| x == v)
        })
    }

    /// Keys given more than once (the original's extra columns of `verb=none`) and the
    /// largest repeat count.
    pub fn multi(&self) -> (Vec<String>, usize) {
        let keys = self.0.iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k.clone()).collect();
        let n = self.0.values().map(Vec::len).max().unwrap_or(1).max(1);
        (keys, n)
    }
}

/// An InfluxQL aggregate or selector the API accepts as `verb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Mean,
    Median,
    Mode,
    Spread,
    Stddev,
    Sum,
    Count,
    First,
    Last,
    Max,
    Min,
}

impl Verb {
    pub const ALL: &[Verb] = &[
        Verb::Mean,
        Verb::Median,
        Verb::Mode,
        Verb::Spread,
        Verb::Stddev,
        Verb::Sum,
        Verb::Count,
        Verb::First,
        Verb::Last,
        Verb::Max,
        Verb::Min,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Mean => "mean",
            Verb::Median => "median",
            Verb::Mode => "mode",
            Verb::Spread => "spread",
            Verb::Stddev => "stddev",
            Verb::Sum => "sum",
            Verb::Count => "count",
            Verb::First => "first",
            Verb::Last => "last",
            Verb::Max => "max",
            Verb::Min => "min",
        }
    }

    /// Case-insensitive, as InfluxQL function names are.
    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(s))
    }

    /// Applies the function to `(time, value)` pairs (any order); `None` when InfluxDB
    /// would give no value (no points; `stddev` of one point).
    pub fn apply(self, points: &mut [(i64, f64)]) -> Option<f64> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() as f64;
        let sum = || points.iter().map(|p| p.1).sum::<f64>();
        Some(match self {
            Verb::Mean => sum() / n,
            Verb::Sum => sum(),
            Verb::Count => n,
            Verb::Max => points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            Verb::Min => points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
            Verb::Spread => {
                let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
                let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                max - min
            }
            Verb::First => points.iter().min_by_key(|p| p.0)?.1,
            Verb::Last => points.iter().max_by_key(|p| p.0)?.1,
            Verb::Stddev => {
                if points.len() < 2 {
                    return None;
                }
                let mean = sum() / n;
                (points.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            }
            Verb::Median => {
                points.sort_by(|a, b| a.1.total_cmp(&b.1));
                let m = points.len() / 2;
                if points.len() % 2 == 0 {
                    (points[m - 1].1 + points[m].1) / 2.0
                } else {
                    points[m].1
                }
            }
            Verb::Mode => {
                points.sort_by(|a, b| a.1.total_cmp(&b.1));
                let (mut best, mut best_n, mut i) = (points[0].1, 0usize, 0usize);
                while i < points.len() {
                    let mut j = i;
                    while j < points.len() && points[j].1 == points[i].1 {
                        j += 1;
                    }
                    if j - i > best_n {
                        best = points[i].1;
                        best_n = j - i;
                    }
                    i = j;
                }
                best
            }
        })
    }
}

/// `/latest/{stat}`.
#[derive(Debug, Clone)]
pub struct LatestQuery {
    pub stat: String,
    pub filters: Filters,
    /// `None`: `verb=none`, the raw values.
    pub verb: Option<Verb>,
    pub poll: Duration,
}

/// One raw row of `verb=none`: its time, value and the extra (multi-key) columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub time_ms: i64,
    pub value: f64,
    pub extra: Vec<(String, String)>,
}

/// What `/latest` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Latest {
    NotFound,
    One { time_ms: i64, value: f64 },
    Rows(Vec<Row>),
}

/// `/hourly` and `/daily`: the aggregates of a stat in `(from, to)` grouped by `bucket`.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub stat: String,
    pub filters: Filters,
    pub verb: Verb,
    /// Exclusive bounds, epoch milliseconds.
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket: Duration,
    /// `FILL(x)`: every empty bucket in the range gets `x`.
    pub fill: Option<f64>,
}

/// A storage backend. `write` and `maintain` are called from one writer thread; the
/// queries from any thread (they may block: the HTTP side runs them off its event loop).
pub trait Backend: Send + Sync + 'static {
    /// True when queries may block (network): the API then runs them on a blocking thread;
    /// an in-memory backend answers inline.
    fn blocking(&self) -> bool {
        true
    }
    /// Bound hits of the store (series refused, points dropped): the `pulse_limited`
    /// self-metric.
    fn limit_hits(&self) -> u64 {
        0
    }
    /// Stores one batch (it may be buffered until `flush`).
    fn write(&self, batch: &Batch) -> Result<(), String>;
    /// Makes buffered points durable / visible (called at least every 200 ms).
    fn flush(&self) -> Result<(), String>;
    /// Aggregates, retention (called about every 10 s with the current time).
    fn maintain(&self, now_ms: i64);
    /// Stat names, sorted (`None` = none: the API prints `null`).
    fn keys(&self) -> Result<Vec<String>, String>;
    /// Tag keys, sorted.
    fn tags(&self) -> Result<Vec<String>, String>;
    fn latest(&self, q: &LatestQuery, now_ms: i64) -> Result<Latest, String>;
    /// Buckets `(start_ms, value)` in ascending time; empty when the stat has no data.
    fn range(&self, q: &RangeQuery) -> Result<Vec<(i64, f64)>, String>;
    /// Mean of the raw values of `stat` matching `filters` in `(from_ms, to_ms]`.
    fn window_mean(&self, stat: &str, filters: &Filters, from_ms: i64, to_ms: i64) -> Result<Option<f64>, String>;
    /// Writes what is buffered; called once at shutdown.
    fn close(&self);
}

/// Groups `(time, value)` points into buckets of `bucket_ms` over the exclusive range
/// `(from, to)`, applies `verb`, and fills empty buckets with `fill` (as InfluxDB's
/// `GROUP BY time(..) FILL(..)`: from the bucket holding `from` to the one holding `to`).
pub fn group(
    mut points: Vec<(i64, f64)>,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    verb: Verb,
    fill: Option<f64>,
) -> Vec<(i64, f64)> {
    points.retain(|p| p.0 > from_ms && p.0 < to_ms);
    if points.is_empty() || bucket_ms <= 0 {
        return Vec::new();
    }
    points.sort_by_key(|p| p.0);
    let mut out = Vec::new();
    let mut i = 0;
    let start = from_ms.div_euclid(bucket_ms) * bucket_ms;
    let last = (to_ms - 1).div_euclid(bucket_ms) * bucket_ms;
    let mut b = start;
    while b <= last {
        let mut j = i;
        while j < points.len() && points[j].0 < b + bucket_ms {
            j += 1;
        }
        match verb.apply(&mut points[i..j]) {
            Some(v) => out.push((b, v)),
            None => {
                if let Some(f) = fill {
                    out.push((b, f));
                }
            }
        }
        i = j;
        b += bucket_ms;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        let p = || vec![(3, 2.0), (1, 4.0), (2, 4.0), (4, 10.0)];
        let v = |verb: Verb| verb.apply(&mut p());
        assert_eq!(v(Verb::Mean), Some(5.0));
        assert_eq!(v(Verb::Sum), Some(20.0));
        assert_eq!(v(Verb::Count), Some(4.0));
        assert_eq!(v(Verb::Max), Some(10.0));
        assert_eq!(v(Verb::Min), Some(2.0));
        assert_eq!(v(Verb::Spread), Some(8.0));
        assert_eq!(v(Verb::First), Some(4.0));
        assert_eq!(v(Verb::Last), Some(10.0));
        assert_eq!(v(Verb::Median), Some(4.0));
        assert_eq!(v(Verb::Mode), Some(4.0));
        assert_eq!(Verb::Stddev.apply(&mut [(1, 1.0)]), None);
        assert_eq!(Verb::parse("MEAN"), Some(Verb::Mean));
        assert_eq!(Verb::parse("mean(x)"), None);
    }

    #[test]
    fn group_fills_the_whole_range() {
        let pts = vec![(3_600_000 + 5, 1.0), (3_600_000 + 10, 3.0), (3 * 3_600_000 + 1, 5.0)];
        let g = group(pts.clone(), 3_600_000, 4 * 3_600_000, 3_600_000, Verb::Mean, Some(0.0));
        assert_eq!(g, vec![(3_600_000, 2.0), (7_200_000, 0.0), (10_800_000, 5.0)]);
        let g = group(pts, 3_600_000, 4 * 3_600_000, 3_600_000, Verb::Mean, None);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn filters_or_within_a_key_and_within_keys() {
        let mut f = Filters::default();
        f.0.insert("service".into(), vec!["web1".into(), "web2".into()]);
        f.0.insert("host".into(), vec!["h1".into()]);
        let tags = |s: &str| vec![("host".to_string(), "h1".to_string()), ("service".to_string(), s.to_string())];
        assert!(f.matches(&tags("web2")));
        assert!(!f.matches(&tags("web3")));
        assert_eq!(f.multi(), (vec!["service".to_string()], 2));
        let mut e = Filters::default();
        e.0.insert("zone".into(), vec![String::new()]);
        assert!(e.matches(&tags("x")));
    }
}
