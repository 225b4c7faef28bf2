//! `netstat`: network protocol counters from `/proc/net/snmp`, `/proc/net/netstat` and `/proc/net/snmp6`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `netstat.<Proto_Name>` | | int | counter | the kernel's counter `Name` of protocol `Proto` (`Tcp_InSegs`, `TcpExt_ListenDrops`, `Udp6_NoPorts`, …), for each one the `fields` expression matches |
//! | `netstat.Tcp_CurrEstab` | | int | gauge | TCP connections now in ESTABLISHED or CLOSE-WAIT |
//! | `netstat.Ip_Forwarding` | | int | gauge | 1 when IPv4 forwarding is on, 2 when off |
//!
//! As node_exporter's `netstat` collector: `/proc/net/snmp` and `/proc/net/netstat` hold
//! pairs of lines, `Proto: Name1 Name2 …` then `Proto: value1 value2 …`, and each column
//! becomes `Proto_Name`; `/proc/net/snmp6` holds `Ip6InOctets 123` lines, split after the
//! first `6` (`Ip6_InOctets`, `Udp6_NoPorts`, `UdpLite6_InErrors`). The names stay as the
//! kernel writes them (mixed case), as node_exporter's `node_netstat_Tcp_InSegs`. Points keep
//! the files' order: `snmp`, `netstat`, `snmp6` (the last only when the kernel has IPv6).
//!
//! The values that are not counts since boot are gauges: `Tcp_CurrEstab`, `Ip_Forwarding`,
//! `Ip_DefaultTTL`, `Tcp_RtoAlgorithm`, `Tcp_RtoMin`, `Tcp_RtoMax`, `Tcp_MaxConn` (−1: no
//! limit). The counters are not shown by the legacy emitters (`stdout`, `graphite`, …); the
//! Prometheus and OTLP formats show them (node_exporter exposes all these families with
//! TYPE `untyped`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `fields` | node_exporter's, below | regular expression (`regex_lite` syntax) of the `Proto_Name` names to emit, like node_exporter's `--collector.netstat.fields` |
//!
//! The default of `fields` is node_exporter 1.5's (the Debian 12 package):
//! `^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$`
//! (on this project's build VM: 40 stats).

use std::time::Instant;

use crate::fields::FieldFilter;
use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "netstat",
    aliases: &[],
    summary: "network protocol counters (/proc/net/snmp, netstat, snmp6)",
    build,
};

/// node_exporter 1.5's default `--collector.netstat.fields`.
pub const DEFAULT_FIELDS: &str = "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// Values that are a state or a setting, not a count since boot.
const GAUGES: &[&str] =
    &["Tcp_CurrEstab", "Ip_Forwarding", "Ip_DefaultTTL", "Tcp_RtoAlgorithm", "Tcp_RtoMin", "Tcp_RtoMax", "Tcp_MaxConn"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fields: Option<String>,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    let fields = FieldFilter::new(conf, c.fields.as_deref(), DEFAULT_FIELDS)?;
    let mut snmp = ProcFile::new(ctx.roots.proc_path("net/snmp"));
    snmp.probe().map_err(BuildError::Unavailable)?;
    let mut netstat = ProcFile::new(ctx.roots.proc_path("net/netstat"));
    netstat.probe().map_err(BuildError::Unavailable)?;
    let mut snmp6 = ProcFile::new(ctx.roots.proc_path("net/snmp6"));
    let snmp6 = snmp6.probe().is_ok().then_some(snmp6);
    Ok(Box::new(Netstat { snmp, netstat, snmp6, fields }))
}

struct Netstat {
    snmp: ProcFile,
    netstat: ProcFile,
    snmp6: Option<ProcFile>,
    fields: FieldFilter,
}

/// The `(Proto, Name, value)` triples of `/proc/net/snmp` or `/proc/net/netstat`: a header
/// line `Proto: Name…` followed by its value line `Proto: value…`. A value that is not a
/// number, or a value line without a matching header, is skipped.
pub fn parse_pairs(text: &str) -> Vec<(&str, &str, i64)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((vproto, values))) = (names.split_once(": "), values.split_once(": ")) else {
            continue;
        };
        if proto != vproto {
            continue;
        }
        for (name, value) in names.split_ascii_whitespace().zip(values.split_ascii_whitespace()) {
            if let Ok(v) = value.parse() {
                out.push((proto, name, v));
            }
        }
    }
    out
}

/// The `(Proto, Name, value)` triples of `/proc/net/snmp6`: `Ip6InOctets  123` is
/// `("Ip6", "InOctets", 123)`, split after the first `6` as node_exporter does.
pub fn parse_snmp6(text: &str) -> Vec<(&str, &str, i64)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(|c: char| c.is_ascii_whitespace())?;
            let six = key.find('6')?;
            Some((&key[..=six], &key[six + 1..], value.trim().parse().ok()?))
        })
        .collect()
}

impl Netstat {
    fn emit(fields: &mut FieldFilter, triples: Vec<(&str, &str, i64)>, out: &mut Vec<Point>) {
        let mut field = String::new();
        for (proto, name, value) in triples {
            field.clear();
            field.push_str(proto);
            field.push('_');
            field.push_str(name);
            if !fields.wants(&field) {
                continue;
            }
            let p = crate::named_point("netstat", &field, "", Value::Int(value), &[]);
            out.push(if GAUGES.contains(&field.as_str()) { p } else { p.counter() });
        }
    }
}

impl Module for Netstat {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        Self::emit(&mut self.fields, parse_pairs(self.snmp.read()?), out);
        Self::emit(&mut self.fields, parse_pairs(self.netstat.read()?), out);
        if let Some(f) = &mut self.snmp6 {
            Self::emit(&mut self.fields, parse_snmp6(f.read()?), out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;

    #[test]
    fn parses_both_layouts() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: MaxConn CurrEstab\nTcp: -1 3\nUdp: A\nIcmp: B\n";
        assert_eq!(
            parse_pairs(snmp),
            [("Ip", "Forwarding", 2), ("Ip", "DefaultTTL", 64), ("Tcp", "MaxConn", -1), ("Tcp", "CurrEstab", 3)]
        );
        let six = "Ip6InOctets                     \t123\nUdpLite6InErrors 4\nIcmp6InType1 5\nbad\n";
        assert_eq!(parse_snmp6(six), [("Ip6", "InOctets", 123), ("UdpLite6", "InErrors", 4), ("Icmp6", "InType1", 5)]);
    }

    /// The netstat families node_exporter 1.5.0 (Debian 12) gave on this VM with its
    /// defaults, from a scrape (`curl …/metrics | grep '^node_netstat_'`), sorted.
    const NODE_EXPORTER_1_5_ON_THIS_VM: &[&str] = &[
        "Icmp6_InErrors",
        "Icmp6_InMsgs",
        "Icmp6_OutMsgs",
        "Icmp_InErrors",
        "Icmp_InMsgs",
        "Icmp_OutMsgs",
        "Ip6_InOctets",
        "Ip6_OutOctets",
        "IpExt_InOctets",
        "IpExt_OutOctets",
        "Ip_Forwarding",
        "TcpExt_ListenDrops",
        "TcpExt_ListenOverflows",
        "TcpExt_SyncookiesFailed",
        "TcpExt_SyncookiesRecv",
        "TcpExt_SyncookiesSent",
        "TcpExt_TCPSynRetrans",
        "TcpExt_TCPTimeouts",
        "Tcp_ActiveOpens",
        "Tcp_CurrEstab",
        "Tcp_InErrs",
        "Tcp_InSegs",
        "Tcp_OutRsts",
        "Tcp_OutSegs",
        "Tcp_PassiveOpens",
        "Tcp_RetransSegs",
        "Udp6_InDatagrams",
        "Udp6_InErrors",
        "Udp6_NoPorts",
        "Udp6_OutDatagrams",
        "Udp6_RcvbufErrors",
        "Udp6_SndbufErrors",
        "UdpLite6_InErrors",
        "UdpLite_InErrors",
        "Udp_InDatagrams",
        "Udp_InErrors",
        "Udp_NoPorts",
        "Udp_OutDatagrams",
        "Udp_RcvbufErrors",
        "Udp_SndbufErrors",
    ];

    /// The value of `Proto_Name` read from the fixture files with a different method: the
    /// column index of the name in the header line, or the snmp6 key with the `_` removed.
    fn value_in_files(tree: &str, snap: &str, field: &str) -> i64 {
        let (proto, name) = field.split_once('_').unwrap();
        if proto.ends_with('6') {
            let text = fixture::read(tree, snap, "proc/net/snmp6");
            let key = format!("{proto}{name}");
            let line = text.lines().find(|l| l.split_whitespace().next() == Some(key.as_str())).unwrap();
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
        for file in ["proc/net/snmp", "proc/net/netstat"] {
            let text = fixture::read(tree, snap, file);
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{proto}: "))).collect();
            if lines.len() == 2 {
                let col = lines[0].split(' ').position(|w| w == name).unwrap();
                return lines[1].split(' ').nth(col).unwrap().parse().unwrap();
            }
        }
        panic!("{field} not in the files");
    }

    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn default_fields_on_the_captured_trees() {
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("netstat.rs"), &p);
                let mut fields: Vec<&str> = p.iter().map(|p| &*p.field).collect();
                fields.sort_unstable();
                assert_eq!(fields, NODE_EXPORTER_1_5_ON_THIS_VM, "{tree} {snap}");
                for pt in &p {
                    assert_eq!(pt.value, Value::Int(value_in_files(tree, snap, &pt.field)), "{}", pt.name);
                    assert_eq!(pt.name, format!("netstat.{}", pt.field));
                    let gauge = matches!(&*pt.field, "Tcp_CurrEstab" | "Ip_Forwarding");
                    assert_eq!(pt.kind, if gauge { Kind::Gauge } else { Kind::Counter }, "{}", pt.name);
                }
            }
        }
    }

    #[test]
    fn fields_key_without_ipv6_and_missing_files() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"fields": "^(Tcp_MaxConn|IcmpMsg_.*|Ip6_InReceives)$"}"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        let names = fixture::names(&p);
        assert!(names.contains(&"netstat.Tcp_MaxConn") && names.contains(&"netstat.Ip6_InReceives"), "{names:?}");
        assert_eq!(fixture::int(&p, "netstat.Tcp_MaxConn"), -1);
        assert_eq!(fixture::find(&p, "netstat.Tcp_MaxConn").unwrap().kind, Kind::Gauge);

        root.remove("proc/net/snmp6");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert!(p.iter().all(|p| !p.field.contains('6')));
        assert_eq!(
            p.len(),
            NODE_EXPORTER_1_5_ON_THIS_VM.iter().filter(|f| !f.split('_').next().unwrap().ends_with('6')).count()
        );

        match fixture::build_error(&SPEC, &root.ctx(), "{\n\"fields\": \"[\"}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("fields"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
        root.remove("proc/net/netstat");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("net/netstat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
