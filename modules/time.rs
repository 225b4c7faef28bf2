//! `time`: the local time zone and the kernel's clock sources, from `localtime_r(3)` and `/sys/devices/system/clocksource`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `time.zone_offset_seconds.<time_zone>` | s | int | gauge | the local time zone's offset from UTC now (`+3600` for CET); tag `time_zone` is its abbreviation (`UTC`, `CET`) |
//! | `time.clocksource_available_info.<device>.<clocksource>` | | int | gauge | always 1, one per clock source the kernel offers (`available_clocksource` of `clocksource<device>`) |
//! | `time.clocksource_current_info.<device>.<clocksource>` | | int | gauge | always 1, for the clock source in use (`current_clocksource`) |
//!
//! As node_exporter's `time` collector (`node_time_zone_offset_seconds{time_zone}`,
//! `node_time_clocksource_available_info{clocksource,device}`,
//! `node_time_clocksource_current_info{clocksource,device}`). Its `node_time_seconds` is
//! already given by the prometheus emitter in node_exporter naming (the payload's time, when the
//! `system` module runs), so this module does not repeat it. The zone is the agent's own (its
//! `TZ`, else `/etc/localtime`, as the C library reads them), as node_exporter's is. Clock
//! sources in `clocksource<N>` number order, each file read whole (at most 4 KiB); a machine
//! without the directory gives the zone alone.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "time", aliases: &[], summary: "local time zone offset and the kernel's clock sources", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(Time { class: ctx.roots.sys_path("devices/system/clocksource") }))
}

struct Time {
    class: PathBuf,
}

const MAX_FILE: u64 = 4096;

/// The local zone's abbreviation and offset from UTC in seconds, now.
pub fn zone() -> Option<(String, i64)> {
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into `tm`, which lives
    // on this stack frame, and tm_zone then points at the C library's static zone names.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return None;
        }
        let name = if tm.tm_zone.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned()
        };
        Some((name, tm.tm_gmtoff))
    }
}

fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path).ok()?.take(MAX_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The `clocksource<N>` directories, by number.
fn devices(class: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(class) else { return Vec::new() };
    let mut v: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.strip_prefix("clocksource")?.parse().ok()?, e.path())))
        .collect();
    v.sort();
    v
}

impl Module for Time {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let (name, offset) = zone().ok_or_else(|| CollectError("localtime_r failed".into()))?;
        out.push(crate::named_point("time", "zone_offset_seconds", "s", Value::Int(offset), &[("time_zone", &name)]));
        for (n, dir) in devices(&self.class) {
            let device = n.to_string();
            if let Some(text) = read_small(&dir.join("available_clocksource")) {
                for cs in text.split_ascii_whitespace() {
                    let tags = [("device", device.as_str()), ("clocksource", cs)];
                    out.push(crate::named_point("time", "clocksource_available_info", "", Value::Int(1), &tags));
                }
            }
            if let Some(text) = read_small(&dir.join("current_clocksource")) {
                let cs = text.trim();
                if !cs.is_empty() {
                    let tags = [("device", device.as_str()), ("clocksource", cs)];
                    out.push(crate::named_point("time", "clocksource_current_info", "", Value::Int(1), &tags));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    /// The zone as `date` prints it (`+%Z %z`: `UTC +0000`), clock sources recomputed from the
    /// captured files.
    #[test]
    fn on_the_captured_tree() {
        let out = std::process::Command::new("date").arg("+%Z %z").output().expect("run date");
        let text = String::from_utf8(out.stdout).unwrap();
        let (abbr, z) = text.trim().split_once(' ').unwrap();
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let offset = sign * (z[1..3].parse::<i64>().unwrap() * 3600 + z[3..5].parse::<i64>().unwrap() * 60);
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("time", include_str!("time.rs"), &p);
            let rel = "sys/devices/system/clocksource/clocksource0";
            let mut want = vec![(format!("time.zone_offset_seconds.{abbr}"), Value::Int(offset))];
            for cs in fixture::read("vm-6.18", snap, &format!("{rel}/available_clocksource")).split_whitespace() {
                want.push((format!("time.clocksource_available_info.0.{cs}"), Value::Int(1)));
            }
            let current = fixture::read("vm-6.18", snap, &format!("{rel}/current_clocksource"));
            want.push((format!("time.clocksource_current_info.0.{}", current.trim()), Value::Int(1)));
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            assert_eq!(got, want, "{snap}");
            // The captured machine: tsc in use, kvm-clock also offered.
            assert_eq!(got.len(), 4);
            assert_eq!(got[3].0, "time.clocksource_current_info.0.tsc");
        }
        root.remove("sys/devices/system/clocksource");
        let p = fixture::collect(m.as_mut(), 2.0);
        assert_eq!(p.len(), 1);
    }
}
