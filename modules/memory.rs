//! `memory`: every line of `/proc/meminfo`, plus used memory and swap.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `mem.<key>` | B | int | gauge | a `/proc/meminfo` line given in kB, in bytes: `mem.memtotal`, `mem.memfree`, `mem.memavailable`, `mem.buffers`, `mem.cached`, `mem.active_anon`, `mem.swaptotal`, `mem.directmap4k`, … (the set depends on the kernel) |
//! | `mem.hugepages_total` | | int | gauge | huge pages in the pool (a count) |
//! | `mem.hugepages_free` | | int | gauge | huge pages not yet allocated |
//! | `mem.hugepages_rsvd` | | int | gauge | huge pages reserved but not yet allocated |
//! | `mem.hugepages_surp` | | int | gauge | surplus huge pages above the pool size |
//! | `mem.used` | B | int | gauge | MemTotal − MemAvailable (MemTotal − MemFree − Buffers − Cached on kernels without MemAvailable) |
//! | `mem.used_percent` | percent | float | gauge | `mem.used` / MemTotal × 100 |
//! | `mem.swap_used` | B | int | gauge | SwapTotal − SwapFree |
//! | `mem.swap_used_percent` | percent | float | gauge | `mem.swap_used` / SwapTotal × 100; 0 without swap |
//!
//! A key's name is the meminfo key lowercased, with `(` turned into `_` and `)` dropped
//! (`Active(anon)` → `mem.active_anon`). Any line without a `kB` suffix is reported as the raw
//! count with empty units (the `HugePages_*` lines on current kernels). Points come in file
//! order, then the four derived ones.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::borrow::Cow;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "memory", aliases: &[], summary: "memory and swap (/proc/meminfo)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("meminfo"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Memory { file, field: String::new(), names: Vec::new() }))
}

/// Field names of the meminfo keys kernels print today, so the usual lines need no
/// allocation for their field. Sorted, for binary search.
const KNOWN_FIELDS: &[&str] = &[
    "active",
    "active_anon",
    "active_file",
    "anonhugepages",
    "anonpages",
    "balloon",
    "bounce",
    "buffers",
    "cached",
    "cmafree",
    "cmatotal",
    "commitlimit",
    "committed_as",
    "directmap1g",
    "directmap2m",
    "directmap4k",
    "directmap4m",
    "dirty",
    "filehugepages",
    "filepmdmapped",
    "hardwarecorrupted",
    "highfree",
    "hightotal",
    "hugepages_free",
    "hugepages_rsvd",
    "hugepages_surp",
    "hugepages_total",
    "hugepagesize",
    "hugetlb",
    "inactive",
    "inactive_anon",
    "inactive_file",
    "kernelstack",
    "kreclaimable",
    "lowfree",
    "lowtotal",
    "mapped",
    "memavailable",
    "memfree",
    "memtotal",
    "mlocked",
    "mmapcopy",
    "nfs_unstable",
    "pagetables",
    "percpu",
    "quicklists",
    "secpagetables",
    "shadowcallstack",
    "shmem",
    "shmemhugepages",
    "shmempmdmapped",
    "slab",
    "sreclaimable",
    "sunreclaim",
    "swapcached",
    "swapfree",
    "swaptotal",
    "unaccepted",
    "unevictable",
    "vmallocchunk",
    "vmalloctotal",
    "vmallocused",
    "writeback",
    "writebacktmp",
    "zswap",
    "zswapped",
];

/// `Active(anon)` → `active_anon`, written into `out`.
pub fn field_name(key: &str, out: &mut String) {
    out.clear();
    for c in key.chars() {
        match c {
            '(' => out.push('_'),
            ')' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
}

/// One line of `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemLine<'a> {
    pub key: &'a str,
    /// The number as printed.
    pub value: u64,
    /// Whether it had a `kB` suffix.
    pub kb: bool,
}

impl MemLine<'_> {
    /// Bytes for kB lines, the raw count otherwise.
    pub fn scaled(&self) -> u64 {
        if self.kb {
            self.value.saturating_mul(1024)
        } else {
            self.value
        }
    }
}

/// Parses one `Key:   123 kB` line; `None` if malformed.
pub fn parse_line(line: &str) -> Option<MemLine<'_>> {
    let (key, rest) = line.split_once(':')?;
    let mut f = rest.split_ascii_whitespace();
    let value = f.next()?.parse().ok()?;
    let kb = match f.next() {
        None => false,
        Some("kB") => true,
        Some(_) => return None,
    };
    (!key.is_empty() && f.next().is_none()).then_some(MemLine { key, value, kb })
}

/// Every well-formed line, in file order.
pub fn parse(text: &str) -> impl Iterator<Item = MemLine<'_>> {
    text.lines().filter_map(parse_line)
}

/// The derived stats, from the lines that were read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Derived {
    pub used: Option<u64>,
    pub used_percent: Option<f64>,
    pub swap_used: Option<u64>,
    pub swap_used_percent: Option<f64>,
}

/// Computes `used`, `used_percent`, `swap_used` and `swap_used_percent` (bytes).
pub fn derive(text: &str) -> Derived {
    let mut acc = Inputs::default();
    parse(text).for_each(|l| acc.note(&l));
    acc.derive()
}

/// The lines the derived stats need, noted as they go by (the module parses the file once).
#[derive(Debug, Default, Clone, Copy)]
struct Inputs {
    total: Option<u64>,
    free: Option<u64>,
    avail: Option<u64>,
    buffers: Option<u64>,
    cached: Option<u64>,
    swap_total: Option<u64>,
    swap_free: Option<u64>,
}

impl Inputs {
    fn note(&mut self, l: &MemLine<'_>) {
        let slot = match l.key {
            "MemTotal" => &mut self.total,
            "MemFree" => &mut self.free,
            "MemAvailable" => &mut self.avail,
            "Buffers" => &mut self.buffers,
            "Cached" => &mut self.cached,
            "SwapTotal" => &mut self.swap_total,
            "SwapFree" => &mut self.swap_free,
            _ => return,
        };
        *slot = Some(l.scaled());
    }

    fn derive(self) -> Derived {
        let mut d = Derived::default();
        if let Some(total) = self.total {
            let used = match self.avail {
                Some(a) => Some(total.saturating_sub(a)),
                None => match (self.free, self.buffers, self.cached) {
                    (Some(f), Some(b), Some(c)) => Some(total.saturating_sub(f).saturating_sub(b).saturating_sub(c)),
                    _ => None,
                },
            };
            d.used = used;
            if total > 0 {
                d.used_percent = used.map(|u| u as f64 / total as f64 * 100.0);
            }
        }
        if let (Some(t), Some(f)) = (self.swap_total, self.swap_free) {
            let used = t.saturating_sub(f);
            d.swap_used = Some(used);
            d.swap_used_percent = Some(if t == 0 { 0.0 } else { used as f64 / t as f64 * 100.0 });
        }
        d
    }
}

/// The names of one meminfo line, kept from tick to tick (the keys and their order do not
/// change while the kernel runs, so each tick only compares the key).
struct LineNames {
    key: String,
    field: Cow<'static, str>,
    name: String,
}

struct Memory {
    file: ProcFile,
    /// Scratch for field names.
    field: String,
    /// The names of each line, in file order.
    names: Vec<LineNames>,
}

impl Module for Memory {
    fn shares_thread(&self) -> bool {
        // Reads only kernel text files.
        true
    }

    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        let start = out.len();
        let mut inputs = Inputs::default();
        for (i, l) in parse(text).enumerate() {
            inputs.note(&l);
            if self.names.get(i).is_none_or(|n| n.key != l.key) {
                field_name(l.key, &mut self.field);
                let field: Cow<'static, str> = match KNOWN_FIELDS.binary_search(&self.field.as_str()) {
                    Ok(i) => Cow::Borrowed(KNOWN_FIELDS[i]),
                    Err(_) => Cow::Owned(self.field.clone()),
                };
                let names = LineNames { key: l.key.to_string(), name: format!("mem.{field}"), field };
                self.names.truncate(i);
                self.names.push(names);
            }
            let names = &self.names[i];
            out.push(Point {
                name: names.name.clone(),
                value: Value::from(l.scaled()),
                units: Cow::Borrowed(if l.kb { "B" } else { "" }),
                measurement: Cow::Borrowed("mem"),
                field: names.field.clone(),
                tags: Vec::new(),
                kind: Default::default(),
            });
        }
        if out.len() == start {
            return Err(CollectError(format!("{}: no \"Key: value\" lines", self.file.path().display())));
        }
        let d = inputs.derive();
        if let Some(v) = d.used {
            out.push(Point::simple("mem", "used", "B", Value::from(v)));
        }
        if let Some(v) = d.used_percent {
            out.push(Point::simple("mem", "used_percent", "percent", Value::Float(v)));
        }
        if let Some(v) = d.swap_used {
            out.push(Point::simple("mem", "swap_used", "B", Value::from(v)));
        }
        if let Some(v) = d.swap_used_percent {
            out.push(Point::simple("mem", "swap_used_percent", "percent", Value::Float(v)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("memory.rs");

    #[test]
    fn known_fields_are_sorted() {
        assert!(KNOWN_FIELDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_and_lines() {
        let mut s = String::new();
        for (key, want) in [
            ("Active(anon)", "active_anon"),
            ("MemTotal", "memtotal"),
            ("DirectMap4k", "directmap4k"),
            ("HugePages_Total", "hugepages_total"),
            ("NFS_Unstable", "nfs_unstable"),
        ] {
            field_name(key, &mut s);
            assert_eq!(s, want);
        }
        assert_eq!(
            parse_line("MemTotal:       24684092 kB"),
            Some(MemLine { key: "MemTotal", value: 24684092, kb: true })
        );
        assert_eq!(parse_line("HugePages_Total:       4").map(|l| l.scaled()), Some(4));
        assert_eq!(parse_line("Bad: 12 MB"), None);
        assert_eq!(parse_line("Bad: x kB"), None);
        assert_eq!(parse_line("no colon"), None);
    }

    #[test]
    fn derived_without_memavailable() {
        let d = derive("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n");
        assert_eq!(d.used, Some(600 * 1024));
        assert_eq!(d.used_percent, Some(60.0));
        assert_eq!(d.swap_used, None);
        let d = derive("MemTotal: 1000 kB\nMemAvailable: 750 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
        assert_eq!(d.used, Some(250 * 1024));
        assert_eq!(d.swap_used, Some(0));
        assert_eq!(d.swap_used_percent, Some(0.0));
    }

    /// Every line of a fixture's meminfo, parsed independently: (name, value, units).
    fn expected(tree: &str, snap: &str) -> Vec<(String, i64, &'static str)> {
        fixture::read(tree, snap, "proc/meminfo")
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                let f: Vec<&str> = v.split_whitespace().collect();
                let n: i64 = f[0].parse().unwrap();
                let name = format!("mem.{}", k.to_lowercase().replace('(', "_").replace(')', ""));
                if f.len() == 2 {
                    (name, n * 1024, "B")
                } else {
                    (name, n, "")
                }
            })
            .collect()
    }

    fn kb(tree: &str, snap: &str, key: &str) -> i64 {
        let name = format!("mem.{}", key.to_lowercase());
        expected(tree, snap).into_iter().find(|e| e.0 == name).unwrap().1
    }

    #[test]
    fn every_line_on_every_tree() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(SOURCE, &p);
                let want = expected(tree, snap);
                assert_eq!(p.len(), want.len() + 4, "{tree}");
                for (point, (name, value, units)) in p.iter().zip(&want) {
                    assert_eq!(
                        (point.name.as_str(), point.value, point.units.as_ref()),
                        (name.as_str(), Value::Int(*value), *units)
                    );
                }
                let total = kb(tree, snap, "MemTotal");
                let used = total - kb(tree, snap, "MemAvailable");
                let swap_total = kb(tree, snap, "SwapTotal");
                let swap_used = swap_total - kb(tree, snap, "SwapFree");
                let tail: Vec<(&str, Value)> = p[want.len()..].iter().map(|p| (p.name.as_str(), p.value)).collect();
                assert_eq!(
                    tail,
                    [
                        ("mem.used", Value::Int(used)),
                        ("mem.used_percent", Value::Float(used as f64 / total as f64 * 100.0)),
                        ("mem.swap_used", Value::Int(swap_used)),
                        (
                            "mem.swap_used_percent",
                            Value::Float(if swap_total == 0 {
                                0.0
                            } else {
                                swap_used as f64 / swap_total as f64 * 100.0
                            })
                        ),
                    ]
                );
            }
        }
    }

    #[test]
    fn known_names_on_the_fixtures() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::int(&p, "mem.memtotal"), 16311372 * 1024);
        assert_eq!(fixture::find(&p, "mem.active_anon").unwrap().units, "B");
        let h = fixture::find(&p, "mem.hugepages_total").unwrap();
        assert_eq!((h.value, h.units.as_ref()), (Value::Int(4), ""));
        assert_eq!(fixture::int(&p, "mem.hugepagesize"), 2048 * 1024);
        assert_eq!(fixture::int(&p, "mem.swap_used"), (2097148 - 2001020) * 1024);
        // Every field of the real kernels is a known one (no allocation for it).
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for p in fixture::collect(m.as_mut(), 0.0) {
                assert!(matches!(p.field, Cow::Borrowed(_)), "{}", p.name);
            }
        }
    }

    #[test]
    fn unknown_keys_are_kept() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        root.write("proc/meminfo", "MemTotal: 100 kB\nMemAvailable: 25 kB\nGPU(vram): 7 kB\ngarbage\n");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(
            fixture::names(&p),
            ["mem.memtotal", "mem.memavailable", "mem.gpu_vram", "mem.used", "mem.used_percent"]
        );
        assert_eq!(fixture::float(&p, "mem.used_percent"), 75.0);
        root.write("proc/meminfo", "garbage\n");
        let mut out = Vec::new();
        assert!(m.collect(fixture::at(1.0), &mut out).is_err());
    }

    #[test]
    fn config_and_missing_file() {
        let root = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &root.ctx(), "{\"interval\": 5,\n \"units\": \"kB\"}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("units"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
        root.remove("proc/meminfo");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("meminfo"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
