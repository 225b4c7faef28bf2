//! `process_stats`: CPU, memory, threads and context switches of the processes whose command
//! line matches a pattern, summed per configured name. Reads `/proc/<pid>/cmdline` (when
//! scanning), `/proc/<pid>/stat`, `/proc/<pid>/status`, `/proc/<pid>/task/*/status` and the
//! `cpu` line of `/proc/stat`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `proc.count.<n>` | | int | gauge | matching processes (0 when none; always reported) |
//! | `proc.cpu.<n>` | percent | float | rate | their user + system CPU time as a share of the whole machine's (100 = every core busy) |
//! | `proc.mem_resident.<n>` | B | int | gauge | sum of their resident memory (`VmRSS`) |
//! | `proc.thread_count.<n>` | | int | gauge | sum of their threads (`Threads`) |
//! | `proc.voluntary_ctxt_per_sec.<n>` | | float | rate | voluntary context switches per second, all their threads |
//! | `proc.nonvoluntary_ctxt_per_sec.<n>` | | float | rate | involuntary context switches per second, all their threads |
//!
//! Points carry the tag `process` = the configured name, in config order. All but
//! `proc.count` are left out when nothing matches. Rates are summed over the processes (and
//! threads) read in both of two consecutive collections, so a process that starts or exits
//! causes no spike; they are absent when no matching process was read twice yet (the first
//! collection). `proc.cpu` leaves out children's time (`cutime`, `cstime`).
//!
//! Matching: every `rescan_interval` seconds the command line of every process is read, its
//! NUL separators turned into spaces (trailing NULs dropped), and matched against each
//! pattern anchored at the start (Python's `re.match`). Every matching process counts (Stat
//! Badger kept only the last one and removed spaces from patterns and command lines).
//! Between scans, processes that exit are dropped (a recycled pid is recognised by its
//! start time); new ones are found at the next scan. Kernel threads (empty command line)
//! never match.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `processes` | required | non-empty array of `{"name": "…", "pattern": "…"}`; `name` is the last segment of the stat names (no dots or spaces), `pattern` a regular expression (`regex_lite` syntax) |
//! | `rescan_interval` | `5` | seconds between scans of all command lines; `0` scans on every collection |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use regex_lite::Regex;
use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, ConfigError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;
use badger_api::rate::Rate;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "process_stats",
    aliases: &[],
    summary: "CPU, memory, threads, context switches of processes matched by command line",
    build,
};

fn default_rescan() -> f64 {
    5.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    processes: Vec<ProcessConf>,
    #[serde(default = "default_rescan")]
    rescan_interval: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessConf {
    name: String,
    pattern: String,
}

/// The line of the `n`th (0-based) `"key":` after `"processes"` (for errors in list items).
fn nth_item_line(text: &str, key: &str, n: usize) -> Option<usize> {
    let start = text.find("\"processes\"")?;
    let needle = format!("\"{key}\"");
    let mut from = start;
    let mut seen = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let at = from + pos;
        from = at + needle.len();
        if text[from..].trim_start().starts_with(':') {
            if seen == n {
                return Some(text[..at].matches('\n').count() + 1);
            }
            seen += 1;
        }
    }
    None
}

fn item_error(conf: &PluginConf, i: usize, field: &str, message: String) -> BuildError {
    BuildError::Config(ConfigError::new(
        &conf.file,
        nth_item_line(&conf.text, field, i),
        Some(format!("processes[{i}].{field}")),
        message,
    ))
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    if c.processes.is_empty() {
        return Err(BuildError::Config(
            conf.error("processes", "at least one {\"name\": …, \"pattern\": …} is required"),
        ));
    }
    let rescan = Duration::try_from_secs_f64(c.rescan_interval)
        .map_err(|_| BuildError::Config(conf.error("rescan_interval", "must be a number of seconds, 0 or more")))?;
    let mut watches: Vec<Watch> = Vec::with_capacity(c.processes.len());
    for (i, p) in c.processes.into_iter().enumerate() {
        if p.name.is_empty() || p.name.contains(|c: char| c == '.' || c.is_whitespace()) {
            return Err(item_error(
                conf,
                i,
                "name",
                format!("\"{}\" must be non-empty, without dots or spaces", p.name),
            ));
        }
        if watches.iter().any(|w| w.name == p.name) {
            return Err(item_error(conf, i, "name", format!("\"{}\" is used twice", p.name)));
        }
        let re = Regex::new(&format!("^(?:{})", p.pattern))
            .map_err(|e| item_error(conf, i, "pattern", format!("bad pattern \"{}\": {e}", p.pattern)))?;
        watches.push(Watch { name: p.name, re, pids: Vec::new() });
    }
    let mut stat = ProcFile::new(ctx.roots.proc_path("stat"));
    stat.probe().map_err(BuildError::Unavailable)?;
    std::fs::read_dir(&ctx.roots.proc)
        .map_err(|e| BuildError::Unavailable(format!("listing {}: {e}", ctx.roots.proc.display())))?;
    Ok(Box::new(ProcessStats {
        watches,
        rescan,
        last_scan: None,
        stat,
        prev_total: None,
        sampler: Sampler {
            proc_root: ctx.roots.proc.to_string_lossy().into_owned(),
            path: String::new(),
            text: String::new(),
            raw: Vec::new(),
            tids: Vec::new(),
            pids: HashMap::new(),
            threads: HashMap::new(),
        },
        samples: HashMap::new(),
    }))
}

/// `utime + stime` and `starttime` from `/proc/<pid>/stat` (the command name may hold spaces
/// and parentheses, so fields are counted from the last `)`).
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut f = rest.split_ascii_whitespace();
    // After `)`: state is field 3; utime 14, stime 15, starttime 22.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let starttime = f.nth(6)?.parse().ok()?;
    Some((utime.saturating_add(stime), starttime))
}

/// The number after `key:` in a `/proc/<pid>/status` text (`VmRSS:   13572 kB` → 13572).
pub fn status_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// A command line as matched: NUL separators become spaces, trailing NULs are dropped.
pub fn cmdline_text(raw: &[u8], out: &mut String) {
    out.clear();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    for c in String::from_utf8_lossy(&raw[..end]).chars() {
        out.push(if c == '\0' { ' ' } else { c });
    }
}

struct Watch {
    name: String,
    re: Regex,
    /// Matching pids found by the last scan and still alive.
    pids: Vec<i32>,
}

/// What a process looked like at its previous read.
struct PidState {
    starttime: u64,
    ticks: u64,
    seen: bool,
}

#[derive(Default)]
struct ThreadState {
    voluntary: Rate,
    nonvoluntary: Rate,
    seen: bool,
}

/// One process in one collection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct PidSample {
    /// CPU ticks since the previous read; `None` on the first.
    ticks: Option<u64>,
    rss_bytes: u64,
    threads: u64,
    voluntary: Option<f64>,
    nonvoluntary: Option<f64>,
}

/// Reads processes with reused buffers and keeps their previous values.
struct Sampler {
    proc_root: String,
    path: String,
    text: String,
    raw: Vec<u8>,
    tids: Vec<i32>,
    pids: HashMap<i32, PidState>,
    threads: HashMap<i32, ThreadState>,
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Sampler {
    /// Reads `<proc>/<pid>/<file>`, or `<proc>/<pid>/task/<tid>/<file>`, into `self.text`.
    fn read(&mut self, pid: i32, tid: Option<i32>, file: &str) -> std::io::Result<()> {
        self.path.clear();
        let _ = match tid {
            Some(tid) => write!(self.path, "{}/{pid}/task/{tid}/{file}", self.proc_root),
            None => write!(self.path, "{}/{pid}/{file}", self.proc_root),
        };
        self.text.clear();
        File::open(&self.path)?.read_to_string(&mut self.text)?;
        Ok(())
    }

    /// The command line of `pid` as matched, in `out`; empty if unreadable.
    fn cmdline(&mut self, pid: i32, out: &mut String) {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/cmdline", self.proc_root);
        self.raw.clear();
        match File::open(&self.path).and_then(|mut f| f.read_to_end(&mut self.raw)) {
            Ok(_) => cmdline_text(&self.raw, out),
            Err(_) => out.clear(),
        }
    }

    /// Reads one process; `None` if it is gone or its pid now belongs to another process.
    fn sample(&mut self, pid: i32, now: Instant) -> Option<PidSample> {
        self.read(pid, None, "stat").ok()?;
        let Some((ticks, starttime)) = parse_stat(&self.text) else {
            log::debug!("{}: unexpected format", self.path);
            return None;
        };
        let mut s = PidSample::default();
        match self.pids.get_mut(&pid) {
            Some(st) if st.starttime == starttime => {
                s.ticks = ticks.checked_sub(st.ticks);
                st.ticks = ticks;
                st.seen = true;
            }
            Some(_) => {
                log::debug!("pid {pid} was recycled; dropping it until the next scan");
                return None;
            }
            None => {
                self.pids.insert(pid, PidState { starttime, ticks, seen: true });
            }
        }
        self.read(pid, None, "status").ok()?;
        s.rss_bytes = status_value(&self.text, "VmRSS").unwrap_or(0).saturating_mul(1024);
        s.threads = status_value(&self.text, "Threads").unwrap_or(1);

        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/task", self.proc_root);
        let mut tids = std::mem::take(&mut self.tids);
        tids.clear();
        if let Ok(dir) = std::fs::read_dir(&self.path) {
            tids.extend(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()));
        }
        if tids.is_empty() {
            // No task directory: the process's own counters (its main thread).
            self.thread_rates(pid, now, &mut s);
        }
        for &tid in &tids {
            if self.read(pid, Some(tid), "status").is_ok() {
                self.thread_rates(tid, now, &mut s);
            }
        }
        self.tids = tids;
        Some(s)
    }

    /// Adds the context switch rates of thread `tid`, whose status is in `self.text`.
    fn thread_rates(&mut self, tid: i32, now: Instant, s: &mut PidSample) {
        let (Some(v), Some(nv)) = (
            status_value(&self.text, "voluntary_ctxt_switches"),
            status_value(&self.text, "nonvoluntary_ctxt_switches"),
        ) else {
            return;
        };
        let t = self.threads.entry(tid).or_default();
        t.seen = true;
        s.voluntary = add(s.voluntary, t.voluntary.update(v, now));
        s.nonvoluntary = add(s.nonvoluntary, t.nonvoluntary.update(nv, now));
    }

    /// Forgets processes and threads not read since the last sweep.
    fn sweep(&mut self) {
        self.pids.retain(|_, s| std::mem::take(&mut s.seen));
        self.threads.retain(|_, s| std::mem::take(&mut s.seen));
    }
}

struct ProcessStats {
    watches: Vec<Watch>,
    rescan: Duration,
    last_scan: Option<Instant>,
    stat: ProcFile,
    prev_total: Option<u64>,
    sampler: Sampler,
    /// This collection's samples (a pid may match several names; it is read once).
    samples: HashMap<i32, Option<PidSample>>,
}

impl ProcessStats {
    fn scan(&mut self) {
        for w in &mut self.watches {
            w.pids.clear();
        }
        let dir = match std::fs::read_dir(&self.sampler.proc_root) {
            Ok(d) => d,
            Err(e) => {
                log::debug!("listing {}: {e}", self.sampler.proc_root);
                return;
            }
        };
        let mut pids: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        pids.sort_unstable();
        let mut cmd = String::new();
        for pid in pids {
            self.sampler.cmdline(pid, &mut cmd);
            if cmd.is_empty() {
                continue;
            }
            for w in &mut self.watches {
                if w.re.is_match(&cmd) {
                    w.pids.push(pid);
                }
            }
        }
        for w in &self.watches {
            log::debug!("process_stats: {} matches pids {:?}", w.name, w.pids);
        }
    }
}

impl Module for ProcessStats {
    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        if self.last_scan.is_none_or(|t| now.saturating_duration_since(t) >= self.rescan) {
            self.scan();
            self.last_scan = Some(now);
        }
        let text = self.stat.read()?;
        let total = super::cpu::total_ticks(text)
            .ok_or_else(|| CollectError(format!("{}: no \"cpu\" line", self.stat.path().display())))?;
        let elapsed_ticks = self.prev_total.and_then(|p| total.checked_sub(p)).filter(|&d| d > 0);
        self.prev_total = Some(total);

        let ProcessStats { watches, sampler, samples, .. } = self;
        samples.clear();
        for w in watches.iter_mut() {
            let mut count = 0i64;
            let mut ticks: Option<u64> = None;
            let (mut rss, mut threads) = (0u64, 0u64);
            let (mut vol, mut nonvol) = (None, None);
            w.pids.retain(|&pid| {
                let s = *samples.entry(pid).or_insert_with(|| sampler.sample(pid, now));
                let Some(s) = s else { return false };
                count += 1;
                if let Some(t) = s.ticks {
                    ticks = Some(ticks.unwrap_or(0).saturating_add(t));
                }
                rss = rss.saturating_add(s.rss_bytes);
                threads = threads.saturating_add(s.threads);
                vol = add(vol, s.voluntary);
                nonvol = add(nonvol, s.nonvoluntary);
                true
            });
            let name = w.name.as_str();
            let point = |field, units, v| Point::device("proc", field, units, "process", name, v);
            out.push(point("count", "", Value::Int(count)));
            if count == 0 {
                continue;
            }
            if let (Some(t), Some(total)) = (ticks, elapsed_ticks) {
                let share = t as f64 / total as f64 * 100.0;
                out.push(point("cpu", "percent", Value::Float(share)));
            }
            out.push(point("mem_resident", "B", Value::from(rss)));
            out.push(point("thread_count", "", Value::from(threads)));
            if let Some(v) = vol {
                out.push(point("voluntary_ctxt_per_sec", "", Value::Float(v)));
            }
            if let Some(v) = nonvol {
                out.push(point("nonvoluntary_ctxt_per_sec", "", Value::Float(v)));
            }
        }
        sampler.sweep();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("process_stats.rs");

    const VM_CONF: &str = r#"{"processes": [
        {"name": "sleep", "pattern": "sleep 1000"},
        {"name": "worker", "pattern": "badger-worker"},
        {"name": "nginx", "pattern": "nginx"}
    ]}"#;

    #[test]
    fn parsers() {
        let stat = "4433 (my (odd) name) S 4425 4425 3506 0 -1 4194304 2145 0 14 0 12 2 7 8 20 0 3 0 60516 1679";
        assert_eq!(parse_stat(stat), Some((14, 60516)));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("1 (x"), None);
        assert_eq!(parse_stat("garbage)"), None);
        let status = "Name:\tx\nVmRSS:\t   13572 kB\nThreads:\t3\nvoluntary_ctxt_switches:\t97\n\
                      nonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(status_value(status, "VmRSS"), Some(13572));
        assert_eq!(status_value(status, "Threads"), Some(3));
        assert_eq!(status_value(status, "voluntary_ctxt_switches"), Some(97));
        assert_eq!(status_value(status, "nonvoluntary_ctxt_switches"), Some(2));
        assert_eq!(status_value(status, "VmSwap"), None);
        let mut s = String::new();
        cmdline_text(b"sleep\x001000\x00", &mut s);
        assert_eq!(s, "sleep 1000");
        cmdline_text(b"nginx: worker process\x00\x00\x00", &mut s);
        assert_eq!(s, "nginx: worker process");
        cmdline_text(b"a\x00\x00b\xff\x00", &mut s);
        assert_eq!(s, "a  b\u{fffd}");
        cmdline_text(b"", &mut s);
        assert_eq!(s, "");
    }

    /// utime + stime of a fixture process, parsed independently.
    fn ticks(tree: &str, snap: &str, pid: u32) -> u64 {
        let text = fixture::read(tree, snap, &format!("proc/{pid}/stat"));
        // Fields 4… after the state; tpgid may be -1.
        let f: Vec<i128> =
            text[text.rfind(')').unwrap() + 2..].split(' ').skip(1).map(|x| x.trim().parse().unwrap()).collect();
        (f[10] + f[11]) as u64
    }

    fn status(tree: &str, snap: &str, rel: &str, key: &str) -> u64 {
        fixture::read(tree, snap, rel)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn tasks(tree: &str, snap: &str, pid: u32) -> Vec<String> {
        let dir = fixture::fixture_dir(tree).join(snap).join(format!("proc/{pid}/task"));
        let mut t: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        t.sort();
        t
    }

    /// Σ over the threads of `pid` present in both snapshots of (t1 − t0) of a status key.
    fn ctxt_delta(tree: &str, pid: u32, key: &str) -> u64 {
        let t0 = tasks(tree, "t0", pid);
        tasks(tree, "t1", pid)
            .iter()
            .filter(|t| t0.contains(t))
            .map(|t| {
                let rel = format!("proc/{pid}/task/{t}/status");
                status(tree, "t1", &rel, key) - status(tree, "t0", &rel, key)
            })
            .sum()
    }

    fn total(tree: &str, snap: &str) -> u64 {
        let text = fixture::read(tree, snap, "proc/stat");
        text.lines().next().unwrap().split_whitespace().skip(1).take(8).map(|x| x.parse::<u64>().unwrap()).sum()
    }

    /// The expected points of one name at t1 given the pids read at both times (`both`) and
    /// those read at t1 only (`new`).
    fn expected_t1(tree: &str, name: &str, both: &[u32], new: &[u32]) -> Vec<(String, Value)> {
        let all: Vec<u32> = both.iter().chain(new).copied().collect();
        let dt = (total(tree, "t1") - total(tree, "t0")) as f64;
        let cpu: u64 = both.iter().map(|&p| ticks(tree, "t1", p) - ticks(tree, "t0", p)).sum();
        let rss: u64 = all.iter().map(|p| status(tree, "t1", &format!("proc/{p}/status"), "VmRSS") * 1024).sum();
        let threads: u64 = all.iter().map(|p| status(tree, "t1", &format!("proc/{p}/status"), "Threads")).sum();
        let vol: u64 = both.iter().map(|&p| ctxt_delta(tree, p, "voluntary_ctxt_switches")).sum();
        let nonvol: u64 = both.iter().map(|&p| ctxt_delta(tree, p, "nonvoluntary_ctxt_switches")).sum();
        let n = |f: &str| format!("proc.{f}.{name}");
        vec![
            (n("count"), Value::Int(all.len() as i64)),
            (n("cpu"), Value::Float(cpu as f64 / dt * 100.0)),
            (n("mem_resident"), Value::Int(rss as i64)),
            (n("thread_count"), Value::Int(threads as i64)),
            (n("voluntary_ctxt_per_sec"), Value::Float(vol as f64)),
            (n("nonvoluntary_ctxt_per_sec"), Value::Float(nonvol as f64)),
        ]
    }

    fn values(points: &[Point]) -> Vec<(String, Value)> {
        points.iter().map(|p| (p.name.clone(), p.value)).collect()
    }

    #[test]
    fn vm_fixture_first_and_second_collection() {
        let tree = "vm-6.18";
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), VM_CONF);
        let p = fixture::collect(m.as_mut(), 0.0);
        fixture::assert_documented(SOURCE, &p);
        let rss0 = |pid: u32| status(tree, "t0", &format!("proc/{pid}/status"), "VmRSS") as i64 * 1024;
        assert_eq!(
            values(&p),
            [
                ("proc.count.sleep".to_string(), Value::Int(2)),
                ("proc.mem_resident.sleep".into(), Value::Int(rss0(4431) + rss0(4432))),
                ("proc.thread_count.sleep".into(), Value::Int(2)),
                ("proc.count.worker".into(), Value::Int(1)),
                ("proc.mem_resident.worker".into(), Value::Int(rss0(4433))),
                ("proc.thread_count.worker".into(), Value::Int(3)),
                ("proc.count.nginx".into(), Value::Int(0)),
            ]
        );
        assert_eq!(p[0].tags, [("process".into(), "sleep".to_string())]);
        root.advance();
        let p = fixture::collect(m.as_mut(), 1.0);
        fixture::assert_documented(SOURCE, &p);
        let mut want = expected_t1(tree, "sleep", &[4431, 4432], &[]);
        want.extend(expected_t1(tree, "worker", &[4433], &[]));
        want.push(("proc.count.nginx".into(), Value::Int(0)));
        assert_eq!(values(&p), want);
        // The worker's two busy threads switched 108 + 100 times; its main thread (all that
        // /proc/<pid>/status shows) not at all.
        assert_eq!(fixture::float(&p, "proc.voluntary_ctxt_per_sec.worker"), 208.0);
        assert!(fixture::float(&p, "proc.cpu.worker") > 0.0);
    }

    #[test]
    fn synth_fixture_processes_come_and_go() {
        let tree = "linux-4.19-synth";
        let conf = |rescan: &str| {
            format!(
                r#"{{"processes": [{{"name": "nginx", "pattern": "nginx: worker"}},
                    {{"name": "unanchored", "pattern": "worker process"}}]{rescan}}}"#
            )
        };
        // Without a rescan, 814 exits (dropped) and 820 is not found yet.
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), &conf(""));
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::int(&p, "proc.count.nginx"), 3);
        assert_eq!(fixture::int(&p, "proc.thread_count.nginx"), 4);
        assert_eq!(fixture::int(&p, "proc.count.unanchored"), 0);
        root.advance();
        let p = fixture::collect(m.as_mut(), 1.0);
        let mut want = expected_t1(tree, "nginx", &[812, 813], &[]);
        want.push(("proc.count.unanchored".into(), Value::Int(0)));
        assert_eq!(values(&p), want);
        // 813's two threads: 100 + 50 voluntary switches; 812: 30.
        assert_eq!(fixture::float(&p, "proc.voluntary_ctxt_per_sec.nginx"), 180.0);
        // The 5 s rescan finds 820; its first read gives no rate of its own.
        let p = fixture::collect(m.as_mut(), 5.0);
        assert_eq!(fixture::int(&p, "proc.count.nginx"), 3);
        assert_eq!(fixture::float(&p, "proc.voluntary_ctxt_per_sec.nginx"), 0.0);

        // Scanning on every collection: 820 counts at t1 at once, without a spike.
        let root = FixtureRoot::new(tree);
        let mut m = fixture::build(&SPEC, &root.ctx(), &conf(r#", "rescan_interval": 0"#));
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        let p = fixture::collect(m.as_mut(), 1.0);
        fixture::assert_documented(SOURCE, &p);
        let mut want = expected_t1(tree, "nginx", &[812, 813], &[820]);
        want.push(("proc.count.unanchored".into(), Value::Int(0)));
        assert_eq!(values(&p), want);
    }

    #[test]
    fn a_recycled_pid_is_dropped() {
        let tree = "linux-4.19-synth";
        let root = FixtureRoot::new(tree);
        let conf = r#"{"processes": [{"name": "nginx", "pattern": "nginx"}]}"#;
        let mut m = fixture::build(&SPEC, &root.ctx(), conf);
        fixture::collect(m.as_mut(), 0.0);
        root.advance();
        // 812 now has another start time: another process got the pid.
        let stat = root.text("proc/812/stat").replace(" 1900 ", " 999999 ");
        root.write("proc/812/stat", &stat);
        let p = fixture::collect(m.as_mut(), 1.0);
        assert_eq!(values(&p), expected_t1(tree, "nginx", &[813], &[]));
    }

    #[test]
    fn first_collection_everywhere_and_nothing_matching() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m =
                fixture::build(&SPEC, &root.ctx(), r#"{"processes": [{"name": "none", "pattern": "no such thing"}]}"#);
            let p = fixture::collect(m.as_mut(), 0.0);
            assert_eq!(values(&p), [("proc.count.none".to_string(), Value::Int(0))]);
            root.advance();
            let p = fixture::collect(m.as_mut(), 1.0);
            assert_eq!(values(&p), [("proc.count.none".to_string(), Value::Int(0))]);
        }
    }

    #[test]
    fn live_sleep_child() {
        let mut child = std::process::Command::new("sleep").arg("987.654").spawn().expect("spawn sleep");
        let pid = child.id();
        // Wait until the child has exec'd (its command line is sleep's).
        let cmdline = format!("/proc/{pid}/cmdline");
        for _ in 0..200 {
            if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sleep\0987.654")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let conf = r#"{"processes": [{"name": "sleeper", "pattern": "sleep 987\\.654$"}]}"#;
        let mut m = fixture::build(&SPEC, &ModuleContext::default(), conf);
        let p = fixture::collect(m.as_mut(), 0.0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let rss = status_value(&status, "VmRSS").unwrap() as f64 * 1024.0;
        assert_eq!(fixture::int(&p, "proc.count.sleeper"), 1);
        assert_eq!(fixture::int(&p, "proc.thread_count.sleeper"), 1);
        let got = fixture::int(&p, "proc.mem_resident.sleeper") as f64;
        assert!((got - rss).abs() <= rss * 0.2, "mem_resident {got}, VmRSS×1024 {rss}");
        assert!(fixture::value(&p, "proc.cpu.sleeper").is_none());
        // Gone: dropped at the next collection.
        let p = fixture::collect(m.as_mut(), 1.0);
        assert_eq!(values(&p), [("proc.count.sleeper".to_string(), Value::Int(0))]);
    }

    #[test]
    fn config_errors_name_the_key_and_line() {
        let root = FixtureRoot::new("vm-6.18");
        let ctx = root.ctx();
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("{}", "processes", None),
            ("{\n\"processes\": []}", "processes", Some(2)),
            ("{\n\"processes\": {}}", "processes", Some(2)),
            (
                "{\"processes\": [\n{\"name\": \"a\", \"pattern\": \"a\"},\n{\"name\": \"b\",\n \"pattern\": \"(b\"}]}",
                "processes[1].pattern",
                Some(4),
            ),
            ("{\"processes\": [\n{\"name\": \"a.b\", \"pattern\": \"a\"}]}", "processes[0].name", Some(2)),
            (
                "{\"processes\": [\n{\"name\": \"a\", \"pattern\": \"a\"},\n{\"name\": \"a\", \"pattern\": \"b\"}]}",
                "processes[1].name",
                Some(3),
            ),
            ("{\"processes\": [\n{\"name\": \"a\", \"patern\": \"a\"}]}", "processes[0].patern", Some(2)),
            (
                "{\"processes\": [{\"name\": \"a\", \"pattern\": \"a\"}],\n\"rescan_interval\": -1}",
                "rescan_interval",
                Some(2),
            ),
            (
                "{\"processes\": [{\"name\": \"a\", \"pattern\": \"a\"}],\n\"rescan_interval\": \"5s\"}",
                "rescan_interval",
                Some(2),
            ),
            ("{\"processes\": [{\"name\": \"a\", \"pattern\": \"a\"}],\n\"rescan\": 5}", "rescan", Some(2)),
            (
                "{\"processes\": [{\"name\": \"a\", \"pattern\": \"a\"}],\n\"rescan_interval\": 1e300}",
                "rescan_interval",
                Some(2),
            ),
        ];
        for &(text, key, line) in cases {
            match fixture::build_error(&SPEC, &ctx, text) {
                BuildError::Config(e) => {
                    assert_eq!((e.key.as_deref(), e.line), (Some(key), line), "{text}: {e}")
                }
                BuildError::Unavailable(m) => panic!("{m}"),
            }
        }
        root.remove("proc/stat");
        match fixture::build_error(&SPEC, &ctx, VM_CONF) {
            BuildError::Unavailable(m) => assert!(m.contains("proc/stat"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
