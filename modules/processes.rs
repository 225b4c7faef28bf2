//! `processes`: how many processes and threads exist, by state, and the kernel's limits.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `processes.pids` | | int | gauge | processes (the numeric directories of `/proc`) |
//! | `processes.threads` | | int | gauge | threads of all processes (field 20 of each `/proc/<pid>/stat`) |
//! | `processes.max_processes` | | int | gauge | the highest process id plus one (`/proc/sys/kernel/pid_max`) |
//! | `processes.max_threads` | | int | gauge | the most threads the kernel allows (`/proc/sys/kernel/threads-max`) |
//! | `processes.state.<state>` | | int | gauge | processes whose state (field 3 of `stat`: `R`, `S`, `D`, `I`, `Z`, `T`, …) is `<state>` |
//! | `processes.threads_state.<thread_state>` | | int | gauge | threads in each state (the `State:` line of `/proc/<pid>/task/<tid>/status`) |
//!
//! As node_exporter's `processes` collector (`node_processes_pids`, `node_processes_state{state="R"}`,
//! `node_processes_threads_state{thread_state="S"}`, …), which node_exporter leaves off by
//! default. A process or thread that exits while it is read is skipped. States are in
//! alphabetical order; a state no process is in has no point.
//!
//! **What the counts include.** Like the kernel's `procs_running` (`cpu.procs_running`) and
//! the running count of `/proc/loadavg` (`load.runnable_entities`), `R` counts badger's own
//! threads that are running while they read: at least the thread collecting this module, and
//! others that woke on the same tick. node_exporter's figures have the same bias (its
//! scrape handler runs while it counts).
//!
//! Each collection reads one `stat` per process and one `status` per thread, so the work
//! grows with the number of threads; `max_tasks` bounds it.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_tasks` | `100000` | most processes plus threads read per collection; beyond it the counts stop there and a warning is logged (once a minute) |

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;
use badger_api::throttle::LogThrottle;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "processes",
    aliases: &[],
    summary: "process and thread counts by state, and their limits (/proc)",
    build,
};

fn default_max_tasks() -> usize {
    100_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_tasks")]
    max_tasks: usize,
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    let mut pid_max = ProcFile::new(ctx.roots.proc_path("sys/kernel/pid_max"));
    pid_max.probe().map_err(BuildError::Unavailable)?;
    let mut threads_max = ProcFile::new(ctx.roots.proc_path("sys/kernel/threads-max"));
    threads_max.probe().map_err(BuildError::Unavailable)?;
    Ok(Box::new(Processes {
        proc: ctx.roots.proc.clone(),
        pid_max,
        threads_max,
        max_tasks: c.max_tasks,
        log: LogThrottle::default(),
    }))
}

struct Processes {
    proc: PathBuf,
    pid_max: ProcFile,
    threads_max: ProcFile,
    max_tasks: usize,
    log: LogThrottle,
}

/// State (field 3) and number of threads (field 20) of a `/proc/<pid>/stat` line. The
/// command name may hold spaces and `)`, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(char, i64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.chars().next()?;
    Some((state, it.nth(16)?.parse().ok()?))
}

/// The state letter of a `status` file's `State:\tS (sleeping)` line.
pub fn parse_status_state(text: &str) -> Option<char> {
    text.lines().find_map(|l| l.strip_prefix("State:"))?.trim_start().chars().next()
}

fn number(file: &mut ProcFile) -> Result<i64, CollectError> {
    let text = file.read()?;
    text.trim().parse().map_err(|_| CollectError(format!("{}: not a number", file.path().display())))
}

fn numeric_entries(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    v.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
    v
}

impl Module for Processes {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let max_processes = number(&mut self.pid_max)?;
        let max_threads = number(&mut self.threads_max)?;
        // An unreadable /proc is an error of the collection, not a count of 0.
        fs::read_dir(&self.proc).map_err(|e| CollectError::io(&self.proc, e))?;
        let mut budget = self.max_tasks;
        let (mut pids, mut threads) = (0i64, 0i64);
        let mut states: BTreeMap<char, i64> = BTreeMap::new();
        let mut thread_states: BTreeMap<char, i64> = BTreeMap::new();
        'pids: for pid in numeric_entries(&self.proc) {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let dir = self.proc.join(&pid);
            let Ok(stat) = fs::read_to_string(dir.join("stat")) else { continue };
            let Some((state, n)) = parse_stat(&stat) else { continue };
            pids += 1;
            threads += n;
            *states.entry(state).or_insert(0) += 1;
            for tid in numeric_entries(&dir.join("task")) {
                if budget == 0 {
                    break 'pids;
                }
                budget -= 1;
                let Ok(status) = fs::read_to_string(dir.join("task").join(&tid).join("status")) else { continue };
                if let Some(s) = parse_status_state(&status) {
                    *thread_states.entry(s).or_insert(0) += 1;
                }
            }
        }
        if budget == 0 {
            if let Some(more) = self.log.allow() {
                log::warn!(
                    "module \"processes\": more than max_tasks ({}) processes and threads; the counts stop there ({more} more not logged)",
                    self.max_tasks
                );
            }
        }
        out.push(Point::simple("processes", "pids", "", Value::Int(pids)));
        out.push(Point::simple("processes", "threads", "", Value::Int(threads)));
        out.push(Point::simple("processes", "max_processes", "", Value::Int(max_processes)));
        out.push(Point::simple("processes", "max_threads", "", Value::Int(max_threads)));
        let mut letter = [0u8; 4];
        for (s, n) in states {
            out.push(Point::device("processes", "state", "", "state", s.encode_utf8(&mut letter), Value::Int(n)));
        }
        for (s, n) in thread_states {
            out.push(Point::device(
                "processes",
                "threads_state",
                "",
                "thread_state",
                s.encode_utf8(&mut letter),
                Value::Int(n),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    #[test]
    fn parses_stat_and_status() {
        let stat = "4433 (python3 (x) y) S 4425 4425 3506 0 -1 4194304 2145 0 14 0 12 2 0 0 20 0 3 0 60516 1 2\n";
        assert_eq!(parse_stat(stat), Some(('S', 3)));
        assert_eq!(parse_stat("12 (short) R 1 2\n"), None);
        assert_eq!(parse_status_state("Name:\tx\nUmask:\t0022\nState:\tD (disk sleep)\n"), Some('D'));
        assert_eq!(parse_status_state("Name:\tx\n"), None);
    }

    #[test]
    fn on_every_fixture_tree() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(include_str!("processes.rs"), &p);
                // Independently: every numeric directory, its stat split on spaces after ") ",
                // and each task's status `State:` line.
                let dir = fixture::fixture_dir(tree).join(snap).join("proc");
                let mut pids = 0;
                let mut threads = 0;
                let mut states: BTreeMap<String, i64> = BTreeMap::new();
                let mut tstates: BTreeMap<String, i64> = BTreeMap::new();
                for e in fs::read_dir(&dir).unwrap().flatten() {
                    let name = e.file_name().into_string().unwrap();
                    if !name.chars().all(|c| c.is_ascii_digit()) {
                        continue;
                    }
                    let stat = fs::read_to_string(e.path().join("stat")).unwrap();
                    let after: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
                    pids += 1;
                    threads += after[17].parse::<i64>().unwrap();
                    *states.entry(after[0].to_string()).or_default() += 1;
                    for t in fs::read_dir(e.path().join("task")).unwrap().flatten() {
                        let status = fs::read_to_string(t.path().join("status")).unwrap();
                        let line = status.lines().find(|l| l.starts_with("State:")).unwrap();
                        *tstates.entry(line[7..8].to_string()).or_default() += 1;
                    }
                }
                let num = |f: &str| fixture::read(tree, snap, f).trim().parse::<i64>().unwrap();
                let mut want = vec![
                    ("processes.pids".to_string(), Value::Int(pids)),
                    ("processes.threads".to_string(), Value::Int(threads)),
                    ("processes.max_processes".to_string(), Value::Int(num("proc/sys/kernel/pid_max"))),
                    ("processes.max_threads".to_string(), Value::Int(num("proc/sys/kernel/threads-max"))),
                ];
                want.extend(states.iter().map(|(s, n)| (format!("processes.state.{s}"), Value::Int(*n))));
                want.extend(tstates.iter().map(|(s, n)| (format!("processes.threads_state.{s}"), Value::Int(*n))));
                let got: Vec<(String, Value)> = p.iter().map(|p| (p.name.clone(), p.value)).collect();
                assert_eq!(got, want, "{tree} {snap}");
                // vm-6.18-many was captured without processes.
                assert_eq!(pids, if *tree == "vm-6.18-many" { 0 } else { 3 }, "{tree} {snap}");
            }
        }
    }

    #[test]
    fn max_tasks_and_missing_limits() {
        let root = FixtureRoot::new("vm-6.18");
        // Process 4431 (one thread) then its thread: 2 tasks; 4432 is not reached.
        let mut m = fixture::build(&SPEC, &root.ctx(), r#"{"max_tasks": 2}"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::int(&p, "processes.pids"), 1);
        root.remove("proc/sys/kernel/threads-max");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("threads-max"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
