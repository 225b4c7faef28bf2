//! The point model: what a module produces and an emitter consumes.
//!
//! A [`Point`] carries both views of one stat:
//!
//! * the Stat Badger name (`disk.reads.sda`), the value and the units, which is what
//!   `stdout`, `stdout_pretty` and the original JSON formats print;
//! * structured parts: a measurement (`disk`), a field (`reads`) and tags
//!   (`device=sda`), which is what line protocol, tagged Graphite and Prometheus render.
//!
//! A stat is always an integer or always a float ([`Value`]); a module never switches the
//! type of a stat between ticks, so backends that fix a field's type on first write
//! (InfluxDB) never reject a later point.

use std::borrow::Cow;
use std::sync::Arc;

/// A stat's value. Each stat keeps one variant for its whole life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// What a point's value means over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A value at the read instant, or a per-second rate over the last interval: Stat
    /// Badger's stats, what every module has always given.
    #[default]
    Gauge,
    /// A cumulative count since an origin (boot, a process start), monotonic but for resets:
    /// the raw counter behind a rate (`node_cpu_seconds_total`, OTLP sums). Emitters that print
    /// Stat Badger's stats never see these ([`crate::plugin::PayloadView::points`] leaves them
    /// out); exposition formats read them with [`crate::plugin::PayloadView::all_points`].
    Counter,
}

/// Text that is usually a compile-time constant but may be built at run time (plugins).
pub type Text = Cow<'static, str>;

/// One stat of one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Stat Badger name, e.g. `disk.reads.sda`.
    pub name: String,
    pub value: Value,
    /// Units as the original printed them (`B`, `ms`, `percent`, `""` …).
    pub units: Text,
    /// Structured name: measurement (`disk`).
    pub measurement: Text,
    /// Structured name: field (`reads`).
    pub field: Text,
    /// Structured name: tags (`device` = `sda`), in a fixed order.
    pub tags: Vec<(Text, String)>,
    /// A gauge (or rate), or a cumulative counter.
    pub kind: Kind,
}

impl Point {
    /// A point without tags whose name is `measurement.field`.
    pub fn simple(measurement: &'static str, field: &'static str, units: &'static str, value: Value) -> Point {
        Point::named(measurement, field, units, value, 0)
    }

    /// A point for one device: name `measurement.field.device`, one tag `tag=device`.
    pub fn device(
        measurement: &'static str,
        field: &'static str,
        units: &'static str,
        tag: &'static str,
        device: &str,
        value: Value,
    ) -> Point {
        let mut p = Point::named(measurement, field, units, value, device.len() + 1);
        p.name.push('.');
        p.name.push_str(device);
        p.tags = vec![(Cow::Borrowed(tag), device.to_string())];
        p
    }

    /// A gauge named `measurement.field`, with room for `more` bytes of name (one allocation).
    fn named(measurement: &'static str, field: &'static str, units: &'static str, value: Value, more: usize) -> Point {
        let mut name = String::with_capacity(measurement.len() + field.len() + 1 + more);
        name.push_str(measurement);
        name.push('.');
        name.push_str(field);
        Point {
            name,
            value,
            units: Cow::Borrowed(units),
            measurement: Cow::Borrowed(measurement),
            field: Cow::Borrowed(field),
            tags: Vec::new(),
            kind: Kind::Gauge,
        }
    }

    /// Marks the point as a cumulative counter.
    pub fn counter(mut self) -> Point {
        self.kind = Kind::Counter;
        self
    }

    /// Adds a tag after construction (e.g. `fstype` on a filesystem point).
    pub fn with_tag(mut self, key: &'static str, value: impl Into<String>) -> Point {
        self.tags.push((Cow::Borrowed(key), value.into()));
        self
    }
}

/// Host metadata attached to every payload. An empty string means "none".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMeta {
    pub datacenter: String,
    pub region: String,
    pub zone: String,
    pub cluster: String,
    pub hostname: String,
    pub ipv4: String,
    pub ipv6: String,
}

/// What one tick produced: host metadata, the tick's timestamp and its points, in module order.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub meta: Arc<HostMeta>,
    /// The scheduled tick time, whole epoch seconds.
    pub timestamp: i64,
    pub points: Vec<Point>,
}
