//! `mdadm`: Linux software RAID (md) arrays, from `/proc/mdstat`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `mdadm.state.<device>.<state>` | | int | gauge | 1 for the array's state, 0 for the others; `<state>` is each of `active`, `inactive`, `recovering`, `resync`, `check` |
//! | `mdadm.disks.<device>.<state>` | | int | gauge | member disks that are `active` (in sync), `failed` (marked `(F)`) or `spare` (marked `(S)`) |
//! | `mdadm.disks_required.<device>` | | int | gauge | disks the array needs (the `n` of `[n/m]`) |
//! | `mdadm.blocks.<device>` | | int | gauge | size of the array in 1 KiB blocks |
//! | `mdadm.blocks_synced.<device>` | | int | gauge | blocks done by a running resync, recovery or check (from `(done/total)`, counted per member disk as the kernel prints it); the size when none runs |
//!
//! As node_exporter's `mdadm` collector: measurement `md` (`node_md_state{device="md0",state="active"}`,
//! `node_md_disks{device,state}`, `node_md_disks_required`, `node_md_blocks`,
//! `node_md_blocks_synced`), tags `device` and `state`. An array's section is its
//! `mdN : <active|inactive> <level> <members…>` line and the indented lines under it: the
//! first gives the size and `[n/m]` (`m` = active disks), a `bitmap:` line is skipped, and a
//! line with `recovery`, `resync` (but not `resync=DELAYED`) or `check` sets the state and
//! the synced blocks. Without `[n/m]` (raid0, linear, an inactive array) the active disks are
//! the members not marked `(F)` or `(S)`, and the required disks the same number. Arrays in
//! the file's order. A host without `/proc/mdstat` (no md driver) makes the module
//! unavailable; a section it cannot read is skipped.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "mdadm",
    aliases: &[],
    summary: "software RAID array state, disks and sync (/proc/mdstat)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("mdstat"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Mdadm { file }))
}

struct Mdadm {
    file: ProcFile,
}

/// The states node_exporter gives for every array, in its order.
pub const STATES: &[&str] = &["active", "inactive", "recovering", "resync", "check"];

/// One array of `/proc/mdstat`.
#[derive(Debug, PartialEq)]
pub struct Array<'a> {
    pub device: &'a str,
    pub state: &'static str,
    pub active: i64,
    pub failed: i64,
    pub spare: i64,
    pub required: i64,
    pub blocks: i64,
    pub synced: i64,
}

/// `(done/total)` of a sync line.
fn synced_of(line: &str) -> Option<i64> {
    let open = line.find('(')?;
    let inner = &line[open + 1..];
    inner[..inner.find('/')?].trim().parse().ok()
}

/// `[n/m]` of a status line.
fn counts_of(line: &str) -> Option<(i64, i64)> {
    line.split_ascii_whitespace().find_map(|w| {
        let (n, m) = w.strip_prefix('[')?.strip_suffix(']')?.split_once('/')?;
        Some((n.parse().ok()?, m.parse().ok()?))
    })
}

pub fn parse(text: &str) -> Vec<Array<'_>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((device, rest)) = line.split_once(" : ") else { continue };
        if !device.starts_with("md") || line.starts_with([' ', '\t']) {
            continue;
        }
        let words: Vec<&str> = rest.split_ascii_whitespace().collect();
        let Some(&activity) = words.first() else { continue };
        let members = words.iter().filter(|w| w.contains('[')).count() as i64;
        let failed = rest.matches("(F)").count() as i64;
        let spare = rest.matches("(S)").count() as i64;
        // The indented lines of this section.
        let body: Vec<&str> =
            lines[i + 1..].iter().take_while(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty()).copied().collect();
        let Some(status) = body.first() else { continue };
        let Some(blocks) = status.split_ascii_whitespace().next().and_then(|b| b.parse().ok()) else { continue };
        let (required, active) = counts_of(status).unwrap_or({
            let up = members - failed - spare;
            (up, up)
        });
        let mut state = if activity == "inactive" { "inactive" } else { "active" };
        let mut synced = blocks;
        for l in body.iter().skip(1).filter(|l| !l.contains("bitmap")) {
            let s = if l.contains("recovery") {
                "recovering"
            } else if l.contains("resync") && !l.contains("resync=") {
                "resync"
            } else if l.contains("check") {
                "check"
            } else {
                continue;
            };
            state = s;
            synced = synced_of(l).unwrap_or(synced);
            break;
        }
        out.push(Array { device, state, active, failed, spare, required, blocks, synced });
    }
    out
}

impl Module for Mdadm {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        for a in parse(text) {
            let dev = a.device;
            for s in STATES {
                let v = Value::Int(i64::from(a.state == *s));
                out.push(crate::module_point("mdadm", "md", "state", "", v, &[("device", dev), ("state", s)]));
            }
            for (s, n) in [("active", a.active), ("failed", a.failed), ("spare", a.spare)] {
                out.push(crate::module_point(
                    "mdadm",
                    "md",
                    "disks",
                    "",
                    Value::Int(n),
                    &[("device", dev), ("state", s)],
                ));
            }
            for (field, n) in [("disks_required", a.required), ("blocks", a.blocks), ("blocks_synced", a.synced)] {
                out.push(crate::module_point("mdadm", "md", field, "", Value::Int(n), &[("device", dev)]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// Synthetic `proc/mdstat` (tests/fixtures/linux-4.19-synth/README.md): md0 resyncing at
    /// t0 and clean at t1, md1 recovering with a failed and a spare disk, md2 inactive.
    #[test]
    fn parses_the_synthetic_mdstat() {
        let t0 = fixture::read("linux-4.19-synth", "t0", "proc/mdstat");
        let a = parse(&t0);
        assert_eq!(
            a,
            [
                Array {
                    device: "md0",
                    state: "resync",
                    active: 2,
                    failed: 0,
                    spare: 0,
                    required: 2,
                    blocks: 976630464,
                    synced: 952214400
                },
                Array {
                    device: "md1",
                    state: "recovering",
                    active: 2,
                    failed: 1,
                    spare: 1,
                    required: 3,
                    blocks: 1953260544,
                    synced: 82073216
                },
                Array {
                    device: "md2",
                    state: "inactive",
                    active: 0,
                    failed: 0,
                    spare: 1,
                    required: 0,
                    blocks: 488254488,
                    synced: 488254488
                },
            ]
        );
        let t1 = fixture::read("linux-4.19-synth", "t1", "proc/mdstat");
        let md0 = &parse(&t1)[0];
        assert_eq!((md0.state, md0.synced), ("active", 976630464));
        // raid0 has no [n/m]; a delayed resync is not a running one.
        let raid0 =
            "md3 : active raid0 sdd[1] sde[0]\n      1000 blocks super 1.2 512k chunks\n      resync=DELAYED\n\n";
        let a = parse(raid0);
        assert_eq!((a[0].state, a[0].active, a[0].required, a[0].synced), ("active", 2, 2, 1000));
        assert_eq!(parse("Personalities : [raid1]\nunused devices: <none>\n"), []);
    }

    #[test]
    fn points_on_the_synthetic_tree() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        crate::assert_node_documented("mdadm", include_str!("mdadm.rs"), &p);
        assert_eq!(p.len(), 3 * 11);
        let md0: Vec<(String, Value)> = p[..11].iter().map(|p| (p.name.clone(), p.value)).collect();
        let s = |x: &str, v: i64| (x.to_string(), Value::Int(v));
        assert_eq!(
            md0,
            [
                s("mdadm.state.md0.active", 0),
                s("mdadm.state.md0.inactive", 0),
                s("mdadm.state.md0.recovering", 0),
                s("mdadm.state.md0.resync", 1),
                s("mdadm.state.md0.check", 0),
                s("mdadm.disks.md0.active", 2),
                s("mdadm.disks.md0.failed", 0),
                s("mdadm.disks.md0.spare", 0),
                s("mdadm.disks_required.md0", 2),
                s("mdadm.blocks.md0", 976630464),
                s("mdadm.blocks_synced.md0", 952214400),
            ]
        );
        assert_eq!((&*p[0].measurement, &*p[0].field), ("md", "state"));
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("mdstat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
