//! OTLP metrics (OpenTelemetry protocol, protobuf): one payload becomes one
//! `ExportMetricsServiceRequest` with one resource (the host) and one scope (`badger`).
//!
//! * Naming [`Naming::Otel`] (the default): the host stats that have a twin in the
//!   Collector's `hostmetrics` receiver go out under its names, units and attributes
//!   ([`otel`]); every other point under its badger name.
//! * Naming [`Naming::Badger`]: every point under its badger name.
//!
//! A badger name is `measurement.field` (`disk.reads`; for a point without measurement the
//! first part of its stat name, `cpu.intr_total`), with the point's tags as attributes. A
//! gauge (or rate) is an OTLP gauge; a cumulative counter ([`Kind::Counter`]) a cumulative,
//! monotonic sum. The start time of a sum is the host's boot time for the host stats
//! (`cpu`, `disk`, `network` counters, and the up-down sums made of memory, filesystem and
//! disk gauges) and the encoder's start for other counters.
//! Units: badger's `B` is `By`, `b` is `bit`, `percent` is `%`; others are kept.
//!
//! Points of one name in one payload are one metric with one data point per tag set, in
//! payload order; metrics are in the order their first point came.

pub mod otel;
pub mod proto;

use std::collections::HashMap;

use badger_api::plugin::PayloadView;
use badger_api::point::{HostMeta, Kind, Point, Value};
use prost::Message;

use self::otel::{Filesystems, Mapped, Memory, Shape};
use self::proto::{
    AggregationTemporality, ExportMetricsServiceRequest, Gauge, InstrumentationScope, KeyValue, Metric, MetricData,
    NumberDataPoint, NumberValue, Resource, ResourceMetrics, ScopeMetrics, Sum,
};

/// Which names the points go out under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// The host-metrics semantic conventions (`system.cpu.time`, …) where they have a twin.
    #[default]
    Otel,
    /// badger's own names for everything.
    Badger,
}

/// The resource attributes of a host: `host.name`, `host.id` (when known), `os.type`,
/// `service.name`, `service.version`, `cloud.region`, `cloud.availability_zone`,
/// `badger.datacenter`, `badger.cluster` (the last four when set), in that order.
pub fn resource_attributes(meta: &HostMeta, host_id: &str, version: &str) -> Vec<(&'static str, String)> {
    let mut a = vec![("host.name", meta.hostname.clone())];
    if !host_id.is_empty() {
        a.push(("host.id", host_id.to_string()));
    }
    a.push(("os.type", "linux".into()));
    a.push(("service.name", "badger".into()));
    a.push(("service.version", version.to_string()));
    for (k, v) in [
        ("cloud.region", &meta.region),
        ("cloud.availability_zone", &meta.zone),
        ("badger.datacenter", &meta.datacenter),
        ("badger.cluster", &meta.cluster),
    ] {
        if !v.is_empty() {
            a.push((k, v.clone()));
        }
    }
    a
}

/// Encodes payloads; keeps the settings and the scratch space between them.
pub struct Encoder {
    naming: Naming,
    host_id: String,
    version: String,
    /// Start time of the host counters (boot), nanoseconds since the epoch.
    boot_ns: u64,
    /// Start time of other counters (the encoder's start), nanoseconds since the epoch.
    start_ns: u64,
    metrics: Vec<Metric>,
    index: HashMap<String, usize>,
}

/// Where a data point goes: its metric's name, unit and shape.
struct Target<'a> {
    name: &'a str,
    unit: &'a str,
    shape: Shape,
}

impl Encoder {
    /// `boot_secs`: the host's boot time, epoch seconds; `start_secs`: now.
    pub fn new(naming: Naming, host_id: &str, version: &str, boot_secs: i64, start_secs: i64) -> Encoder {
        let ns = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1_000_000_000);
        Encoder {
            naming,
            host_id: host_id.to_string(),
            version: version.to_string(),
            boot_ns: ns(boot_secs),
            start_ns: ns(start_secs),
            metrics: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Appends one `ExportMetricsServiceRequest` holding the payload's points (every point
    /// the blacklist lets through, counters included) to `out`; returns the number of data
    /// points (0: nothing was written).
    pub fn encode(&mut self, view: &PayloadView<'_>, out: &mut Vec<u8>) -> u64 {
        self.metrics.clear();
        self.index.clear();
        let time_ns = u64::try_from(view.timestamp()).unwrap_or(0).saturating_mul(1_000_000_000);
        let mut n = 0u64;
        let mut memory = Memory::default();
        let mut filesystems = Filesystems::default();
        for p in view.all_points() {
            if self.naming == Naming::Otel {
                if let Some(mp) = otel::map(p) {
                    let start = self.start_of(p);
                    self.add_mapped(&mp, start, time_ns);
                    n += 1;
                    continue;
                }
                if memory.take(p) || filesystems.take(p) {
                    continue;
                }
            }
            self.add_badger(p, time_ns);
            n += 1;
        }
        for mp in memory.points().iter().chain(&filesystems.points()) {
            self.add_mapped(mp, self.boot_ns, time_ns);
            n += 1;
        }
        for p in memory.leftover() {
            self.add_badger(p, time_ns);
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        let resource = Resource {
            attributes: resource_attributes(view.meta(), &self.host_id, &self.version)
                .into_iter()
                .map(|(k, v)| KeyValue::string(k, v))
                .collect(),
            dropped_attributes_count: 0,
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "badger".into(),
                        version: self.version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    metrics: std::mem::take(&mut self.metrics),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        out.reserve(request.encoded_len());
        // Writing into a Vec cannot run out of room.
        let _ = request.encode(out);
        // Keep the metrics' allocations for the next payload.
        if let Some(rm) = request.resource_metrics.into_iter().next() {
            if let Some(sm) = rm.scope_metrics.into_iter().next() {
                self.metrics = sm.metrics;
                self.metrics.clear();
            }
        }
        n
    }

    /// The start time of a cumulative point: boot for the host counters, else the encoder's start.
    fn start_of(&self, p: &Point) -> u64 {
        let host = matches!(p.measurement.as_ref(), "cpu" | "disk" | "network")
            || (p.measurement.is_empty() && p.name.starts_with("cpu."));
        if host {
            self.boot_ns
        } else {
            self.start_ns
        }
    }

    fn add_mapped(&mut self, mp: &Mapped, start_ns: u64, time_ns: u64) {
        let attrs = mp.attrs.iter().map(|(k, v)| KeyValue::string(*k, v.as_str())).collect();
        let target = Target { name: mp.name, unit: mp.unit, shape: mp.shape };
        self.push(&target, attrs, mp.value, start_ns, time_ns);
    }

    fn add_badger(&mut self, p: &Point, time_ns: u64) {
        let name = badger_name(p);
        let shape = match p.kind {
            Kind::Gauge => Shape::Gauge,
            Kind::Counter => Shape::Sum { monotonic: true },
        };
        let attrs = p.tags.iter().map(|(k, v)| KeyValue::string(k.as_ref(), v.as_str())).collect();
        let start = self.start_of(p);
        let unit = otel_unit(&p.units);
        self.push(&Target { name: &name, unit, shape }, attrs, p.value, start, time_ns);
    }

    fn push(&mut self, t: &Target<'_>, attributes: Vec<KeyValue>, value: Value, start_ns: u64, time_ns: u64) {
        let value = Some(match value {
            Value::Int(i) => NumberValue::AsInt(i),
            Value::Float(f) => NumberValue::AsDouble(f),
        });
        let cumulative = matches!(t.shape, Shape::Sum { .. });
        let dp = NumberDataPoint {
            attributes,
            start_time_unix_nano: if cumulative { start_ns } else { 0 },
            time_unix_nano: time_ns,
            value,
            flags: 0,
        };
        let i = match self.index.get(t.name) {
            Some(&i) => i,
            None => {
                let data = match t.shape {
                    Shape::Gauge => MetricData::Gauge(Gauge { data_points: Vec::new() }),
                    Shape::Sum { monotonic } => MetricData::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: monotonic,
                    }),
                };
                self.metrics.push(Metric {
                    name: t.name.to_string(),
                    description: String::new(),
                    unit: t.unit.to_string(),
                    data: Some(data),
                });
                self.index.insert(t.name.to_string(), self.metrics.len() - 1);
                self.metrics.len() - 1
            }
        };
        match &mut self.metrics[i].data {
            Some(MetricData::Gauge(g)) => g.data_points.push(dp),
            Some(MetricData::Sum(s)) => s.data_points.push(dp),
            None => {}
        }
    }
}

/// A point's badger metric name: `measurement.field`, or for a point without measurement
/// the first part of its stat name and the field (`cpu.intr_total`), or the stat name.
pub fn badger_name(p: &Point) -> String {
    if !p.measurement.is_empty() {
        return format!("{}.{}", p.measurement, p.field);
    }
    match p.name.split_once('.') {
        Some((first, _)) if !p.field.is_empty() => format!("{first}.{}", p.field),
        _ => p.name.clone(),
    }
}

/// badger's units in UCUM, as OTLP wants them.
pub fn otel_unit(units: &str) -> &str {
    match units {
        "B" => "By",
        "b" => "bit",
        "percent" => "%",
        u => u,
    }
}

/// What a collector's answer says was dropped: `(rejected_data_points, error_message)`
/// from an `ExportMetricsServiceResponse`; `None` when the body is not one (or is empty).
pub fn partial_success(body: &[u8]) -> Option<(i64, String)> {
    let r = proto::ExportMetricsServiceResponse::decode(body).ok()?;
    let p = r.partial_success?;
    Some((p.rejected_data_points, p.error_message))
}

#[cfg(test)]
mod tests;
