//! `entropy`: the kernel's random pool, from `/proc/sys/kernel/random/{entropy_avail,poolsize}`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `entropy.available_bits` | bits | int | gauge | entropy the kernel estimates its pool holds (`entropy_avail`) |
//! | `entropy.pool_size_bits` | bits | int | gauge | size of the pool (`poolsize`) |
//!
//! Named as node_exporter's `entropy` collector (`node_entropy_available_bits`,
//! `node_entropy_pool_size_bits`). Since Linux 5.18 both read a constant 256: the pool no
//! longer runs low.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "entropy",
    aliases: &[],
    summary: "available entropy and pool size (/proc/sys/kernel/random)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut avail = ProcFile::new(ctx.roots.proc_path("sys/kernel/random/entropy_avail"));
    avail.probe().map_err(BuildError::Unavailable)?;
    let mut pool = ProcFile::new(ctx.roots.proc_path("sys/kernel/random/poolsize"));
    pool.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Entropy { avail, pool }))
}

struct Entropy {
    avail: ProcFile,
    pool: ProcFile,
}

/// One number and a newline.
pub fn parse(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

fn read(file: &mut ProcFile) -> Result<i64, CollectError> {
    let text = file.read()?;
    parse(text).ok_or_else(|| CollectError(format!("{}: not a number", file.path().display())))
}

impl Module for Entropy {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        out.push(Point::simple("entropy", "available_bits", "bits", Value::Int(read(&mut self.avail)?)));
        out.push(Point::simple("entropy", "pool_size_bits", "bits", Value::Int(read(&mut self.pool)?)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_captured_trees() {
        use badger_test_support::fixture::{self, FixtureRoot};
        assert_eq!(parse("256\n"), Some(256));
        assert_eq!(parse("x\n"), None);
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let p = fixture::collect(m.as_mut(), 0.0);
            fixture::assert_documented(include_str!("entropy.rs"), &p);
            let num = |f: &str| {
                fixture::read(tree, "t0", &format!("proc/sys/kernel/random/{f}")).trim().parse::<i64>().unwrap()
            };
            let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
            assert_eq!(
                got,
                [
                    ("entropy.available_bits", Value::Int(num("entropy_avail"))),
                    ("entropy.pool_size_bits", Value::Int(num("poolsize")))
                ]
            );
        }
        // A garbled file fails the collection with the path.
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        root.write("proc/sys/kernel/random/poolsize", "many\n");
        let mut out = Vec::new();
        let e = m.collect(fixture::at(1.0), &mut out).unwrap_err();
        assert!(e.0.contains("poolsize: not a number"), "{}", e.0);
    }
}
