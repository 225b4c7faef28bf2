use std::sync::Arc;

use badger_api::matcher::Matcher;
use badger_api::plugin::Batch;
use badger_api::point::{HostMeta, Payload, Point, Value};
use prost::Message;

use super::proto::*;
use super::*;

fn meta() -> Arc<HostMeta> {
    Arc::new(HostMeta {
        hostname: "h1".into(),
        region: "eu-west-1".into(),
        zone: "eu-west-1a".into(),
        datacenter: "dc1".into(),
        ..HostMeta::default()
    })
}

fn fs(field: &'static str, v: i64) -> Point {
    Point::device("fs", field, "B", "path", "/", Value::Int(v))
        .with_tag("device", "/dev/vda1")
        .with_tag("fstype", "ext4")
}

fn sample() -> Vec<Point> {
    let mut cpu = Point::device("cpu", "seconds_total", "s", "cpu", "0", Value::Float(17.97)).counter();
    cpu.name.push_str(".iowait");
    cpu.tags.push(("mode".into(), "iowait".into()));
    let mut forks = Point::simple("cpu", "forks_total", "", Value::Int(1234)).counter();
    forks.measurement = "".into();
    vec![
        cpu,
        forks,
        Point::simple("cpu", "user", "percent", Value::Float(12.5)),
        Point::simple("load", "one", "", Value::Float(0.5)),
        Point::device("disk", "read_bytes_total", "B", "device", "vda", Value::Int(4096)).counter(),
        Point::device("disk", "written_bytes_total", "B", "device", "vda", Value::Int(8192)).counter(),
        Point::device("disk", "io", "", "device", "vda", Value::Int(2)),
        Point::device("network", "receive_bytes_total", "B", "device", "eth0", Value::Int(77)).counter(),
        Point::simple("mem", "memtotal", "B", Value::Int(1000)),
        Point::simple("mem", "memfree", "B", Value::Int(400)),
        Point::simple("mem", "buffers", "B", Value::Int(50)),
        Point::simple("mem", "cached", "B", Value::Int(200)),
        Point::simple("mem", "sreclaimable", "B", Value::Int(30)),
        Point::simple("mem", "sunreclaim", "B", Value::Int(20)),
        fs("total", 100),
        fs("used", 60),
        fs("free", 30),
        Point::simple("system", "uptime", "s", Value::Float(99.5)),
        Point::device("l2met", "requests", "", "source", "web", Value::Int(3)).counter(),
    ]
}

fn encode(naming: Naming, points: Vec<Point>) -> (ExportMetricsServiceRequest, u64) {
    let payloads = [Arc::new(Payload { meta: meta(), timestamp: 1_700_000_000, points })];
    let bl = Matcher::default();
    let batch = Batch::new(&payloads, &bl);
    let mut enc = Encoder::new(naming, "abc123", "9.9.9", 1_699_990_000, 1_699_999_000);
    let mut out = Vec::new();
    let mut n = 0;
    for p in batch.all_payloads() {
        n += enc.encode(&p, &mut out);
    }
    (ExportMetricsServiceRequest::decode(&out[..]).unwrap(), n)
}

/// name → (unit, kind, [(attributes, value, start)]).
type Flat = Vec<(String, String, String, Vec<(Vec<(String, String)>, NumberValue, u64)>)>;

fn flat(r: &ExportMetricsServiceRequest) -> Flat {
    let mut out = Vec::new();
    for m in &r.resource_metrics[0].scope_metrics[0].metrics {
        let (kind, dps) = match m.data.as_ref().unwrap() {
            MetricData::Gauge(g) => ("gauge".to_string(), &g.data_points),
            MetricData::Sum(s) => {
                assert_eq!(s.aggregation_temporality, AggregationTemporality::Cumulative as i32);
                (format!("sum monotonic={}", s.is_monotonic), &s.data_points)
            }
        };
        let points = dps
            .iter()
            .map(|d| {
                assert_eq!(d.time_unix_nano, 1_700_000_000_000_000_000);
                let attrs = d
                    .attributes
                    .iter()
                    .map(|kv| match &kv.value.as_ref().unwrap().value {
                        Some(AnyValueKind::StringValue(s)) => (kv.key.clone(), s.clone()),
                        v => panic!("{v:?}"),
                    })
                    .collect();
                (attrs, d.value.unwrap(), d.start_time_unix_nano / 1_000_000_000)
            })
            .collect();
        out.push((m.name.clone(), m.unit.clone(), kind, points));
    }
    out
}

fn a(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn otel_names_units_attributes_and_values() {
    let (r, n) = encode(Naming::Otel, sample());
    let rm = &r.resource_metrics[0];
    let res: Vec<(String, String)> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| match &kv.value.as_ref().unwrap().value {
            Some(AnyValueKind::StringValue(s)) => (kv.key.clone(), s.clone()),
            v => panic!("{v:?}"),
        })
        .collect();
    assert_eq!(
        res,
        a(&[
            ("host.name", "h1"),
            ("host.id", "abc123"),
            ("os.type", "linux"),
            ("service.name", "badger"),
            ("service.version", "9.9.9"),
            ("cloud.region", "eu-west-1"),
            ("cloud.availability_zone", "eu-west-1a"),
            ("badger.datacenter", "dc1"),
        ])
    );
    let scope = rm.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("badger", "9.9.9"));
    let boot = 1_699_990_000;
    let started = 1_699_999_000;
    let sum = "sum monotonic=true".to_string();
    let updown = "sum monotonic=false".to_string();
    let gauge = "gauge".to_string();
    use NumberValue::{AsDouble as D, AsInt as I};
    let want: Flat = vec![
        (
            "system.cpu.time".into(),
            "s".into(),
            sum.clone(),
            vec![(a(&[("cpu", "cpu0"), ("state", "wait")]), D(17.97), boot)],
        ),
        ("system.processes.created".into(), "{processes}".into(), sum.clone(), vec![(vec![], I(1234), boot)]),
        ("cpu.user".into(), "%".into(), gauge.clone(), vec![(vec![], D(12.5), 0)]),
        ("system.cpu.load_average.1m".into(), "{thread}".into(), gauge.clone(), vec![(vec![], D(0.5), 0)]),
        (
            "system.disk.io".into(),
            "By".into(),
            sum.clone(),
            vec![
                (a(&[("device", "vda"), ("direction", "read")]), I(4096), boot),
                (a(&[("device", "vda"), ("direction", "write")]), I(8192), boot),
            ],
        ),
        (
            "system.disk.pending_operations".into(),
            "{operations}".into(),
            updown.clone(),
            vec![(a(&[("device", "vda")]), I(2), boot)],
        ),
        (
            "system.network.io".into(),
            "By".into(),
            sum.clone(),
            vec![(a(&[("device", "eth0"), ("direction", "receive")]), I(77), boot)],
        ),
        (
            "fs.total".into(),
            "By".into(),
            gauge.clone(),
            vec![(a(&[("path", "/"), ("device", "/dev/vda1"), ("fstype", "ext4")]), I(100), 0)],
        ),
        ("system.uptime".into(), "s".into(), gauge.clone(), vec![(vec![], D(99.5), 0)]),
        ("l2met.requests".into(), "".into(), sum.clone(), vec![(a(&[("source", "web")]), I(3), started)]),
        ("system.memory.limit".into(), "By".into(), updown.clone(), vec![(vec![], I(1000), boot)]),
        (
            "system.memory.usage".into(),
            "By".into(),
            updown.clone(),
            vec![
                // used = 1000 - 400 - 50 - (200 + 30)
                (a(&[("state", "used")]), I(320), boot),
                (a(&[("state", "free")]), I(400), boot),
                (a(&[("state", "buffered")]), I(50), boot),
                (a(&[("state", "cached")]), I(230), boot),
                (a(&[("state", "slab_reclaimable")]), I(30), boot),
                (a(&[("state", "slab_unreclaimable")]), I(20), boot),
            ],
        ),
        (
            "system.memory.utilization".into(),
            "1".into(),
            gauge.clone(),
            vec![
                (a(&[("state", "used")]), D(0.32), 0),
                (a(&[("state", "free")]), D(0.4), 0),
                (a(&[("state", "buffered")]), D(0.05), 0),
                (a(&[("state", "cached")]), D(0.23), 0),
                (a(&[("state", "slab_reclaimable")]), D(0.03), 0),
                (a(&[("state", "slab_unreclaimable")]), D(0.02), 0),
            ],
        ),
        (
            "system.filesystem.usage".into(),
            "By".into(),
            updown.clone(),
            ["used", "free", "reserved"]
                .iter()
                .zip([60, 30, 10])
                .map(|(s, v)| {
                    (a(&[("device", "/dev/vda1"), ("mountpoint", "/"), ("type", "ext4"), ("state", s)]), I(v), boot)
                })
                .collect(),
        ),
    ];
    let got = flat(&r);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(got.len(), want.len());
    let data_points: usize = want.iter().map(|m| m.3.len()).sum();
    assert_eq!(n, data_points as u64);
}

#[test]
fn badger_naming_keeps_every_point_under_its_name() {
    let (r, n) = encode(Naming::Badger, sample());
    assert_eq!(n, sample().len() as u64);
    let got = flat(&r);
    let names: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu.seconds_total",
            "cpu.forks_total",
            "cpu.user",
            "load.one",
            "disk.read_bytes_total",
            "disk.written_bytes_total",
            "disk.io",
            "network.receive_bytes_total",
            "mem.memtotal",
            "mem.memfree",
            "mem.buffers",
            "mem.cached",
            "mem.sreclaimable",
            "mem.sunreclaim",
            "fs.total",
            "fs.used",
            "fs.free",
            "system.uptime",
            "l2met.requests",
        ]
    );
    assert_eq!(got[0].3[0].0, a(&[("cpu", "0"), ("mode", "iowait")]));
    assert_eq!(got[0].2, "sum monotonic=true");
    assert_eq!(got[3].2, "gauge");
}

#[test]
fn memory_points_without_their_total_keep_their_badger_names() {
    let points: Vec<Point> = sample().into_iter().filter(|p| p.field != "memtotal").collect();
    let (r, _) = encode(Naming::Otel, points);
    let names: Vec<String> = flat(&r).into_iter().map(|m| m.0).collect();
    for want in ["mem.memfree", "mem.buffers", "mem.cached", "mem.sreclaimable", "mem.sunreclaim"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("system.memory")), "{names:?}");
}

#[test]
fn concatenated_requests_are_one_request() {
    let (one, _) = encode(Naming::Otel, sample());
    let mut both = one.encode_to_vec();
    both.extend(one.encode_to_vec());
    let r = ExportMetricsServiceRequest::decode(&both[..]).unwrap();
    assert_eq!(r.resource_metrics.len(), 2);
    assert_eq!(r.resource_metrics[0], r.resource_metrics[1]);
}

#[test]
fn empty_payloads_write_nothing_and_partial_success_decodes() {
    let (r, n) = encode(Naming::Otel, vec![]);
    assert_eq!((r.resource_metrics.len(), n), (0, 0));
    let resp = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess { rejected_data_points: 3, error_message: "nope".into() }),
    };
    assert_eq!(partial_success(&resp.encode_to_vec()), Some((3, "nope".into())));
    assert_eq!(partial_success(b""), None);
    assert_eq!(partial_success(b"\xff\xff"), None);
}
