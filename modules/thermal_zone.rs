//! `thermal_zone`: thermal zone temperatures and cooling device states from `/sys/class/thermal`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `thermal_zone.temp.<zone>.<type>` | °C | float | gauge | temperature of thermal zone `thermal_zone<zone>` (its `temp`, millidegrees / 1000); `<type>` is its `type` (`acpitz`, `x86_pkg_temp`, …) |
//! | `thermal_zone.cur_state.<name>.<type>` | | int | gauge | current throttle state of cooling device `cooling_device<name>` (0 = not cooling) |
//! | `thermal_zone.max_state.<name>.<type>` | | int | gauge | its highest state |
//!
//! As node_exporter's `thermal_zone` collector: `node_thermal_zone_temp{zone="0",type="acpitz"}`
//! is measurement `thermal_zone`, field `temp`, tags `zone` and `type`;
//! `node_cooling_device_cur_state{name="0",type="Processor"}` and `…_max_state` are
//! measurement `cooling_device`, tags `name` and `type`. Zones, then cooling devices, in
//! number order. A zone or device whose files cannot be read (some drivers fail reads of
//! `temp` while the sensor sleeps) is left out of that collection. A host without
//! `/sys/class/thermal` makes the module unavailable; one with an empty directory (a VM)
//! gives no points.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "thermal_zone",
    aliases: &[],
    summary: "thermal zone temperatures and cooling devices (/sys/class/thermal)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let class = ctx.roots.sys_path("class/thermal");
    fs::read_dir(&class).map_err(|e| BuildError::Unavailable(format!("{}: {e}", class.display())))?;
    Ok(Box::new(ThermalZone { class }))
}

struct ThermalZone {
    class: PathBuf,
}

/// The entries `<prefix><N>` of the directory, by number.
fn numbered(class: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(class) else { return Vec::new() };
    let mut v: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

fn text(dir: &Path, file: &str) -> Option<String> {
    let t = fs::read_to_string(dir.join(file)).ok()?;
    Some(t.trim_end_matches('\n').to_string())
}

fn int(dir: &Path, file: &str) -> Option<i64> {
    text(dir, file)?.trim().parse().ok()
}

impl Module for ThermalZone {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        fs::read_dir(&self.class).map_err(|e| CollectError::io(&self.class, e))?;
        for (n, dir) in numbered(&self.class, "thermal_zone") {
            let (Some(ty), Some(temp)) = (text(&dir, "type"), int(&dir, "temp")) else { continue };
            let zone = n.to_string();
            let tags = [("zone", zone.as_str()), ("type", ty.as_str())];
            out.push(crate::module_point(
                "thermal_zone",
                "thermal_zone",
                "temp",
                "°C",
                Value::Float(temp as f64 / 1000.0),
                &tags,
            ));
        }
        for (n, dir) in numbered(&self.class, "cooling_device") {
            let (Some(ty), Some(cur), Some(max)) = (text(&dir, "type"), int(&dir, "cur_state"), int(&dir, "max_state"))
            else {
                continue;
            };
            let name = n.to_string();
            let tags = [("name", name.as_str()), ("type", ty.as_str())];
            out.push(crate::module_point("thermal_zone", "cooling_device", "cur_state", "", Value::Int(cur), &tags));
            out.push(crate::module_point("thermal_zone", "cooling_device", "max_state", "", Value::Int(max), &tags));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// Synthetic sysfs (tests/fixtures/linux-4.19-synth/README.md).
    #[test]
    fn on_the_synthetic_sysfs() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("thermal_zone", include_str!("thermal_zone.rs"), &p);
            let read =
                |rel: &str| fixture::read("linux-4.19-synth", snap, &format!("sys/devices/virtual/thermal/{rel}"));
            let milli = |rel: &str| read(rel).trim().parse::<f64>().unwrap() / 1000.0;
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(
                got,
                [
                    ("thermal_zone.temp.0.acpitz".to_string(), Value::Float(milli("thermal_zone0/temp"))),
                    ("thermal_zone.temp.1.x86_pkg_temp".to_string(), Value::Float(milli("thermal_zone1/temp"))),
                    (
                        "thermal_zone.cur_state.0.Processor".to_string(),
                        Value::Int(read("cooling_device0/cur_state").trim().parse().unwrap())
                    ),
                    ("thermal_zone.max_state.0.Processor".to_string(), Value::Int(10)),
                ],
                "{snap}"
            );
            assert_eq!((&*p[0].measurement, &*p[0].field), ("thermal_zone", "temp"));
            assert_eq!((&*p[2].measurement, &*p[2].field), ("cooling_device", "cur_state"));
            assert_eq!(p[2].tags, [("name".into(), "0".to_string()), ("type".into(), "Processor".to_string())]);
        }
        // A zone whose temp cannot be read is left out.
        root.remove("sys/devices/virtual/thermal/thermal_zone1/temp");
        let p = fixture::collect(m.as_mut(), 2.0);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn without_sysfs_class() {
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("class/thermal"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
