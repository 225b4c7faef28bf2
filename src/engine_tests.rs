//! The tick engine on a manual clock, with test plugins: no sleeping on the wall clock.
//! Where a worker thread must be waited on, the wait is on a channel (or a flag) with a
//! generous timeout; nothing asserts on wall time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::agent::{Agent, EmitterStats, ModuleStats};
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, CoreConfig, HostRootsConfig, PluginEntry, Registries, Source};
use crate::plan::{plan, Plan, Planned, PlannedPlugin};
use crate::scheduler::{step, Ticker, Wake};
use badger_api::logging::{LogConfig, LogFormat};
use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, CollectError, EmitError, Emitter, EmitterSpec, Module, ModuleSpec, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_api::telemetry::Telemetry;

/// How long a test waits for a worker thread before it fails (never reached when it works).
const PATIENCE: Duration = Duration::from_secs(10);
/// The manual clock starts half a second before epoch second 1001: the first tick is 1001.
const START: Duration = Duration::from_millis(1_000_500);

// ---- test plugins -------------------------------------------------------------------------

fn point(name: &str, n: i64) -> Point {
    Point { name: name.to_string(), ..Point::simple("t", "x", "", Value::Int(n)) }
}

/// Gives one point named after it; blocks while `hang` is set, until `release` gets a message.
/// With `shared`, it says it never blocks (`Module::shares_thread`).
struct Gate {
    name: &'static str,
    hang: Arc<AtomicBool>,
    release: Receiver<()>,
    shared: bool,
}

impl Module for Gate {
    fn collect(&mut self, _: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        if self.hang.load(Ordering::SeqCst) {
            let _ = self.release.recv();
        }
        out.push(point(self.name, 0));
        Ok(())
    }

    fn shares_thread(&self) -> bool {
        self.shared
    }
}

fn fixed(name: &'static str) -> Box<dyn Module> {
    never_hangs(name, false)
}

/// A [`Gate`] that is never told to hang.
fn never_hangs(name: &'static str, shared: bool) -> Box<dyn Module> {
    let (_tx, release) = unbounded();
    Box::new(Gate { name, hang: Arc::default(), release, shared })
}

/// A [`Gate`] with its switch (set: it hangs at its next collection) and its release.
fn gate(name: &'static str, shared: bool) -> (Box<dyn Module>, Arc<AtomicBool>, Sender<()>) {
    let hang = Arc::new(AtomicBool::new(false));
    let (release_tx, release) = unbounded();
    (Box::new(Gate { name, hang: hang.clone(), release, shared }), hang, release_tx)
}

/// Owned point names, to compare with what a sink got.
fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Gives one point named after the thread it runs on.
struct Whoami(bool);

impl Module for Whoami {
    fn collect(&mut self, _: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        out.push(point(std::thread::current().name().unwrap_or("?"), 0));
        Ok(())
    }

    fn shares_thread(&self) -> bool {
        self.0
    }
}

/// Counts its collections: its state survives a reload only if it is kept.
struct Counter {
    name: &'static str,
    n: i64,
}

impl Module for Counter {
    fn collect(&mut self, _: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        out.push(point(&format!("{}={}", self.name, self.n), self.n));
        self.n += 1;
        Ok(())
    }
}

static COUNTER: ModuleSpec = ModuleSpec {
    name: "counter",
    aliases: &[],
    summary: "counts its collections",
    build: |_, conf| Ok(Box::new(Counter { name: if conf.name == "a" { "a" } else { "b" }, n: 0 })),
};
static MODULES: [&ModuleSpec; 1] = [&COUNTER];
const REGISTRIES: Registries = Registries { modules: &MODULES, emitters: &[] };

/// What one emit got: (timestamp, point names) per payload.
type Got = Vec<(i64, Vec<String>)>;

/// Sends every batch it gets to `out`. With `gate`, its first emit says so on `entered` and
/// waits for the gate (a message, or the gate's sender dropped).
struct Sink {
    out: Sender<Got>,
    gate: Option<(Sender<()>, Receiver<()>)>,
}

impl Emitter for Sink {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        let got = batch.payloads().map(|p| (p.timestamp(), p.points().map(|pt| pt.name.clone()).collect())).collect();
        if let Some((entered, gate)) = self.gate.take() {
            let _ = entered.send(());
            let _ = gate.recv();
        }
        let _ = self.out.send(got);
        Ok(())
    }
}

fn sink() -> (Box<dyn Emitter>, Receiver<Got>) {
    let (out, rx) = unbounded();
    (Box::new(Sink { out, gate: None }), rx)
}

// ---- plans --------------------------------------------------------------------------------

fn config(queue_size: usize) -> Config {
    Config {
        file: "config.json".into(),
        core: CoreConfig {
            datacenter: Some(String::new()),
            region: Some(String::new()),
            zone: Some(String::new()),
            cluster: Some(String::new()),
            hostname: Some("h1".into()),
            ipv4: Some(String::new()),
            ipv6: Some(String::new()),
            log: LogConfig { level: log::LevelFilter::Info, format: LogFormat::Text, file: None },
            roots: HostRootsConfig { proc: "/proc".into(), sys: "/sys".into(), host: "/".into() },
            module_timeout: Duration::from_millis(500),
            queue_size,
            plugin_dirs: Vec::new(),
            http_listen: None,
            http_limits: Default::default(),
        },
        modules: Vec::new(),
        emitters: Vec::new(),
    }
}

fn entry(name: &str, kind: &'static str, interval: u64, text: &str) -> PluginEntry {
    PluginEntry {
        name: name.into(),
        source: Source::Builtin(kind),
        interval,
        blacklist: Matcher::default(),
        timeout: None,
        conf: PluginConf::from_text(name, Path::new(&format!("conf.d/{name}.conf")), text),
    }
}

fn planned<T: ?Sized>(name: &str, interval: u64, planned: Planned<Box<T>>) -> PlannedPlugin<T> {
    PlannedPlugin {
        entry: entry(name, "test", interval, "{}"),
        fingerprint: name.into(),
        timeout: Duration::from_millis(500),
        planned,
    }
}

/// A plan of hand-built plugins: (name, interval, instance).
fn hand_plan(
    modules: Vec<(&'static str, u64, Box<dyn Module>)>,
    emitters: Vec<(&'static str, u64, Box<dyn Emitter>)>,
    queue_size: usize,
) -> Plan {
    Plan {
        config: config(queue_size),
        meta: HostMeta::default(),
        modules: modules.into_iter().map(|(n, i, m)| planned(n, i, Planned::Built(m))).collect(),
        emitters: emitters.into_iter().map(|(n, i, e)| planned(n, i, Planned::Built(e))).collect(),
        routes: HashMap::new(),
        router: None,
        telemetry: Telemetry::default(),
    }
}

struct Engine {
    agent: Agent,
    ticker: Ticker,
    clock: ManualClock,
}

impl Engine {
    fn start(plan: Plan) -> Engine {
        let clock = ManualClock::new(START);
        let agent = Agent::start_with_clock(plan, Arc::new(clock.clone()));
        let ticker = Ticker::new(&clock);
        Engine { agent, ticker, clock }
    }

    /// One tick: the wait for it passes at once on the manual clock.
    fn step(&mut self) {
        let clock = self.clock.clone();
        let woke = step(&mut self.agent, &mut self.ticker, &self.clock, |due| {
            clock.sleep_until(due);
            Wake::Tick
        });
        assert_eq!(woke, Wake::Tick);
    }

    fn module(&self, name: &str) -> Arc<ModuleStats> {
        self.agent.module_stats().into_iter().find(|(n, _)| n == name).map(|(_, s)| s).expect("module runs")
    }

    fn emitter(&self, name: &str) -> Arc<EmitterStats> {
        self.agent.emitter_stats().into_iter().find(|(n, _)| n == name).map(|(_, s)| s).expect("emitter runs")
    }

    fn skipped_ticks(&self) -> u64 {
        self.agent.tick_stats.skipped.load(Ordering::Relaxed)
    }

    /// Waits until no module thread is busy.
    fn wait_modules_idle(&self) {
        let until = Instant::now() + PATIENCE;
        while !self.agent.modules_idle() {
            assert!(Instant::now() < until, "a module thread never finished");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn recv(rx: &Receiver<Got>) -> Got {
    rx.recv_timeout(PATIENCE).expect("the emitter got nothing")
}

/// Every batch received as one per tick (interval 0): (timestamp, names).
fn recv_ticks(rx: &Receiver<Got>, n: usize) -> Got {
    (0..n).flat_map(|_| recv(rx)).collect()
}

fn stamps(got: &Got) -> Vec<i64> {
    got.iter().map(|(ts, _)| *ts).collect()
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn a_stuck_module_is_skipped_and_recovers() {
    let (stuck, hang, release_tx) = gate("stuck", false);
    let (emitter, got) = sink();
    let mut e =
        Engine::start(hand_plan(vec![("good", 1, fixed("good")), ("stuck", 1, stuck)], vec![("sink", 0, emitter)], 10));

    e.step();
    assert_eq!(recv(&got), vec![(1001, vec!["good".to_string(), "stuck".to_string()])]);

    // It hangs: the tick goes out without it at its timeout (on the manual clock).
    hang.store(true, Ordering::SeqCst);
    e.step();
    assert_eq!(recv(&got), vec![(1002, vec!["good".to_string()])]);
    let stats = e.module("stuck");
    assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 0);

    // Still stuck: skipped (and counted) without waiting for it.
    e.step();
    assert_eq!(recv(&got), vec![(1003, vec!["good".to_string()])]);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);

    // It answers late: those points are dropped, and the next tick has it again.
    hang.store(false, Ordering::SeqCst);
    release_tx.send(()).expect("the module waits");
    e.wait_modules_idle();
    e.step();
    assert_eq!(recv(&got), vec![(1004, vec!["good".to_string(), "stuck".to_string()])]);
    e.step();
    assert_eq!(recv(&got), vec![(1005, vec!["good".to_string(), "stuck".to_string()])]);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(e.module("good").timeouts.load(Ordering::Relaxed), 0);
    assert_eq!(e.skipped_ticks(), 0);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn modules_run_on_their_interval() {
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(
        vec![("every", 1, fixed("every")), ("third", 3, fixed("third"))],
        vec![("sink", 0, emitter)],
        10,
    ));
    for _ in 0..7 {
        e.step();
    }
    let ticks = recv_ticks(&got, 7);
    assert_eq!(stamps(&ticks), (1001..=1007).collect::<Vec<_>>());
    for (ts, names) in &ticks {
        // Its first tick, then the timestamps that are multiples of 3.
        let third = *ts == 1001 || ts % 3 == 0;
        let want: Vec<&str> = if third { vec!["every", "third"] } else { vec!["every"] };
        assert_eq!(names, &want, "tick {ts}");
    }
    assert_eq!(e.module("third").runs.load(Ordering::Relaxed), 3); // 1001, 1002, 1005
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn an_emitter_with_interval_5_gets_5_payloads_at_once() {
    let (every, got_every) = sink();
    let (fifth, got_fifth) = sink();
    let mut e =
        Engine::start(hand_plan(vec![("m", 1, fixed("m"))], vec![("every", 0, every), ("fifth", 5, fifth)], 10));
    for _ in 0..10 {
        e.step();
    }
    assert_eq!(stamps(&recv_ticks(&got_every, 10)), (1001..=1010).collect::<Vec<_>>());
    assert_eq!(stamps(&recv(&got_fifth)), vec![1001, 1002, 1003, 1004, 1005]);
    assert_eq!(stamps(&recv(&got_fifth)), vec![1006, 1007, 1008, 1009, 1010]);
    let stats = e.emitter("fifth");
    assert_eq!(stats.batches.load(Ordering::Relaxed), 2);
    assert_eq!(stats.payloads.load(Ordering::Relaxed), 10);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn a_full_queue_drops_the_oldest() {
    let (out, got) = unbounded();
    let (entered_tx, entered) = unbounded();
    let (gate_tx, gate) = unbounded::<()>();
    let slow = Box::new(Sink { out, gate: Some((entered_tx, gate)) });
    let mut e = Engine::start(hand_plan(Vec::new(), vec![("slow", 0, slow)], 2));
    let meta = Arc::new(HostMeta::default());
    let payload = |ts| Arc::new(Payload { meta: meta.clone(), timestamp: ts, points: vec![point("p", ts)] });

    e.agent.dispatch(payload(1));
    entered.recv_timeout(PATIENCE).expect("the emitter took the first payload");
    // It is stuck in its emit: 2 and 3 fill the queue, 4 and 5 push out 2 and 3.
    for ts in 2..=5 {
        e.agent.dispatch(payload(ts));
    }
    let stats = e.emitter("slow");
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
    drop(gate_tx);
    assert_eq!(stamps(&recv_ticks(&got, 3)), vec![1, 4, 5]);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
    assert_eq!(stats.payloads.load(Ordering::Relaxed), 3);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
}

#[test]
fn a_wall_clock_step_realigns_the_ticks() {
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(vec![("m", 1, fixed("m"))], vec![("sink", 0, emitter)], 10));
    e.step();
    e.step();
    // The wall clock jumps 30 s ahead between two ticks (the monotonic clock does not).
    e.clock.step_wall(Duration::from_secs(30));
    e.step(); // still on the old alignment; then the step is seen and the ticks realign
    e.step();
    e.step();
    assert_eq!(stamps(&recv_ticks(&got, 5)), vec![1001, 1002, 1003, 1034, 1035]);
    assert_eq!(e.skipped_ticks(), 0);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn a_stall_skips_ticks_and_counts_them_without_a_burst() {
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(vec![("m", 1, fixed("m"))], vec![("sink", 0, emitter)], 10));
    e.step();
    // badger is stalled 3.5 s after tick 1001: ticks 1002 and 1003 are missed.
    e.clock.advance(Duration::from_millis(3500));
    e.step();
    e.step();
    assert_eq!(stamps(&recv_ticks(&got, 3)), vec![1001, 1004, 1005]);
    assert_eq!(e.skipped_ticks(), 2);
    assert_eq!(e.agent.tick_stats.ticks.load(Ordering::Relaxed), 3);
    assert_eq!(e.module("m").runs.load(Ordering::Relaxed), 3);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn reload_keeps_an_unchanged_plugin_and_rebuilds_a_changed_one() {
    let with_modules = |b_text: &str| {
        let mut c = config(10);
        c.modules = vec![entry("a", "counter", 1, "{}"), entry("b", "counter", 1, b_text)];
        c
    };
    let (emitter, got) = sink();
    let mut first = plan(with_modules(r#"{"x": 1}"#), &REGISTRIES, &Default::default()).expect("plans");
    first.emitters = vec![planned("sink", 0, Planned::Built(emitter))];
    let mut e = Engine::start(first);
    e.step();
    e.step();
    let names = |got: &Receiver<Got>| recv(got).into_iter().flat_map(|(_, names)| names).collect::<Vec<_>>();
    assert_eq!(names(&got), ["a=0", "b=0"]);
    assert_eq!(names(&got), ["a=1", "b=1"]);

    let mut second = plan(with_modules(r#"{"x": 2}"#), &REGISTRIES, &e.agent.running()).expect("plans");
    assert!(second.modules[0].kept(), "a is unchanged");
    assert!(matches!(second.modules[1].planned, Planned::Built(_)), "b changed");
    second.emitters = vec![planned("sink", 0, Planned::Keep)];
    let a_stats = e.module("a");
    e.agent.apply(second);
    e.step();
    // a counts on (its instance kept its state), b starts over.
    assert_eq!(names(&got), ["a=2", "b=0"]);
    assert!(Arc::ptr_eq(&a_stats, &e.module("a")), "a's worker kept");
    assert_eq!(e.module("a").runs.load(Ordering::Relaxed), 3);
    assert_eq!(e.module("b").runs.load(Ordering::Relaxed), 1);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

/// Records `ModuleContext::gauges_only` of its build in its one point's value.
static GAUGES: ModuleSpec = ModuleSpec {
    name: "gauges",
    aliases: &[],
    summary: "says whether it was asked for gauges only",
    build: |ctx, _| Ok(Box::new(Counter { name: "a", n: i64::from(ctx.gauges_only) })),
};
static GAUGE_MODULES: [&ModuleSpec; 1] = [&GAUGES];
const fn plain_emitter(counters: bool) -> EmitterSpec {
    EmitterSpec { name: "", aliases: &[], summary: "", build: |_, _| Ok(sink().0), counters }
}
static PRINTS: EmitterSpec = EmitterSpec { name: "prints", ..plain_emitter(false) };
static EXPOSES: EmitterSpec = EmitterSpec { name: "exposes", ..plain_emitter(true) };
static GAUGE_EMITTERS: [&EmitterSpec; 2] = [&PRINTS, &EXPOSES];
const GAUGE_REGISTRIES: Registries = Registries { modules: &GAUGE_MODULES, emitters: &GAUGE_EMITTERS };

#[test]
fn modules_build_counters_only_when_an_emitter_reads_them() {
    let with_emitters = |kinds: &[&'static str]| {
        let mut c = config(10);
        c.modules = vec![entry("m", "gauges", 1, "{}")];
        c.emitters = kinds.iter().map(|k| entry(k, k, 0, "{}")).collect();
        c
    };
    let gauges_only = |p: &mut Plan| {
        let Planned::Built(m) = &mut p.modules[0].planned else { panic!("built") };
        let mut out = Vec::new();
        m.collect(Instant::now(), &mut out).expect("collects");
        out[0].value == Value::Int(1)
    };
    let mut first = plan(with_emitters(&["prints"]), &GAUGE_REGISTRIES, &Default::default()).expect("plans");
    assert!(gauges_only(&mut first), "no emitter reads counters");
    let mut both = plan(with_emitters(&["prints", "exposes"]), &GAUGE_REGISTRIES, &Default::default()).expect("plans");
    assert!(!gauges_only(&mut both), "exposes reads counters");
    // Adding an emitter that reads counters rebuilds the modules on reload.
    let e = Engine::start(first);
    let second = plan(with_emitters(&["prints", "exposes"]), &GAUGE_REGISTRIES, &e.agent.running()).expect("plans");
    assert!(!second.modules[0].kept(), "rebuilt with counters");
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn modules_that_never_block_share_one_thread() {
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(
        vec![("a", 1, Box::new(Whoami(true))), ("own", 1, Box::new(Whoami(false))), ("b", 1, Box::new(Whoami(true)))],
        vec![("sink", 0, emitter)],
        10,
    ));
    e.step();
    assert_eq!(
        recv(&got),
        vec![(1001, vec!["mod-shared".to_string(), "mod-own".to_string(), "mod-shared".to_string()])]
    );
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn a_module_that_overruns_on_the_shared_thread_gives_each_a_thread_of_its_own() {
    let (stuck, hang, release_tx) = gate("stuck", true);
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(
        vec![("stuck", 1, stuck), ("good", 1, never_hangs("good", true)), ("own", 1, fixed("own"))],
        vec![("sink", 0, emitter)],
        10,
    ));
    e.step();
    assert_eq!(recv(&got), vec![(1001, names(&["stuck", "good", "own"]))]);

    // It hangs on the shared thread, where "good" waits behind it: both miss the tick.
    hang.store(true, Ordering::SeqCst);
    e.step();
    assert_eq!(recv(&got), vec![(1002, names(&["own"]))]);
    assert_eq!(e.module("good").timeouts.load(Ordering::Relaxed), 1);

    // Still running at the next tick: "good" gets a thread of its own and answers.
    e.step();
    assert_eq!(recv(&got), vec![(1003, names(&["good", "own"]))]);
    assert_eq!(e.module("stuck").skipped.load(Ordering::Relaxed), 1);
    assert_eq!(e.module("good").skipped.load(Ordering::Relaxed), 0);

    // Once it answers, it runs on a thread of its own too.
    hang.store(false, Ordering::SeqCst);
    release_tx.send(()).expect("the module waits");
    e.wait_modules_idle();
    e.step();
    assert_eq!(recv(&got), vec![(1004, names(&["stuck", "good", "own"]))]);
    e.step();
    assert_eq!(recv(&got), vec![(1005, names(&["stuck", "good", "own"]))]);
    assert_eq!(e.skipped_ticks(), 0);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn the_shared_thread_sends_a_tick_whose_every_module_ran_on_it() {
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(
        vec![("a", 1, Box::new(Whoami(true))), ("b", 1, Box::new(Whoami(true)))],
        vec![("sink", 0, emitter)],
        10,
    ));
    // The scheduler does not wait: the shared thread sends the tick, in module order.
    assert!(e.agent.collect(0, 1001, false).is_none());
    assert_eq!(recv(&got), vec![(1001, vec!["mod-shared".to_string(), "mod-shared".to_string()])]);
    assert_eq!(e.agent.tick_stats.payloads.load(Ordering::Relaxed), 1);
    assert_eq!(e.module("a").points.load(Ordering::Relaxed), 1);
    // `--once` and `--test` (force) wait for the payload and get it back.
    e.wait_modules_idle();
    let p = e.agent.collect(1, 1002, true).expect("a payload");
    assert_eq!(p.points.len(), 2);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}

#[test]
fn a_tick_the_shared_thread_has_not_sent_by_the_next_goes_out_without_its_late_modules() {
    let (slow, hang, release_tx) = gate("slow", true);
    let quick = never_hangs("quick", true);
    let (emitter, got) = sink();
    let mut e = Engine::start(hand_plan(vec![("quick", 1, quick), ("slow", 1, slow)], vec![("sink", 0, emitter)], 10));
    e.step();
    assert_eq!(recv(&got), vec![(1001, names(&["quick", "slow"]))]);

    // "slow" hangs after "quick" answered: the shared thread does not send tick 1002.
    hang.store(true, Ordering::SeqCst);
    e.step();
    let until = Instant::now() + PATIENCE;
    while e.module("quick").runs.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < until, "quick never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(got.try_recv().is_err());

    // The next tick sends it with what came in; "slow" counts a timeout and is skipped,
    // "quick" gets a thread of its own and answers tick 1003.
    e.step();
    assert_eq!(recv(&got), vec![(1002, names(&["quick"]))]);
    assert_eq!(recv(&got), vec![(1003, names(&["quick"]))]);
    assert_eq!(e.module("slow").timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(e.module("slow").skipped.load(Ordering::Relaxed), 1);
    assert_eq!(e.module("quick").timeouts.load(Ordering::Relaxed), 0);

    // Once it answers, both run on threads of their own.
    hang.store(false, Ordering::SeqCst);
    release_tx.send(()).expect("the module waits");
    e.wait_modules_idle();
    e.step();
    assert_eq!(recv(&got), vec![(1004, names(&["quick", "slow"]))]);
    assert_eq!(e.skipped_ticks(), 0);
    assert!(e.agent.shutdown(Instant::now() + PATIENCE));
}
