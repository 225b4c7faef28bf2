//! Host metadata: what the config says, and auto-detection for what it leaves out.
//!
//! A key missing from `core` is detected: `hostname` from the kernel (uname), `ipv4` and
//! `ipv6` from the interface that holds the default route (`/proc/net/route`,
//! `/proc/net/ipv6_route`). A key set to `""` means "none" and stays empty.
//! `datacenter`, `region`, `zone` and `cluster` cannot be detected: missing means empty.

use std::net::IpAddr;
use std::path::Path;

use badger_api::host::hostname;

use crate::config::CoreConfig;
use badger_api::point::HostMeta;

/// Resolves the metadata for a config, detecting what it leaves out.
pub fn resolve(core: &CoreConfig) -> HostMeta {
    let proc = &core.roots.proc;
    let needs_addrs = core.ipv4.is_none() || core.ipv6.is_none();
    let addrs = if needs_addrs { interface_addresses() } else { Vec::new() };
    let v4_iface = default_route_v4(proc);
    let v6_iface = default_route_v6(proc).or_else(|| v4_iface.clone());
    HostMeta {
        datacenter: core.datacenter.clone().unwrap_or_default(),
        region: core.region.clone().unwrap_or_default(),
        zone: core.zone.clone().unwrap_or_default(),
        cluster: core.cluster.clone().unwrap_or_default(),
        hostname: core.hostname.clone().unwrap_or_else(hostname),
        ipv4: core
            .ipv4
            .clone()
            .unwrap_or_else(|| v4_iface.as_deref().and_then(|i| pick_address(i, &addrs, false)).unwrap_or_default()),
        ipv6: core
            .ipv6
            .clone()
            .unwrap_or_else(|| v6_iface.as_deref().and_then(|i| pick_address(i, &addrs, true)).unwrap_or_default()),
    }
}

fn interface_addresses() -> Vec<(String, IpAddr)> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| (i.name.clone(), i.ip())).collect(),
        Err(e) => {
            log::warn!("cannot list interface addresses: {e}");
            Vec::new()
        }
    }
}

/// The first address of `iface` of the wanted family; for IPv6 a global one (not link-local).
pub fn pick_address(iface: &str, addrs: &[(String, IpAddr)], v6: bool) -> Option<String> {
    addrs
        .iter()
        .filter(|(name, _)| name == iface)
        .map(|(_, ip)| ip)
        .find(|ip| match ip {
            IpAddr::V4(_) => !v6,
            IpAddr::V6(a) => v6 && (a.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(IpAddr::to_string)
}

/// The interface of the IPv4 default route with the lowest metric.
pub fn default_route_v4(proc: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc.join("net/route")).ok()?;
    parse_route_v4(&text)
}

/// The interface of the IPv6 default route with the lowest metric (not `lo`).
pub fn default_route_v6(proc: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc.join("net/ipv6_route")).ok()?;
    parse_route_v6(&text)
}

/// `/proc/net/route`: `Iface Destination Gateway Flags RefCnt Use Metric Mask …` in hex.
pub fn parse_route_v4(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            // RTF_UP
            (f.get(1)? == &"00000000" && f.get(7)? == &"00000000" && flags & 1 == 1)
                .then(|| Some((f.get(6)?.parse::<u64>().ok()?, f[0].to_string())))?
        })
        .min()
        .map(|(_, iface)| iface)
}

/// `/proc/net/ipv6_route`: `dest plen src splen nexthop metric refcnt use flags iface`.
pub fn parse_route_v6(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" || f[9] == "lo" {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            // RTF_UP, and not RTF_REJECT
            (flags & 1 == 1 && flags & 0x200 == 0)
                .then(|| Some((u64::from_str_radix(f[5], 16).ok()?, f[9].to_string())))?
        })
        .min()
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_default_route_lowest_metric() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_route_v4(t).as_deref(), Some("eth0"));
        assert_eq!(parse_route_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn v6_default_route_skips_lo_and_reject() {
        let t = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                 00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0\n";
        assert_eq!(parse_route_v6(t).as_deref(), Some("eth0"));
    }

    #[test]
    fn picks_global_v6_and_first_v4() {
        let addrs: Vec<(String, IpAddr)> = vec![
            ("lo".into(), "127.0.0.1".parse().unwrap()),
            ("eth0".into(), "fe80::1".parse().unwrap()),
            ("eth0".into(), "192.0.2.2".parse().unwrap()),
            ("eth0".into(), "fd00::2".parse().unwrap()),
        ];
        assert_eq!(pick_address("eth0", &addrs, false).as_deref(), Some("192.0.2.2"));
        assert_eq!(pick_address("eth0", &addrs, true).as_deref(), Some("fd00::2"));
        assert_eq!(pick_address("eth9", &addrs, true), None);
    }
}
