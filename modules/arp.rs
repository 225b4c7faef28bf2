//! `arp`: neighbour (ARP) table entries per interface, from `/proc/net/arp`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `arp.entries.<device>` | | int | gauge | entries of the IPv4 neighbour table on the interface, whatever their state |
//!
//! As node_exporter 1.5's `arp` collector (`node_arp_entries{device="eth0"}`): the lines of
//! `/proc/net/arp` after its header, counted by their last column (the interface), in the
//! order of the interface names. An interface without entries has no point.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "arp", aliases: &[], summary: "ARP table entries per interface (/proc/net/arp)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("net/arp"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Arp { file }))
}

struct Arp {
    file: ProcFile,
}

/// Entries per interface: the last column of each line after the header.
pub fn parse(text: &str) -> BTreeMap<&str, i64> {
    let mut counts = BTreeMap::new();
    for line in text.lines().skip(1) {
        if let Some(dev) = line.split_ascii_whitespace().nth(5) {
            *counts.entry(dev).or_insert(0) += 1;
        }
    }
    counts
}

impl Module for Arp {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        for (dev, n) in parse(text) {
            out.push(Point::device("arp", "entries", "", "device", dev, Value::Int(n)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn counts_per_device() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n\
                    192.0.2.7        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    10.0.0.1         0x1         0x2         02:fc:00:00:00:06     *        br0\n\
                    short line\n";
        assert_eq!(parse(text).into_iter().collect::<Vec<_>>(), [("br0", 1), ("eth0", 2)]);
    }

    #[test]
    fn on_the_captured_trees() {
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let p = fixture::collect(m.as_mut(), 0.0);
            fixture::assert_documented(include_str!("arp.rs"), &p);
            // The file: a header and the gateway on eth0.
            let text = fixture::read(tree, "t0", "proc/net/arp");
            assert_eq!(text.lines().count(), 2);
            assert!(text.lines().nth(1).unwrap().ends_with(" eth0"));
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(got, [("arp.entries.eth0".to_string(), Value::Int(1))]);
        }
    }
}
