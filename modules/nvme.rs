//! `nvme`: identity and state of NVMe controllers, from `/sys/class/nvme`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `nvme.info.<device>.<firmware_revision>.<model>.<serial>.<state>` | | int | gauge | always 1, one per controller: its firmware revision, model, serial number and state (`live`, `resetting`, `dead`, …) as tags |
//!
//! As node_exporter's `nvme` collector (`node_nvme_info{device="nvme0",firmware_revision="…",model="…",serial="…",state="live"}`):
//! measurement `nvme`, field `info`, tags in that order, each the controller's sysfs file
//! (`firmware_rev`, `model`, `serial`, `state`) with the padding spaces the kernel leaves
//! trimmed. A controller whose files cannot be read is left out. Controllers are in name
//! order. A host without `/sys/class/nvme` makes the module unavailable.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "nvme",
    aliases: &[],
    summary: "NVMe controller model, serial, firmware and state (/sys/class/nvme)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let class = ctx.roots.sys_path("class/nvme");
    fs::read_dir(&class).map_err(|e| BuildError::Unavailable(format!("{}: {e}", class.display())))?;
    Ok(Box::new(Nvme { class }))
}

struct Nvme {
    class: PathBuf,
}

impl Module for Nvme {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let entries = fs::read_dir(&self.class).map_err(|e| CollectError::io(&self.class, e))?;
        let mut devs: Vec<(String, PathBuf)> =
            entries.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect();
        devs.sort();
        for (dev, dir) in devs {
            let read = |f: &str| fs::read_to_string(dir.join(f)).ok().map(|t| t.trim().to_string());
            let (Some(fw), Some(model), Some(serial), Some(state)) =
                (read("firmware_rev"), read("model"), read("serial"), read("state"))
            else {
                continue;
            };
            let tags = [
                ("device", dev.as_str()),
                ("firmware_revision", fw.as_str()),
                ("model", model.as_str()),
                ("serial", serial.as_str()),
                ("state", state.as_str()),
            ];
            out.push(crate::named_point("nvme", "info", "", Value::Int(1), &tags));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// Synthetic `sys/class/nvme/nvme0` (tests/fixtures/linux-4.19-synth/README.md).
    #[test]
    fn on_the_synthetic_sysfs() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        crate::assert_node_documented("nvme", include_str!("nvme.rs"), &p);
        assert_eq!(fixture::names(&p), ["nvme.info.nvme0.1B2QEXP7.Samsung SSD 970 PRO 512GB.S680HF8N190894I.live"]);
        let tags: Vec<(&str, &str)> = p[0].tags.iter().map(|(k, v)| (&**k, v.as_str())).collect();
        assert_eq!(
            tags,
            [
                ("device", "nvme0"),
                ("firmware_revision", "1B2QEXP7"),
                ("model", "Samsung SSD 970 PRO 512GB"),
                ("serial", "S680HF8N190894I"),
                ("state", "live")
            ]
        );
        assert_eq!(p[0].value, Value::Int(1));
        // The files as written hold the kernel's padding.
        let model = fixture::read("linux-4.19-synth", "t0", "sys/devices/pci0000:00/0000:00:06.0/nvme/nvme0/model");
        assert!(model.ends_with("512GB               \n"));
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("class/nvme"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
