//! `hwmon`: hardware sensors (temperatures, fans, voltages, currents, power) from `/sys/class/hwmon`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `hwmon.chip_names.<chip>.<chip_name>` | | int | gauge | always 1: the driver's name for the chip (its `name` file) |
//! | `hwmon.sensor_label.<chip>.<sensor>.<label>` | | int | gauge | always 1: the sensor's label (its `<sensor>_label` file) |
//! | `hwmon.<temp_field>.<chip>.<sensor>` | °C | float | gauge | `temp_celsius`: temperature (`tempN_input`, millidegrees / 1000); `temp_<property>_celsius`: a limit or state (`tempN_max`, `_crit`, `_crit_alarm`, …) |
//! | `hwmon.<fan_field>.<chip>.<sensor>` | rpm | float | gauge | `fan_rpm`: fan speed (`fanN_input`); `fan_min_rpm`, `fan_max_rpm`, `fan_target_rpm` |
//! | `hwmon.<in_field>.<chip>.<sensor>` | V | float | gauge | `in_volts` (`inN_input`, millivolts / 1000), `in_<property>_volts` (`inN_min`, …); also `cpu…_volts` |
//! | `hwmon.<curr_field>.<chip>.<sensor>` | A | float | gauge | `curr_amps`, `curr_<property>_amps`: current (milliamperes / 1000) |
//! | `hwmon.<power_field>.<chip>.<sensor>` | W | float | gauge | `power_watt`, `power_<property>_watt`: power (microwatts / 10⁶) |
//! | `hwmon.<interval_field>.<chip>.<sensor>` | s | float | gauge | `update_interval_seconds`, `power_average_interval…_seconds` (milliseconds / 1000) |
//! | `hwmon.energy_joule_total.<chip>.<sensor>` | J | float | counter | energy used since the chip started counting (microjoules / 10⁶) |
//! | `hwmon.<other_field>.<chip>.<sensor>` | | float | gauge | `<type>_alarm`, `<type>_fault` (1: alarm raised, sensor faulty), `<type>_beep_enabled`, `beep_enabled`, `voltage_regulator_version`, `humidity…` (ratio), `power_accuracy` (ratio), and any other numeric property (`fan_div`, `pwm`, `temp_type`, …) as read |
//!
//! Named as node_exporter 1.x's `hwmon` collector: measurement `hwmon`, field the metric name
//! without `node_hwmon_` (`temp_celsius`, `temp_crit_celsius`, `fan_rpm`, …), tags `chip` and
//! `sensor` (plus `chip_name` or `label` on the two info stats). A file
//! `<type><N>_<property>` of the chip's directory (or of its `device/` directory, where older
//! drivers put them) is sensor `<type><N>`; `_input` is the value itself. The types read are
//! node_exporter's: `in`, `cpu`, `fan`, `pwm`, `temp`, `curr`, `power`, `energy`, `humidity`,
//! `intrusion`, `beep_enable`, `vrm`, `update_interval` (a file that does not hold a number is
//! skipped). `chip` comes from the resolved `device` link: the name of its parent directory
//! and its own, as `platform_coretemp_0` or `pci0000:00_0000:00:18_3`; else the `name` file;
//! else `hwmonN`; each lowercased with characters other than `a-z0-9:_` made `_`. Chips are
//! in the order of their `hwmonN` names, sensors and properties in name order. A
//! host without `/sys/class/hwmon` (a VM) makes the module unavailable. At most `max_files`
//! files are read per collection.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_files` | `4096` | most sensor files read per collection, over all chips (the rest are left out, with a warning once a minute) |

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::throttle::LogThrottle;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "hwmon",
    aliases: &[],
    summary: "temperatures, fans, voltages and power (/sys/class/hwmon)",
    build,
};

fn default_max_files() -> usize {
    4096
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_files")]
    max_files: usize,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    let class = ctx.roots.sys_path("class/hwmon");
    fs::read_dir(&class).map_err(|e| BuildError::Unavailable(format!("{}: {e}", class.display())))?;
    Ok(Box::new(Hwmon { class, max_files: c.max_files, log: LogThrottle::default() }))
}

struct Hwmon {
    class: PathBuf,
    max_files: usize,
    log: LogThrottle,
}

const SENSOR_TYPES: &[&str] = &[
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// node_exporter's cleaning of a name: lowercase, `[^a-z0-9:_]` → `_`, `_` trimmed.
pub fn clean(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' { c } else { '_' })
        .collect();
    s.trim_matches('_').to_string()
}

/// Splits a file name `<type><N>_<property>` (`temp1_crit_alarm` → `("temp", "1",
/// "crit_alarm")`); `None` when the name has no type.
pub fn split_file(name: &str) -> Option<(&str, &str, &str)> {
    let digits = name.find(|c: char| c.is_ascii_digit()).unwrap_or(name.len());
    let (ty, rest) = name.split_at(digits);
    if ty.is_empty() {
        return None;
    }
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (num, prop) = rest.split_at(end);
    let prop = match prop.strip_prefix('_') {
        Some(p) => p,
        None if prop.is_empty() => "",
        // `beep_enable`, `update_interval`: the type holds the `_` (no number).
        None => return None,
    };
    Some((ty, num, prop))
}

/// The file's type, sensor and property when the type is one node_exporter reads. A name
/// without a number (`beep_enable`, `update_interval`, `vrm`) is a sensor of its own, number 0.
fn sensor_of(name: &str) -> Option<(&'static str, String, String)> {
    let (ty, num, prop) = match split_file(name) {
        Some((ty, num, prop)) if SENSOR_TYPES.contains(&ty) => (ty, num, prop),
        _ if SENSOR_TYPES.contains(&name) => (name, "", ""),
        _ => return None,
    };
    let ty = SENSOR_TYPES.iter().find(|t| **t == ty)?;
    let num = if num.is_empty() { "0" } else { num };
    Some((ty, format!("{ty}{num}"), prop.to_string()))
}

/// The chip label as node_exporter 1.x derives it.
fn chip_name(dir: &Path) -> Option<String> {
    if let Ok(dev) = fs::canonicalize(dir.join("device")) {
        let name = dev.file_name().map(|n| clean(&n.to_string_lossy())).unwrap_or_default();
        let parent = dev.parent().and_then(Path::file_name).map(|n| clean(&n.to_string_lossy())).unwrap_or_default();
        match (parent.is_empty(), name.is_empty()) {
            (false, false) => return Some(format!("{parent}_{name}")),
            (true, false) => return Some(name),
            _ => {}
        }
    }
    if let Ok(name) = fs::read_to_string(dir.join("name")) {
        let c = clean(name.trim_end_matches('\n'));
        if !c.is_empty() {
            return Some(c);
        }
    }
    let real = fs::canonicalize(dir).ok()?;
    let c = clean(&real.file_name()?.to_string_lossy());
    (!c.is_empty()).then_some(c)
}

/// A sensor's property as a point: node_exporter's field name, units and scale.
pub fn property_point(ty: &str, prop: &str, has_bare: bool, raw: f64) -> (String, &'static str, f64, bool) {
    let mut name = ty.to_string();
    match prop {
        "input" if has_bare => name.push_str("_input"),
        "input" | "" => {}
        p => {
            name.push('_');
            name.push_str(&clean(p));
        }
    }
    match (ty, prop) {
        ("beep_enable", _) => ("beep_enabled".into(), "", f64::from(u8::from(raw == 1.0)), false),
        ("vrm", _) => ("voltage_regulator_version".into(), "", raw, false),
        ("update_interval", _) => ("update_interval_seconds".into(), "s", raw / 1000.0, false),
        (_, "fault" | "alarm") => (name, "", raw, false),
        (_, "beep") => (name + "_enabled", "", raw, false),
        ("in" | "cpu", _) => (name + "_volts", "V", raw / 1000.0, false),
        ("temp", p) if p != "type" => (name + "_celsius", "°C", raw / 1000.0, false),
        ("curr", _) => (name + "_amps", "A", raw / 1000.0, false),
        ("energy", _) => (name + "_joule_total", "J", raw / 1e6, true),
        ("power", "accuracy") => (name, "", raw / 1e6, false),
        ("power", "average_interval" | "average_interval_min" | "average_interval_max") => {
            (name + "_seconds", "s", raw / 1000.0, false)
        }
        ("power", _) => (name + "_watt", "W", raw / 1e6, false),
        ("humidity", _) => (name, "", raw / 1e6, false),
        ("fan", "input" | "min" | "max" | "target") => (name + "_rpm", "rpm", raw, false),
        _ => (name, "", raw, false),
    }
}

impl Hwmon {
    fn chip(&self, dir: &Path, budget: &mut usize, out: &mut Vec<Point>) {
        let Some(chip) = chip_name(dir) else { return };
        // sensor → property → text
        let mut data: BTreeMap<String, (&'static str, BTreeMap<String, String>)> = BTreeMap::new();
        for d in [dir.to_path_buf(), dir.join("device")] {
            let Ok(entries) = fs::read_dir(&d) else { continue };
            let mut names: Vec<String> =
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for name in names {
                let Some((ty, sensor, prop)) = sensor_of(&name) else { continue };
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
                let Ok(text) = fs::read_to_string(d.join(&name)) else { continue };
                data.entry(sensor)
                    .or_insert((ty, BTreeMap::new()))
                    .1
                    .insert(prop, text.trim_end_matches('\n').to_string());
            }
        }
        if let Ok(name) = fs::read_to_string(dir.join("name")) {
            let n = clean(name.trim_end_matches('\n'));
            if !n.is_empty() {
                out.push(crate::named_point(
                    "hwmon",
                    "chip_names",
                    "",
                    Value::Int(1),
                    &[("chip", &chip), ("chip_name", &n)],
                ));
            }
        }
        for (sensor, (ty, props)) in &data {
            if let Some(label) = props.get("label") {
                let tags = [("chip", chip.as_str()), ("sensor", sensor.as_str()), ("label", label.trim())];
                out.push(crate::named_point("hwmon", "sensor_label", "", Value::Int(1), &tags));
            }
            let has_bare = props.contains_key("");
            for (prop, text) in props {
                if prop == "label" {
                    continue;
                }
                let Ok(raw) = text.trim().parse::<f64>() else { continue };
                let (field, units, v, counter) = property_point(ty, prop, has_bare, raw);
                let p =
                    crate::named_point("hwmon", &field, units, Value::Float(v), &[("chip", &chip), ("sensor", sensor)]);
                out.push(if counter { p.counter() } else { p });
            }
        }
    }
}

impl Module for Hwmon {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let entries = fs::read_dir(&self.class).map_err(|e| CollectError::io(&self.class, e))?;
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        let mut budget = self.max_files;
        for dir in dirs {
            self.chip(&dir, &mut budget, out);
        }
        if budget == 0 {
            if let Some(more) = self.log.allow() {
                log::warn!(
                    "module \"hwmon\": more than max_files ({}) sensor files; the rest are left out ({more} more not logged)",
                    self.max_files
                );
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

    #[test]
    fn names_and_files() {
        assert_eq!(clean("coretemp.0"), "coretemp_0");
        assert_eq!(clean("Package id 0\n"), "package_id_0");
        assert_eq!(split_file("temp1_crit_alarm"), Some(("temp", "1", "crit_alarm")));
        assert_eq!(split_file("fan2_input"), Some(("fan", "2", "input")));
        assert_eq!(split_file("pwm1"), Some(("pwm", "1", "")));
        assert_eq!(sensor_of("update_interval"), Some(("update_interval", "update_interval0".into(), String::new())));
        assert_eq!(sensor_of("uevent"), None);
        assert_eq!(sensor_of("name"), None);
        assert_eq!(property_point("temp", "input", false, 45000.0), ("temp_celsius".into(), "°C", 45.0, false));
        assert_eq!(
            property_point("temp", "crit_alarm", false, 0.0),
            ("temp_crit_alarm_celsius".into(), "°C", 0.0, false)
        );
        assert_eq!(property_point("fan", "alarm", false, 1.0), ("fan_alarm".into(), "", 1.0, false));
        assert_eq!(property_point("energy", "input", false, 2.5e6), ("energy_joule_total".into(), "J", 2.5, true));
        assert_eq!(property_point("pwm", "", false, 128.0), ("pwm".into(), "", 128.0, false));
    }

    /// Synthetic sysfs (tests/fixtures/linux-4.19-synth/README.md): `hwmon0` is `acpitz`
    /// without a device link, `hwmon1` coretemp on `platform/coretemp.0`, `hwmon2` an
    /// nct6779 on `platform/nct6775.656`.
    #[test]
    fn on_the_synthetic_sysfs() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("hwmon", include_str!("hwmon.rs"), &p);
            let dev = |rel: &str| -> f64 {
                fixture::read("linux-4.19-synth", snap, &format!("sys/devices/{rel}")).trim().parse().unwrap()
            };
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            let f = |n: &str, v: f64| (n.to_string(), Value::Float(v));
            let ct = "platform/coretemp.0/hwmon/hwmon1";
            let nc = "platform/nct6775.656/hwmon/hwmon2";
            assert_eq!(
                got,
                [
                    ("hwmon.chip_names.acpitz.acpitz".to_string(), Value::Int(1)),
                    f(
                        "hwmon.temp_celsius.acpitz.temp1",
                        dev("virtual/thermal/thermal_zone0/hwmon0/temp1_input") / 1000.0
                    ),
                    ("hwmon.chip_names.platform_coretemp_0.coretemp".to_string(), Value::Int(1)),
                    ("hwmon.sensor_label.platform_coretemp_0.temp1.Package id 0".to_string(), Value::Int(1)),
                    f("hwmon.temp_crit_celsius.platform_coretemp_0.temp1", 100.0),
                    f("hwmon.temp_crit_alarm_celsius.platform_coretemp_0.temp1", 0.0),
                    f("hwmon.temp_celsius.platform_coretemp_0.temp1", dev(&format!("{ct}/temp1_input")) / 1000.0),
                    f("hwmon.temp_max_celsius.platform_coretemp_0.temp1", 84.0),
                    ("hwmon.sensor_label.platform_coretemp_0.temp2.Core 0".to_string(), Value::Int(1)),
                    f("hwmon.temp_crit_celsius.platform_coretemp_0.temp2", 100.0),
                    f("hwmon.temp_celsius.platform_coretemp_0.temp2", dev(&format!("{ct}/temp2_input")) / 1000.0),
                    f("hwmon.temp_max_celsius.platform_coretemp_0.temp2", 84.0),
                    ("hwmon.chip_names.platform_nct6775_656.nct6779".to_string(), Value::Int(1)),
                    f("hwmon.fan_alarm.platform_nct6775_656.fan1", 0.0),
                    f("hwmon.fan_rpm.platform_nct6775_656.fan1", dev(&format!("{nc}/fan1_input"))),
                    f("hwmon.fan_min_rpm.platform_nct6775_656.fan1", 300.0),
                    f("hwmon.fan_rpm.platform_nct6775_656.fan2", 0.0),
                    ("hwmon.sensor_label.platform_nct6775_656.in0.Vcore".to_string(), Value::Int(1)),
                    f("hwmon.in_volts.platform_nct6775_656.in0", dev(&format!("{nc}/in0_input")) / 1000.0),
                    f("hwmon.in_max_volts.platform_nct6775_656.in0", 1.744),
                ],
                "{snap}"
            );
            assert!(p.iter().all(|p| p.kind == Kind::Gauge));
            let t = fixture::find(&p, "hwmon.temp_celsius.platform_coretemp_0.temp1").unwrap();
            assert_eq!(
                t.tags,
                [("chip".into(), "platform_coretemp_0".to_string()), ("sensor".into(), "temp1".to_string())]
            );
        }
    }

    #[test]
    fn budget_and_no_hwmon() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"max_files": 1}"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p), ["hwmon.chip_names.acpitz.acpitz", "hwmon.temp_celsius.acpitz.temp1"]);
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("class/hwmon"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
