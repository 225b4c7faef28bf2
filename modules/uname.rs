//! `uname`: the running kernel's identity, from `uname(2)`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `uname.info.<labels>` | | int | gauge | always 1; `<labels>` is the tags `domainname`, `machine`, `nodename`, `release`, `sysname`, `version` (the fields of `uname(2)`) joined by dots |
//!
//! As node_exporter's `uname` collector: `node_uname_info{domainname="(none)",machine="x86_64",
//! nodename="vm",release="6.18.44",sysname="Linux",version="#1 SMP …"} 1` (measurement
//! `uname`, field `info`). The call is made on every collection (the host name can change).
//! `uname(2)` is the running kernel's, so `host_root` does not apply. Called through rustix,
//! which badger already uses for the system calls libc's crate leaves unsafe.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "uname",
    aliases: &[],
    summary: "the running kernel's name, release and machine (uname(2))",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(_ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(Uname))
}

struct Uname;

/// The six fields as (label, value), in label order.
pub fn fields() -> [(&'static str, String); 6] {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    [
        ("domainname", s(u.domainname())),
        ("machine", s(u.machine())),
        ("nodename", s(u.nodename())),
        ("release", s(u.release())),
        ("sysname", s(u.sysname())),
        ("version", s(u.version())),
    ]
}

impl Module for Uname {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let f = fields();
        let tags: Vec<(&'static str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        out.push(crate::named_point("uname", "info", "", Value::Int(1), &tags));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture;

    /// The live kernel, checked against `/proc/sys/kernel/*`, which print the same strings.
    #[test]
    fn live_kernel() {
        let mut m = fixture::build(&SPEC, &Default::default(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        crate::assert_node_documented("uname", include_str!("uname.rs"), &p);
        assert_eq!(p.len(), 1);
        assert_eq!((&*p[0].measurement, &*p[0].field, p[0].value), ("uname", "info", Value::Int(1)));
        let k = |f: &str| std::fs::read_to_string(format!("/proc/sys/kernel/{f}")).unwrap().trim_end().to_string();
        let want: Vec<(String, String)> = [
            ("domainname", k("domainname")),
            ("machine", std::env::consts::ARCH.to_string()),
            ("nodename", k("hostname")),
            ("release", k("osrelease")),
            ("sysname", k("ostype")),
            ("version", k("version")),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect();
        let got: Vec<(String, String)> = p[0].tags.iter().map(|(a, b)| (a.to_string(), b.clone())).collect();
        assert_eq!(got, want);
    }
}
