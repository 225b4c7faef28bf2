//! The exact points every /proc and /sys module gives on every fixture tree, kept in
//! `tests/fixtures/<tree>/golden/<module>.txt` (like node_exporter's end-to-end fixture
//! output): a renamed stat, a changed unit or value shows up as a diff in review.
//! Regenerate with `BADGER_BLESS=1 cargo test -p badger-modules golden`.
//!
//! Each file holds the first collection (on `t0`) and the second one second later (on `t1`),
//! one point a line: `name value units measurement.field tag=value…`, then `kind=counter` for
//! a cumulative counter. A module that cannot run on a tree (its kernel lacks the file: no PSI
//! before 4.20) gets one line saying so, with the message its build returned.

use std::fmt::Write;

use badger_api::plugin::BuildError;
use badger_api::point::{Kind, Point, Value};
use badger_test_support::fixture::{self, FixtureRoot};

/// Each module with the config it runs under for the golden output.
const MODULES: &[(&str, &str)] = &[
    ("cpu", r#"{"per_core": true}"#),
    ("load", "{}"),
    ("disk", "{}"),
    ("network", "{}"),
    ("memory", "{}"),
    ("system", "{}"),
    ("process_stats", r#"{"processes": [{"name": "all", "pattern": "."}]}"#),
    ("pressure", "{}"),
    ("vmstat", "{}"),
    ("filefd", "{}"),
    ("entropy", "{}"),
    ("sockstat", "{}"),
    ("netstat", "{}"),
    ("softnet", "{}"),
    ("conntrack", "{}"),
    ("arp", "{}"),
    ("udp_queues", "{}"),
    ("hwmon", "{}"),
    ("processes", "{}"),
    ("thermal_zone", "{}"),
    ("schedstat", "{}"),
    ("cpufreq", "{}"),
    ("nvme", "{}"),
    ("edac", "{}"),
    ("mdadm", "{}"),
    ("netclass", "{}"),
    ("selinux", "{}"),
];

fn line(out: &mut String, p: &Point) {
    let value = match p.value {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
    };
    let _ = write!(out, "{} {value} {:?} {}.{}", p.name, p.units, p.measurement, p.field);
    for (k, v) in &p.tags {
        let _ = write!(out, " {k}={v}");
    }
    if p.kind == Kind::Counter {
        out.push_str(" kind=counter");
    }
    out.push('\n');
}

fn golden(tree: &str, module: &str, config: &str) -> String {
    let spec = crate::REGISTRY.iter().find(|s| s.name == module).expect("module in the registry");
    let root = FixtureRoot::new(tree);
    let mut out = format!("# {module} on {tree} with {config}\n");
    let mut m = match (spec.build)(&root.ctx(), &fixture::conf(module, config)) {
        Ok(m) => m,
        Err(BuildError::Unavailable(msg)) => {
            // The path inside the temporary copy differs on every run: keep what follows it.
            let tail = msg.rsplit_once(root.path("").to_str().unwrap_or("")).map_or(msg.as_str(), |(_, t)| t);
            out.push_str(&format!("# unavailable: {tail}\n"));
            return out;
        }
        Err(e) => panic!("building {module}: {e}"),
    };
    out.push_str("# t0\n");
    for p in fixture::collect(m.as_mut(), 0.0) {
        line(&mut out, &p);
    }
    root.advance();
    out.push_str("# t1 (one second later)\n");
    for p in fixture::collect(m.as_mut(), 1.0) {
        line(&mut out, &p);
    }
    out
}

#[test]
fn golden_output_per_fixture_tree() {
    let bless = std::env::var_os("BADGER_BLESS").is_some();
    let mut stale = Vec::new();
    for tree in fixture::TREES {
        let dir = fixture::fixture_dir(tree).join("golden");
        for (module, config) in MODULES {
            let got = golden(tree, module, config);
            let path = dir.join(format!("{module}.txt"));
            if std::fs::read_to_string(&path).ok().as_deref() == Some(got.as_str()) {
                continue;
            }
            if bless {
                std::fs::create_dir_all(&dir).expect("mkdir golden");
                std::fs::write(&path, got).expect("write golden");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "golden output differs: {stale:?}\nreview, then BADGER_BLESS=1 cargo test -p badger-modules golden"
    );
}

/// The points of two collections (`t0`, `t1`), built with `gauges_only` or not.
fn two_collections(tree: &str, module: &str, config: &str, gauges_only: bool) -> Option<Vec<Point>> {
    let spec = crate::REGISTRY.iter().find(|s| s.name == module).expect("module in the registry");
    let root = FixtureRoot::new(tree);
    let ctx = badger_api::plugin::ModuleContext { gauges_only, ..root.ctx() };
    let mut m = (spec.build)(&ctx, &fixture::conf(module, config)).ok()?;
    let mut points = fixture::collect(m.as_mut(), 0.0);
    root.advance();
    points.extend(fixture::collect(m.as_mut(), 1.0));
    Some(points)
}

#[test]
fn gauges_only_changes_no_gauge_and_the_six_modules_build_no_counter() {
    let gauges = |points: &[Point]| points.iter().filter(|p| p.kind == Kind::Gauge).cloned().collect::<Vec<_>>();
    for tree in fixture::TREES {
        for (module, config) in MODULES {
            let Some(all) = two_collections(tree, module, config, false) else { continue };
            let only = two_collections(tree, module, config, true).expect("builds as it did");
            assert_eq!(gauges(&only), gauges(&all), "{module} on {tree}");
            // The modules of the stock config skip their counters; the others may keep theirs.
            if ["cpu", "load", "disk", "network", "memory", "system"].contains(module) {
                assert_eq!(only.len(), gauges(&only).len(), "{module} on {tree} built counters");
            }
        }
    }
    let with = two_collections("vm-6.18", "cpu", "{}", false).expect("builds");
    assert!(with.iter().any(|p| p.kind == Kind::Counter), "cpu builds its counters when asked");
}
