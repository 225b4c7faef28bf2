//! The tick and the agent's modes: run, `--test`, `--once`, `--check`.
//!
//! Ticks fall on wall-clock second boundaries: tick N is due at start + N s, measured on the
//! monotonic clock (no drift). After a stall the missed ticks are skipped and counted, never
//! run in a burst. A payload's timestamp is its tick's scheduled time in whole epoch seconds.
//! A module with interval N runs on its first tick and then on the ticks whose timestamp
//! is a multiple of N, so every host collects at the same wall-clock instants.
//!
//! The loop is [`step`] after [`step`] on a [`Clock`]; tests drive it on a manual clock.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::sync::mpsc::{Receiver, RecvTimeoutError};

use crate::agent::{Agent, LogThrottle};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LoadError, Registries, Source};
use crate::plan::{default_emitter, plan, Plan, Planned, Running};
use badger_api::plugin::EmitterSpec;

/// Exit code for a bad config or bad usage.
pub const EXIT_CONFIG: i32 = 2;
/// How long shutdown may take after SIGTERM/SIGINT (the unit's stop timeout is longer).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(4500);

/// What the signal thread tells the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Reload,
}

/// Talks to systemd when started by it (`Type=notify`): readiness after the config loads,
/// the watchdog kept alive by the tick, reloading and stopping states.
struct Systemd {
    watchdog: Option<Duration>,
    last_ping: Instant,
}

impl Systemd {
    fn new() -> Systemd {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec));
        Systemd { watchdog, last_ping: Instant::now() }
    }

    fn send(&self, states: &[sd_notify::NotifyState<'_>]) {
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            if let Err(e) = sd_notify::notify(false, states) {
                log::debug!("sd_notify: {e}");
            }
        }
    }

    /// Called every tick: pings at half the watchdog period.
    fn tick(&mut self) {
        if let Some(period) = self.watchdog {
            if self.last_ping.elapsed() >= period / 2 {
                self.send(&[sd_notify::NotifyState::Watchdog]);
                self.last_ping = Instant::now();
            }
        }
    }
}

/// Loads a config and builds its plugins (keeping the `running` ones).
pub fn load(path: &Path, reg: &Registries, running: &Running) -> Result<Plan, LoadError> {
    let config = Config::load(path, reg)?;
    Ok(plan(config, reg, running)?)
}

/// Loads the config and sets up logging; on failure prints why and gives the exit code.
/// `step` runs after the config is read and after the plan is built (the agent releases its
/// start-up pages there: [`StartUp::step`]).
fn start(path: &Path, reg: &Registries, log_override: Option<log::LevelFilter>, step: fn()) -> Result<Plan, i32> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("badger: {e}");
        EXIT_CONFIG
    };
    let config = Config::load(path, reg).map_err(|e| fail(&e))?;
    step();
    // Logging first, so what plugins log while they are built is not lost.
    badger_api::logging::configure(&config.core.log, log_override)
        .map_err(|e| fail(&format!("cannot open the log file: {e}")))?;
    let plan = plan(config, reg, &Running::default()).map_err(|e| fail(&LoadError(e)))?;
    step();
    Ok(plan)
}

/// The next whole wall-clock second, as an instant and as epoch seconds.
fn align(clock: &dyn Clock) -> (Instant, i64) {
    let now = clock.epoch();
    let at = clock.now();
    let next = now.as_secs() + 1;
    (at + (Duration::from_secs(next) - now), next as i64)
}

/// Where the tick is: tick `n` is due at `base + n` seconds and stamped `base_ts + n`.
pub struct Ticker {
    base: Instant,
    base_ts: i64,
    n: u64,
    stall_log: LogThrottle,
}

impl Ticker {
    /// Tick 0 falls on the next whole wall-clock second.
    pub fn new(clock: &dyn Clock) -> Ticker {
        let (base, base_ts) = align(clock);
        Ticker { base, base_ts, n: 0, stall_log: LogThrottle::default() }
    }

    /// When the next tick is due.
    pub fn due(&self) -> Instant {
        self.base + Duration::from_secs(self.n)
    }
}

/// How the wait for a tick ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Tick,
    Stop,
    Reload,
}

/// One step of the tick loop: waits for the next tick through `wait` (given when it is due),
/// counts the ticks a stall skipped (never running them in a burst), collects, fans out,
/// and realigns the ticks if the wall clock was stepped. Returns what the wait ended with;
/// only `Wake::Tick` collects.
pub fn step(agent: &mut Agent, ticker: &mut Ticker, clock: &dyn Clock, wait: impl FnOnce(Instant) -> Wake) -> Wake {
    let due = ticker.due();
    match wait(due) {
        Wake::Tick => {}
        other => return other,
    }
    let behind = clock.now().saturating_duration_since(due);
    if behind >= Duration::from_secs(1) {
        let missed = behind.as_secs();
        agent.tick_stats.skipped.fetch_add(missed, Ordering::Relaxed);
        if let Some(more) = ticker.stall_log.allow_at(clock.now()) {
            log::warn!(
                "badger was stalled {:.1}s: skipped {missed} ticks ({more} stalls since the last warning)",
                behind.as_secs_f64()
            );
        }
        ticker.n += missed;
    }
    let ts = ticker.base_ts + ticker.n as i64;
    if let Some(payload) = agent.collect(ticker.n, ts, false) {
        agent.dispatch(payload);
    }
    ticker.n += 1;
    // If the wall clock was stepped, realign so timestamps stay true.
    let expected = ticker.base_ts as f64 + clock.now().saturating_duration_since(ticker.base).as_secs_f64();
    let actual = clock.epoch().as_secs_f64();
    if (actual - expected).abs() > 1.0 {
        log::warn!("the wall clock moved by {:.1}s; realigning ticks", actual - expected);
        (ticker.base, ticker.base_ts) = align(clock);
        ticker.n = 0;
    }
    Wake::Tick
}

/// Runs the agent until `Control::Stop`. Returns the process exit code.
pub fn run(path: &Path, reg: &Registries, log_override: Option<log::LevelFilter>, control: &Receiver<Control>) -> i32 {
    let plan = match start(path, reg, log_override, StartUp::step) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut agent = Agent::start(plan);
    let (m, e) = agent.names();
    log::info!("badger {} started: modules [{}], emitters [{}]", env!("CARGO_PKG_VERSION"), m.join(", "), e.join(", "));
    let mut systemd = Systemd::new();
    systemd.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("collecting")]);
    let mut start_up = StartUp::default();

    let clock = SystemClock;
    let mut ticker = Ticker::new(&clock);
    loop {
        // A std channel: its blocking wait parks at once (crossbeam's spins and yields first,
        // which on a busy tick switches to the threads the tick just woke).
        let woke = step(&mut agent, &mut ticker, &clock, |due| {
            match control.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => Wake::Stop,
                Ok(Control::Reload) => Wake::Reload,
                Err(RecvTimeoutError::Timeout) => {
                    start_up.tick_due();
                    Wake::Tick
                }
            }
        });
        match woke {
            Wake::Stop => break,
            Wake::Reload => {
                systemd.send(&[sd_notify::NotifyState::Reloading]);
                reload(&mut agent, path, reg, log_override);
                systemd.send(&[sd_notify::NotifyState::Ready]);
                start_up.began();
            }
            Wake::Tick => systemd.tick(),
        }
    }
    log::info!("stopping: flushing emitters");
    systemd.send(&[sd_notify::NotifyState::Stopping]);
    if agent.shutdown(Instant::now() + SHUTDOWN_DEADLINE) {
        log::info!("stopped");
    }
    0
}

/// Start-up (and a reload) runs code and reads constants that the ticks never use again:
/// the command line, the config parser, the plan, the start of the agent's threads and the
/// first collections' set-up (each module's first run opens its files, lists its devices and
/// filesystems). Their pages of the executable are unmapped after each step of start-up
/// (`main` does it as it begins and after the command line; [`StartUp::step`]), when the
/// first tick is due (the threads have started by then), and again before the fourth tick;
/// the ticks fault back in what they use (badger_api::memory::ExecutablePages says why and
/// what).
#[derive(Default)]
struct StartUp {
    /// Ticks due since start (or the last reload).
    ticks: u32,
}

impl StartUp {
    /// Ticks after start (or a reload) by which every module at the default 1 s interval has
    /// run its first collection and its first steady one.
    const TICKS: u32 = 3;

    /// A reload is done: release before the next tick, and again `TICKS` ticks later.
    fn began(&mut self) {
        self.ticks = 0;
    }

    /// A tick is due: before its collection, release if it is the first or the `TICKS`th
    /// after the start.
    fn tick_due(&mut self) {
        if self.ticks == 0 || self.ticks == Self::TICKS {
            Self::step();
        }
        self.ticks = self.ticks.saturating_add(1);
    }

    /// A step of start-up is done: release the pages it used.
    fn step() {
        let bytes = badger_api::memory::release_start_up_pages();
        log::debug!("released the start-up pages of the executable and the main stack ({} KiB)", bytes / 1024);
    }
}

fn reload(agent: &mut Agent, path: &Path, reg: &Registries, log_override: Option<log::LevelFilter>) {
    log::info!("SIGHUP: reloading {}", path.display());
    match load(path, reg, &agent.running()) {
        Ok(plan) => {
            if let Err(e) = badger_api::logging::configure(&plan.config.core.log, log_override) {
                log::error!("reload: cannot open the new log file ({e}); logging stays as it was");
            }
            let kept =
                plan.modules.iter().filter(|m| m.kept()).count() + plan.emitters.iter().filter(|e| e.kept()).count();
            agent.apply(plan);
            let (m, e) = agent.names();
            log::info!(
                "reloaded: modules [{}], emitters [{}] ({kept} kept running unchanged)",
                m.join(", "),
                e.join(", ")
            );
        }
        Err(e) => log::error!("reload failed, still running the previous config: {e}"),
    }
}

/// What `--test` and `--once` send the payload through.
pub enum Probe<'a> {
    /// `--test`: this emitter (stdout_pretty) with default settings.
    Test(&'a EmitterSpec),
    /// `--once`: the configured emitters.
    Once,
}

/// Collects, waits one second so rates exist, collects again and emits that payload.
pub fn probe(path: &Path, reg: &Registries, log_override: Option<log::LevelFilter>, how: Probe<'_>) -> i32 {
    let mut plan = match start(path, reg, log_override, || {}) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Probe::Test(spec) = how {
        match default_emitter(spec, &plan.meta) {
            Ok(e) => plan.emitters = vec![e],
            Err(e) => {
                eprintln!("badger: {e}");
                return 1;
            }
        }
    }
    let mut agent = Agent::start(plan);
    let (mut base, mut base_ts) = align(&SystemClock);
    let _ = agent.collect(0, base_ts - 1, true);
    // Rates need a real interval: at least one whole second between the two collections.
    if base.saturating_duration_since(Instant::now()) < Duration::from_secs(1) {
        base += Duration::from_secs(1);
        base_ts += 1;
    }
    std::thread::sleep(base.saturating_duration_since(Instant::now()));
    if let Some(p) = agent.collect(1, base_ts, true) {
        agent.dispatch(p);
    } else {
        log::warn!("no module gave a point");
    }
    if agent.shutdown(Instant::now() + SHUTDOWN_DEADLINE) {
        0
    } else {
        1
    }
}

/// Validates the whole config and prints what would run. Exit 0, or 2 with the error.
pub fn check(path: &Path, reg: &Registries) -> i32 {
    let plan = match load(path, reg, &Running::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("badger: {e}");
            return EXIT_CONFIG;
        }
    };
    let m = &plan.meta;
    println!("config ok: {}", plan.config.file.display());
    println!(
        "host: datacenter={:?} region={:?} zone={:?} cluster={:?} hostname={:?} ipv4={:?} ipv6={:?}",
        m.datacenter, m.region, m.zone, m.cluster, m.hostname, m.ipv4, m.ipv6
    );
    if let Some(addr) = plan.config.core.http_listen {
        let mut paths: Vec<String> =
            plan.routes.values().flatten().map(|r| format!("{} ({})", r.path, r.plugin)).collect();
        paths.sort();
        let served = if paths.is_empty() { "no routes".to_string() } else { paths.join(", ") };
        println!("http: {addr}: {served}");
    }
    let line = |kind: &str, e: &crate::config::PluginEntry, status: String| {
        let conf =
            if e.conf.file.exists() { e.conf.file.display().to_string() } else { "(defaults; no conf file)".into() };
        let every = if e.interval <= 1 { "every tick".to_string() } else { format!("every {}s", e.interval) };
        let alias = match (&e.source, e.source.registry_name()) {
            (Source::Library(lib), _) => format!(" (= {})", lib.display()),
            (_, Some(kind)) if e.name != kind => format!(" (= {kind})"),
            _ => String::new(),
        };
        println!("  {kind} {}{alias}: {every}, {conf}: {status}", e.name);
    };
    for p in &plan.modules {
        line("module", &p.entry, status(&p.planned));
    }
    for p in &plan.emitters {
        line("emitter", &p.entry, status(&p.planned));
    }
    0
}

fn status<T>(p: &Planned<T>) -> String {
    match p {
        Planned::Skipped(why) => format!("would be skipped: {why}"),
        _ => "ok".into(),
    }
}
