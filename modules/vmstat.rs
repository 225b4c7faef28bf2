//! `vmstat`: virtual memory event counters from `/proc/vmstat`, as node_exporter's `vmstat` collector.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `vmstat.<key>` | | int | counter | the `/proc/vmstat` line `<key>`, for each key the `fields` expression matches |
//!
//! With the default `fields` these are the ones node_exporter keeps by default:
//!
//! | stat | meaning |
//! |---|---|
//! | `vmstat.pgpgin`, `vmstat.pgpgout` | KiB read from and written to block devices since boot |
//! | `vmstat.pswpin`, `vmstat.pswpout` | pages swapped in and out since boot |
//! | `vmstat.pgfault`, `vmstat.pgmajfault` | page faults, and the major ones (that needed I/O), since boot |
//! | `vmstat.oom_kill` | processes killed by the OOM killer since boot |
//!
//! Every value is the kernel's cumulative number as read, so each stat is a counter: the
//! legacy emitters (`stdout`, `graphite`, …) do not show them; the Prometheus and OTLP
//! formats do (node_exporter exposes these families with TYPE `untyped`). The points keep
//! the file's order. A few keys are not counters (`nr_free_pages` and the other `nr_*`
//! are the number of pages now): a `fields` expression that selects them still marks them
//! counters, as node_exporter's untyped families do not say either way.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `fields` | node_exporter's, below | regular expression (`regex_lite` syntax) of the keys to emit, matched anywhere in the key like node_exporter's `--collector.vmstat.fields` |
//!
//! The default of `fields` is node_exporter 1.x's: `^(oom_kill|pgpg|pswp|pg.*fault).*`.

use std::time::Instant;

use crate::fields::FieldFilter;
use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "vmstat", aliases: &[], summary: "virtual memory event counters (/proc/vmstat)", build };

/// node_exporter 1.x's default `--collector.vmstat.fields`.
pub const DEFAULT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fields: Option<String>,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    let fields = FieldFilter::new(conf, c.fields.as_deref(), DEFAULT_FIELDS)?;
    let mut file = ProcFile::new(ctx.roots.proc_path("vmstat"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Vmstat { file, fields }))
}

struct Vmstat {
    file: ProcFile,
    fields: FieldFilter,
}

/// The `key value` lines of `/proc/vmstat` (`pgfault 65356345`); a line that does not parse
/// is skipped.
pub fn parse(text: &str) -> impl Iterator<Item = (&str, i64)> {
    text.lines().filter_map(|line| {
        let (key, value) = line.split_once(' ')?;
        Some((key, value.trim().parse().ok()?))
    })
}

impl Module for Vmstat {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        for (key, value) in parse(text) {
            if self.fields.wants(key) {
                out.push(crate::named_point("vmstat", key, "", Value::Int(value), &[]).counter());
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
    fn parses_lines() {
        let got: Vec<_> = parse("nr_free_pages 123\npgfault 65356345\nbroken\npgpgin x\n").collect();
        assert_eq!(got, [("nr_free_pages", 123), ("pgfault", 65356345)]);
    }

    #[test]
    fn default_fields_on_the_captured_trees() {
        use badger_test_support::fixture::{self, FixtureRoot};
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("vmstat.rs"), &p);
                assert!(p.iter().all(|p| p.kind == Kind::Counter));
                // The file read independently, keys picked by hand (node_exporter's default set).
                let text = fixture::read(tree, snap, "proc/vmstat");
                let want: Vec<(String, Value)> = text
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .filter(|f| {
                        f[0] == "oom_kill"
                            || f[0].starts_with("pgpg")
                            || f[0].starts_with("pswp")
                            || (f[0].starts_with("pg") && f[0].contains("fault"))
                    })
                    .map(|f| (format!("vmstat.{}", f[0]), Value::Int(f[1].parse().unwrap())))
                    .collect();
                let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
                assert_eq!(got, want, "{tree} {snap}");
                let names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(
                    names,
                    [
                        "vmstat.pgpgin",
                        "vmstat.pgpgout",
                        "vmstat.pswpin",
                        "vmstat.pswpout",
                        "vmstat.pgfault",
                        "vmstat.pgmajfault",
                        "vmstat.oom_kill"
                    ]
                );
            }
        }
    }

    #[test]
    fn fields_key_and_missing_file() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"fields": "^nr_free_pages$"}"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p), ["vmstat.nr_free_pages"]);
        let line = fixture::read("vm-6.18", "t0", "proc/vmstat").lines().next().unwrap().to_string();
        assert_eq!(
            line.split_once(' ').map(|(_, v)| v.parse::<i64>().unwrap()),
            Some(fixture::int(&p, "vmstat.nr_free_pages"))
        );
        assert_eq!(p[0].field, "nr_free_pages");

        match fixture::build_error(&SPEC, &root.ctx(), "{\n\"fields\": \"(\"}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("fields"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
        root.remove("proc/vmstat");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("proc/vmstat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
