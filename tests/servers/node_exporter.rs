//! Side by side with the real node_exporter (Debian `prometheus-node-exporter`, default
//! collectors): badger's `prometheus` emitter in node_exporter naming must give the same
//! families, label sets and values.
//!
//! The test scrapes badger until a new collection shows (its `node_time_seconds` moves),
//! scrapes node_exporter at once, then badger again at its next collection, so node_exporter's
//! read falls between badger's two: a counter must lie between badger's two values, a gauge
//! must agree within 1 % (or be listed in [`MOVING`]). It prints the coverage (series
//! present / node_exporter's) and every missing family, and asserts full coverage for the
//! collectors in [`ASSERTED`] less the [`EXCEPTIONS`] (docs/migrating.md, "From
//! node_exporter", says why each one is missing). Both read one textfile directory the test
//! writes, so the textfile collector's series are compared too.

use crate::prometheus::Agent;
use crate::support_prom::{self, free_port, installed, promtool_check, try_get, wait_for, Daemon};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use badger_formats::prometheus::{parse, Family, Format, Kind};
use badger_test_support::process::TempConfig;

/// The modules badger runs: every host module that has a node_exporter counterpart.
const MODULES: &[&str] = &[
    "cpu",
    "load",
    "disk",
    "network",
    "memory",
    "system",
    "pressure",
    "vmstat",
    "filefd",
    "entropy",
    "sockstat",
    "netstat",
    "softnet",
    "conntrack",
    "arp",
    "udp_queues",
    "timex",
    "processes",
    "schedstat",
    "hwmon",
    "thermal_zone",
    "cpufreq",
    "edac",
    "mdadm",
    "nvme",
    "netclass",
    "uname",
    "os",
    "selinux",
    "time",
    "textfile",
];

/// node_exporter collectors whose every series badger must have (less [`EXCEPTIONS`]).
const ASSERTED: &[&str] = &[
    "meminfo",
    "loadavg",
    "filesystem",
    "cpu",
    "stat",
    "diskstats",
    "netdev",
    "pressure",
    "vmstat",
    "filefd",
    "entropy",
    "sockstat",
    "netstat",
    "softnet",
    "conntrack",
    "arp",
    "udp_queues",
    "timex",
    "netclass",
    "uname",
    "os",
    "selinux",
    "time",
    "textfile",
];

/// Series badger does not have, with the reason (docs/migrating.md lists them too): a
/// family name prefix and a text its label set contains ("" = every series).
const EXCEPTIONS: &[(&str, &str, &str)] =
    &[("node_disk_", "device=\"zram", "badger's disk module leaves zram* out by default, node_exporter does not")];

fn excepted(family: &str, labels: &str) -> bool {
    EXCEPTIONS.iter().any(|(f, l, _)| family.starts_with(f) && labels.contains(l))
}

/// Gauges that move between two reads a few milliseconds apart, compared loosely (printed).
const MOVING: &[&str] = &[
    "node_memory_",
    "node_filesystem_avail_bytes",
    "node_filesystem_free_bytes",
    "node_filesystem_files_free",
    "node_procs_",
    "node_disk_io_now",
    "node_load",
    "node_time_seconds",
    // Socket counts: the test's own scrapes open and close TCP connections between the reads.
    "node_sockstat_",
    "node_netstat_Tcp_CurrEstab",
    // Allocated file handles, entropy and process counts move with every process started.
    "node_filefd_allocated",
    "node_entropy_available_bits",
    "node_processes_",
    "node_nf_conntrack_entries",
    "node_arp_entries",
    "node_udp_queues",
    "node_timex_",
    "node_softnet_",
];

/// badger's host metadata labels (node_exporter has none).
const META: &[&str] = &["datacenter", "region", "zone", "cluster", "hostname", "ipv4", "ipv6"];

/// The node_exporter collector a family comes from.
fn collector(family: &str) -> &'static str {
    const BY_PREFIX: &[(&str, &str)] = &[
        ("node_cpu_", "cpu"),
        ("node_memory_", "meminfo"),
        ("node_filesystem_", "filesystem"),
        ("node_disk_", "diskstats"),
        ("node_network_transmit_queue_length", "netclass"),
        ("node_network_receive_", "netdev"),
        ("node_network_transmit_", "netdev"),
        ("node_network_", "netclass"),
        ("node_load", "loadavg"),
        ("node_boot_time_seconds", "stat"),
        ("node_context_switches_total", "stat"),
        ("node_forks_total", "stat"),
        ("node_intr_total", "stat"),
        ("node_procs_", "stat"),
        ("node_time_", "time"),
        ("node_vmstat_", "vmstat"),
        ("node_netstat_", "netstat"),
        ("node_sockstat_", "sockstat"),
        ("node_softnet_", "softnet"),
        ("node_nf_conntrack_", "conntrack"),
        ("node_timex_", "timex"),
        ("node_entropy_", "entropy"),
        ("node_filefd_", "filefd"),
        ("node_pressure_", "pressure"),
        ("node_arp_", "arp"),
        ("node_udp_queues", "udp_queues"),
        ("node_os_", "os"),
        ("node_uname_", "uname"),
        ("node_selinux_", "selinux"),
        ("node_textfile_", "textfile"),
        ("node_hwmon_", "hwmon"),
        ("node_thermal_zone_", "thermal_zone"),
        ("node_cooling_device_", "thermal_zone"),
        ("node_schedstat_", "schedstat"),
        ("node_power_supply_", "powersupplyclass"),
        ("node_edac_", "edac"),
        ("node_md_", "mdadm"),
        ("node_nvme_", "nvme"),
        ("node_processes_", "processes"),
        ("node_scrape_", "exporter"),
        ("node_exporter_", "exporter"),
        ("go_", "exporter"),
        ("process_", "exporter"),
        ("promhttp_", "exporter"),
    ];
    BY_PREFIX.iter().find(|(p, _)| family.starts_with(p)).map(|(_, c)| *c).unwrap_or("other")
}

/// `family` → (sorted label set text → value), badger's metadata labels left out.
type Series = BTreeMap<String, BTreeMap<String, f64>>;

fn series(families: &[Family]) -> (Series, BTreeMap<String, Kind>) {
    let mut out = Series::new();
    let mut kinds = BTreeMap::new();
    for f in families {
        kinds.insert(f.name.clone(), f.kind);
        for s in &f.samples {
            let mut labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| !META.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            labels.sort();
            out.entry(s.name.clone()).or_default().insert(labels.join(","), s.value);
        }
    }
    (out, kinds)
}

fn scrape(url: &str) -> (Instant, String) {
    let (status, _, body) = try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "{url}: {body}");
    (Instant::now(), body)
}

fn time_of(body: &str) -> Option<String> {
    body.lines().find_map(|l| l.strip_prefix("node_time_seconds").map(|v| v.trim().to_string()))
}

/// Scrapes badger until its collection changes from `after`.
fn next_collection(url: &str, after: Option<&str>) -> (Instant, String) {
    wait_for(Duration::from_secs(15), "a new badger collection", || {
        let (status, _, body) = try_get(url).ok()?;
        let t = Instant::now();
        if status != 200 {
            return None;
        }
        let now = time_of(&body)?;
        (Some(now.as_str()) != after).then_some((t, body))
    })
}

#[test]
fn badger_matches_node_exporter() {
    let test = "badger_matches_node_exporter";
    if !installed(test, support_prom::NODE_EXPORTER, "prometheus-node-exporter")
        || !installed(test, support_prom::PROMTOOL, "prometheus")
    {
        return;
    }
    let port = free_port();
    let modules: Vec<String> = MODULES.iter().map(|m| format!("{m:?}")).collect();
    let main = format!(
        r#"{{ "core": {{ "hostname": "h1", "ipv4": "", "ipv6": "", "http_listen": "127.0.0.1:{port}" }},
            "modules": [{}],
            "emitters": ["prometheus"] }}"#,
        modules.join(", ")
    );
    // One textfile directory for both, with one file: its sample and mtime must match too.
    let textfiles = tempfile::Builder::new().prefix("textfile.").tempdir().expect("tempdir");
    std::fs::write(
        textfiles.path().join("side_by_side.prom"),
        "# HELP side_by_side_files Written by the test.\n# TYPE side_by_side_files gauge\nside_by_side_files{kind=\"prom\"} 3\n",
    )
    .expect("write .prom");
    let textfile_conf = format!(r#"{{"directory": {:?}}}"#, textfiles.path().display().to_string());
    let c = TempConfig::new(
        &main,
        &[("prometheus", r#"{"naming": "node_exporter"}"#), ("textfile", textfile_conf.as_str())],
    );
    let _agent = Agent::start(&c);
    let ne = Daemon::node_exporter_with(&[format!("--collector.textfile.directory={}", textfiles.path().display())]);
    let badger_url = format!("http://127.0.0.1:{port}/metrics");
    let ne_url = ne.url("/metrics");

    let (_, first) = next_collection(&badger_url, None);
    let (t1, b1) = next_collection(&badger_url, time_of(&first).as_deref());
    let (tn, nbody) = scrape(&ne_url);
    let (t2, b2) = next_collection(&badger_url, time_of(&b1).as_deref());
    println!(
        "reads: badger #1 → node_exporter {} ms, node_exporter → badger #2 {} ms",
        (tn - t1).as_millis(),
        (t2 - tn).as_millis()
    );

    // promtool's lint objects to node_exporter's own names (`node_memory_MemTotal_bytes` is
    // camelCase, `_bits` is not a base unit): badger may have those objections and no other.
    let (_, theirs) = promtool_check(&nbody);
    let (ok, ours) = promtool_check(&b1);
    let own: Vec<&str> = ours.lines().filter(|l| !theirs.lines().any(|t| t == *l)).collect();
    assert!(own.is_empty(), "promtool check metrics (passed: {ok}):\n{}\n--- body:\n{b1}", own.join("\n"));

    let parsed = |body: &str| parse(body, Format::Text).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let (bs1, bkinds) = series(&parsed(&b1));
    let (bs2, _) = series(&parsed(&b2));
    let (ns, nkinds) = series(&parsed(&nbody));

    let (mut total, mut present) = (0usize, 0usize);
    let mut per_collector: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missing_families = Vec::new();
    let mut failures = Vec::new();
    let mut differences = Vec::new();
    for (family, set) in &ns {
        let col = collector(family);
        if col == "exporter" {
            continue;
        }
        let entry = per_collector.entry(col).or_default();
        let mut family_missing = true;
        for (labels, nv) in set {
            total += 1;
            entry.1 += 1;
            let asserted = ASSERTED.contains(&col) && !excepted(family, labels);
            let Some(bv) = bs1.get(family).and_then(|s| s.get(labels)) else {
                if asserted {
                    failures.push(format!("missing {family}{{{labels}}}"));
                }
                continue;
            };
            present += 1;
            entry.0 += 1;
            family_missing = false;
            if bkinds.get(family) != nkinds.get(family) {
                failures.push(format!(
                    "{family}: TYPE {:?} in badger, {:?} in node_exporter",
                    bkinds.get(family),
                    nkinds.get(family)
                ));
            }
            let bv2 = bs2.get(family).and_then(|s| s.get(labels)).copied().unwrap_or(*bv);
            if nkinds.get(family) == Some(&Kind::Counter) {
                // node_exporter read between badger's two collections.
                let slack = 1e-9 * nv.abs().max(1.0);
                if !(bv - slack <= *nv && *nv <= bv2 + slack && bv <= &bv2) {
                    failures.push(format!("counter {family}{{{labels}}}: badger {bv} then {bv2}, node_exporter {nv}"));
                }
            } else {
                let off = (bv - nv).abs() / nv.abs().max(1e-9);
                if off > 0.01 {
                    let moving = MOVING.iter().any(|m| family.starts_with(m));
                    differences.push(format!("{family}{{{labels}}}: badger {bv}, node_exporter {nv}"));
                    if asserted && !moving {
                        failures.push(format!("gauge {family}{{{labels}}}: badger {bv}, node_exporter {nv}"));
                    }
                }
            }
        }
        if family_missing {
            missing_families.push(format!("{family} ({col})"));
        }
    }
    println!(
        "coverage: {present}/{total} series of node_exporter ({:.1} %)",
        100.0 * present as f64 / total.max(1) as f64
    );
    for (col, (p, t)) in &per_collector {
        println!("  {col}: {p}/{t}{}", if ASSERTED.contains(col) { " (asserted)" } else { "" });
    }
    println!("missing families ({}):", missing_families.len());
    for f in &missing_families {
        println!("  {f}");
    }
    println!("gauges more than 1 % apart ({}):", differences.len());
    for d in &differences {
        println!("  {d}");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // Rates, percentages and badger's own stats are not in node_exporter naming.
    for absent in ["cpu_user_percent", "mem_used_bytes", "disk_reads", "load_one", "badger_ticks"] {
        assert!(!b1.contains(&format!("# TYPE {absent} ")), "{absent} in node_exporter naming:\n{b1}");
    }
}
