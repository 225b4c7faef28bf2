//! The running agent: module workers, emitter workers and the tick.
//!
//! * Every module runs on its own thread. On a tick the scheduler hands each due module a
//!   job and waits for the answers until the module's timeout at the latest. A module that
//!   has not answered is *stuck*: the tick goes out without it, it is skipped (and counted)
//!   on every tick while it is stuck, a warning is logged once, and when it answers again
//!   its late points are dropped and an info line says it is back.
//! * Every emitter runs on its own thread behind a bounded queue. The scheduler never
//!   blocks on it: when the queue is full the oldest payload is dropped and counted. An
//!   emitter with interval N gets every payload since its last write, as one batch.
//! * Nothing here names a concrete module or emitter: the registries are handed in.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::config::{Config, PluginEntry, Registries, Source};
use crate::httpd::{build_router, HttpServer};
use badger_api::http::{HttpRoutes, Route};
use badger_api::matcher::Matcher;
use badger_api::plugin::{
    Batch, BuildError, ConfigError, Emitter, EmitterContext, EmitterSpec, Module, ModuleContext, PluginConf,
};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_api::telemetry::{self, Group, Telemetry};
pub use badger_api::throttle::LogThrottle;

const WORKER_STACK: usize = 256 * 1024;
/// Emitters encode, compress and talk TLS: more headroom (untouched stack costs no memory).
const EMITTER_STACK: usize = 1024 * 1024;
const IDLE_EVERY: Duration = Duration::from_secs(1);

/// Counters of one module.
#[derive(Debug, Default)]
pub struct ModuleStats {
    pub runs: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub skipped: AtomicU64,
    pub points: AtomicU64,
    pub last_micros: AtomicU64,
}

/// Counters of one emitter.
#[derive(Debug, Default)]
pub struct EmitterStats {
    pub batches: AtomicU64,
    pub payloads: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

/// Counters of the scheduler.
#[derive(Debug, Default)]
pub struct TickStats {
    pub ticks: AtomicU64,
    pub skipped: AtomicU64,
    pub payloads: AtomicU64,
    /// Points of every payload sent out.
    pub points: AtomicU64,
}

fn int(c: &AtomicU64) -> Value {
    Value::Int(i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX))
}

impl telemetry::Source for ModuleStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        f("runs", int(&self.runs));
        f("errors", int(&self.errors));
        f("timeouts", int(&self.timeouts));
        f("skipped", int(&self.skipped));
        f("points", int(&self.points));
        f("collect_micros", int(&self.last_micros));
    }
}

impl telemetry::Source for EmitterStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        f("batches", int(&self.batches));
        f("payloads", int(&self.payloads));
        f("errors", int(&self.errors));
        f("dropped", int(&self.dropped));
    }
}

impl telemetry::Source for TickStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        f("ticks", int(&self.ticks));
        f("ticks_skipped", int(&self.skipped));
        f("payloads", int(&self.payloads));
        f("points", int(&self.points));
    }
}

/// What runs now, for [`plan`] on reload: fingerprints of the running plugins, their HTTP
/// routes, and the telemetry registry they publish to.
#[derive(Default)]
pub struct Running {
    pub fingerprints: Vec<String>,
    pub routes: HashMap<String, Vec<Route>>,
    pub telemetry: Telemetry,
}

/// A plugin that is built (or kept) for a config.
pub enum Planned<T> {
    /// Running already with the same settings: keep the running instance.
    Keep,
    Built(T),
    /// Cannot run here; the reason is logged and the rest runs.
    Skipped(String),
}

/// A plugin of a plan: its config entry, its fingerprint and what becomes of it.
pub type PlannedPlugin<T> = (PluginEntry, String, Planned<Box<T>>);

/// What a config turns into before it runs.
pub struct Plan {
    pub config: Config,
    pub meta: HostMeta,
    pub modules: Vec<PlannedPlugin<dyn Module>>,
    pub emitters: Vec<PlannedPlugin<dyn Emitter>>,
    /// HTTP routes by plugin fingerprint (kept plugins keep theirs).
    pub routes: HashMap<String, Vec<Route>>,
    /// Every route joined, when `core.http_listen` is set.
    pub router: Option<axum::Router>,
    pub telemetry: Telemetry,
}

/// Builds every plugin of `config` whose fingerprint is not in `running`.
/// A config error in any plugin fails the whole plan.
pub fn plan(config: Config, reg: &Registries, running: &Running) -> Result<Plan, ConfigError> {
    let meta = crate::hostmeta::resolve(&config.core);
    let listen = config.core.http_listen;
    let roots = config.core.roots.roots();
    let meta_arc = Arc::new(meta.clone());
    let telemetry = running.telemetry.clone();
    // A plugin built without a listener must be rebuilt when one appears, and the other way.
    let http_fp = if listen.is_some() { "\u{0}http" } else { "" };
    let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
    let mut all_routes: Vec<Route> = Vec::new();
    let mut keep_routes = |fp: &str, new: Vec<Route>, routes: &mut HashMap<String, Vec<Route>>| {
        all_routes.extend(new.iter().cloned());
        routes.insert(fp.to_string(), new);
    };
    let mut modules = Vec::new();
    for entry in &config.modules {
        let timeout = entry.timeout.unwrap_or(config.core.module_timeout).min(crate::config::MAX_MODULE_TIMEOUT);
        let fp = format!("{}\u{0}{:?}\u{0}{timeout:?}{http_fp}", entry.fingerprint(), roots);
        let http = HttpRoutes::new(listen, &config.file);
        let planned = if running.fingerprints.contains(&fp) {
            keep_routes(&fp, running.routes.get(&fp).cloned().unwrap_or_default(), &mut routes);
            Planned::Keep
        } else {
            let mctx =
                ModuleContext { roots: roots.clone(), timeout, http: http.clone(), telemetry: telemetry.clone() };
            let result = match &entry.source {
                Source::Library(lib) => crate::loader::build_module(lib, &mctx, &entry.conf),
                source => {
                    let spec = source
                        .registry_name()
                        .and_then(|kind| reg.module(kind))
                        .ok_or_else(|| entry.conf.error(&entry.name, "not a module"))?;
                    (spec.build)(&mctx, &entry.conf)
                }
            };
            let built = match result {
                Ok(m) => Planned::Built(m),
                Err(BuildError::Config(e)) => return Err(e),
                Err(BuildError::Unavailable(why)) => Planned::Skipped(why),
            };
            keep_routes(&fp, if matches!(built, Planned::Built(_)) { http.take() } else { Vec::new() }, &mut routes);
            built
        };
        modules.push((entry.clone(), fp, planned));
    }
    let mut emitters = Vec::new();
    for entry in &config.emitters {
        let fp = format!("{}{http_fp}", entry.fingerprint());
        let http = HttpRoutes::new(listen, &config.file);
        let planned = if running.fingerprints.contains(&fp) {
            keep_routes(&fp, running.routes.get(&fp).cloned().unwrap_or_default(), &mut routes);
            Planned::Keep
        } else {
            let ectx = EmitterContext { meta: meta_arc.clone(), http: http.clone(), telemetry: telemetry.clone() };
            let result = match &entry.source {
                Source::Library(lib) => crate::loader::build_emitter(lib, &entry.conf),
                source => {
                    let spec = source
                        .registry_name()
                        .and_then(|kind| reg.emitter(kind))
                        .ok_or_else(|| entry.conf.error(&entry.name, "not an emitter"))?;
                    (spec.build)(&ectx, &entry.conf)
                }
            };
            let built = match result {
                Ok(e) => Planned::Built(e),
                Err(BuildError::Config(e)) => return Err(e),
                Err(BuildError::Unavailable(why)) => Planned::Skipped(why),
            };
            keep_routes(&fp, if matches!(built, Planned::Built(_)) { http.take() } else { Vec::new() }, &mut routes);
            built
        };
        emitters.push((entry.clone(), fp, planned));
    }
    let router = match listen {
        Some(_) => Some(
            build_router(&all_routes)
                .map_err(|m| ConfigError::new(&config.file, None, Some("core.http_listen".into()), m))?,
        ),
        None => None,
    };
    Ok(Plan { config, meta, modules, emitters, routes, router, telemetry })
}

/// Builds one emitter from a spec with default settings (`--test` prints through one).
pub fn default_emitter(spec: &EmitterSpec, meta: &HostMeta) -> Result<(PluginEntry, Box<dyn Emitter>), BuildError> {
    let conf = PluginConf::from_text(spec.name, std::path::Path::new(spec.name), "{}");
    let e = (spec.build)(&EmitterContext { meta: Arc::new(meta.clone()), ..EmitterContext::default() }, &conf)?;
    let entry = PluginEntry {
        name: spec.name.into(),
        source: Source::Builtin(spec.name),
        interval: 0,
        blacklist: Matcher::default(),
        timeout: None,
        conf,
    };
    Ok((entry, e))
}

/// A one-job handoff to a module's thread. A Mutex and a Condvar park the thread at once;
/// a channel's blocking receive spins and yields first, which costs more CPU than the
/// job itself for a thread that wakes once a second.
struct JobSlot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

enum SlotState {
    Idle,
    Job(u64),
    Closed,
}

impl JobSlot {
    fn new() -> JobSlot {
        JobSlot { state: Mutex::new(SlotState::Idle), cv: Condvar::new() }
    }

    fn offer(&self, tick: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*s, SlotState::Idle) {
            *s = SlotState::Job(tick);
            self.cv.notify_one();
            true
        } else {
            false
        }
    }

    /// Waits for the next job; `None` once closed.
    fn take(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *s, SlotState::Idle) {
                SlotState::Job(t) => return Some(t),
                SlotState::Closed => {
                    *s = SlotState::Closed;
                    return None;
                }
                SlotState::Idle => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    fn close(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = SlotState::Closed;
        self.cv.notify_one();
    }
}

/// Where module threads leave their results; the scheduler is woken once, when the last
/// expected result of its tick is in.
struct ResultBox {
    state: Mutex<Results>,
    cv: Condvar,
}

#[derive(Default)]
struct Results {
    tick: u64,
    expected: usize,
    arrived: usize,
    list: Vec<ModuleResult>,
}

impl ResultBox {
    fn put(&self, r: ModuleResult) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if r.tick == s.tick {
            s.arrived += 1;
            if s.arrived >= s.expected {
                self.cv.notify_one();
            }
        }
        s.list.push(r);
    }
}

struct ModuleResult {
    worker: u64,
    tick: u64,
    points: Vec<Point>,
    error: Option<String>,
    took: Duration,
}

struct ModuleWorker {
    id: u64,
    name: String,
    fingerprint: String,
    interval: u64,
    timeout: Duration,
    jobs: Arc<JobSlot>,
    busy: Arc<AtomicBool>,
    stats: Arc<ModuleStats>,
    collected: bool,
    /// The tick it was asked about and has not answered, once its timeout passed.
    stuck_since: Option<Instant>,
    pending: Option<u64>,
}

impl Drop for ModuleWorker {
    fn drop(&mut self) {
        // Ends the thread after its current job (a hung one stays parked in its module).
        self.jobs.close();
    }
}

impl ModuleWorker {
    fn due(&self, ts: i64) -> bool {
        self.interval <= 1 || !self.collected || ts.rem_euclid(self.interval as i64) == 0
    }
}

struct EmitterWorker {
    name: String,
    fingerprint: String,
    tx: Sender<Arc<Payload>>,
    /// A receiver of the same queue, to drop the oldest payload when it is full.
    rx: Receiver<Arc<Payload>>,
    done: Receiver<()>,
    stats: Arc<EmitterStats>,
    dead_logged: bool,
    drop_log: LogThrottle,
}

/// The running agent.
pub struct Agent {
    meta: Arc<HostMeta>,
    modules: Vec<ModuleWorker>,
    emitters: Vec<EmitterWorker>,
    /// Emitters no longer configured, still writing what they held: (name, done).
    retired: Vec<(String, Receiver<()>)>,
    results: Arc<ResultBox>,
    next_id: u64,
    queue_size: usize,
    module_timeout: Duration,
    pub tick_stats: Arc<TickStats>,
    last_points: usize,
    /// Set at shutdown before the queues close: when emitters must be done flushing.
    deadline: Arc<Mutex<Option<Instant>>>,
    telemetry: Telemetry,
    /// HTTP routes of the running plugins, by fingerprint.
    routes: HashMap<String, Vec<Route>>,
    http: Option<HttpServer>,
}

impl Agent {
    /// Starts the workers of a plan (every plugin must be `Built` or `Skipped`).
    pub fn start(plan: Plan) -> Agent {
        let mut agent = Agent {
            meta: Arc::new(plan.meta.clone()),
            modules: Vec::new(),
            emitters: Vec::new(),
            retired: Vec::new(),
            results: Arc::new(ResultBox { state: Mutex::default(), cv: Condvar::new() }),
            next_id: 0,
            queue_size: plan.config.core.queue_size,
            module_timeout: plan.config.core.module_timeout,
            tick_stats: Arc::default(),
            last_points: 0,
            deadline: Arc::default(),
            telemetry: plan.telemetry.clone(),
            routes: HashMap::new(),
            http: None,
        };
        let tick: Arc<dyn telemetry::Source> = agent.tick_stats.clone();
        agent.telemetry.publish(Group::Tick, "", &tick);
        agent.apply(plan);
        agent
    }

    /// What runs now, for [`plan`] on reload.
    pub fn running(&self) -> Running {
        Running {
            fingerprints: self
                .modules
                .iter()
                .map(|m| m.fingerprint.clone())
                .chain(self.emitters.iter().map(|e| e.fingerprint.clone()))
                .collect(),
            routes: self.routes.clone(),
            telemetry: self.telemetry.clone(),
        }
    }

    /// The address the HTTP listener is bound to, if it runs.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Starts, moves, updates or stops the HTTP listener for a plan.
    fn apply_http(&mut self, listen: Option<std::net::SocketAddr>, router: Option<axum::Router>) {
        match (self.http.take(), listen, router) {
            (Some(server), Some(addr), Some(router)) if server.addr() == addr => {
                server.set_router(router);
                self.http = Some(server);
            }
            (old, Some(addr), Some(router)) => {
                if let Some(server) = old {
                    server.stop(Instant::now() + Duration::from_secs(2));
                }
                match HttpServer::start(addr, router) {
                    Ok(server) => self.http = Some(server),
                    Err(e) => log::error!(
                        "core.http_listen: cannot listen on {addr}: {e}; the plugins' HTTP routes are not served"
                    ),
                }
            }
            (old, _, _) => {
                if let Some(server) = old {
                    server.stop(Instant::now() + Duration::from_secs(2));
                }
            }
        }
    }

    /// Names of the running modules and emitters.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        (self.modules.iter().map(|m| m.name.clone()).collect(), self.emitters.iter().map(|e| e.name.clone()).collect())
    }

    pub fn module_stats(&self) -> Vec<(String, Arc<ModuleStats>)> {
        self.modules.iter().map(|m| (m.name.clone(), m.stats.clone())).collect()
    }

    pub fn emitter_stats(&self) -> Vec<(String, Arc<EmitterStats>)> {
        self.emitters.iter().map(|e| (e.name.clone(), e.stats.clone())).collect()
    }

    /// Switches to a new plan: kept plugins keep running (with their state and buffers),
    /// new ones start, the ones no longer configured stop (emitters flush first).
    pub fn apply(&mut self, plan: Plan) {
        self.routes = plan.routes;
        self.apply_http(plan.config.core.http_listen, plan.router);
        self.meta = Arc::new(plan.meta);
        self.queue_size = plan.config.core.queue_size;
        self.module_timeout = plan.config.core.module_timeout;
        let mut old: HashMap<String, ModuleWorker> =
            self.modules.drain(..).map(|m| (m.fingerprint.clone(), m)).collect();
        for (entry, fp, planned) in plan.modules {
            let timeout = entry.timeout.unwrap_or(self.module_timeout).min(crate::config::MAX_MODULE_TIMEOUT);
            match planned {
                Planned::Keep => {
                    if let Some(mut w) = old.remove(&fp) {
                        w.interval = entry.interval;
                        w.timeout = timeout;
                        self.modules.push(w);
                    }
                }
                Planned::Built(module) => {
                    let w = self.spawn_module(&entry, fp, module, timeout);
                    self.modules.push(w);
                }
                Planned::Skipped(why) => log::error!("module \"{}\" skipped: {why}", entry.name),
            }
        }
        // Dropping the job sender ends a removed module's thread after its current job.
        drop(old);
        let mut old: HashMap<String, EmitterWorker> =
            self.emitters.drain(..).map(|e| (e.fingerprint.clone(), e)).collect();
        for (entry, fp, planned) in plan.emitters {
            match planned {
                Planned::Keep => {
                    if let Some(w) = old.remove(&fp) {
                        self.emitters.push(w);
                    }
                }
                Planned::Built(e) => {
                    let w = self.spawn_emitter(&entry, fp, e);
                    self.emitters.push(w);
                }
                Planned::Skipped(why) => log::error!("emitter \"{}\" skipped: {why}", entry.name),
            }
        }
        // Removed emitters: closing the queue makes them write what they hold and stop.
        for (_, w) in old {
            self.retired.push((w.name, w.done));
        }
        if self.modules.is_empty() {
            log::warn!("no module is running: nothing will be collected");
        }
        if self.emitters.is_empty() {
            log::warn!("no emitter is running: nothing will be sent");
        }
    }

    fn spawn_module(
        &mut self,
        entry: &PluginEntry,
        fingerprint: String,
        mut module: Box<dyn Module>,
        timeout: Duration,
    ) -> ModuleWorker {
        self.next_id += 1;
        let id = self.next_id;
        let jobs = Arc::new(JobSlot::new());
        let job_slot = jobs.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ModuleStats::default());
        let results = self.results.clone();
        let blacklist = entry.blacklist.clone();
        let name = entry.name.clone();
        let source: Arc<dyn telemetry::Source> = stats.clone();
        self.telemetry.publish(Group::Module, &name, &source);
        let (b, s) = (busy.clone(), stats.clone());
        let spawned = thread::Builder::new().name(format!("mod-{name}")).stack_size(WORKER_STACK).spawn(move || {
            let mut capacity = 16;
            while let Some(tick) = job_slot.take() {
                let start = Instant::now();
                let mut points = Vec::with_capacity(capacity);
                let error = match catch_unwind(AssertUnwindSafe(|| module.collect(start, &mut points))) {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.0),
                    Err(panic) => Some(format!("panicked: {}", panic_message(&panic))),
                };
                if !blacklist.is_empty() {
                    points.retain(|p| !blacklist.matches(&p.name));
                }
                capacity = capacity.max(points.len());
                let took = start.elapsed();
                s.runs.fetch_add(1, Ordering::Relaxed);
                s.last_micros.store(took.as_micros() as u64, Ordering::Relaxed);
                b.store(false, Ordering::Release);
                results.put(ModuleResult { worker: id, tick, points, error, took });
            }
        });
        if let Err(e) = spawned {
            log::error!("module \"{}\": cannot start its thread: {e}", entry.name);
        }
        ModuleWorker {
            id,
            name: entry.name.clone(),
            fingerprint,
            interval: entry.interval,
            timeout,
            jobs,
            busy,
            stats,
            collected: false,
            stuck_since: None,
            pending: None,
        }
    }

    fn spawn_emitter(&mut self, entry: &PluginEntry, fingerprint: String, emitter: Box<dyn Emitter>) -> EmitterWorker {
        let (tx, rx) = bounded::<Arc<Payload>>(self.queue_size);
        let (done_tx, done) = bounded::<()>(1);
        let stats = Arc::new(EmitterStats::default());
        let source: Arc<dyn telemetry::Source> = stats.clone();
        self.telemetry.publish(Group::Emitter, &entry.name, &source);
        let worker_rx = rx.clone();
        let blacklist = entry.blacklist.clone();
        let interval = entry.interval;
        let name = entry.name.clone();
        let s = stats.clone();
        let deadline = self.deadline.clone();
        let spawned = thread::Builder::new().name(format!("emit-{name}")).stack_size(EMITTER_STACK).spawn(move || {
            emitter_loop(&name, emitter, &blacklist, interval, &worker_rx, &s, &deadline);
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            log::error!("emitter \"{}\": cannot start its thread: {e}", entry.name);
        }
        EmitterWorker {
            name: entry.name.clone(),
            fingerprint,
            tx,
            rx,
            done,
            stats,
            dead_logged: false,
            drop_log: LogThrottle::default(),
        }
    }

    /// Collects one tick: every due module (all of them with `force`), waiting for each at
    /// most its timeout. Returns the payload, or `None` when no module gave a point.
    pub fn collect(&mut self, tick: u64, timestamp: i64, force: bool) -> Option<Arc<Payload>> {
        self.tick_stats.ticks.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut wait_until = started;
        {
            let mut r = self.results.state.lock().unwrap_or_else(|e| e.into_inner());
            r.tick = tick;
            r.arrived = 0;
            r.expected = usize::MAX;
        }
        let mut expected = 0usize;
        for w in &mut self.modules {
            if !force && !w.due(timestamp) {
                continue;
            }
            if w.busy.load(Ordering::Acquire) {
                w.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            w.busy.store(true, Ordering::Release);
            if !w.jobs.offer(tick) {
                w.busy.store(false, Ordering::Release);
                continue;
            }
            w.pending = Some(tick);
            expected += 1;
            wait_until = wait_until.max(started + w.timeout);
        }
        let arrived = {
            let mut r = self.results.state.lock().unwrap_or_else(|e| e.into_inner());
            r.expected = expected;
            while r.arrived < r.expected {
                let now = Instant::now();
                if now >= wait_until {
                    break;
                }
                r = self
                    .results
                    .cv
                    .wait_timeout(r, wait_until - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::take(&mut r.list)
        };
        let mut per_module: Vec<Vec<Point>> = Vec::new();
        per_module.resize_with(self.modules.len(), Vec::new);
        for r in arrived {
            let Some(idx) = self.modules.iter().position(|w| w.id == r.worker) else { continue };
            let w = &mut self.modules[idx];
            let current = r.tick == tick && w.pending == Some(tick);
            if let Some(since) = w.stuck_since.take() {
                log::info!(
                    "module \"{}\" answered again after {:.1}s; its late points were dropped",
                    w.name,
                    since.elapsed().as_secs_f64() + w.timeout.as_secs_f64()
                );
            }
            if !current {
                continue;
            }
            w.pending = None;
            w.collected = true;
            if let Some(e) = r.error {
                w.stats.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("module \"{}\": {e}", w.name);
            }
            log::trace!("module \"{}\": {} points in {:?}", w.name, r.points.len(), r.took);
            w.stats.points.fetch_add(r.points.len() as u64, Ordering::Relaxed);
            per_module[idx] = r.points;
        }
        for w in &mut self.modules {
            if w.pending.take() == Some(tick) {
                w.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                if w.stuck_since.is_none() {
                    w.stuck_since = Some(Instant::now());
                    log::warn!(
                        "module \"{}\" did not answer within {:?}; the tick went out without it, and it is skipped until it answers",
                        w.name,
                        w.timeout
                    );
                }
            }
        }
        let total: usize = per_module.iter().map(Vec::len).sum();
        if total == 0 {
            log::debug!("tick {tick}: no points");
            return None;
        }
        let mut points = Vec::with_capacity(total.max(self.last_points));
        for p in per_module {
            points.extend(p);
        }
        self.last_points = total;
        Some(Arc::new(Payload { meta: self.meta.clone(), timestamp, points }))
    }

    /// Hands a payload to every emitter without blocking.
    pub fn dispatch(&mut self, payload: Arc<Payload>) {
        self.tick_stats.payloads.fetch_add(1, Ordering::Relaxed);
        self.tick_stats.points.fetch_add(payload.points.len() as u64, Ordering::Relaxed);
        for e in &mut self.emitters {
            match e.tx.try_send(payload.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(p)) => {
                    // Drop the oldest, keep the newest.
                    let _ = e.rx.try_recv();
                    e.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if let Some(more) = e.drop_log.allow() {
                        log::warn!(
                            "emitter \"{}\" is behind: its queue is full, dropped the oldest payload ({} more since the last warning, {} in all)",
                            e.name,
                            more,
                            e.stats.dropped.load(Ordering::Relaxed)
                        );
                    }
                    let _ = e.tx.try_send(p);
                }
                Err(TrySendError::Disconnected(_)) => {
                    if !e.dead_logged {
                        e.dead_logged = true;
                        log::error!("emitter \"{}\" has stopped; its payloads are dropped", e.name);
                    }
                    e.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops everything: emitters write what they hold and flush, until `deadline`.
    /// Returns false if some emitter had not finished by then.
    pub fn shutdown(self, deadline: Instant) -> bool {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Some(deadline);
        }
        let Agent { modules, emitters, retired, http, .. } = self;
        // Stop accepting at once; requests in progress finish while the emitters flush.
        let http_done = http.map(|server| {
            thread::spawn(move || {
                server.stop(deadline);
            })
        });
        drop(modules);
        let mut waits = Vec::new();
        for e in emitters {
            let EmitterWorker { name, tx, done, .. } = e;
            drop(tx);
            waits.push((name, done));
        }
        waits.extend(retired);
        let mut all = true;
        for (name, done) in waits {
            // The worker's rx clone in EmitterWorker is dropped too, so the queue closes.
            match done.recv_deadline(deadline) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!("emitter \"{name}\" did not finish before the shutdown deadline");
                    all = false;
                }
            }
        }
        if let Some(h) = http_done {
            let _ = h.join();
        }
        all
    }
}

fn emitter_loop(
    name: &str,
    mut emitter: Box<dyn Emitter>,
    blacklist: &Matcher,
    interval: u64,
    rx: &Receiver<Arc<Payload>>,
    stats: &EmitterStats,
    shutdown_deadline: &Mutex<Option<Instant>>,
) {
    let mut batch: Vec<Arc<Payload>> = Vec::new();
    let mut first_at: Option<Instant> = None;
    let mut last_idle = Instant::now();
    let mut errors = LogThrottle::default();
    let mut send = |batch: &mut Vec<Arc<Payload>>, emitter: &mut Box<dyn Emitter>| {
        if batch.is_empty() {
            return;
        }
        let b = Batch::new(batch, blacklist);
        let r = catch_unwind(AssertUnwindSafe(|| emitter.emit(&b)));
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.payloads.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let err = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.0),
            Err(panic) => Some(format!("panicked: {}", panic_message(&panic))),
        };
        if let Some(e) = err {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(more) = errors.allow() {
                log::error!("emitter \"{name}\": {e} ({more} similar errors since the last line)");
            }
        }
        batch.clear();
    };
    loop {
        // Wake at least once a second: a batching emitter's deadline, or the idle hook.
        let wake = match first_at {
            Some(t) if interval > 1 => (t + Duration::from_secs(interval + 1)).min(Instant::now() + IDLE_EVERY),
            _ => Instant::now() + IDLE_EVERY,
        };
        match rx.recv_deadline(wake) {
            Ok(p) => {
                let ts = p.timestamp;
                batch.push(p);
                first_at.get_or_insert_with(Instant::now);
                if interval <= 1 || ts.rem_euclid(interval as i64) == 0 {
                    send(&mut batch, &mut emitter);
                    first_at = None;
                    last_idle = Instant::now();
                } else if last_idle.elapsed() >= IDLE_EVERY {
                    // Payloads arrive every second, so the wait never times out: give a
                    // batching emitter its retry turn here.
                    let _ = catch_unwind(AssertUnwindSafe(|| emitter.idle()));
                    last_idle = Instant::now();
                }
            }
            Err(RecvTimeoutError::Timeout) => match first_at {
                Some(t) if t.elapsed() >= Duration::from_secs(interval + 1) => {
                    send(&mut batch, &mut emitter);
                    first_at = None;
                }
                _ => {
                    let _ = catch_unwind(AssertUnwindSafe(|| emitter.idle()));
                    last_idle = Instant::now();
                }
            },
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch, &mut emitter);
                let deadline = *shutdown_deadline.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = emitter.flush(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(4))) {
                    log::error!("emitter \"{name}\": flush at shutdown: {e}");
                }
                return;
            }
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
