//! `cpu`: how CPU time was spent, process creation and context switches, from `/proc/stat`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `cpu.user` | percent | float | rate | share of CPU time spent in user mode (includes `guest`) |
//! | `cpu.nice` | percent | float | rate | share in user mode at low priority (includes `guest_nice`) |
//! | `cpu.system` | percent | float | rate | share in kernel mode |
//! | `cpu.idle` | percent | float | rate | share idle |
//! | `cpu.iowait` | percent | float | rate | share idle while I/O was outstanding |
//! | `cpu.irq` | percent | float | rate | share servicing hardware interrupts |
//! | `cpu.softirq` | percent | float | rate | share servicing softirqs |
//! | `cpu.steal` | percent | float | rate | share taken by the hypervisor for other guests |
//! | `cpu.guest` | percent | float | rate | share running guest vCPUs (already inside `user`) |
//! | `cpu.guest_nice` | percent | float | rate | share running niced guests (already inside `nice`) |
//! | `cpu.user.<cpu>` | percent | float | rate | `cpu.user` of one core (`per_core`), tag `cpu` |
//! | `cpu.nice.<cpu>` | percent | float | rate | `cpu.nice` of one core (`per_core`), tag `cpu` |
//! | `cpu.system.<cpu>` | percent | float | rate | `cpu.system` of one core (`per_core`), tag `cpu` |
//! | `cpu.idle.<cpu>` | percent | float | rate | `cpu.idle` of one core (`per_core`), tag `cpu` |
//! | `cpu.iowait.<cpu>` | percent | float | rate | `cpu.iowait` of one core (`per_core`), tag `cpu` |
//! | `cpu.irq.<cpu>` | percent | float | rate | `cpu.irq` of one core (`per_core`), tag `cpu` |
//! | `cpu.softirq.<cpu>` | percent | float | rate | `cpu.softirq` of one core (`per_core`), tag `cpu` |
//! | `cpu.steal.<cpu>` | percent | float | rate | `cpu.steal` of one core (`per_core`), tag `cpu` |
//! | `cpu.guest.<cpu>` | percent | float | rate | `cpu.guest` of one core (`per_core`), tag `cpu` |
//! | `cpu.guest_nice.<cpu>` | percent | float | rate | `cpu.guest_nice` of one core (`per_core`), tag `cpu` |
//! | `cpu.procs_forked_per_sec` | | float | rate | processes and threads created per second |
//! | `cpu.procs_running` | | int | gauge | threads runnable now |
//! | `cpu.procs_blocked` | | int | gauge | threads blocked on I/O now |
//! | `cpu.ctxt_per_sec` | | float | rate | context switches per second, all cores |
//! | `cpu.ctxt_per_sec_per_core` | | float | rate | `ctxt_per_sec` divided by the number of cores |
//! | `cpu.seconds_total.<cpu>.<mode>` | s | float | counter | seconds core `<cpu>` spent in `<mode>` since boot (ticks / 100): `user`, `nice`, `system`, `idle`, `iowait`, `irq`, `softirq`, `steal`; tags `cpu` (`0`, `1`, …) and `mode` |
//! | `cpu.guest_seconds_total.<cpu>.<mode>` | s | float | counter | seconds core `<cpu>` ran guests since boot, `mode` `user` (guest) or `nice` (guest_nice) |
//! | `cpu.intr_total` | | int | counter | interrupts serviced since boot (first number of the `intr` line) |
//! | `cpu.context_switches_total` | | int | counter | context switches since boot (`ctxt`) |
//! | `cpu.forks_total` | | int | counter | processes and threads created since boot (`processes`) |
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `per_core` | `false` | also report the ten shares of every core, as `cpu.<state>.cpu0` … |
//!
//! A share is Δstate / Δtotal × 100 between two collections, where total is user + nice +
//! system + idle + iowait + irq + softirq + steal (`guest` and `guest_nice` are already counted
//! in `user` and `nice`), so the first eight shares add up to 100. A state whose counter went
//! backwards (iowait does on some kernels) counts as 0; with no ticks at all in between there
//! are no shares. Shares and rates are absent on the first collection. A kernel that prints
//! fewer than ten columns gets only the states it prints. Cores are counted from the `cpuN`
//! lines of each read, so a core taken offline drops out of `ctxt_per_sec_per_core`.
//!
//! The counters (kind `counter`: raw cumulative values, hidden from the emitters that print
//! Stat Badger's stats, read by exposition formats such as OTLP and Prometheus; built only when
//! an emitter that reads them is configured: otlp, prometheus, pushgateway, remote_write) are
//! present on every collection, the first included, whatever `per_core` says. They follow
//! node_exporter: `seconds_total` is measurement `cpu`, field `seconds_total`, one point per
//! core and mode, ticks divided by USER_HZ (100 on every Linux architecture badger runs on);
//! as in node_exporter (and the kernel's own columns), `user` and `nice` include the guest
//! time that `guest_seconds_total` reports again. `intr_total`, `context_switches_total` and
//! `forks_total` have an empty measurement (node_exporter's `node_intr_total`, …).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Text, Value};
use badger_api::procfile::ProcFile;
use badger_api::rate::Rate;

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "cpu", aliases: &[], summary: "CPU time shares, forks, context switches (/proc/stat)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    per_core: bool,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config { per_core } = conf.parse()?;
    let mut file = ProcFile::new(ctx.roots.proc_path("stat"));
    file.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Cpu {
        file,
        per_core,
        cur: ProcStat::default(),
        prev: ProcStat::default(),
        labels: Vec::new(),
        numbers: Vec::new(),
        forks: Rate::default(),
        ctxt: Rate::default(),
        counters: !ctx.gauges_only,
    }))
}

/// The CPU states of a `cpu` line, in the kernel's column order.
pub const STATES: [&str; 10] =
    ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"];

/// The columns that make up the total (guest and guest_nice are inside user and nice).
const TOTAL_COLUMNS: usize = 8;

/// One `cpu` or `cpuN` line: ticks per state; missing columns are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub ticks: [u64; 10],
    /// How many columns the kernel printed (at most 10).
    pub columns: usize,
}

impl CpuTimes {
    /// Parses the numbers after the label; needs at least user, nice, system and idle.
    pub fn parse(fields: &str) -> Option<CpuTimes> {
        let mut t = CpuTimes::default();
        for (slot, field) in t.ticks.iter_mut().zip(fields.split_ascii_whitespace()) {
            *slot = field.parse().ok()?;
            t.columns += 1;
        }
        (t.columns >= 4).then_some(t)
    }

    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub fn total(&self) -> u64 {
        self.ticks[..TOTAL_COLUMNS].iter().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Percent of time per state between two reads; `None` when no tick passed.
pub fn shares(prev: &CpuTimes, cur: &CpuTimes) -> Option<[f64; 10]> {
    let mut delta = [0u64; 10];
    for ((d, c), p) in delta.iter_mut().zip(&cur.ticks).zip(&prev.ticks) {
        *d = c.saturating_sub(*p);
    }
    let total = delta[..TOTAL_COLUMNS].iter().fold(0u64, |a, &b| a.saturating_add(b));
    if total == 0 {
        return None;
    }
    Some(delta.map(|d| d as f64 / total as f64 * 100.0))
}

/// What the module uses from `/proc/stat`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcStat {
    /// The aggregate `cpu` line.
    pub cpu: Option<CpuTimes>,
    /// `cpuN` lines in file order: (N, times).
    pub cores: Vec<(u32, CpuTimes)>,
    pub ctxt: Option<u64>,
    /// The first number of the `intr` line: interrupts since boot.
    pub intr: Option<u64>,
    pub btime: Option<u64>,
    pub processes: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

/// Parses `/proc/stat` into `out`, reusing its buffers. Malformed lines are skipped.
pub fn parse(text: &str, out: &mut ProcStat) {
    out.cpu = None;
    out.cores.clear();
    out.ctxt = None;
    out.intr = None;
    out.btime = None;
    out.processes = None;
    out.procs_running = None;
    out.procs_blocked = None;
    for line in text.lines() {
        let (label, rest) = line.split_once(' ').unwrap_or((line, ""));
        match label {
            "cpu" => out.cpu = CpuTimes::parse(rest),
            "ctxt" => out.ctxt = rest.trim().parse().ok(),
            "intr" => out.intr = rest.split_ascii_whitespace().next().and_then(|n| n.parse().ok()),
            "btime" => out.btime = rest.trim().parse().ok(),
            "processes" => out.processes = rest.trim().parse().ok(),
            "procs_running" => out.procs_running = rest.trim().parse().ok(),
            "procs_blocked" => out.procs_blocked = rest.trim().parse().ok(),
            _ => {
                if let Some(n) = label.strip_prefix("cpu").and_then(|n| n.parse().ok()) {
                    if let Some(t) = CpuTimes::parse(rest) {
                        out.cores.push((n, t));
                    }
                }
            }
        }
    }
}

/// The total ticks of the aggregate `cpu` line (what `process_stats` divides by).
pub fn total_ticks(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("cpu ")).and_then(CpuTimes::parse).map(|t| t.total())
}

struct Cpu {
    file: ProcFile,
    per_core: bool,
    cur: ProcStat,
    prev: ProcStat,
    /// `cpuN` tag values, made once per core.
    labels: Vec<String>,
    /// `N` tag values (the counters' `cpu` tag, as node_exporter), made once per core.
    numbers: Vec<String>,
    forks: Rate,
    ctxt: Rate,
    /// Whether an emitter reads the counters (`ModuleContext::gauges_only`).
    counters: bool,
}

/// The `cpuN` tag value of core `n`, made on first use.
fn core_label(labels: &mut Vec<String>, n: u32) -> &str {
    let n = n as usize;
    while labels.len() <= n {
        let next = labels.len();
        labels.push(format!("cpu{next}"));
    }
    &labels[n]
}

/// The number tag value of core `n`, made on first use.
fn core_number(numbers: &mut Vec<String>, n: u32) -> &str {
    let n = n as usize;
    while numbers.len() <= n {
        let next = numbers.len();
        numbers.push(next.to_string());
    }
    &numbers[n]
}

/// Kernel ticks per second of the `cpu` lines (USER_HZ).
pub const USER_HZ: f64 = 100.0;

/// The modes of `seconds_total`, in the kernel's column order (node_exporter's names).
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// A counter of one core and mode: name `cpu.<field>.<cpu>.<mode>`, tags `cpu`, `mode`.
fn core_counter(field: &'static str, cpu: &str, mode: &'static str, ticks: u64) -> Point {
    let mut p = Point::device("cpu", field, "s", "cpu", cpu, Value::Float(ticks as f64 / USER_HZ)).counter();
    p.name.push('.');
    p.name.push_str(mode);
    p.tags.push((Text::Borrowed("mode"), mode.to_string()));
    p
}

/// A counter without measurement or tags: name `cpu.<field>`.
fn plain_counter(field: &'static str, v: u64) -> Point {
    let mut p = Point::simple("cpu", field, "", Value::from(v)).counter();
    p.measurement = Text::Borrowed("");
    p
}

fn push_shares(out: &mut Vec<Point>, shares: &[f64; 10], columns: usize, core: Option<&str>) {
    for (state, &v) in STATES.iter().zip(shares).take(columns) {
        out.push(match core {
            None => Point::simple("cpu", state, "percent", Value::Float(v)),
            Some(c) => Point::device("cpu", state, "percent", "cpu", c, Value::Float(v)),
        });
    }
}

impl Module for Cpu {
    fn shares_thread(&self) -> bool {
        // Reads only kernel text files.
        true
    }

    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let text = self.file.read()?;
        parse(text, &mut self.cur);
        let Some(cpu) = self.cur.cpu else {
            return Err(CollectError(format!("{}: no \"cpu\" line", self.file.path().display())));
        };

        if let Some(prev) = &self.prev.cpu {
            if let Some(s) = shares(prev, &cpu) {
                push_shares(out, &s, cpu.columns.min(prev.columns), None);
            }
        }
        if self.per_core {
            for i in 0..self.cur.cores.len() {
                let (n, times) = self.cur.cores[i];
                // Cores are listed in ascending order; a core that was offline has no previous.
                let prev = match self.prev.cores.binary_search_by_key(&n, |c| c.0) {
                    Ok(j) => self.prev.cores[j].1,
                    Err(_) => continue,
                };
                if let Some(s) = shares(&prev, &times) {
                    let columns = times.columns.min(prev.columns);
                    let label = core_label(&mut self.labels, n);
                    push_shares(out, &s, columns, Some(label));
                }
            }
        }

        if let Some(v) = self.cur.processes {
            if let Some(r) = self.forks.update(v, now) {
                out.push(Point::simple("cpu", "procs_forked_per_sec", "", Value::Float(r)));
            }
        }
        if let Some(v) = self.cur.procs_running {
            out.push(Point::simple("cpu", "procs_running", "", Value::from(v)));
        }
        if let Some(v) = self.cur.procs_blocked {
            out.push(Point::simple("cpu", "procs_blocked", "", Value::from(v)));
        }
        if let Some(v) = self.cur.ctxt {
            if let Some(r) = self.ctxt.update(v, now) {
                out.push(Point::simple("cpu", "ctxt_per_sec", "", Value::Float(r)));
                let cores = self.cur.cores.len();
                if cores > 0 {
                    out.push(Point::simple("cpu", "ctxt_per_sec_per_core", "", Value::Float(r / cores as f64)));
                }
            }
        }
        if !self.counters {
            std::mem::swap(&mut self.cur, &mut self.prev);
            return Ok(());
        }
        for &(n, times) in &self.cur.cores {
            let cpu = core_number(&mut self.numbers, n);
            for (mode, &t) in MODES.iter().zip(&times.ticks).take(times.columns) {
                out.push(core_counter("seconds_total", cpu, mode, t));
            }
            for (mode, &t) in ["user", "nice"].iter().zip(&times.ticks[8..]).take(times.columns.saturating_sub(8)) {
                out.push(core_counter("guest_seconds_total", cpu, mode, t));
            }
        }
        for (field, v) in [
            ("intr_total", self.cur.intr),
            ("context_switches_total", self.cur.ctxt),
            ("forks_total", self.cur.processes),
        ] {
            if let Some(v) = v {
                out.push(plain_counter(field, v));
            }
        }
        std::mem::swap(&mut self.cur, &mut self.prev);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::plugin::BuildError;
    use badger_api::point::Kind;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("cpu.rs");

    /// A counter as the test compares it: name, tags, value.
    type Row = (String, Vec<(String, String)>, Value);

    /// The points Stat Badger printed (the counters left out).
    fn gauges(p: Vec<Point>) -> Vec<Point> {
        p.into_iter().filter(|p| p.kind == Kind::Gauge).collect()
    }

    /// The numbers of one line of a fixture's /proc/stat, parsed independently of the module.
    fn line(text: &str, label: &str) -> Vec<u64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no {label} line"))
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect()
    }

    fn expected_shares(t0: &[u64], t1: &[u64]) -> Vec<f64> {
        let d: Vec<u64> = t0.iter().zip(t1).map(|(a, b)| if b > a { b - a } else { 0 }).collect();
        let total: u64 = d[..8].iter().sum();
        d.iter().map(|&x| x as f64 / total as f64 * 100.0).collect()
    }

    #[test]
    fn parses_stat() {
        let text = "cpu  10 1 5 100 3 0 2 0 4 0\ncpu0 5 1 2 50 1 0 1 0 4 0\n\
                    cpu1 5 0 3 50 2 0 1 0 0 0\nintr 1 2 3\nctxt 1000\nbtime 1700000000\n\
                    processes 77\nprocs_running 2\nprocs_blocked 1\nsoftirq 1 2\n";
        let mut s = ProcStat::default();
        parse(text, &mut s);
        assert_eq!(s.cpu, Some(CpuTimes { ticks: [10, 1, 5, 100, 3, 0, 2, 0, 4, 0], columns: 10 }));
        assert_eq!(s.cpu.unwrap().total(), 121);
        assert_eq!(s.cores.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(s.ctxt, Some(1000));
        assert_eq!(s.btime, Some(1_700_000_000));
        assert_eq!(s.processes, Some(77));
        assert_eq!(s.procs_running, Some(2));
        assert_eq!(s.procs_blocked, Some(1));
        assert_eq!(total_ticks(text), Some(121));

        // An old kernel with 8 columns; garbage lines are skipped.
        parse("cpu 1 2 3 4 5 6 7 8\ncpux 1 2\ncpu0 1 x 3 4\nctxt zz\n", &mut s);
        assert_eq!(s.cpu.unwrap().columns, 8);
        assert!(s.cores.is_empty());
        assert_eq!(s.ctxt, None);
        // Too few columns.
        assert_eq!(CpuTimes::parse("1 2 3"), None);
    }

    #[test]
    fn shares_clamp_backwards_states_and_need_ticks() {
        let t = |v: [u64; 10]| CpuTimes { ticks: v, columns: 10 };
        let a = t([100, 0, 50, 800, 40, 0, 10, 0, 30, 0]);
        // iowait went back by 5: counts as 0, total is 60 + 20 + 20 = 100.
        let b = t([160, 0, 70, 820, 35, 0, 10, 0, 50, 0]);
        let s = shares(&a, &b).unwrap();
        assert_eq!(s, [60.0, 0.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0]);
        assert_eq!(s[..8].iter().sum::<f64>(), 100.0);
        assert_eq!(shares(&a, &a), None);
    }

    #[test]
    fn first_collection_has_only_gauges() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let all = fixture::collect(m.as_mut(), 0.0);
            fixture::assert_documented(SOURCE, &all);
            let p = gauges(all);
            assert_eq!(fixture::names(&p), ["cpu.procs_running", "cpu.procs_blocked"], "{tree}");
            let text = fixture::read(tree, "t0", "proc/stat");
            assert_eq!(fixture::int(&p, "cpu.procs_running") as u64, line(&text, "procs_running")[0]);
            assert_eq!(fixture::int(&p, "cpu.procs_blocked") as u64, line(&text, "procs_blocked")[0]);
            fixture::assert_documented(SOURCE, &p);
        }
    }

    #[test]
    fn second_collection_equals_fixture_deltas() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"per_core": true}"#);
            fixture::collect(m.as_mut(), 0.0);
            root.advance();
            let all = fixture::collect(m.as_mut(), 1.0);
            fixture::assert_documented(SOURCE, &all);
            let p = gauges(all);

            let t0 = fixture::read(tree, "t0", "proc/stat");
            let t1 = fixture::read(tree, "t1", "proc/stat");
            let want = expected_shares(&line(&t0, "cpu"), &line(&t1, "cpu"));
            for (state, w) in STATES.iter().zip(&want) {
                let name = format!("cpu.{state}");
                let got = fixture::find(&p, &name).unwrap();
                assert_eq!(got.units, "percent");
                fixture::assert_close(got.value.as_f64(), *w);
            }
            let first8: f64 = STATES[..8].iter().map(|s| fixture::float(&p, &format!("cpu.{s}"))).sum();
            fixture::assert_close(first8, 100.0);

            let cores: Vec<String> = t1
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|l| l.len() > 3 && l.starts_with("cpu"))
                .map(String::from)
                .collect();
            for core in &cores {
                let want = expected_shares(&line(&t0, core), &line(&t1, core));
                for (state, w) in STATES.iter().zip(&want) {
                    let name = format!("cpu.{state}.{core}");
                    let got = fixture::find(&p, &name).unwrap();
                    assert_eq!(got.tags, [("cpu".into(), core.clone())]);
                    fixture::assert_close(got.value.as_f64(), *w);
                }
            }

            let d = |label| (line(&t1, label)[0] - line(&t0, label)[0]) as f64;
            assert_eq!(fixture::float(&p, "cpu.procs_forked_per_sec"), d("processes"));
            assert_eq!(fixture::float(&p, "cpu.ctxt_per_sec"), d("ctxt"));
            assert_eq!(fixture::float(&p, "cpu.ctxt_per_sec_per_core"), d("ctxt") / cores.len() as f64);
            assert_eq!(fixture::int(&p, "cpu.procs_running") as u64, line(&t1, "procs_running")[0]);
            // 10 + 10 per core + 5, in the table's order.
            assert_eq!(p.len(), 10 + 10 * cores.len() + 5, "{tree}");
            let order: Vec<&str> = fixture::names(&p);
            assert_eq!(order[0], "cpu.user");
            assert_eq!(order[10], format!("cpu.user.{}", cores[0]));
            assert_eq!(
                order[10 + 10 * cores.len()..],
                [
                    "cpu.procs_forked_per_sec",
                    "cpu.procs_running",
                    "cpu.procs_blocked",
                    "cpu.ctxt_per_sec",
                    "cpu.ctxt_per_sec_per_core"
                ]
            );
        }
    }

    #[test]
    fn counters_equal_the_fixture_on_every_collection() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            // per_core does not matter to the counters.
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, secs) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p: Vec<Point> =
                    fixture::collect(m.as_mut(), secs).into_iter().filter(|p| p.kind == Kind::Counter).collect();
                fixture::assert_documented(SOURCE, &p);
                let text = fixture::read(tree, snap, "proc/stat");
                let mut want: Vec<Row> = Vec::new();
                for l in text.lines() {
                    let label = l.split_whitespace().next().unwrap_or("");
                    let Some(n) = label.strip_prefix("cpu").filter(|n| !n.is_empty()) else { continue };
                    let ticks = line(&text, label);
                    let modes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
                    for (mode, t) in modes.iter().zip(&ticks) {
                        let tags = vec![("cpu".to_string(), n.to_string()), ("mode".to_string(), mode.to_string())];
                        want.push((format!("cpu.seconds_total.{n}.{mode}"), tags, Value::Float(*t as f64 / 100.0)));
                    }
                    for (mode, t) in ["user", "nice"].iter().zip(ticks.iter().skip(8)) {
                        let tags = vec![("cpu".to_string(), n.to_string()), ("mode".to_string(), mode.to_string())];
                        want.push((
                            format!("cpu.guest_seconds_total.{n}.{mode}"),
                            tags,
                            Value::Float(*t as f64 / 100.0),
                        ));
                    }
                }
                for (field, label) in
                    [("intr_total", "intr"), ("context_switches_total", "ctxt"), ("forks_total", "processes")]
                {
                    want.push((format!("cpu.{field}"), vec![], Value::Int(line(&text, label)[0] as i64)));
                }
                let got: Vec<Row> = p
                    .iter()
                    .map(|p| {
                        (p.name.clone(), p.tags.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), p.value)
                    })
                    .collect();
                assert_eq!(got, want, "{tree} {snap}");
                for p in &p {
                    let (measurement, units) = if p.tags.is_empty() { ("", "") } else { ("cpu", "s") };
                    assert_eq!((p.measurement.as_ref(), p.units.as_ref()), (measurement, units), "{}", p.name);
                }
            }
        }
    }

    #[test]
    fn synth_iowait_going_back_counts_as_zero() {
        // linux-4.19-synth: cpu1's iowait (and so the aggregate's) goes back between t0 and t1.
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"per_core": true}"#);
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        let p = fixture::collect(m.as_mut(), 1.0);
        assert_eq!(fixture::float(&p, "cpu.iowait"), 0.0);
        assert_eq!(fixture::float(&p, "cpu.iowait.cpu1"), 0.0);
        // cpu1: user 20, nice 1, system 5, idle 77 (iowait -3 → 0): total 103.
        fixture::assert_close(fixture::float(&p, "cpu.idle.cpu1"), 77.0 / 103.0 * 100.0);
    }

    #[test]
    fn no_per_core_by_default() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        let p = gauges(fixture::collect(m.as_mut(), 1.0));
        assert_eq!(p.len(), 15);
        assert!(p.iter().all(|p| p.tags.is_empty()));
    }

    #[test]
    fn counter_reset_drops_only_that_rate() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        let t1 = root.text("proc/stat");
        let t0 = fixture::read("vm-6.18", "t0", "proc/stat");
        let ctxt0 = line(&t0, "ctxt")[0];
        root.write(
            "proc/stat",
            &t1.replace(&format!("ctxt {}", line(&t1, "ctxt")[0]), &format!("ctxt {}", ctxt0 - 10)),
        );
        let p = fixture::collect(m.as_mut(), 1.0);
        assert_eq!(fixture::value(&p, "cpu.ctxt_per_sec"), None);
        assert_eq!(fixture::value(&p, "cpu.ctxt_per_sec_per_core"), None);
        assert!(fixture::value(&p, "cpu.procs_forked_per_sec").is_some());
        assert!(fixture::value(&p, "cpu.user").is_some());
        // The next collection has a rate again, from the lower value.
        root.write(
            "proc/stat",
            &t1.replace(&format!("ctxt {}", line(&t1, "ctxt")[0]), &format!("ctxt {}", ctxt0 + 90)),
        );
        let p = fixture::collect(m.as_mut(), 3.0);
        assert_eq!(fixture::float(&p, "cpu.ctxt_per_sec"), 50.0);
    }

    #[test]
    fn core_that_vanishes_and_returns() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"per_core": true}"#);
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        let full = root.text("proc/stat");
        let without: String = full.lines().filter(|l| !l.starts_with("cpu1 ")).map(|l| format!("{l}\n")).collect();
        root.write("proc/stat", &without);
        let p = fixture::collect(m.as_mut(), 1.0);
        assert!(fixture::value(&p, "cpu.user.cpu0").is_some());
        assert!(fixture::value(&p, "cpu.user.cpu1").is_none());
        let ctxt = fixture::float(&p, "cpu.ctxt_per_sec");
        assert_eq!(fixture::float(&p, "cpu.ctxt_per_sec_per_core"), ctxt);
        // Back: no previous reading for cpu1 yet, so its shares start one collection later.
        root.write("proc/stat", &full);
        let p = fixture::collect(m.as_mut(), 2.0);
        assert!(fixture::value(&p, "cpu.user.cpu1").is_none());
        // Nothing moved since: no ticks, no shares (but rates of 0).
        let p = fixture::collect(m.as_mut(), 3.0);
        assert!(fixture::value(&p, "cpu.user").is_none());
        assert_eq!(fixture::float(&p, "cpu.ctxt_per_sec"), 0.0);
        // 100 idle ticks on cpu1 (and so on the aggregate).
        let idle_plus_100 = |text: &str, label: &str| -> String {
            text.lines()
                .map(|l| {
                    let mut f: Vec<String> = l.split_whitespace().map(String::from).collect();
                    if f[0] == label || f[0] == "cpu" {
                        f[4] = (f[4].parse::<u64>().unwrap() + 100).to_string();
                    }
                    f.join(" ") + "\n"
                })
                .collect()
        };
        root.write("proc/stat", &idle_plus_100(&full, "cpu1"));
        let p = fixture::collect(m.as_mut(), 4.0);
        assert_eq!(fixture::float(&p, "cpu.idle.cpu1"), 100.0);
        assert_eq!(fixture::float(&p, "cpu.user.cpu1"), 0.0);
        assert_eq!(fixture::float(&p, "cpu.idle"), 100.0);
        assert!(fixture::value(&p, "cpu.idle.cpu0").is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let root = FixtureRoot::new("vm-6.18");
        let ctx = root.ctx();
        let BuildError::Config(e) = fixture::build_error(&SPEC, &ctx, "{\n\"per_cor\": true\n}") else {
            panic!("not a config error")
        };
        assert_eq!((e.key.as_deref(), e.line), (Some("per_cor"), Some(2)));
        let BuildError::Config(e) = fixture::build_error(&SPEC, &ctx, "{\"interval\": 5,\n\"per_core\": \"yes\"}")
        else {
            panic!("not a config error")
        };
        assert_eq!((e.key.as_deref(), e.line), (Some("per_core"), Some(2)));
    }

    #[test]
    fn missing_file_is_unavailable() {
        let root = FixtureRoot::new("vm-6.18");
        root.remove("proc/stat");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("proc/stat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }

    #[test]
    fn file_without_cpu_line_is_a_collect_error() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        root.write("proc/stat", "ctxt 5\n");
        let mut out = Vec::new();
        let e = m.collect(fixture::at(0.0), &mut out).unwrap_err();
        assert!(e.0.contains("proc/stat"), "{e}");
        assert!(out.is_empty());
    }
}
