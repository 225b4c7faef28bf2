//! `softnet`: per-CPU network receive processing, from `/proc/net/softnet_stat`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `softnet.processed_total.<cpu>` | | int | counter | packets the CPU took from its backlog and device queues since boot |
//! | `softnet.dropped_total.<cpu>` | | int | counter | packets dropped because the CPU's backlog was full |
//! | `softnet.times_squeezed_total.<cpu>` | | int | counter | times the receive work stopped with packets left (budget or time used up) |
//!
//! As node_exporter's `softnet` collector (`node_softnet_processed_total{cpu="0"}`, …): one
//! line per CPU of hexadecimal columns; columns 1, 2 and 3 are the three counters. Tag `cpu`
//! is the CPU number in column 13 (kernel 5.10+, where offline CPUs have no line), else the
//! line's index. The counters are 32 bits wide in the kernel and wrap. The legacy emitters
//! do not show counters; the Prometheus and OTLP formats do.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "softnet", aliases: &[], summary: "per-CPU packet processing (/proc/net/softnet_stat)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("net/softnet_stat"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Softnet { file }))
}

struct Softnet {
    file: ProcFile,
}

/// One CPU's line.
#[derive(Debug, PartialEq)]
pub struct CpuLine {
    pub cpu: u32,
    pub processed: i64,
    pub dropped: i64,
    pub squeezed: i64,
}

/// The lines of `softnet_stat`; a line with fewer than 3 columns or a column that is not
/// hexadecimal is skipped.
pub fn parse(text: &str) -> Vec<CpuLine> {
    let hex = |s: &str| i64::from_str_radix(s, 16).ok();
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            let cpu = match cols.get(12) {
                Some(c) => u32::try_from(hex(c)?).ok()?,
                None => u32::try_from(i).ok()?,
            };
            Some(CpuLine {
                cpu,
                processed: hex(cols.first()?)?,
                dropped: hex(cols.get(1)?)?,
                squeezed: hex(cols.get(2)?)?,
            })
        })
        .collect()
}

impl Module for Softnet {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        for l in parse(text) {
            let cpu = l.cpu.to_string();
            for (field, v) in
                [("processed_total", l.processed), ("dropped_total", l.dropped), ("times_squeezed_total", l.squeezed)]
            {
                out.push(Point::device("softnet", field, "", "cpu", &cpu, Value::Int(v)).counter());
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
    fn parses_old_and_new_layouts() {
        // 4.19-style: 11 columns, no CPU number; 6.x: 13+ columns, CPU number in column 13.
        let old = "0000000a 00000001 00000002 0 0 0 0 0 0 0 0\n000000ff 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(
            parse(old),
            [
                CpuLine { cpu: 0, processed: 10, dropped: 1, squeezed: 2 },
                CpuLine { cpu: 1, processed: 255, dropped: 0, squeezed: 0 }
            ]
        );
        let new = "00000010 0 0 0 0 0 0 0 0 0 0 0 00000003 00000000 00000000\nzz 0 0\n";
        assert_eq!(parse(new), [CpuLine { cpu: 3, processed: 16, dropped: 0, squeezed: 0 }]);
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
                crate::assert_node_documented("softnet", include_str!("softnet.rs"), &p);
                assert!(p.iter().all(|p| p.kind == Kind::Counter));
                let text = fixture::read(tree, snap, "proc/net/softnet_stat");
                let mut want = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    let c: Vec<u64> = line.split(' ').map(|h| u64::from_str_radix(h, 16).unwrap()).collect();
                    assert_eq!(c[12], i as u64, "this VM's CPUs are all online");
                    for (f, v) in [("processed_total", c[0]), ("dropped_total", c[1]), ("times_squeezed_total", c[2])] {
                        want.push((format!("softnet.{f}.{i}"), Value::Int(v as i64)));
                    }
                }
                let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
                assert_eq!(got, want, "{tree} {snap}");
                assert_eq!(got.len(), 6);
            }
        }
    }
}
