//! `netclass`: each network interface's settings and link state, from `/sys/class/net/<iface>/`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `netclass.up.<device>` | | int | gauge | 1 when the interface's `operstate` is `up`, else 0 |
//! | `netclass.info.<labels>` | | int | gauge | always 1; `<labels>` is the tags `address`, `broadcast`, `device`, `duplex`, `ifalias`, `operstate` joined by dots (a tag is empty when the kernel refuses the read: `lo` has no `duplex`) |
//! | `netclass.address_assign_type.<device>` | | int | gauge | how the MAC address was chosen (`addr_assign_type`: 0 permanent, 1 random, 2 stolen, 3 set) |
//! | `netclass.carrier.<device>` | | int | gauge | 1 when the link has a carrier (`carrier`) |
//! | `netclass.carrier_changes_total.<device>` | | int | counter | carrier changes since the interface came up (`carrier_changes`) |
//! | `netclass.carrier_up_changes_total.<device>` | | int | counter | carrier up events (`carrier_up_count`) |
//! | `netclass.carrier_down_changes_total.<device>` | | int | counter | carrier down events (`carrier_down_count`) |
//! | `netclass.device_id.<device>` | | int | gauge | `dev_id` (ports sharing one address tell apart by it) |
//! | `netclass.dormant.<device>` | | int | gauge | 1 when the interface waits for an external event (`dormant`) |
//! | `netclass.flags.<device>` | | int | gauge | the interface flags (`flags`, `IFF_UP` = 1, …) |
//! | `netclass.iface_id.<device>` | | int | gauge | the interface index (`ifindex`) |
//! | `netclass.iface_link.<device>` | | int | gauge | the index of the interface it is linked to (`iflink`) |
//! | `netclass.iface_link_mode.<device>` | | int | gauge | `link_mode` (0 default, 1 dormant) |
//! | `netclass.mtu_bytes.<device>` | B | int | gauge | the MTU (`mtu`) |
//! | `netclass.name_assign_type.<device>` | | int | gauge | how the name was chosen (`name_assign_type`: 1 enumerated, 2 predictable, 3 by user, 4 renamed) |
//! | `netclass.net_dev_group.<device>` | | int | gauge | the device group (`netdev_group`) |
//! | `netclass.speed_bytes.<device>` | B/s | int | gauge | the link speed in bytes per second (`speed` Mbit/s × 125000; −125000 when the driver says −1, unknown) |
//! | `netclass.transmit_queue_length.<device>` | | int | gauge | the transmit queue length (`tx_queue_len`) |
//! | `netclass.protocol_type.<device>` | | int | gauge | the hardware type (`type`: 1 Ethernet, 772 loopback, …) |
//!
//! As node_exporter 1.5's `netclass` collector: measurement `network` (`node_network_up`,
//! `node_network_info`, `node_network_mtu_bytes`, …), tag `device`, every interface of
//! `/sys/class/net` in name order (a regular file there, `bonding_masters`, is not one). A
//! file the kernel refuses to read (`speed` and `duplex` of a virtual interface, `carrier` of
//! an interface that is down: `EINVAL`) or that does not hold a number leaves that one stat
//! out, as node_exporter does; numbers in hex (`flags`, `dev_id`: `0x1003`) are read as such.
//! Each file is read whole, at most 4 KiB. A host without `/sys/class/net` makes the module
//! unavailable.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "netclass",
    aliases: &[],
    summary: "network interface settings and link state (/sys/class/net)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let class = ctx.roots.sys_path("class/net");
    fs::read_dir(&class).map_err(|e| BuildError::Unavailable(format!("{}: {e}", class.display())))?;
    Ok(Box::new(Netclass { class }))
}

struct Netclass {
    class: PathBuf,
}

/// The numeric files after `up` and `info`, in node_exporter's order: (file, field, units,
/// counter).
const NUMBERS: &[(&str, &str, &str, bool)] = &[
    ("addr_assign_type", "address_assign_type", "", false),
    ("carrier", "carrier", "", false),
    ("carrier_changes", "carrier_changes_total", "", true),
    ("carrier_up_count", "carrier_up_changes_total", "", true),
    ("carrier_down_count", "carrier_down_changes_total", "", true),
    ("dev_id", "device_id", "", false),
    ("dormant", "dormant", "", false),
    ("flags", "flags", "", false),
    ("ifindex", "iface_id", "", false),
    ("iflink", "iface_link", "", false),
    ("link_mode", "iface_link_mode", "", false),
    ("mtu", "mtu_bytes", "B", false),
    ("name_assign_type", "name_assign_type", "", false),
    ("netdev_group", "net_dev_group", "", false),
    ("speed", "speed_bytes", "B/s", false),
    ("tx_queue_len", "transmit_queue_length", "", false),
    ("type", "protocol_type", "", false),
];

/// The most read of one sysfs attribute (they are one short line).
const MAX_FILE: u64 = 4096;

/// A sysfs attribute's text without its newline, or `None` when it cannot be read.
pub fn read_attr(path: &Path) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path).ok()?.take(MAX_FILE).read_to_string(&mut text).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

/// A sysfs number as the kernel prints it: decimal, or hex with `0x` (`flags`).
pub fn parse_number(text: &str) -> Option<i64> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// The interface names of the class directory, sorted. Regular files are not interfaces
/// (`bonding_masters`, there while the bonding driver is loaded).
fn interfaces(class: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names: Vec<String> = fs::read_dir(class)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

fn point(field: &str, units: &'static str, value: i64, device: &str) -> Point {
    crate::module_point("netclass", "network", field, units, Value::Int(value), &[("device", device)])
}

impl Module for Netclass {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let names = interfaces(&self.class).map_err(|e| CollectError::io(&self.class, e))?;
        for name in names {
            let dir = self.class.join(&name);
            let attr = |file: &str| read_attr(&dir.join(file)).unwrap_or_default();
            let operstate = attr("operstate");
            out.push(point("up", "", i64::from(operstate == "up"), &name));
            let (address, broadcast, duplex, ifalias) =
                (attr("address"), attr("broadcast"), attr("duplex"), attr("ifalias"));
            let tags = [
                ("address", address.as_str()),
                ("broadcast", broadcast.as_str()),
                ("device", name.as_str()),
                ("duplex", duplex.as_str()),
                ("ifalias", ifalias.as_str()),
                ("operstate", operstate.as_str()),
            ];
            out.push(crate::module_point("netclass", "network", "info", "", Value::Int(1), &tags));
            for &(file, field, units, counter) in NUMBERS {
                let Some(mut v) = read_attr(&dir.join(file)).as_deref().and_then(parse_number) else { continue };
                if file == "speed" {
                    v = v.saturating_mul(125_000);
                }
                let p = point(field, units, v, &name);
                out.push(if counter { p.counter() } else { p });
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
    fn numbers() {
        assert_eq!(parse_number("0x1003\n"), Some(4099));
        assert_eq!(parse_number("-1"), Some(-1));
        assert_eq!(parse_number("1500"), Some(1500));
        assert_eq!(parse_number("0xzz"), None);
        assert_eq!(parse_number(""), None);
    }

    /// Every point recomputed from the captured files (tests/fixtures/README.md).
    #[test]
    fn on_the_captured_tree() {
        let tree = "vm-6.18";
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), at);
            crate::assert_node_documented("netclass", include_str!("netclass.rs"), &p);
            let base = fixture::fixture_dir(tree).join(snap).join("sys/class/net");
            let mut want: Vec<(String, Value, bool)> = Vec::new();
            for dev in ["eth0", "ifb0", "ifb1", "lo"] {
                let f =
                    |file: &str| std::fs::read_to_string(base.join(dev).join(file)).ok().map(|t| t.trim().to_string());
                let op = f("operstate").unwrap();
                want.push((format!("netclass.up.{dev}"), Value::Int((op == "up") as i64), false));
                let s = |file: &str| f(file).unwrap_or_default();
                let info = [s("address"), s("broadcast"), dev.to_string(), s("duplex"), s("ifalias"), op];
                want.push((format!("netclass.info.{}", info.join(".")), Value::Int(1), false));
                for &(file, field, _, counter) in NUMBERS {
                    let Some(t) = f(file) else { continue };
                    let v = match t.strip_prefix("0x") {
                        Some(h) => i64::from_str_radix(h, 16).unwrap(),
                        None => t.parse::<i64>().unwrap() * if file == "speed" { 125_000 } else { 1 },
                    };
                    want.push((format!("netclass.{field}.{dev}"), Value::Int(v), counter));
                }
            }
            let got: Vec<(String, Value, bool)> =
                p.iter().map(|p| (p.name.clone(), p.value, p.kind == Kind::Counter)).collect();
            assert_eq!(got, want, "{snap}");
            // The captured machine, as node_exporter 1.5 showed it.
            let v = |name: &str| fixture::value(&p, name);
            assert_eq!(v("netclass.flags.eth0"), Some(Value::Int(4099)));
            assert_eq!(v("netclass.speed_bytes.eth0"), Some(Value::Int(-125_000)));
            assert_eq!(v("netclass.up.lo"), Some(Value::Int(0)));
            assert_eq!(v("netclass.protocol_type.lo"), Some(Value::Int(772)));
            assert_eq!(v("netclass.carrier.ifb0"), None);
            assert_eq!(v("netclass.name_assign_type.ifb0"), None);
            let info = fixture::find(&p, "netclass.info.00:00:00:00:00:00.00:00:00:00:00:00.lo...unknown").unwrap();
            assert_eq!((&*info.measurement, &*info.field), ("network", "info"));
            assert_eq!(info.tags[2], ("device".into(), "lo".to_string()));
        }
    }

    #[test]
    fn bad_and_missing_files() {
        let root = FixtureRoot::new("vm-6.18");
        root.write("sys/class/net/eth0/mtu", "lots\n");
        root.write("sys/class/net/bonding_masters", "bond0\n");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert!(fixture::find(&p, "netclass.mtu_bytes.eth0").is_none());
        assert_eq!(fixture::value(&p, "netclass.mtu_bytes.lo"), Some(Value::Int(65536)));
        assert!(!p.iter().any(|p| p.tags.iter().any(|(_, v)| v == "bonding_masters")));
        std::fs::remove_dir_all(root.path("sys/class/net")).unwrap();
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("class/net"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
