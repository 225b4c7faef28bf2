//! `network`: traffic of every network interface, from `/proc/net/dev`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `net.rx_bytes.<i>` | B | float | rate | bytes received per second |
//! | `net.rx_packets.<i>` | | float | rate | packets received per second |
//! | `net.rx_errs.<i>` | | float | rate | receive errors per second |
//! | `net.rx_drop.<i>` | | float | rate | received packets dropped per second |
//! | `net.rx_fifo.<i>` | | float | rate | receive FIFO overruns per second |
//! | `net.rx_frame.<i>` | | float | rate | receive framing errors per second |
//! | `net.rx_compressed.<i>` | | float | rate | compressed packets received per second |
//! | `net.rx_multicast.<i>` | | float | rate | multicast packets received per second |
//! | `net.tx_bytes.<i>` | B | float | rate | bytes sent per second |
//! | `net.tx_packets.<i>` | | float | rate | packets sent per second |
//! | `net.tx_errs.<i>` | | float | rate | transmit errors per second |
//! | `net.tx_drop.<i>` | | float | rate | outgoing packets dropped per second |
//! | `net.tx_fifo.<i>` | | float | rate | transmit FIFO errors per second |
//! | `net.tx_colls.<i>` | | float | rate | collisions per second |
//! | `net.tx_carrier.<i>` | | float | rate | carrier losses per second |
//! | `net.tx_compressed.<i>` | | float | rate | compressed packets sent per second |
//! | `net.rx_bits.<i>` | b | float | rate | bits received per second (`rx_bytes` × 8) |
//! | `net.tx_bits.<i>` | b | float | rate | bits sent per second (`tx_bytes` × 8) |
//! | `network.receive_bytes_total.<i>` | B | int | counter | bytes received since the interface appeared (column 1), tag `device` |
//! | `network.receive_packets_total.<i>` |  | int | counter | packets received since the interface appeared (column 2), tag `device` |
//! | `network.receive_errs_total.<i>` |  | int | counter | receive errors since the interface appeared (column 3), tag `device` |
//! | `network.receive_drop_total.<i>` |  | int | counter | received packets dropped since the interface appeared (column 4), tag `device` |
//! | `network.receive_fifo_total.<i>` |  | int | counter | receive FIFO overruns since the interface appeared (column 5), tag `device` |
//! | `network.receive_frame_total.<i>` |  | int | counter | receive framing errors since the interface appeared (column 6), tag `device` |
//! | `network.receive_compressed_total.<i>` |  | int | counter | compressed packets received since the interface appeared (column 7), tag `device` |
//! | `network.receive_multicast_total.<i>` |  | int | counter | multicast packets received since the interface appeared (column 8), tag `device` |
//! | `network.transmit_bytes_total.<i>` | B | int | counter | bytes sent since the interface appeared (column 9), tag `device` |
//! | `network.transmit_packets_total.<i>` |  | int | counter | packets sent since the interface appeared (column 10), tag `device` |
//! | `network.transmit_errs_total.<i>` |  | int | counter | transmit errors since the interface appeared (column 11), tag `device` |
//! | `network.transmit_drop_total.<i>` |  | int | counter | outgoing packets dropped since the interface appeared (column 12), tag `device` |
//! | `network.transmit_fifo_total.<i>` |  | int | counter | transmit FIFO errors since the interface appeared (column 13), tag `device` |
//! | `network.transmit_colls_total.<i>` |  | int | counter | collisions since the interface appeared (column 14), tag `device` |
//! | `network.transmit_carrier_total.<i>` |  | int | counter | carrier losses since the interface appeared (column 15), tag `device` |
//! | `network.transmit_compressed_total.<i>` |  | int | counter | compressed packets sent since the interface appeared (column 16), tag `device` |
//! | `network.receive_nohandler_total.<i>` |  | int | counter | packets received that no protocol handler took (`/sys/class/net/<i>/statistics/rx_nohandler`, kernel 4.6+), tag `device` |
//!
//! Points carry the tag `interface`; interfaces come in `/proc/net/dev` order. Every stat is a
//! rate, so the first collection of an interface reports nothing for it; a counter that went
//! backwards (a driver reset) leaves that rate out once. Stat Badger spelled `tx_carrier`
//! `tx_carier`; badger spells it right.
//!
//! The `network.*_total` counters (kind `counter`: the raw columns, hidden from the emitters
//! that print Stat Badger's stats, read by exposition formats such as OTLP and Prometheus;
//! built only when an emitter that reads them is configured: otlp, prometheus, pushgateway,
//! remote_write) follow node_exporter's `node_network_*` names: measurement `network`, tag `device` (not
//! `interface`). They are present on every collection of a selected interface, the first
//! included, after its rates. `receive_nohandler_total` is not a column of `/proc/net/dev`:
//! it is read from sysfs after the others, and left out when that file cannot be read (an
//! older kernel, a container without `/sys`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interfaces_to_check` | every interface but `lo` | interfaces to report (names or globs, array or comma string) |

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;

use badger_api::matcher::{Matcher, NameList};
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;
use badger_api::rate::Rate;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "network", aliases: &[], summary: "network interface traffic (/proc/net/dev)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    interfaces_to_check: NameList,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    let selection = if c.interfaces_to_check.is_empty() {
        None
    } else {
        let m = Matcher::new(&c.interfaces_to_check)
            .map_err(|m| BuildError::Config(conf.error("interfaces_to_check", m)))?;
        Some(m)
    };
    let mut file = ProcFile::new(ctx.roots.proc_path("net/dev"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Network {
        file,
        selection,
        interfaces: HashMap::new(),
        class: ctx.roots.sys_path("class/net"),
        counters: !ctx.gauges_only,
    }))
}

/// The 16 columns of `/proc/net/dev`, in order, with their units.
pub const FIELDS: [(&str, &str); 16] = [
    ("rx_bytes", "B"),
    ("rx_packets", ""),
    ("rx_errs", ""),
    ("rx_drop", ""),
    ("rx_fifo", ""),
    ("rx_frame", ""),
    ("rx_compressed", ""),
    ("rx_multicast", ""),
    ("tx_bytes", "B"),
    ("tx_packets", ""),
    ("tx_errs", ""),
    ("tx_drop", ""),
    ("tx_fifo", ""),
    ("tx_colls", ""),
    ("tx_carrier", ""),
    ("tx_compressed", ""),
];

/// The node_exporter names of the 16 columns (`node_network_<name>`).
pub const COUNTERS: [&str; 16] = [
    "receive_bytes_total",
    "receive_packets_total",
    "receive_errs_total",
    "receive_drop_total",
    "receive_fifo_total",
    "receive_frame_total",
    "receive_compressed_total",
    "receive_multicast_total",
    "transmit_bytes_total",
    "transmit_packets_total",
    "transmit_errs_total",
    "transmit_drop_total",
    "transmit_fifo_total",
    "transmit_colls_total",
    "transmit_carrier_total",
    "transmit_compressed_total",
];

/// One interface line: `  eth0: 1 2 … 16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters<'a> {
    pub name: &'a str,
    pub counters: [u64; 16],
}

/// Parses one line of `/proc/net/dev`; `None` for the headers and malformed lines. The name
/// ends at the first `:` (interface names cannot hold one), so `eth0:123` with no space, as
/// old kernels print big counters, parses too.
pub fn parse_line(line: &str) -> Option<InterfaceCounters<'_>> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('|') {
        return None;
    }
    let mut counters = [0u64; 16];
    let mut fields = rest.split_ascii_whitespace();
    for c in counters.iter_mut() {
        *c = fields.next()?.parse().ok()?;
    }
    Some(InterfaceCounters { name, counters })
}

/// Every interface of `/proc/net/dev`, in file order.
pub fn parse(text: &str) -> impl Iterator<Item = InterfaceCounters<'_>> {
    text.lines().filter_map(parse_line)
}

#[derive(Debug, Default)]
struct InterfaceState {
    seen: bool,
    rates: [Rate; 16],
    /// `statistics/rx_nohandler` of the interface, kept open and re-read in place.
    nohandler: Option<ProcFile>,
    /// The file could not be read (an old kernel, a tree without sysfs): not tried again
    /// while the interface stays.
    no_nohandler: bool,
}

struct Network {
    file: ProcFile,
    /// `None`: every interface but `lo`.
    selection: Option<Matcher>,
    interfaces: HashMap<String, InterfaceState>,
    /// `/sys/class/net`, for `rx_nohandler`.
    class: std::path::PathBuf,
    /// Whether an emitter reads the counters (`ModuleContext::gauges_only`).
    counters: bool,
}

/// An interface's `statistics/rx_nohandler` (a decimal number, one short line); `None`
/// when it cannot be read (then not tried again) or does not parse.
fn rx_nohandler(state: &mut InterfaceState, class: &std::path::Path, iface: &str) -> Option<u64> {
    if state.no_nohandler {
        return None;
    }
    let file = state.nohandler.get_or_insert_with(|| ProcFile::new(class.join(iface).join("statistics/rx_nohandler")));
    match file.read() {
        Ok(text) => text.trim().parse().ok(),
        Err(_) => {
            state.no_nohandler = true;
            state.nohandler = None;
            None
        }
    }
}

impl Network {
    fn selects(selection: &Option<Matcher>, name: &str) -> bool {
        match selection {
            Some(m) => m.matches(name),
            None => name != "lo",
        }
    }
}

impl Module for Network {
    fn shares_thread(&self) -> bool {
        // Reads only kernel text files.
        true
    }

    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let Network { file, selection, interfaces, class, counters } = self;
        let text = file.read()?;
        for iface in parse(text) {
            if !Network::selects(selection, iface.name) {
                continue;
            }
            let state = match interfaces.get_mut(iface.name) {
                Some(s) => s,
                None => interfaces.entry(iface.name.to_string()).or_default(),
            };
            if state.seen {
                continue;
            }
            state.seen = true;
            let mut rates = [None; 16];
            for ((r, rate), &v) in rates.iter_mut().zip(&mut state.rates).zip(&iface.counters) {
                *r = rate.update(v, now);
            }
            for (&(field, units), r) in FIELDS.iter().zip(rates) {
                if let Some(v) = r {
                    out.push(Point::device("net", field, units, "interface", iface.name, Value::Float(v)));
                }
            }
            for (field, r) in [("rx_bits", rates[0]), ("tx_bits", rates[8])] {
                if let Some(v) = r {
                    out.push(Point::device("net", field, "b", "interface", iface.name, Value::Float(v * 8.0)));
                }
            }
            if !*counters {
                continue;
            }
            for ((&field, &(_, units)), &v) in COUNTERS.iter().zip(&FIELDS).zip(&iface.counters) {
                out.push(Point::device("network", field, units, "device", iface.name, Value::from(v)).counter());
            }
            if let Some(v) = rx_nohandler(state, class, iface.name) {
                let p = Point::device("network", "receive_nohandler_total", "", "device", iface.name, Value::from(v));
                out.push(p.counter());
            }
        }
        interfaces.retain(|_, s| std::mem::take(&mut s.seen));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("network.rs");

    const DEFAULTS: &[(&str, &[&str])] = &[
        ("vm-6.18", &["ifb0", "ifb1", "eth0"]),
        (
            "vm-6.18-many",
            &[
                "ifb0", "ifb1", "eth0", "dum1", "dum0", "dum3", "dum2", "dum5", "dum4", "veth0.10", "veth0", "br0",
                "tap0",
            ],
        ),
        ("linux-4.19-synth", &["eth0", "eth1", "bond0", "docker0", "veth3f2a1b9"]),
    ];

    /// A fixture's /proc/net/dev parsed independently: name → 16 counters.
    fn counters(tree: &str, snap: &str, iface: &str) -> Vec<u64> {
        fixture::read(tree, snap, "proc/net/dev")
            .lines()
            .skip(2)
            .find_map(|l| {
                let (n, rest) = l.split_once(':')?;
                (n.trim() == iface).then(|| rest.split_whitespace().map(|x| x.parse().unwrap()).collect())
            })
            .unwrap()
    }

    fn interfaces(points: &[Point]) -> Vec<String> {
        points.iter().filter_map(|p| p.name.strip_prefix("net.rx_bytes.")).map(String::from).collect()
    }

    /// The points Stat Badger printed (the counters left out).
    fn gauges(p: Vec<Point>) -> Vec<Point> {
        p.into_iter().filter(|p| p.kind == Kind::Gauge).collect()
    }

    /// Two collections; the Stat Badger stats of the second (the first has none).
    fn two(tree: &str, conf: &str) -> (FixtureRoot, Box<dyn Module>, Vec<Point>) {
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), conf);
        assert!(gauges(fixture::collect(m.as_mut(), 0.0)).is_empty());
        root.advance();
        let p = gauges(fixture::collect(m.as_mut(), 1.0));
        (root, m, p)
    }

    #[test]
    fn counters_equal_the_fixture_on_every_collection() {
        for &(tree, want) in DEFAULTS {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, secs) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p: Vec<Point> = fixture::collect(m.as_mut(), secs)
                    .into_iter()
                    .filter(|p| p.kind == Kind::Counter && p.field != "receive_nohandler_total")
                    .collect();
                fixture::assert_documented(SOURCE, &p);
                assert_eq!(p.len(), 16 * want.len(), "{tree}");
                for (i, iface) in want.iter().enumerate() {
                    let c = counters(tree, snap, iface);
                    for (j, field) in COUNTERS.iter().enumerate() {
                        let got = &p[16 * i + j];
                        assert_eq!(got.name, format!("network.{field}.{iface}"));
                        assert_eq!((got.measurement.as_ref(), got.field.as_ref()), ("network", *field));
                        assert_eq!(got.units, if field.ends_with("bytes_total") { "B" } else { "" });
                        assert_eq!(got.value, Value::Int(c[j] as i64), "{}", got.name);
                        assert_eq!(got.tags, [("device".into(), iface.to_string())]);
                    }
                }
            }
        }
    }

    /// `rx_nohandler` from the captured sysfs (vm-6.18 only has `sys/class/net`), after each
    /// interface's 16 columns.
    #[test]
    fn receive_nohandler_from_sysfs() {
        let tree = "vm-6.18";
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        for (snap, secs) in [("t0", 0.0), ("t1", 1.0)] {
            if snap == "t1" {
                root.advance();
            }
            let p = fixture::collect(m.as_mut(), secs);
            fixture::assert_documented(SOURCE, &p);
            let counters: Vec<&Point> = p.iter().filter(|p| p.kind == Kind::Counter).collect();
            assert_eq!(counters.len(), 17 * 3);
            for (i, iface) in ["ifb0", "ifb1", "eth0"].iter().enumerate() {
                let got = counters[17 * i + 16];
                let want = fixture::read(tree, snap, &format!("sys/class/net/{iface}/statistics/rx_nohandler"));
                assert_eq!(got.name, format!("network.receive_nohandler_total.{iface}"));
                assert_eq!(got.value, Value::Int(want.trim().parse().unwrap()));
                assert_eq!(got.tags, [("device".into(), iface.to_string())]);
            }
        }
        root.write("sys/class/net/eth0/statistics/rx_nohandler", "many\n");
        let p = fixture::collect(m.as_mut(), 2.0);
        assert!(fixture::find(&p, "network.receive_nohandler_total.eth0").is_none());
        assert!(fixture::find(&p, "network.receive_nohandler_total.ifb0").is_some());
    }

    #[test]
    fn parses_lines() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n\
                    eth0:12345678901 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    veth0.10:  1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    bad: 1 2 3\n\
                    worse: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n";
        let got: Vec<InterfaceCounters> = parse(text).collect();
        assert_eq!(got.iter().map(|i| i.name).collect::<Vec<_>>(), ["lo", "eth0", "veth0.10"]);
        assert_eq!(got[0].counters[0], 3193);
        assert_eq!(got[0].counters[9], 29);
        assert_eq!(got[1].counters, [12345678901, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn first_collection_is_empty_and_default_selection() {
        for &(tree, want) in DEFAULTS {
            let (_root, _m, p) = two(tree, "{}");
            assert_eq!(interfaces(&p), want, "{tree}");
            assert_eq!(p.len(), 18 * want.len());
            fixture::assert_documented(SOURCE, &p);
        }
    }

    #[test]
    fn second_collection_equals_fixture_deltas() {
        for &(tree, want) in DEFAULTS {
            let (_root, _m, p) = two(tree, r#"{"interfaces_to_check": "*"}"#);
            let mut all = vec!["lo"];
            all.extend_from_slice(want);
            if tree == "linux-4.19-synth" {
                // lo is the third line there.
                all = vec!["eth0", "eth1", "lo", "bond0", "docker0", "veth3f2a1b9"];
            }
            assert_eq!(interfaces(&p), all, "{tree}");
            for (i, iface) in all.iter().enumerate() {
                let (a, b) = (counters(tree, "t0", iface), counters(tree, "t1", iface));
                let chunk = &p[18 * i..18 * (i + 1)];
                for (j, &(field, units)) in FIELDS.iter().enumerate() {
                    assert_eq!(chunk[j].name, format!("net.{field}.{iface}"));
                    assert_eq!(chunk[j].units, units);
                    assert_eq!(chunk[j].value, Value::Float((b[j] - a[j]) as f64));
                    assert_eq!(chunk[j].tags, [("interface".into(), iface.to_string())]);
                }
                assert_eq!(chunk[16].name, format!("net.rx_bits.{iface}"));
                assert_eq!(chunk[16].value, Value::Float((b[0] - a[0]) as f64 * 8.0));
                assert_eq!(chunk[17].name, format!("net.tx_bits.{iface}"));
                assert_eq!(chunk[17].value, Value::Float((b[8] - a[8]) as f64 * 8.0));
                assert_eq!(chunk[17].units, "b");
            }
        }
        // The captured traffic is really in the deltas.
        let (_root, _m, p) = two("vm-6.18-many", "{}");
        assert!(fixture::float(&p, "net.rx_bytes.dum1") > 0.0);
        assert!(fixture::float(&p, "net.tx_packets.veth0") > 0.0);
    }

    #[test]
    fn selection_by_list_and_glob() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("vm-6.18", r#"{"interfaces_to_check": " lo , eth0 ,"}"#, &["lo", "eth0"]),
            ("vm-6.18-many", r#"{"interfaces_to_check": "dum*"}"#, &["dum1", "dum0", "dum3", "dum2", "dum5", "dum4"]),
            ("vm-6.18-many", r#"{"interfaces_to_check": ["veth*", "br0"]}"#, &["veth0.10", "veth0", "br0"]),
            ("linux-4.19-synth", r#"{"interfaces_to_check": "eth?, bond0"}"#, &["eth0", "eth1", "bond0"]),
            ("vm-6.18", r#"{"interfaces_to_check": "wlan0"}"#, &[]),
        ];
        for &(tree, conf, want) in cases {
            let (_root, _m, p) = two(tree, conf);
            assert_eq!(interfaces(&p), want, "{conf}");
        }
    }

    #[test]
    fn counter_reset_drops_only_that_rate() {
        let (root, mut m, _) = two("vm-6.18", r#"{"interfaces_to_check": "lo"}"#);
        let t1 = root.text("proc/net/dev");
        let lo = t1.lines().find(|l| l.trim_start().starts_with("lo:")).unwrap();
        root.write("proc/net/dev", &t1.replace(lo, "lo: 10 1 0 0 0 0 0 0 99999999 9999 0 0 0 0 0 0"));
        let p = gauges(fixture::collect(m.as_mut(), 2.0));
        assert_eq!(fixture::value(&p, "net.rx_bytes.lo"), None);
        assert_eq!(fixture::value(&p, "net.rx_bits.lo"), None);
        assert_eq!(fixture::value(&p, "net.rx_packets.lo"), None);
        assert!(fixture::float(&p, "net.tx_bytes.lo") > 0.0);
        assert!(fixture::float(&p, "net.tx_bits.lo") > 0.0);
        assert_eq!(fixture::float(&p, "net.rx_errs.lo"), 0.0);
        assert_eq!(p.len(), 15);
    }

    #[test]
    fn interface_that_vanishes_and_returns() {
        let (root, mut m, _) = two("vm-6.18-many", r#"{"interfaces_to_check": "dum*"}"#);
        let t1 = root.text("proc/net/dev");
        let without: String = t1.lines().filter(|l| !l.contains("dum0:")).map(|l| format!("{l}\n")).collect();
        root.write("proc/net/dev", &without);
        let p = fixture::collect(m.as_mut(), 2.0);
        assert_eq!(interfaces(&p), ["dum1", "dum3", "dum2", "dum5", "dum4"]);
        root.write("proc/net/dev", &t1);
        let p = fixture::collect(m.as_mut(), 3.0);
        assert_eq!(interfaces(&p), ["dum1", "dum3", "dum2", "dum5", "dum4"]);
        let p = fixture::collect(m.as_mut(), 4.0);
        assert_eq!(interfaces(&p), DEFAULTS[1].1[3..9]);
        assert_eq!(fixture::float(&p, "net.tx_bytes.dum0"), 0.0);
    }

    #[test]
    fn config_errors_name_the_key() {
        let root = FixtureRoot::new("vm-6.18");
        let cases = [
            ("{\n\"interface_to_check\": \"eth0\"}", "interface_to_check", 2),
            ("{\n\"interfaces_to_check\": {\"a\": 1}}", "interfaces_to_check", 2),
            ("{\"blacklist\": \"x\",\n\"interfaces_to_check\": \"eth[0\"}", "interfaces_to_check", 2),
        ];
        for (text, key, line) in cases {
            match fixture::build_error(&SPEC, &root.ctx(), text) {
                BuildError::Config(e) => {
                    assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{text}")
                }
                BuildError::Unavailable(m) => panic!("{m}"),
            }
        }
        root.remove("proc/net/dev");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("net/dev"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
