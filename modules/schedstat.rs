//! `schedstat`: per-CPU scheduler time, from `/proc/schedstat`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `schedstat.running_seconds_total.<cpu>` | s | float | counter | time tasks ran on the CPU since boot |
//! | `schedstat.waiting_seconds_total.<cpu>` | s | float | counter | time runnable tasks waited for the CPU since boot |
//! | `schedstat.timeslices_total.<cpu>` | | int | counter | time slices run on the CPU since boot |
//!
//! As node_exporter's `schedstat` collector (`node_schedstat_running_seconds_total{cpu="0"}`, …):
//! fields 7, 8 and 9 of each `cpu<N>` line (nanoseconds / 10⁹ for the first two); `domain`
//! lines are skipped. Kernels built without `CONFIG_SCHEDSTATS` have no `/proc/schedstat`
//! (the capture VM has none: the fixture is synthetic) and the module is unavailable. The
//! legacy emitters do not show counters; the Prometheus and OTLP formats do.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "schedstat",
    aliases: &[],
    summary: "per-CPU scheduler run and wait time (/proc/schedstat)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("schedstat"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Schedstat { file }))
}

struct Schedstat {
    file: ProcFile,
}

/// `(cpu, running ns, waiting ns, timeslices)` of each `cpuN` line.
pub fn parse(text: &str) -> Vec<(&str, i64, i64, i64)> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_ascii_whitespace();
            let cpu = it.next()?.strip_prefix("cpu")?;
            let f: Vec<i64> = it.map(|v| v.parse().ok()).collect::<Option<_>>()?;
            Some((cpu, *f.get(6)?, *f.get(7)?, *f.get(8)?))
        })
        .collect()
}

impl Module for Schedstat {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        for (cpu, run, wait, slices) in parse(text) {
            out.push(
                Point::device("schedstat", "running_seconds_total", "s", "cpu", cpu, Value::Float(run as f64 / 1e9))
                    .counter(),
            );
            out.push(
                Point::device("schedstat", "waiting_seconds_total", "s", "cpu", cpu, Value::Float(wait as f64 / 1e9))
                    .counter(),
            );
            out.push(Point::device("schedstat", "timeslices_total", "", "cpu", cpu, Value::Int(slices)).counter());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;
    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn parses_cpu_lines() {
        let text =
            "version 15\ntimestamp 1\ncpu0 0 0 0 0 0 0 2000000000 500000000 42\ndomain0 3 1 2\ncpu1 0 0 0 0 0 0 1 2\n";
        assert_eq!(parse(text), [("0", 2_000_000_000, 500_000_000, 42)]);
    }

    /// Synthetic `proc/schedstat` (tests/fixtures/linux-4.19-synth/README.md): 4 CPUs.
    #[test]
    fn on_the_synthetic_tree() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            fixture::assert_documented(include_str!("schedstat.rs"), &p);
            assert!(p.iter().all(|p| p.kind == Kind::Counter));
            let mut want = Vec::new();
            for line in
                fixture::read("linux-4.19-synth", snap, "proc/schedstat").lines().filter(|l| l.starts_with("cpu"))
            {
                let w: Vec<&str> = line.split(' ').collect();
                let cpu = &w[0][3..];
                want.push((
                    format!("schedstat.running_seconds_total.{cpu}"),
                    Value::Float(w[7].parse::<f64>().unwrap() / 1e9),
                ));
                want.push((
                    format!("schedstat.waiting_seconds_total.{cpu}"),
                    Value::Float(w[8].parse::<f64>().unwrap() / 1e9),
                ));
                want.push((format!("schedstat.timeslices_total.{cpu}"), Value::Int(w[9].parse().unwrap())));
            }
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(got, want, "{snap}");
            assert_eq!(got.len(), 12);
        }
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("schedstat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
