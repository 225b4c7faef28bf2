//! `pressure`: pressure stall information (PSI) from `/proc/pressure/*`.
//!
//! The files `cpu`, `memory`, `io` and `irq`, as node_exporter's `pressure` collector reads them.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `pressure.cpu_waiting_seconds_total` | s | float | counter | time at least one runnable task waited for a CPU (`some` line of `cpu`) |
//! | `pressure.memory_waiting_seconds_total` | s | float | counter | time at least one task was stalled on memory (`some` line of `memory`) |
//! | `pressure.memory_stalled_seconds_total` | s | float | counter | time every non-idle task was stalled on memory at once (`full` line of `memory`) |
//! | `pressure.io_waiting_seconds_total` | s | float | counter | time at least one task was stalled on I/O (`some` line of `io`) |
//! | `pressure.io_stalled_seconds_total` | s | float | counter | time every non-idle task was stalled on I/O at once (`full` line of `io`) |
//! | `pressure.irq_stalled_seconds_total` | s | float | counter | time the CPUs spent handling interrupts while tasks were runnable (`full` line of `irq`; kernel 6.1+ with `CONFIG_IRQ_TIME_ACCOUNTING`) |
//!
//! Each value is the file's `total=` (microseconds since boot) divided by 10⁶. The `avg10`,
//! `avg60` and `avg300` percentages are not emitted (node_exporter leaves them out too: a
//! rate of these counters gives any window). The `some` line of `cpu` is the only CPU one
//! node_exporter keeps; so does this module.
//!
//! A file the kernel lacks (`irq` before 6.1) is left out; the module is unavailable when no
//! file can be read (kernels before 4.20, or booted with `psi=0`, which makes reads fail with
//! `EOPNOTSUPP`). Stats are counters: the legacy emitters (`stdout`, `graphite`, …) do not
//! show them; the Prometheus and OTLP formats do.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "pressure", aliases: &[], summary: "pressure stall information (/proc/pressure/*)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// Each resource file with the fields its `some` and `full` lines become (`None`: not emitted).
const RESOURCES: &[(&str, Option<&str>, Option<&str>)] = &[
    ("cpu", Some("cpu_waiting_seconds_total"), None),
    ("memory", Some("memory_waiting_seconds_total"), Some("memory_stalled_seconds_total")),
    ("io", Some("io_waiting_seconds_total"), Some("io_stalled_seconds_total")),
    ("irq", None, Some("irq_stalled_seconds_total")),
];

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut files = Vec::new();
    let mut first_error = None;
    for &(name, some, full) in RESOURCES {
        let mut file = ProcFile::new(ctx.roots.proc_path(&format!("pressure/{name}")));
        match file.probe() {
            Ok(()) => files.push(Resource { file, some, full }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if files.is_empty() {
        let e = first_error.unwrap_or_default();
        return Err(BuildError::Unavailable(format!("no pressure file can be read: {e}")));
    }
    Ok(Box::new(Pressure { files }))
}

struct Resource {
    file: ProcFile,
    some: Option<&'static str>,
    full: Option<&'static str>,
}

struct Pressure {
    files: Vec<Resource>,
}

/// The `total=` values (µs) of a PSI file's `some` and `full` lines:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`.
#[derive(Debug, PartialEq, Default)]
pub struct Totals {
    pub some: Option<u64>,
    pub full: Option<u64>,
}

pub fn parse(text: &str) -> Totals {
    let mut t = Totals::default();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let slot = match it.next() {
            Some("some") => &mut t.some,
            Some("full") => &mut t.full,
            _ => continue,
        };
        *slot = it.find_map(|kv| kv.strip_prefix("total=")).and_then(|v| v.parse().ok());
    }
    t
}

impl Module for Pressure {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        for r in &mut self.files {
            let text = r.file.read()?;
            let t = parse(text);
            for (field, total) in [(r.some, t.some), (r.full, t.full)] {
                if let (Some(field), Some(us)) = (field, total) {
                    out.push(Point::simple("pressure", field, "s", Value::Float(us as f64 / 1e6)).counter());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;

    #[test]
    fn parses_psi_lines() {
        let text = "some avg10=0.42 avg60=0.75 avg300=0.61 total=11824309\n\
                    full avg10=0.41 avg60=0.67 avg300=0.41 total=8099442\n";
        assert_eq!(parse(text), Totals { some: Some(11824309), full: Some(8099442) });
        assert_eq!(parse("some avg10=1.00 total=5\n"), Totals { some: Some(5), full: None });
        assert_eq!(parse("garbage\nsome total=x\n"), Totals::default());
    }

    #[test]
    fn on_the_captured_trees() {
        use badger_test_support::fixture::{self, FixtureRoot};
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("pressure.rs"), &p);
                assert!(p.iter().all(|p| p.kind == Kind::Counter && p.tags.is_empty()));
                // The `total=` of a line, read independently: the last `=` of the line.
                let total = |file: &str, line: usize| -> f64 {
                    let text = fixture::read(tree, snap, &format!("proc/pressure/{file}"));
                    let l = text.lines().nth(line).unwrap();
                    assert!(l.starts_with(["some", "full"][line]));
                    l.rsplit('=').next().unwrap().parse::<f64>().unwrap() / 1e6
                };
                // This kernel (6.18 without CONFIG_IRQ_TIME_ACCOUNTING) has no `irq` file.
                assert!(!root.path("proc/pressure/irq").exists());
                let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
                assert_eq!(
                    got,
                    [
                        ("pressure.cpu_waiting_seconds_total", Value::Float(total("cpu", 0))),
                        ("pressure.memory_waiting_seconds_total", Value::Float(total("memory", 0))),
                        ("pressure.memory_stalled_seconds_total", Value::Float(total("memory", 1))),
                        ("pressure.io_waiting_seconds_total", Value::Float(total("io", 0))),
                        ("pressure.io_stalled_seconds_total", Value::Float(total("io", 1))),
                    ],
                    "{tree} {snap}"
                );
            }
        }
    }

    #[test]
    fn irq_file_and_missing_files() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let root = FixtureRoot::new("vm-6.18");
        root.write("proc/pressure/irq", "full avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n");
        root.remove("proc/pressure/io");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::float(&p, "pressure.irq_stalled_seconds_total"), 2.5);
        assert!(fixture::find(&p, "pressure.io_waiting_seconds_total").is_none());
        assert_eq!(p.len(), 4);

        // Kernel 4.19 has no PSI at all.
        let old = FixtureRoot::new("linux-4.19-synth");
        match fixture::build_error(&SPEC, &old.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("pressure/cpu"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
        match fixture::build_error(&SPEC, &root.ctx(), "{\n\"avg\": 1}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("avg"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
    }
}
