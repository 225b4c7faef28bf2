//! `filefd`: open file handles of the whole system, from `/proc/sys/fs/file-nr`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `filefd.allocated` | | int | gauge | file handles allocated now (first number of `file-nr`) |
//! | `filefd.maximum` | | int | gauge | the most file handles the kernel will allocate (`fs.file-max`, third number) |
//!
//! Named as node_exporter's `filefd` collector (`node_filefd_allocated`,
//! `node_filefd_maximum`). The middle number of `file-nr` (allocated but unused handles) has
//! been 0 since Linux 2.6 and is not emitted.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "filefd",
    aliases: &[],
    summary: "allocated and maximum file handles (/proc/sys/fs/file-nr)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("sys/fs/file-nr"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Filefd { file }))
}

struct Filefd {
    file: ProcFile,
}

/// `/proc/sys/fs/file-nr`: `527\t0\t2466252` → (allocated, maximum).
pub fn parse(text: &str) -> Option<(i64, i64)> {
    let mut it = text.split_ascii_whitespace();
    let allocated = it.next()?.parse().ok()?;
    let _unused = it.next()?;
    Some((allocated, it.next()?.parse().ok()?))
}

impl Module for Filefd {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        let (allocated, maximum) =
            parse(text).ok_or_else(|| CollectError(format!("{}: unexpected format", self.file.path().display())))?;
        out.push(Point::simple("filefd", "allocated", "", Value::Int(allocated)));
        out.push(Point::simple("filefd", "maximum", "", Value::Int(maximum)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_nr() {
        assert_eq!(parse("527\t0\t2466252\n"), Some((527, 2466252)));
        assert_eq!(parse("527\t0\n"), None);
        assert_eq!(parse("x 0 1\n"), None);
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
                fixture::assert_documented(include_str!("filefd.rs"), &p);
                let text = fixture::read(tree, snap, "proc/sys/fs/file-nr");
                let f: Vec<i64> = text.split('\t').map(|s| s.trim().parse().unwrap()).collect();
                let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
                assert_eq!(got, [("filefd.allocated", Value::Int(f[0])), ("filefd.maximum", Value::Int(f[2]))]);
            }
        }
    }

    #[test]
    fn missing_file() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let root = FixtureRoot::new("linux-4.19-synth");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("file-nr"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
