//! node_exporter naming: a payload's points as the metric families node_exporter 1.x
//! exposes, with its exact names, TYPEs, label names and label order.
//!
//! Three rules, tried in order:
//!
//! 1. **Samples from Prometheus** (the `prometheus` module, `pushgateway_receiver`, the
//!    textfile collector: points whose field is a Prometheus type) keep their own names.
//! 2. **badger's own stats** (the measurements `cpu`, `mem`, `load`, `disk`, `fs`, `net`,
//!    `system`, `proc`, `badger` with the fields the modules have always had) go through an
//!    explicit table ([`legacy`]): `mem.<key>` → `node_memory_<MeminfoKey>_bytes` (the key in
//!    /proc/meminfo's casing, `(anon)` → `_anon`; the `HugePages_*` counts without `_bytes`),
//!    `load.one/five/fifteen` → `node_load1/5/15`, `fs.total/free/inodes_total/inodes_free` →
//!    `node_filesystem_size_bytes/avail_bytes/files/files_free`, `fs.total − fs.used` →
//!    `node_filesystem_free_bytes` (`f_bfree`), `disk.io` → `node_disk_io_now`,
//!    `cpu.procs_running/procs_blocked` → `node_procs_running/blocked`, `system.boot_time` →
//!    `node_boot_time_seconds`, and the payload's timestamp → `node_time_seconds` when the
//!    `system` module ran. Filesystem labels are node_exporter's `device`, `fstype`,
//!    `mountpoint`. Every other stat of those measurements is a Stat Badger rate, percentage
//!    or derived figure that node_exporter does not have: it is left out (node_exporter gives
//!    counters, and the counters are there).
//! 3. **Everything else** (the raw counters, `Kind::Counter`, and the points of the
//!    node_exporter-family modules) is named mechanically: `node_` + measurement + `_` + field
//!    (`node_` + field when the measurement is empty), labels = the tags in order. TYPE is
//!    `untyped` for the `vmstat` and `netstat` families (node_exporter types those untyped),
//!    `counter` for a counter whose name ends in `_total`, else `gauge` (node_exporter 1.5
//!    never types a name without `_total` counter, nor one with it gauge).
//!
//! HELP texts are badger's own words.

use std::borrow::Cow;

use badger_api::point::{Kind as PointKind, Point};

use super::{label_name, metric_name, Kind};

/// One sample in node_exporter's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    /// The family (= sample) name.
    pub family: String,
    pub kind: Kind,
    pub help: Cow<'static, str>,
    /// Label names and values, in node_exporter's order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The `/proc/meminfo` keys as the kernel (and so node_exporter) spells them, with `(x)`
/// already turned into `_x`. badger's `mem.<key>` fields are these lowercased.
const MEMINFO_KEYS: &[&str] = &[
    "Active",
    "Active_anon",
    "Active_file",
    "AnonHugePages",
    "AnonPages",
    "Balloon",
    "Bounce",
    "Buffers",
    "Cached",
    "CmaFree",
    "CmaTotal",
    "CommitLimit",
    "Committed_AS",
    "DirectMap1G",
    "DirectMap2M",
    "DirectMap4M",
    "DirectMap4k",
    "Dirty",
    "FileHugePages",
    "FilePmdMapped",
    "HardwareCorrupted",
    "HighFree",
    "HighTotal",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "HugePages_Total",
    "Hugepagesize",
    "Hugetlb",
    "Inactive",
    "Inactive_anon",
    "Inactive_file",
    "KReclaimable",
    "KernelStack",
    "LowFree",
    "LowTotal",
    "Mapped",
    "MemAvailable",
    "MemFree",
    "MemTotal",
    "Mlocked",
    "MmapCopy",
    "NFS_Unstable",
    "PageTables",
    "Percpu",
    "Quicklists",
    "SReclaimable",
    "SUnreclaim",
    "SecPageTables",
    "Shmem",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "Slab",
    "SwapCached",
    "SwapFree",
    "SwapTotal",
    "Unaccepted",
    "Unevictable",
    "VmallocChunk",
    "VmallocTotal",
    "VmallocUsed",
    "Writeback",
    "WritebackTmp",
    "Zswap",
    "Zswapped",
];

/// badger's own stats, by measurement: the fields the modules have always had. `None` = every
/// field of the measurement.
const LEGACY: &[(&str, Option<&[&str]>)] = &[
    ("mem", None),
    ("load", None),
    ("fs", None),
    ("net", None),
    ("proc", None),
    ("badger", None),
    (
        "cpu",
        Some(&[
            "user",
            "nice",
            "system",
            "idle",
            "iowait",
            "irq",
            "softirq",
            "steal",
            "guest",
            "guest_nice",
            "procs_forked_per_sec",
            "procs_running",
            "procs_blocked",
            "ctxt_per_sec",
            "ctxt_per_sec_per_core",
            "cores",
            "speed",
            "cache_size",
        ]),
    ),
    (
        "disk",
        Some(&[
            "reads",
            "reads_merged",
            "read_sectors",
            "read_time",
            "writes",
            "writes_merged",
            "write_sectors",
            "write_time",
            "io",
            "io_time",
            "io_weighted_time",
            "read_thruput",
            "write_thruput",
            "count",
        ]),
    ),
    ("system", Some(&["uptime", "boot_time"])),
];

/// node_exporter families typed `untyped` (its vmstat and netstat collectors).
const UNTYPED_MEASUREMENTS: &[&str] = &["vmstat", "netstat"];

/// Whether a point is one of badger's own stats (rule 2).
pub fn is_legacy(p: &Point) -> bool {
    p.kind == PointKind::Gauge
        && LEGACY.iter().any(|(m, fields)| *m == p.measurement && fields.is_none_or(|f| f.contains(&p.field.as_ref())))
}

/// The node_exporter samples of one payload's points, in point order (`node_time_seconds`
/// last). `timestamp` is the payload's, epoch seconds.
pub fn node_samples(points: &[&Point], timestamp: i64, out: &mut Vec<NodeSample>) {
    let mut system_ran = false;
    for &p in points {
        if super::Kind::from_field(&p.field).is_some() && p.kind == PointKind::Gauge {
            // Rule 1 is handled by the caller (it has the Prometheus sample naming).
            continue;
        }
        if is_legacy(p) {
            if p.measurement == "system" {
                system_ran = true;
            }
            if let Some(s) = legacy(p, points) {
                out.push(s);
            }
            continue;
        }
        let name = if p.measurement.is_empty() {
            format!("node_{}", p.field)
        } else {
            format!("node_{}_{}", p.measurement, p.field)
        };
        let family = metric_name(&name);
        let kind = if UNTYPED_MEASUREMENTS.contains(&p.measurement.as_ref()) {
            Kind::Untyped
        } else if p.kind == PointKind::Counter && family.ends_with("_total") {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        let what = if p.kind == PointKind::Counter { "cumulative counter" } else { "value" };
        let units = if p.units.is_empty() { String::new() } else { format!(" ({})", p.units) };
        let help = if p.measurement.is_empty() {
            Cow::Owned(format!("badger {what} {}{units}", p.field))
        } else {
            Cow::Owned(format!("badger {what} {}.{}{units}", p.measurement, p.field))
        };
        let labels = p.tags.iter().map(|(k, v)| (label_name(k), v.clone())).collect();
        out.push(NodeSample { family, kind, help, labels, value: p.value.as_f64() });
    }
    if system_ran {
        out.push(NodeSample {
            family: "node_time_seconds".into(),
            kind: Kind::Gauge,
            help: Cow::Borrowed("Wall-clock time of badger's collection, seconds since the epoch."),
            labels: Vec::new(),
            value: timestamp as f64,
        });
    }
}

fn gauge(
    family: impl Into<String>,
    help: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
) -> Option<NodeSample> {
    Some(NodeSample { family: family.into(), kind: Kind::Gauge, help: Cow::Borrowed(help), labels, value })
}

fn tag<'p>(p: &'p Point, key: &str) -> &'p str {
    p.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// node_exporter's filesystem labels from an `fs.*` point.
fn fs_labels(p: &Point) -> Vec<(String, String)> {
    vec![
        ("device".into(), tag(p, "device").to_string()),
        ("fstype".into(), tag(p, "fstype").to_string()),
        ("mountpoint".into(), tag(p, "path").to_string()),
    ]
}

/// Rule 2: the explicit table.
fn legacy(p: &Point, all: &[&Point]) -> Option<NodeSample> {
    let v = p.value.as_f64();
    match (p.measurement.as_ref(), p.field.as_ref()) {
        ("mem", field) => {
            let key = MEMINFO_KEYS.iter().find(|k| k.eq_ignore_ascii_case(field))?;
            let name = if p.units == "B" { format!("node_memory_{key}_bytes") } else { format!("node_memory_{key}") };
            gauge(name, "A line of /proc/meminfo (kB lines in bytes), read by badger.", Vec::new(), v)
        }
        ("load", "one") => gauge("node_load1", "Load average over 1 minute.", Vec::new(), v),
        ("load", "five") => gauge("node_load5", "Load average over 5 minutes.", Vec::new(), v),
        ("load", "fifteen") => gauge("node_load15", "Load average over 15 minutes.", Vec::new(), v),
        ("fs", "total") => gauge("node_filesystem_size_bytes", "Filesystem size, bytes.", fs_labels(p), v),
        ("fs", "free") => gauge(
            "node_filesystem_avail_bytes",
            "Filesystem bytes available to unprivileged users (f_bavail).",
            fs_labels(p),
            v,
        ),
        ("fs", "used") => {
            let path = tag(p, "path");
            let total = all.iter().find(|q| q.measurement == "fs" && q.field == "total" && tag(q, "path") == path)?;
            gauge(
                "node_filesystem_free_bytes",
                "Filesystem bytes free, reserved blocks included (f_bfree).",
                fs_labels(p),
                total.value.as_f64() - v,
            )
        }
        ("fs", "inodes_total") => gauge("node_filesystem_files", "Filesystem inodes.", fs_labels(p), v),
        ("fs", "inodes_free") => gauge("node_filesystem_files_free", "Filesystem free inodes.", fs_labels(p), v),
        ("disk", "io") => gauge(
            "node_disk_io_now",
            "I/Os in flight on the device now.",
            vec![("device".into(), tag(p, "device").to_string())],
            v,
        ),
        ("cpu", "procs_running") => {
            gauge("node_procs_running", "Runnable threads now (procs_running of /proc/stat).", Vec::new(), v)
        }
        ("cpu", "procs_blocked") => {
            gauge("node_procs_blocked", "Threads blocked on I/O now (procs_blocked of /proc/stat).", Vec::new(), v)
        }
        ("system", "boot_time") => {
            gauge("node_boot_time_seconds", "Boot time, seconds since the epoch.", Vec::new(), v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Value;

    type Row = (String, Kind, Vec<(String, String)>, f64);

    fn names(points: &[Point], ts: i64) -> Vec<Row> {
        let mut out = Vec::new();
        node_samples(&points.iter().collect::<Vec<_>>(), ts, &mut out);
        out.into_iter().map(|s| (s.family, s.kind, s.labels, s.value)).collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn meminfo_keys_are_unique_ignoring_case() {
        for (i, a) in MEMINFO_KEYS.iter().enumerate() {
            for b in &MEMINFO_KEYS[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn maps_badger_stats_by_the_table() {
        let fs = |field, v: i64| {
            Point::device("fs", field, "B", "path", "/", Value::Int(v))
                .with_tag("device", "/dev/vda1")
                .with_tag("fstype", "ext4")
        };
        let points = vec![
            Point::simple("mem", "memavailable", "B", Value::Int(4096)),
            Point::simple("mem", "active_anon", "B", Value::Int(1024)),
            Point::simple("mem", "hugepages_total", "", Value::Int(0)),
            Point::simple("mem", "used_percent", "percent", Value::Float(3.0)),
            Point::simple("mem", "not_a_kernel_key", "B", Value::Int(1)),
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "runnable_entities", "", Value::Int(3)),
            fs("total", 1000),
            fs("used", 300),
            fs("free", 650),
            Point::device("fs", "inodes_free", "", "path", "/", Value::Int(7))
                .with_tag("device", "/dev/vda1")
                .with_tag("fstype", "ext4"),
            Point::device("disk", "io", "", "device", "vda", Value::Int(2)),
            Point::device("disk", "reads", "", "device", "vda", Value::Float(9.0)),
            Point::simple("cpu", "user", "percent", Value::Float(1.0)),
            Point::simple("cpu", "procs_running", "", Value::Int(2)),
            Point::simple("system", "boot_time", "s", Value::Int(1_700_000_000)),
            Point::simple("badger", "rss", "B", Value::Int(1)),
        ];
        let fsl = l(&[("device", "/dev/vda1"), ("fstype", "ext4"), ("mountpoint", "/")]);
        assert_eq!(
            names(&points, 1_700_000_100),
            vec![
                ("node_memory_MemAvailable_bytes".into(), Kind::Gauge, vec![], 4096.0),
                ("node_memory_Active_anon_bytes".into(), Kind::Gauge, vec![], 1024.0),
                ("node_memory_HugePages_Total".into(), Kind::Gauge, vec![], 0.0),
                ("node_load1".into(), Kind::Gauge, vec![], 0.5),
                ("node_filesystem_size_bytes".into(), Kind::Gauge, fsl.clone(), 1000.0),
                ("node_filesystem_free_bytes".into(), Kind::Gauge, fsl.clone(), 700.0),
                ("node_filesystem_avail_bytes".into(), Kind::Gauge, fsl.clone(), 650.0),
                ("node_filesystem_files_free".into(), Kind::Gauge, fsl, 7.0),
                ("node_disk_io_now".into(), Kind::Gauge, l(&[("device", "vda")]), 2.0),
                ("node_procs_running".into(), Kind::Gauge, vec![], 2.0),
                ("node_boot_time_seconds".into(), Kind::Gauge, vec![], 1.7e9),
                ("node_time_seconds".into(), Kind::Gauge, vec![], 1_700_000_100.0),
            ]
        );
    }

    #[test]
    fn names_counters_and_new_module_points_mechanically() {
        let mut cpu = Point::device("cpu", "seconds_total", "s", "cpu", "0", Value::Float(12.5)).counter();
        cpu.tags.push(("mode".into(), "user".into()));
        cpu.name = "cpu.seconds_total.0.user".into();
        let points = vec![
            cpu,
            Point::simple("", "intr_total", "", Value::Int(77)).counter(),
            Point::simple("vmstat", "pgfault", "", Value::Int(5)).counter(),
            Point::simple("entropy", "available_bits", "", Value::Int(256)),
            Point::device("network", "receive_bytes_total", "B", "device", "eth0", Value::Int(9)).counter(),
            Point::simple("disk", "odd_counter", "", Value::Int(1)).counter(),
        ];
        assert_eq!(
            names(&points, 0),
            vec![
                ("node_cpu_seconds_total".into(), Kind::Counter, l(&[("cpu", "0"), ("mode", "user")]), 12.5),
                ("node_intr_total".into(), Kind::Counter, vec![], 77.0),
                ("node_vmstat_pgfault".into(), Kind::Untyped, vec![], 5.0),
                ("node_entropy_available_bits".into(), Kind::Gauge, vec![], 256.0),
                ("node_network_receive_bytes_total".into(), Kind::Counter, l(&[("device", "eth0")]), 9.0),
                ("node_disk_odd_counter".into(), Kind::Gauge, vec![], 1.0),
            ]
        );
    }
}
