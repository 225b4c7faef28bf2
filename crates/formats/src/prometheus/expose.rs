//! The exposition the `prometheus` and `pushgateway` emitters share: the latest value of
//! every series, with names and labels by Prometheus' rules, written in the text format
//! 0.0.4. See the `prometheus` emitter's doc for the naming rules.

use std::borrow::Cow;
use std::collections::BTreeMap;

use std::time::Duration;

use super::Kind;
use badger_api::plugin::{ConfigError, PayloadView, PluginConf};
use badger_api::point::{HostMeta, Point};

/// How a stat's units turn into a base-unit suffix: (units, suffix, factor).
const UNIT_SUFFIXES: &[(&str, &str, f64)] = &[
    ("B", "_bytes", 1.0),
    ("KB", "_bytes", 1024.0),
    ("ms", "_seconds", 0.001),
    ("s", "_seconds", 1.0),
    ("MHz", "_hertz", 1e6),
    ("percent", "_percent", 1.0),
];

/// Units whose stats are left out: bits repeat the matching bytes stat × 8, and Prometheus
/// names carry base units only.
const LEFT_OUT_UNITS: &[&str] = &["b"];

struct Series {
    value: f64,
    /// Epoch seconds of the payload that last set it.
    seen: i64,
}

struct FamilyState {
    kind: Kind,
    help: String,
    /// `name{labels}` → the latest value.
    series: BTreeMap<String, Series>,
}

/// The latest value of every series.
pub struct Exposition {
    prefix: String,
    naming: Naming,
    expire_after: i64,
    families: BTreeMap<String, FamilyState>,
    /// Bound on [`Exposition::bytes`]: a new series past it is refused (counted).
    max_bytes: usize,
    /// Estimated bytes held (and rendered): names, labels, help texts, per-entry overhead.
    bytes: usize,
    /// New series refused at `max_bytes`.
    pub refused: u64,
}

/// Estimated bytes of one series held (its `name{labels}` key and map overhead).
fn series_cost(key: &str) -> usize {
    key.len() + 64
}

/// Estimated bytes of one family held (name, help, map overhead).
fn family_cost(name: &str, help: &str) -> usize {
    name.len() + help.len() + 96
}

/// How badger's points are named (the `naming` key of the `prometheus` and `remote_write`
/// emitters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// `<measurement>_<field>` with a unit suffix: every Stat Badger stat, rates included;
    /// cumulative counters are not shown.
    #[default]
    Badger,
    /// node_exporter's names, types and labels ([`super::node`]): counters and
    /// node_exporter's gauges, no rates.
    NodeExporter,
}

impl Naming {
    /// Reads a `naming` key's value.
    pub fn parse(conf: &PluginConf, value: &str) -> Result<Naming, ConfigError> {
        match value {
            "badger" => Ok(Naming::Badger),
            "node_exporter" => Ok(Naming::NodeExporter),
            other => Err(conf.error("naming", format!("\"{other}\": \"badger\" or \"node_exporter\""))),
        }
    }
}

/// One sample with its family, ready to expose or send.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSample {
    pub family: String,
    /// The sample's own name (`x_bucket` in the family `x`).
    pub sample: String,
    pub kind: Kind,
    pub help: Cow<'static, str>,
    /// Label names and values, the point's first, then the host metadata it did not set.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of one payload under a naming, with the host metadata as labels.
pub fn samples(naming: Naming, prefix: &str, payload: &PayloadView<'_>, out: &mut Vec<LabeledSample>) {
    let meta = meta_labels(payload.meta());
    let with_meta = |mut labels: Vec<(String, String)>| {
        for (k, v) in &meta {
            if !labels.iter().any(|(l, _)| l == k) {
                labels.push((k.to_string(), v.clone()));
            }
        }
        labels
    };
    let tag_labels = |p: &Point| {
        let mut labels: Vec<(String, String)> = Vec::with_capacity(p.tags.len() + meta.len());
        for (k, v) in &p.tags {
            let k = label_name(k);
            if !labels.iter().any(|(l, _)| *l == k) {
                labels.push((k, v.clone()));
            }
        }
        labels
    };
    match naming {
        Naming::Badger => {
            for p in payload.points() {
                let Some(n) = name_point(prefix, p) else { continue };
                let labels = with_meta(tag_labels(p));
                out.push(LabeledSample {
                    family: n.family,
                    sample: n.sample,
                    kind: n.kind,
                    help: Cow::Owned(n.help),
                    labels,
                    value: n.value,
                });
            }
        }
        Naming::NodeExporter => {
            // Samples from Prometheus keep their names, as under badger naming.
            for p in payload.all_points() {
                if p.kind != badger_api::point::Kind::Gauge || Kind::from_field(&p.field).is_none() {
                    continue;
                }
                let Some(n) = name_point("", p) else { continue };
                let labels = with_meta(tag_labels(p));
                out.push(LabeledSample {
                    family: n.family,
                    sample: n.sample,
                    kind: n.kind,
                    help: Cow::Owned(n.help),
                    labels,
                    value: n.value,
                });
            }
            let mut node = Vec::new();
            let points: Vec<&Point> = payload.all_points().collect();
            super::node::node_samples(&points, payload.timestamp(), &mut node);
            for s in node {
                let mut labels: Vec<(String, String)> = Vec::with_capacity(s.labels.len());
                for (k, v) in s.labels {
                    if !labels.iter().any(|(l, _)| *l == k) {
                        labels.push((k, v));
                    }
                }
                out.push(LabeledSample {
                    sample: s.family.clone(),
                    family: s.family,
                    kind: s.kind,
                    help: s.help,
                    labels: with_meta(labels),
                    value: s.value,
                });
            }
        }
    }
}

/// A point in Prometheus terms.
pub struct Named {
    pub family: String,
    pub sample: String,
    pub kind: Kind,
    pub help: String,
    pub value: f64,
}

/// `[A-Za-z0-9_]`, not starting with a digit; every other character becomes `_`.
/// (`:` is legal but reserved for recording rules, so it becomes `_` too.)
pub fn metric_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name: `[A-Za-z0-9_]`, not starting with a digit nor with `__` (reserved).
pub fn label_name(s: &str) -> String {
    let clean = metric_name(s);
    let trimmed = clean.trim_start_matches('_');
    if trimmed.is_empty() || trimmed.starts_with(|c: char| c.is_ascii_digit()) || clean.starts_with('_') {
        format!("_{trimmed}")
    } else {
        clean
    }
}

/// A point's family and sample name, type and value, or `None` when it is left out.
pub fn name_point(prefix: &str, p: &Point) -> Option<Named> {
    let value = p.value.as_f64();
    if let Some(kind) = Kind::from_field(&p.field) {
        // A Prometheus sample (from the prometheus module or the push receiver).
        let sample = metric_name(&format!("{prefix}{}", p.measurement));
        let suffixes: &[&str] = match kind {
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            Kind::Summary => &["_sum", "_count"],
            _ => &[],
        };
        let family = suffixes
            .iter()
            .find_map(|s| sample.strip_suffix(s).filter(|b| !b.is_empty()))
            .unwrap_or(&sample)
            .to_string();
        let help = format!("{} as collected by badger", p.measurement);
        return Some(Named { family, sample, kind, help, value });
    }
    if LEFT_OUT_UNITS.contains(&p.units.as_ref()) {
        return None;
    }
    let raw = format!("{prefix}{}_{}", p.measurement, p.field);
    let mut name = metric_name(&raw)
        .split('_')
        .map(|part| if part == "sec" { "second" } else { part })
        .collect::<Vec<_>>()
        .join("_");
    let mut value = value;
    if let Some((_, suffix, factor)) = UNIT_SUFFIXES.iter().find(|(u, _, _)| *u == p.units) {
        if !name.ends_with(suffix) {
            name.push_str(suffix);
        }
        value *= factor;
    }
    // `_total` is for counters, `_count`, `_sum` and `_bucket` for histograms and summaries;
    // badger's stats are gauges, so such a name is left untyped.
    let reserved = ["_total", "_count", "_sum", "_bucket"].iter().any(|s| name.ends_with(s));
    let kind = if reserved { Kind::Untyped } else { Kind::Gauge };
    let units = if p.units.is_empty() { String::new() } else { format!(" ({})", p.units) };
    let help = format!("badger stat {}.{}{units}", p.measurement, p.field);
    Some(Named { family: name.clone(), sample: name, kind, help, value })
}

impl Exposition {
    pub fn new(prefix: &str, expire_after_secs: u64) -> Exposition {
        Exposition {
            prefix: prefix.to_string(),
            naming: Naming::Badger,
            expire_after: i64::try_from(expire_after_secs).unwrap_or(i64::MAX),
            families: BTreeMap::new(),
            max_bytes: usize::MAX,
            bytes: 0,
            refused: 0,
        }
    }

    /// Bounds the series held in bytes (names, labels, help): past it new series are
    /// refused and counted in [`Exposition::refused`]; series already held keep updating.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Exposition {
        self.max_bytes = max_bytes;
        self
    }

    /// Estimated bytes held (about the size of a rendering).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes every point of a payload: its latest value replaces the series' old one.
    pub fn update(&mut self, payload: &PayloadView<'_>) {
        let ts = payload.timestamp();
        let mut key = String::new();
        let mut out = Vec::new();
        samples(self.naming, &self.prefix, payload, &mut out);
        for s in out {
            key.clear();
            key.push_str(&s.sample);
            for (i, (k, v)) in s.labels.iter().enumerate() {
                key.push(if i == 0 { '{' } else { ',' });
                key.push_str(k);
                key.push('=');
                super::write_label_value(&mut key, v);
            }
            if !s.labels.is_empty() {
                key.push('}');
            }
            let known = self.families.get(&s.family).map(|f| f.series.contains_key(&key));
            if known != Some(true) {
                let cost = series_cost(&key) + if known.is_none() { family_cost(&s.family, &s.help) } else { 0 };
                if self.bytes.saturating_add(cost) > self.max_bytes {
                    self.refused += 1;
                    continue;
                }
                self.bytes += cost;
            }
            let fam = self.families.entry(s.family).or_insert_with(|| FamilyState {
                kind: s.kind,
                help: s.help.into_owned(),
                series: BTreeMap::new(),
            });
            match fam.series.get_mut(&key) {
                Some(x) => {
                    x.value = s.value;
                    x.seen = x.seen.max(ts);
                }
                None => {
                    fam.series.insert(key.clone(), Series { value: s.value, seen: ts });
                }
            }
        }
    }

    /// Drops the series not updated since `now - expire_after` (epoch seconds).
    pub fn expire(&mut self, now: i64) {
        let oldest = now.saturating_sub(self.expire_after);
        for fam in self.families.values_mut() {
            fam.series.retain(|_, s| s.seen >= oldest);
        }
        self.families.retain(|_, f| !f.series.is_empty());
        self.bytes = self
            .families
            .iter()
            .map(|(name, f)| family_cost(name, &f.help) + f.series.keys().map(|k| series_cost(k)).sum::<usize>())
            .sum();
    }

    /// The same exposition with another naming.
    pub fn with_naming(mut self, naming: Naming) -> Exposition {
        self.naming = naming;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.families.values().map(|f| f.series.len()).sum()
    }

    /// The text format 0.0.4: HELP, TYPE and samples of every family, by name.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * self.len());
        for (name, fam) in &self.families {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            super::write_help_text(&mut out, &fam.help);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(fam.kind.as_str());
            out.push('\n');
            for (key, s) in &fam.series {
                out.push_str(key);
                out.push(' ');
                out.push_str(&super::format_value(s.value));
                out.push('\n');
            }
        }
        out
    }
}

/// The host metadata as labels; empty ones are left out.
pub fn meta_labels(m: &HostMeta) -> Vec<(&'static str, String)> {
    [
        ("datacenter", &m.datacenter),
        ("region", &m.region),
        ("zone", &m.zone),
        ("cluster", &m.cluster),
        ("hostname", &m.hostname),
        ("ipv4", &m.ipv4),
        ("ipv6", &m.ipv6),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.clone()))
    .collect()
}

/// Epoch seconds now.
pub fn epoch_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Checks a `prefix` key: empty, or a valid start of a metric name.
pub fn check_prefix(conf: &PluginConf, prefix: &str) -> Result<(), ConfigError> {
    if !prefix.is_empty() && metric_name(prefix) != prefix {
        return Err(conf.error("prefix", format!("\"{prefix}\": use letters, digits and _ (not first a digit)")));
    }
    Ok(())
}

/// Checks an `expire_after` key.
pub fn check_expire(conf: &PluginConf, d: Duration) -> Result<u64, ConfigError> {
    if d < Duration::from_secs(1) {
        return Err(conf.error("expire_after", "must be at least 1s"));
    }
    Ok(d.as_secs())
}
