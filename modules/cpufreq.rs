//! `cpufreq`: CPU clock frequencies and their limits, from `/sys/devices/system/cpu/cpu<N>/cpufreq`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `cpufreq.frequency_hertz.<cpu>` | Hz | float | gauge | the frequency the hardware reports (`cpuinfo_cur_freq`, kHz × 1000; readable by root only on most drivers) |
//! | `cpufreq.frequency_max_hertz.<cpu>` | Hz | float | gauge | the highest frequency the CPU supports (`cpuinfo_max_freq`) |
//! | `cpufreq.frequency_min_hertz.<cpu>` | Hz | float | gauge | the lowest (`cpuinfo_min_freq`) |
//! | `cpufreq.scaling_frequency_hertz.<cpu>` | Hz | float | gauge | the frequency the governor last set (`scaling_cur_freq`) |
//! | `cpufreq.scaling_frequency_max_hertz.<cpu>` | Hz | float | gauge | the governor's upper limit (`scaling_max_freq`) |
//! | `cpufreq.scaling_frequency_min_hertz.<cpu>` | Hz | float | gauge | the governor's lower limit (`scaling_min_freq`) |
//!
//! As node_exporter's `cpufreq` collector: measurement `cpu`, fields as
//! `node_cpu_frequency_hertz{cpu="0"}` etc., tag `cpu` the CPU number. A file that is
//! missing or unreadable gives no point. CPUs in number order. A host whose CPUs have no
//! `cpufreq` directory (a VM) makes the module unavailable.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "cpufreq", aliases: &[], summary: "CPU frequencies and limits (sysfs cpufreq)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// Each file with its field.
const FILES: &[(&str, &str)] = &[
    ("cpuinfo_cur_freq", "frequency_hertz"),
    ("cpuinfo_max_freq", "frequency_max_hertz"),
    ("cpuinfo_min_freq", "frequency_min_hertz"),
    ("scaling_cur_freq", "scaling_frequency_hertz"),
    ("scaling_max_freq", "scaling_frequency_max_hertz"),
    ("scaling_min_freq", "scaling_frequency_min_hertz"),
];

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let dir = ctx.roots.sys_path("devices/system/cpu");
    let mut cpus: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
        .map_err(|e| BuildError::Unavailable(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
            let freq = e.path().join("cpufreq");
            freq.is_dir().then_some((n, freq))
        })
        .collect();
    cpus.sort();
    if cpus.is_empty() {
        return Err(BuildError::Unavailable(format!("{}: no cpu<N>/cpufreq directory", dir.display())));
    }
    let cpus = cpus
        .into_iter()
        .map(|(n, d)| (n.to_string(), FILES.iter().map(|(f, field)| (ProcFile::new(d.join(f)), *field)).collect()))
        .collect();
    Ok(Box::new(Cpufreq { cpus }))
}

struct Cpufreq {
    cpus: Vec<(String, Vec<(ProcFile, &'static str)>)>,
}

impl Module for Cpufreq {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        for (cpu, files) in &mut self.cpus {
            for (file, field) in files {
                let Ok(text) = file.read() else { continue };
                let Ok(khz) = text.trim().parse::<f64>() else { continue };
                out.push(crate::module_point(
                    "cpufreq",
                    "cpu",
                    field,
                    "Hz",
                    Value::Float(khz * 1000.0),
                    &[("cpu", cpu)],
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// linux-4.19-synth: `cpu0/cpufreq` with `scaling_cur_freq` 2.5 GHz then 1.7 GHz and
    /// synthetic limits; no `cpuinfo_cur_freq` (root-only on most drivers).
    #[test]
    fn on_the_synthetic_tree() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("cpufreq", include_str!("cpufreq.rs"), &p);
            let hz = |f: &str| {
                let t = fixture::read("linux-4.19-synth", snap, &format!("sys/devices/system/cpu/cpu0/cpufreq/{f}"));
                Value::Float(t.trim().parse::<f64>().unwrap() * 1000.0)
            };
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(
                got,
                [
                    ("cpufreq.frequency_max_hertz.0".to_string(), hz("cpuinfo_max_freq")),
                    ("cpufreq.frequency_min_hertz.0".to_string(), hz("cpuinfo_min_freq")),
                    ("cpufreq.scaling_frequency_hertz.0".to_string(), hz("scaling_cur_freq")),
                    ("cpufreq.scaling_frequency_max_hertz.0".to_string(), hz("scaling_max_freq")),
                    ("cpufreq.scaling_frequency_min_hertz.0".to_string(), hz("scaling_min_freq")),
                ],
                "{snap}"
            );
            assert_eq!(&*p[0].measurement, "cpu");
        }
        assert_eq!(fixture::float(&fixture::collect(m.as_mut(), 2.0), "cpufreq.scaling_frequency_hertz.0"), 1.7e9);
        let vm = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &vm.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("devices/system/cpu"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
