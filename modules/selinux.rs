//! `selinux`: whether SELinux is on, and its mode, from `/sys/fs/selinux` and `/etc/selinux/config`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `selinux.enabled` | | int | gauge | 1 when SELinux is on (`/sys/fs/selinux/enforce` can be read), else 0 |
//! | `selinux.current_mode` | | int | gauge | only when on: 1 enforcing, 0 permissive (`/sys/fs/selinux/enforce`) |
//! | `selinux.config_mode` | | int | gauge | only when on and `/etc/selinux/config` (under `host_root`) says: 1 `enforcing`, 0 `permissive`, −1 `disabled` |
//!
//! As node_exporter's `selinux` collector (`node_selinux_enabled`, `node_selinux_current_mode`,
//! `node_selinux_config_mode`); a host without SELinux gives `selinux.enabled 0` alone. The
//! config file is read whole, at most 64 KiB.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "selinux", aliases: &[], summary: "whether SELinux is on, and its mode", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(Selinux {
        enforce: ctx.roots.sys_path("fs/selinux/enforce"),
        config: ctx.roots.host.join("etc/selinux/config"),
    }))
}

struct Selinux {
    enforce: PathBuf,
    config: PathBuf,
}

const MAX_CONFIG: u64 = 64 * 1024;

/// The `SELINUX=` mode of `/etc/selinux/config`: 1 enforcing, 0 permissive, −1 disabled.
pub fn config_mode(text: &str) -> Option<i64> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("SELINUX="))?;
    match value.trim().trim_matches('"') {
        "enforcing" => Some(1),
        "permissive" => Some(0),
        "disabled" => Some(-1),
        _ => None,
    }
}

impl Module for Selinux {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let current = fs::read_to_string(&self.enforce).ok().and_then(|t| t.trim().parse::<i64>().ok());
        let Some(current) = current else {
            out.push(Point::simple("selinux", "enabled", "", Value::Int(0)));
            return Ok(());
        };
        out.push(Point::simple("selinux", "enabled", "", Value::Int(1)));
        let mut text = String::new();
        let config = fs::File::open(&self.config)
            .and_then(|f| f.take(MAX_CONFIG).read_to_string(&mut text))
            .ok()
            .and_then(|_| config_mode(&text));
        if let Some(mode) = config {
            out.push(Point::simple("selinux", "config_mode", "", Value::Int(mode)));
        }
        out.push(Point::simple("selinux", "current_mode", "", Value::Int(current)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn config_modes() {
        assert_eq!(config_mode("# x\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"), Some(1));
        assert_eq!(config_mode("SELINUX=permissive"), Some(0));
        assert_eq!(config_mode("SELINUX=disabled\n"), Some(-1));
        assert_eq!(config_mode("SELINUX=maybe\n"), None);
        assert_eq!(config_mode(""), None);
    }

    #[test]
    fn off_then_on() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        fixture::assert_documented(include_str!("selinux.rs"), &p);
        let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
        assert_eq!(got, [("selinux.enabled", Value::Int(0))]);
        root.write("sys/fs/selinux/enforce", "0");
        let p = fixture::collect(m.as_mut(), 1.0);
        let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
        assert_eq!(got, [("selinux.enabled", Value::Int(1)), ("selinux.current_mode", Value::Int(0))]);
        root.write("host/etc/selinux/config", "SELINUX=enforcing\n");
        root.write("sys/fs/selinux/enforce", "1\n");
        let p = fixture::collect(m.as_mut(), 2.0);
        fixture::assert_documented(include_str!("selinux.rs"), &p);
        let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
        assert_eq!(
            got,
            [
                ("selinux.enabled", Value::Int(1)),
                ("selinux.config_mode", Value::Int(1)),
                ("selinux.current_mode", Value::Int(1))
            ]
        );
    }
}
