//! One full collection of the six host modules (cpu, load, disk, network, memory, system)
//! on the live /proc and /sys, as the agent does every second. Target: ≤ 60 µs as the
//! agent builds them for Stat Badger's emitters (`six_modules/gauges`).
//!
//! Also each node_exporter-family module alone (those this host can run).
//!
//! `cargo bench --bench collect`

use std::path::Path;
use std::time::Instant;

use badger_api::plugin::{Module, ModuleContext, PluginConf};

fn main() {
    divan::main();
}

const SIX: [&str; 6] = ["cpu", "load", "disk", "network", "memory", "system"];

/// The node_exporter-family modules.
const NODE: &[&str] = &[
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
];

fn try_build(name: &str, gauges_only: bool) -> Result<Box<dyn Module>, String> {
    let spec = badger_modules::REGISTRY.iter().find(|s| s.name == name).expect("module in registry");
    let conf = PluginConf::from_text(name, Path::new("bench.conf"), "{}");
    (spec.build)(&ModuleContext { gauges_only, ..ModuleContext::default() }, &conf).map_err(|e| e.to_string())
}

fn build(name: &str) -> Box<dyn Module> {
    try_build(name, false).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// All six modules, one after the other, warmed up so rates are computed too. `gauges`: as
/// the agent builds them when no emitter reads raw counters (stdout, influxdb, graphite,
/// kafka: the stock config); `counters`: with the raw counters too (an otlp, prometheus,
/// pushgateway or remote_write emitter configured).
#[divan::bench(args = ["gauges", "counters"])]
fn six_modules(bencher: divan::Bencher, points: &str) {
    let gauges_only = points == "gauges";
    let mut modules: Vec<Box<dyn Module>> =
        SIX.iter().map(|n| try_build(n, gauges_only).unwrap_or_else(|e| panic!("{n}: {e}"))).collect();
    let mut out = Vec::with_capacity(256);
    for m in &mut modules {
        let _ = m.collect(Instant::now(), &mut out);
    }
    bencher.bench_local(|| {
        out.clear();
        let now = Instant::now();
        for m in &mut modules {
            let _ = m.collect(now, &mut out);
        }
        out.len()
    });
}

/// Each module alone.
#[divan::bench(args = SIX)]
fn one_module(bencher: divan::Bencher, name: &str) {
    let mut m = build(name);
    let mut out = Vec::with_capacity(128);
    let _ = m.collect(Instant::now(), &mut out);
    bencher.bench_local(|| {
        out.clear();
        let _ = m.collect(Instant::now(), &mut out);
        out.len()
    });
}

/// Each node_exporter-family module alone; one this host cannot run (no such kernel file)
/// is reported and measured as an empty collection.
#[divan::bench(args = NODE)]
fn node_module(bencher: divan::Bencher, name: &str) {
    let mut m = match try_build(name, false) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{name}: not on this host ({e})");
            bencher.bench_local(|| 0);
            return;
        }
    };
    let mut out = Vec::with_capacity(256);
    let _ = m.collect(Instant::now(), &mut out);
    bencher.bench_local(|| {
        out.clear();
        let _ = m.collect(Instant::now(), &mut out);
        out.len()
    });
}
