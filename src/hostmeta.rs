//! Host metadata: what the config says, and auto-detection for what it leaves out.
//!
//! A key missing from `core` is detected: `hostname` from the kernel (uname), `ipv4` and
//! `ipv6` from the interface that holds the default route (`/proc/net/route`,
//! `/proc/net/ipv6_route`): its primary IPv4 address (the `SIOCGIFADDR` ioctl, the first
//! address `ip -4 addr` lists) and its first stable global IPv6 address
//! (`/proc/net/if_inet6`). A key set to `""` means "none" and stays empty.
//! `datacenter`, `region`, `zone` and `cluster` cannot be detected: missing means empty.
//!
//! Not `getifaddrs(3)`: it lists every address of every interface over netlink, and its
//! code is 64 KiB of libc that the agent would map for this one call (issue 13).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use badger_api::host::hostname;

use crate::config::CoreConfig;
use badger_api::point::HostMeta;

/// Resolves the metadata for a config, detecting what it leaves out.
pub fn resolve(core: &CoreConfig) -> HostMeta {
    let proc = &core.roots.proc;
    let v4_iface = || default_route_v4(proc);
    HostMeta {
        datacenter: core.datacenter.clone().unwrap_or_default(),
        region: core.region.clone().unwrap_or_default(),
        zone: core.zone.clone().unwrap_or_default(),
        cluster: core.cluster.clone().unwrap_or_default(),
        hostname: core.hostname.clone().unwrap_or_else(hostname),
        ipv4: core
            .ipv4
            .clone()
            .unwrap_or_else(|| v4_iface().and_then(|i| interface_ipv4(&i)).map(|a| a.to_string()).unwrap_or_default()),
        ipv6: core.ipv6.clone().unwrap_or_else(|| {
            let iface = default_route_v6(proc).or_else(v4_iface);
            let table = std::fs::read_to_string(proc.join("net/if_inet6")).unwrap_or_default();
            iface.and_then(|i| pick_ipv6(&table, &i)).map(|a| a.to_string()).unwrap_or_default()
        }),
    }
}

/// The primary IPv4 address of `iface` (`SIOCGIFADDR`); `None` when it has none or the
/// name is not an interface.
pub fn interface_ipv4(iface: &str) -> Option<Ipv4Addr> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: `ifreq` is plain data, all zeroes a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    // Room for the terminating NUL; a name with a NUL in it is no interface's.
    if name.len() >= req.ifr_name.len() || name.contains(&0) {
        return None;
    }
    for (to, from) in req.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    // SAFETY: socket takes no pointers; a descriptor it returns is owned by `sock` alone.
    let sock = match unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) } {
        fd if fd >= 0 => unsafe { OwnedFd::from_raw_fd(fd) },
        _ => return None,
    };
    // SAFETY: SIOCGIFADDR reads the NUL-terminated name from, and writes the address into,
    // the `ifreq` it is given, which lives for the call; `sock` is an open socket.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCGIFADDR, &raw mut req) } != 0 {
        return None;
    }
    // SAFETY: the call succeeded, so the union holds the address, a sockaddr_in for an
    // AF_INET socket; read as bytes (family, port, address), whatever its alignment.
    let sa: [u8; 8] = unsafe { std::ptr::read_unaligned((&raw const req.ifr_ifru).cast()) };
    (u16::from_ne_bytes([sa[0], sa[1]]) == libc::AF_INET as u16).then(|| Ipv4Addr::new(sa[4], sa[5], sa[6], sa[7]))
}

/// From `/proc/net/if_inet6` (`address index prefix-length scope flags name`, in hex), the
/// first global address of `iface` that is stable: not temporary (privacy extensions),
/// deprecated, tentative or failed; else its first global address of any kind.
pub fn pick_ipv6(table: &str, iface: &str) -> Option<Ipv6Addr> {
    // IFA_F_TEMPORARY, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE
    const UNSTABLE: u32 = 0x01 | 0x08 | 0x20 | 0x40;
    let global: Vec<(Ipv6Addr, bool)> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let (addr, scope, flags, name) = (f.first()?, f.get(3)?, f.get(4)?, f.get(5)?);
            if *name != iface || u32::from_str_radix(scope, 16).ok()? != 0 || addr.len() != 32 {
                return None;
            }
            let addr = Ipv6Addr::from(u128::from_str_radix(addr, 16).ok()?);
            Some((addr, u32::from_str_radix(flags, 16).ok()? & UNSTABLE == 0))
        })
        .collect();
    global.iter().find(|(_, stable)| *stable).or(global.first()).map(|&(addr, _)| addr)
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
    fn picks_the_first_stable_global_v6_of_the_interface() {
        // /proc/net/if_inet6 of a host with privacy extensions (kernel 6.1): a temporary
        // address listed first, link-local, a stable global one, one on another interface.
        let t = "20010db8000000010a1b2c3d4e5f6071 02 40 00 01     eth0\n\
                 fe800000000000000000000000000002 02 40 20 80     eth0\n\
                 00000000000000000000000000000001 01 80 10 80       lo\n\
                 20010db8000000010000000000000002 02 40 00 00     eth0\n\
                 fd000000000000000000000000000003 03 40 00 80     eth1\n";
        assert_eq!(pick_ipv6(t, "eth0"), Some("2001:db8:0:1::2".parse().unwrap()));
        assert_eq!(pick_ipv6(t, "eth1"), Some("fd00::3".parse().unwrap()));
        // Only a temporary one: better than none.
        assert_eq!(
            pick_ipv6(&t[..t.find("fe80").unwrap()], "eth0"),
            Some("2001:db8:0:1:a1b:2c3d:4e5f:6071".parse().unwrap())
        );
        assert_eq!(pick_ipv6(t, "lo"), None, "::1 is host scope");
        assert_eq!(pick_ipv6(t, "eth9"), None);
        assert_eq!(pick_ipv6("garbage\n\n", "eth0"), None);
    }

    #[test]
    fn the_loopbacks_ipv4_address_and_none_for_a_missing_interface() {
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("badger-none0"), None);
        assert_eq!(interface_ipv4("a-name-far-too-long-for-ifnamsiz"), None);
        assert_eq!(interface_ipv4("l\0o"), None);
    }
}
