//! `udp_queues`: bytes queued in UDP sockets, from `/proc/net/udp` and `/proc/net/udp6`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `udp_queues.queues.<ip>.<queue>` | B | int | gauge | memory the kernel holds for datagrams in every UDP socket's send (`queue` = `tx`) or receive (`rx`) queue, for IPv4 (`ip` = `v4`) or IPv6 (`v6`) |
//!
//! As node_exporter's `udp_queues` collector (`node_udp_queues{ip="v4",queue="rx"}`): the
//! points are measurement `udp`, field `queues`, tags `ip` and `queue`. Each value is the sum
//! of the `tx_queue:rx_queue` column (hexadecimal) over the file's sockets. A host without
//! IPv6 gives only the `v4` points. The files list every UDP socket, so on a host with very
//! many of them a read is as long as the list (node_exporter reads the same files).
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "udp_queues",
    aliases: &[],
    summary: "bytes queued in UDP sockets (/proc/net/udp, udp6)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut v4 = ProcFile::new(ctx.roots.proc_path("net/udp"));
    v4.probe().map_err(BuildError::Unavailable)?;
    let mut v6 = ProcFile::new(ctx.roots.proc_path("net/udp6"));
    let v6 = v6.probe().is_ok().then_some(v6);
    Ok(Box::new(UdpQueues { v4, v6 }))
}

struct UdpQueues {
    v4: ProcFile,
    v6: Option<ProcFile>,
}

/// `(tx, rx)`: the `tx_queue:rx_queue` column (the fifth) summed over the socket lines; the
/// header line and any line without a hexadecimal `tx:rx` pair are skipped.
pub fn parse(text: &str) -> (i64, i64) {
    let mut sums = (0i64, 0i64);
    for line in text.lines().skip(1) {
        let Some((tx, rx)) = line.split_ascii_whitespace().nth(4).and_then(|c| c.split_once(':')) else { continue };
        if let (Ok(tx), Ok(rx)) = (i64::from_str_radix(tx, 16), i64::from_str_radix(rx, 16)) {
            sums.0 = sums.0.saturating_add(tx);
            sums.1 = sums.1.saturating_add(rx);
        }
    }
    sums
}

fn emit(ip: &str, (tx, rx): (i64, i64), out: &mut Vec<Point>) {
    for (queue, v) in [("tx", tx), ("rx", rx)] {
        out.push(crate::module_point(
            "udp_queues",
            "udp",
            "queues",
            "B",
            Value::Int(v),
            &[("ip", ip), ("queue", queue)],
        ));
    }
}

impl Module for UdpQueues {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        emit("v4", parse(self.v4.read()?), out);
        if let Some(v6) = &mut self.v6 {
            emit("v6", parse(v6.read()?), out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    const HEADER: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";

    #[test]
    fn sums_the_sockets() {
        let text = format!(
            "{HEADER}  123: 0100007F:0035 00000000:0000 07 00000010:00000200 00:00000000 00000000     0        0 1 2 0 0\n  \
             124: 0100007F:0036 00000000:0000 07 00000001:00000001 00:00000000 00000000     0        0 1 2 0 0\n  \
             125: broken\n"
        );
        assert_eq!(parse(&text), (17, 513));
        assert_eq!(parse(HEADER), (0, 0));
    }

    #[test]
    fn on_the_captured_trees_and_without_ipv6() {
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let p = fixture::collect(m.as_mut(), 0.0);
            crate::assert_node_documented("udp_queues", include_str!("udp_queues.rs"), &p);
            // The files read independently: the fifth column of each socket line, `tx:rx`.
            let sum = |f: &str| -> [i64; 2] {
                let mut s = [0, 0];
                for line in fixture::read(tree, "t0", f).lines().skip(1) {
                    let col: Vec<&str> = line.split_whitespace().collect();
                    let q: Vec<i64> = col[4].split(':').map(|h| i64::from_str_radix(h, 16).unwrap()).collect();
                    s[0] += q[0];
                    s[1] += q[1];
                }
                s
            };
            let (v4, v6) = (sum("proc/net/udp"), sum("proc/net/udp6"));
            let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
            let want: Vec<(String, Value)> = [("v4.tx", v4[0]), ("v4.rx", v4[1]), ("v6.tx", v6[0]), ("v6.rx", v6[1])]
                .iter()
                .map(|(s, v)| (format!("udp_queues.queues.{s}"), Value::Int(*v)))
                .collect();
            assert_eq!(got, want);
            // The capture had the test's loopback UDP socket open (v4, queues empty at that instant).
            assert_eq!(fixture::read(tree, "t0", "proc/net/udp").lines().count(), 2);
            assert_eq!(p[1].tags, [("ip".into(), "v4".to_string()), ("queue".into(), "rx".to_string())]);
            assert_eq!((&*p[1].measurement, &*p[1].field), ("udp", "queues"));
        }
        let root = FixtureRoot::new("vm-6.18");
        root.write(
            "proc/net/udp",
            &format!("{HEADER}    1: 00000000:14E9 00000000:0000 07 00000000:00000340 00:00000000 00000000   104        0 1 2 0 0\n"),
        );
        root.remove("proc/net/udp6");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p), ["udp_queues.queues.v4.tx", "udp_queues.queues.v4.rx"]);
        assert_eq!(fixture::int(&p, "udp_queues.queues.v4.rx"), 0x340);
    }
}
