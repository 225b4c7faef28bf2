//! `sockstat`: sockets in use per protocol, from `/proc/net/sockstat` and `/proc/net/sockstat6`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `sockstat.sockets_used` | | int | gauge | sockets of every kind in use now |
//! | `sockstat.TCP_inuse` | | int | gauge | TCP sockets in use (IPv4 and IPv6) |
//! | `sockstat.TCP_orphan` | | int | gauge | TCP sockets no process holds any more |
//! | `sockstat.TCP_tw` | | int | gauge | TCP sockets in TIME_WAIT |
//! | `sockstat.TCP_alloc` | | int | gauge | TCP sockets allocated |
//! | `sockstat.TCP_mem` | pages | int | gauge | memory TCP buffers use, in pages |
//! | `sockstat.TCP_mem_bytes` | B | int | gauge | the same in bytes (pages × the page size) |
//! | `sockstat.UDP_inuse` | | int | gauge | UDP sockets in use (IPv4) |
//! | `sockstat.UDP_mem` | pages | int | gauge | memory UDP buffers use, in pages |
//! | `sockstat.UDP_mem_bytes` | B | int | gauge | the same in bytes |
//! | `sockstat.UDPLITE_inuse` | | int | gauge | UDP-Lite sockets in use (IPv4) |
//! | `sockstat.RAW_inuse` | | int | gauge | raw sockets in use (IPv4) |
//! | `sockstat.FRAG_inuse` | | int | gauge | IPv4 packets being reassembled from fragments |
//! | `sockstat.FRAG_memory` | B | int | gauge | memory those fragments use |
//! | `sockstat.TCP6_inuse` | | int | gauge | TCP sockets on IPv6 in use |
//! | `sockstat.UDP6_inuse` | | int | gauge | UDP sockets on IPv6 in use |
//! | `sockstat.UDPLITE6_inuse` | | int | gauge | UDP-Lite sockets on IPv6 in use |
//! | `sockstat.RAW6_inuse` | | int | gauge | raw sockets on IPv6 in use |
//! | `sockstat.FRAG6_inuse` | | int | gauge | IPv6 packets being reassembled from fragments |
//! | `sockstat.FRAG6_memory` | B | int | gauge | memory those fragments use |
//! | `sockstat.<PROTO_key>` | | int | gauge | any other `PROTO: key value` pair a kernel prints |
//!
//! Each `PROTO: key value …` line of the files becomes `PROTO_key` (node_exporter's
//! `node_sockstat_PROTO_key`), in the files' order; a `mem` value (in pages) also gives
//! `PROTO_mem_bytes`, with the page size of the running system. `sockstat6` is read when the
//! kernel has it (no IPv6: only `sockstat`).
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "sockstat", aliases: &[], summary: "sockets in use per protocol (/proc/net/sockstat)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut v4 = ProcFile::new(ctx.roots.proc_path("net/sockstat"));
    v4.probe().map_err(BuildError::Unavailable)?;
    let mut v6 = ProcFile::new(ctx.roots.proc_path("net/sockstat6"));
    let v6 = v6.probe().is_ok().then_some(v6);
    Ok(Box::new(Sockstat { v4, v6, page_size: rustix::param::page_size() as i64 }))
}

struct Sockstat {
    v4: ProcFile,
    v6: Option<ProcFile>,
    page_size: i64,
}

/// The `(protocol, key, value)` triples of a sockstat file:
/// `TCP: inuse 2 orphan 0 tw 5 alloc 2 mem 275` gives `("TCP", "inuse", 2)`, … The line
/// `sockets: used 18` gives `("sockets", "used", 18)`. A pair whose value is not a number
/// is skipped.
pub fn parse(text: &str) -> impl Iterator<Item = (&str, &str, i64)> {
    text.lines().filter_map(|line| line.split_once(": ")).flat_map(|(proto, rest)| {
        let mut it = rest.split_ascii_whitespace();
        std::iter::from_fn(move || loop {
            let key = it.next()?;
            let value = it.next()?;
            if let Ok(v) = value.parse() {
                return Some((proto, key, v));
            }
        })
    })
}

fn emit(text: &str, page_size: i64, out: &mut Vec<Point>) {
    for (proto, key, value) in parse(text) {
        let field = format!("{proto}_{key}");
        let units = match key {
            "mem" => "pages",
            "memory" => "B",
            _ => "",
        };
        out.push(crate::named_point("sockstat", &field, units, Value::Int(value), &[]));
        if key == "mem" {
            let bytes = value.saturating_mul(page_size);
            out.push(crate::named_point("sockstat", &format!("{field}_bytes"), "B", Value::Int(bytes), &[]));
        }
    }
}

impl Module for Sockstat {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        emit(self.v4.read()?, self.page_size, out);
        if let Some(v6) = &mut self.v6 {
            emit(v6.read()?, self.page_size, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let got: Vec<_> = parse("sockets: used 18\nTCP: inuse 2 orphan x tw 5\nnonsense\n").collect();
        assert_eq!(got, [("sockets", "used", 18), ("TCP", "inuse", 2), ("TCP", "tw", 5)]);
    }

    #[test]
    fn on_the_captured_trees() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let page = rustix::param::page_size() as i64;
        for tree in ["vm-6.18", "vm-6.18-many"] {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("sockstat.rs"), &p);
                // The files read independently: words after "PROTO:" taken two by two.
                let mut want = Vec::new();
                for file in ["proc/net/sockstat", "proc/net/sockstat6"] {
                    for line in fixture::read(tree, snap, file).lines() {
                        let words: Vec<&str> = line.split_whitespace().collect();
                        let proto = words[0].trim_end_matches(':');
                        for pair in words[1..].chunks(2) {
                            let v: i64 = pair[1].parse().unwrap();
                            want.push((format!("sockstat.{proto}_{}", pair[0]), Value::Int(v)));
                            if pair[0] == "mem" {
                                want.push((format!("sockstat.{proto}_mem_bytes"), Value::Int(v * page)));
                            }
                        }
                    }
                }
                let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
                assert_eq!(got, want, "{tree} {snap}");
                assert_eq!(got.len(), 20);
                assert_eq!(fixture::find(&p, "sockstat.TCP_mem").map(|p| &*p.units), Some("pages"));
            }
        }
    }

    #[test]
    fn without_ipv6_and_without_the_file() {
        use badger_test_support::fixture::{self, FixtureRoot};
        let root = FixtureRoot::new("vm-6.18");
        root.remove("proc/net/sockstat6");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(p.len(), 14);
        assert!(fixture::find(&p, "sockstat.TCP6_inuse").is_none());
        root.remove("proc/net/sockstat");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("net/sockstat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
