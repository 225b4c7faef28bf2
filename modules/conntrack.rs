//! `conntrack`: the netfilter connection tracking table, from `/proc/sys/net/netfilter` and `/proc/net/stat/nf_conntrack`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `conntrack.entries` | | int | gauge | connections tracked now (`nf_conntrack_count`) |
//! | `conntrack.entries_limit` | | int | gauge | the size limit of the table (`nf_conntrack_max`) |
//! | `conntrack.stat_found` | | int | gauge | searches that found an entry, since the module loaded |
//! | `conntrack.stat_invalid` | | int | gauge | packets that could not be tracked |
//! | `conntrack.stat_ignore` | | int | gauge | packets that were already tracked or not to be tracked |
//! | `conntrack.stat_insert` | | int | gauge | entries inserted (0 on current kernels, which no longer count it) |
//! | `conntrack.stat_insert_failed` | | int | gauge | inserts that failed (a clash of the same tuple) |
//! | `conntrack.stat_drop` | | int | gauge | packets dropped because tracking failed |
//! | `conntrack.stat_early_drop` | | int | gauge | entries dropped to make room in a full table |
//! | `conntrack.stat_search_restart` | | int | gauge | table lookups restarted because the table was resized |
//!
//! As node_exporter's `conntrack` collector: the points are measurement `nf_conntrack`
//! (`node_nf_conntrack_entries`, `node_nf_conntrack_stat_found`, …). The `stat_*` values
//! are the per-CPU columns (hexadecimal) of `/proc/net/stat/nf_conntrack` summed over the
//! CPUs; they are counts since the module loaded, but node_exporter gives them as gauges, so
//! they are gauges here too (the legacy emitters show them). They are left out when that file
//! is missing. The module is unavailable when the `nf_conntrack` kernel module is not loaded
//! (no `/proc/sys/net/netfilter/nf_conntrack_count`).
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "conntrack",
    aliases: &[],
    summary: "netfilter connection tracking table size and events",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// The columns of `/proc/net/stat/nf_conntrack` node_exporter gives, in its order.
const STATS: &[&str] =
    &["found", "invalid", "ignore", "insert", "insert_failed", "drop", "early_drop", "search_restart"];

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut count = ProcFile::new(ctx.roots.proc_path("sys/net/netfilter/nf_conntrack_count"));
    count.probe().map_err(BuildError::Unavailable)?;
    let mut max = ProcFile::new(ctx.roots.proc_path("sys/net/netfilter/nf_conntrack_max"));
    max.probe().map_err(BuildError::Unavailable)?;
    let mut stat = ProcFile::new(ctx.roots.proc_path("net/stat/nf_conntrack"));
    let stat = stat.probe().is_ok().then_some(stat);
    Ok(Box::new(Conntrack { count, max, stat }))
}

struct Conntrack {
    count: ProcFile,
    max: ProcFile,
    stat: Option<ProcFile>,
}

/// The columns of `/proc/net/stat/nf_conntrack` summed over its CPU lines, by header name.
/// A line whose columns are not all hexadecimal is skipped.
pub fn parse_stat(text: &str) -> Vec<(&str, i64)> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let mut sums: Vec<(&str, i64)> = header.split_ascii_whitespace().map(|h| (h, 0)).collect();
    for line in lines {
        let values: Option<Vec<i64>> = line.split_ascii_whitespace().map(|h| i64::from_str_radix(h, 16).ok()).collect();
        let Some(values) = values.filter(|v| v.len() == sums.len()) else { continue };
        for (sum, v) in sums.iter_mut().zip(values) {
            sum.1 = sum.1.saturating_add(v);
        }
    }
    sums
}

fn number(file: &mut ProcFile) -> Result<i64, CollectError> {
    let text = file.read()?;
    text.trim().parse().map_err(|_| CollectError(format!("{}: not a number", file.path().display())))
}

impl Module for Conntrack {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let entries = number(&mut self.count)?;
        let limit = number(&mut self.max)?;
        out.push(crate::module_point("conntrack", "nf_conntrack", "entries", "", Value::Int(entries), &[]));
        out.push(crate::module_point("conntrack", "nf_conntrack", "entries_limit", "", Value::Int(limit), &[]));
        if let Some(stat) = &mut self.stat {
            let sums = parse_stat(stat.read()?);
            for name in STATS {
                if let Some((_, v)) = sums.iter().find(|(h, _)| h == name) {
                    let field = format!("stat_{name}");
                    out.push(crate::module_point("conntrack", "nf_conntrack", &field, "", Value::Int(*v), &[]));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn sums_the_cpu_lines() {
        let text = "entries  found invalid drop\n00000001  0000000a 00000002 00000000\n00000001  00000005 zz 1\n00000000  00000001 00000003 00000010\n";
        assert_eq!(parse_stat(text), [("entries", 1), ("found", 11), ("invalid", 5), ("drop", 16)]);
        assert_eq!(parse_stat(""), []);
    }

    #[test]
    fn on_the_captured_trees() {
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let p = fixture::collect(m.as_mut(), 0.0);
            crate::assert_node_documented("conntrack", include_str!("conntrack.rs"), &p);
            let num = |f: &str| fixture::read(tree, "t0", f).trim().parse::<i64>().unwrap();
            let mut want = vec![
                ("conntrack.entries".to_string(), Value::Int(num("proc/sys/net/netfilter/nf_conntrack_count"))),
                ("conntrack.entries_limit".to_string(), Value::Int(num("proc/sys/net/netfilter/nf_conntrack_max"))),
            ];
            // Every counter of this VM's table is 0 (nothing is tracked).
            let stat = fixture::read(tree, "t0", "proc/net/stat/nf_conntrack");
            assert!(stat.lines().skip(1).flat_map(|l| l.split_whitespace()).all(|h| h == "00000000"));
            for s in STATS {
                want.push((format!("conntrack.stat_{s}"), Value::Int(0)));
            }
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(got, want);
            assert!(p.iter().all(|p| p.measurement == "nf_conntrack"));
            assert_eq!(p[1].value, Value::Int(262144));
        }
    }

    #[test]
    fn stat_lines_and_missing_files() {
        let root = FixtureRoot::new("vm-6.18");
        root.write(
            "proc/net/stat/nf_conntrack",
            "entries  found drop early_drop\n00000002  00000010 00000001 00000000\n00000002  00000001 00000002 00000003\n",
        );
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        let names: Vec<&str> = fixture::names(&p);
        assert_eq!(
            names,
            [
                "conntrack.entries",
                "conntrack.entries_limit",
                "conntrack.stat_found",
                "conntrack.stat_drop",
                "conntrack.stat_early_drop"
            ]
        );
        assert_eq!(
            [
                fixture::int(&p, "conntrack.stat_found"),
                fixture::int(&p, "conntrack.stat_drop"),
                fixture::int(&p, "conntrack.stat_early_drop")
            ],
            [17, 3, 3]
        );
        root.remove("proc/net/stat/nf_conntrack");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        assert_eq!(fixture::collect(m.as_mut(), 0.0).len(), 2);
        root.remove("proc/sys/net/netfilter/nf_conntrack_count");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("nf_conntrack_count"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
