//! `edac`: memory error counts of the EDAC memory controllers, from `/sys/devices/system/edac/mc`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `edac.correctable_errors_total.<controller>` | | int | counter | errors the controller corrected since boot (`mc<N>/ce_count`) |
//! | `edac.uncorrectable_errors_total.<controller>` | | int | counter | errors it could not correct (`ue_count`) |
//! | `edac.csrow_correctable_errors_total.<controller>.<csrow>` | | int | counter | corrected errors on chip-select row `<csrow>` (`csrow<M>/ce_count`); `unknown` for those the controller could not place (`ce_noinfo_count`) |
//! | `edac.csrow_uncorrectable_errors_total.<controller>.<csrow>` | | int | counter | the same for uncorrected errors |
//!
//! As node_exporter's `edac` collector (`node_edac_correctable_errors_total{controller="0"}`,
//! `node_edac_csrow_correctable_errors_total{controller="0",csrow="unknown"}`, …): measurement
//! `edac`, tags `controller` (the number of `mc<N>`) and `csrow`. Controllers and rows in
//! number order; a file that cannot be read gives no point. A host without EDAC (a VM, or
//! no driver for its memory controller) makes the module unavailable. Counters: the legacy
//! emitters do not show them; the Prometheus and OTLP formats do.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "edac", aliases: &[], summary: "memory controller error counts (EDAC, sysfs)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let dir = ctx.roots.sys_path("devices/system/edac/mc");
    if numbered(&dir, "mc").is_empty() {
        return Err(BuildError::Unavailable(format!("{}: no memory controller (mc<N>)", dir.display())));
    }
    Ok(Box::new(Edac { dir }))
}

struct Edac {
    dir: PathBuf,
}

/// The entries `<prefix><N>` of a directory, by number.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?, e.path())))
        .collect();
    v.sort();
    v
}

fn count(dir: &Path, file: &str) -> Option<i64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

impl Module for Edac {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        for (n, mc) in numbered(&self.dir, "mc") {
            let controller = n.to_string();
            let c = controller.as_str();
            let mut push = |field: &str, v: Option<i64>, csrow: Option<&str>| {
                let Some(v) = v else { return };
                let p = match csrow {
                    None => crate::named_point("edac", field, "", Value::Int(v), &[("controller", c)]),
                    Some(r) => crate::named_point("edac", field, "", Value::Int(v), &[("controller", c), ("csrow", r)]),
                };
                out.push(p.counter());
            };
            push("correctable_errors_total", count(&mc, "ce_count"), None);
            push("uncorrectable_errors_total", count(&mc, "ue_count"), None);
            push("csrow_correctable_errors_total", count(&mc, "ce_noinfo_count"), Some("unknown"));
            push("csrow_uncorrectable_errors_total", count(&mc, "ue_noinfo_count"), Some("unknown"));
            for (r, row) in numbered(&mc, "csrow") {
                let r = r.to_string();
                push("csrow_correctable_errors_total", count(&row, "ce_count"), Some(&r));
                push("csrow_uncorrectable_errors_total", count(&row, "ue_count"), Some(&r));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// Synthetic `mc0` with two csrows (tests/fixtures/linux-4.19-synth/README.md).
    #[test]
    fn on_the_synthetic_sysfs() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("edac", include_str!("edac.rs"), &p);
            assert!(p.iter().all(|p| p.kind == Kind::Counter));
            let n = |f: &str| {
                let t = fixture::read("linux-4.19-synth", snap, &format!("sys/devices/system/edac/mc/mc0/{f}"));
                Value::Int(t.trim().parse().unwrap())
            };
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            let s = |x: &str| x.to_string();
            assert_eq!(
                got,
                [
                    (s("edac.correctable_errors_total.0"), n("ce_count")),
                    (s("edac.uncorrectable_errors_total.0"), n("ue_count")),
                    (s("edac.csrow_correctable_errors_total.0.unknown"), n("ce_noinfo_count")),
                    (s("edac.csrow_uncorrectable_errors_total.0.unknown"), n("ue_noinfo_count")),
                    (s("edac.csrow_correctable_errors_total.0.0"), n("csrow0/ce_count")),
                    (s("edac.csrow_uncorrectable_errors_total.0.0"), n("csrow0/ue_count")),
                    (s("edac.csrow_correctable_errors_total.0.1"), n("csrow1/ce_count")),
                    (s("edac.csrow_uncorrectable_errors_total.0.1"), n("csrow1/ue_count")),
                ],
                "{snap}"
            );
        }
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("edac/mc"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
