//! `load`: system load averages, from `/proc/loadavg`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `load.one` | | float | gauge | load average over 1 minute |
//! | `load.five` | | float | gauge | load average over 5 minutes |
//! | `load.fifteen` | | float | gauge | load average over 15 minutes |
//! | `load.runnable_entities` | | int | gauge | runnable scheduling entities (threads) now |
//! | `load.total_entities` | | int | gauge | scheduling entities that exist now |
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`). The kernel updates
//! load averages every 5 s, so `interval: 5` (the stock setting) loses nothing.

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "load", aliases: &[], summary: "load averages and scheduling entities (/proc/loadavg)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("loadavg"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Load { file }))
}

struct Load {
    file: ProcFile,
}

/// `/proc/loadavg`: `0.08 0.04 0.01 1/80 1855`.
#[derive(Debug, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
    pub runnable: i64,
    pub total: i64,
}

pub fn parse(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_ascii_whitespace();
    let one = it.next()?.parse().ok()?;
    let five = it.next()?.parse().ok()?;
    let fifteen = it.next()?.parse().ok()?;
    let (runnable, total) = it.next()?.split_once('/')?;
    Some(LoadAvg { one, five, fifteen, runnable: runnable.parse().ok()?, total: total.parse().ok()? })
}

impl Module for Load {
    fn shares_thread(&self) -> bool {
        // Reads only kernel text files.
        true
    }

    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        let l =
            parse(text).ok_or_else(|| CollectError(format!("{}: unexpected format", self.file.path().display())))?;
        out.push(Point::simple("load", "one", "", Value::Float(l.one)));
        out.push(Point::simple("load", "five", "", Value::Float(l.five)));
        out.push(Point::simple("load", "fifteen", "", Value::Float(l.fifteen)));
        out.push(Point::simple("load", "runnable_entities", "", Value::Int(l.runnable)));
        out.push(Point::simple("load", "total_entities", "", Value::Int(l.total)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse("0.08 0.04 0.01 1/80 1855\n"),
            Some(LoadAvg { one: 0.08, five: 0.04, fifteen: 0.01, runnable: 1, total: 80 })
        );
        assert_eq!(parse("garbage"), None);
    }

    #[test]
    fn on_every_fixture_tree() {
        use badger_test_support::fixture::{self, FixtureRoot};
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("load.rs"), &p);
                // The file parsed independently: "0.08 0.04 0.01 1/80 1855".
                let text = fixture::read(tree, snap, "proc/loadavg");
                let f: Vec<&str> = text.split(|c: char| c.is_whitespace() || c == '/').collect();
                let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
                assert_eq!(
                    got,
                    [
                        ("load.one", Value::Float(f[0].parse().unwrap())),
                        ("load.five", Value::Float(f[1].parse().unwrap())),
                        ("load.fifteen", Value::Float(f[2].parse().unwrap())),
                        ("load.runnable_entities", Value::Int(f[3].parse().unwrap())),
                        ("load.total_entities", Value::Int(f[4].parse().unwrap())),
                    ],
                    "{tree} {snap}"
                );
            }
        }
    }

    #[test]
    fn config_and_missing_file() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let root = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &root.ctx(), "{\n\"one\": 1}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("one"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
        root.remove("proc/loadavg");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("proc/loadavg"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
