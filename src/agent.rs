//! The running agent: module workers, emitter workers and the tick.
//!
//! * Every module runs on its own thread, but for the ones that never block
//!   (`Module::shares_thread`), which share one. On a tick the scheduler hands each due
//!   module a job and waits for the answers until the module's timeout at the latest (when
//!   every due module is on the shared thread, that thread sends the tick out itself and the
//!   scheduler does not wait: [`Agent::collect`]). A module that
//!   has not answered is *stuck*: the tick goes out without it, it is skipped (and counted)
//!   on every tick while it is stuck, a warning is logged once, and when it answers again
//!   its late points are dropped and an info line says it is back.
//! * Every emitter runs on its own thread behind a bounded queue. The scheduler never
//!   blocks on it: when the queue is full the oldest payload is dropped and counted. An
//!   emitter with interval N gets every payload since its last write, as one batch.
//! * Nothing here names a concrete module or emitter: the registries are handed in.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock::{Clock, SystemClock};
use crate::httpd::HttpServer;
use crate::plan::{Plan, Planned, Running};
use crate::workers::{
    account, dispatch, spawn_emitter, spawn_module, spawn_own, EmitterWorker, Finisher, ModuleResult, ModuleWorker,
    Outlet, ResultBox, Runner, SharedThread,
};
pub use crate::workers::{EmitterStats, ModuleStats, TickStats};
use badger_api::http::Route;
use badger_api::point::{HostMeta, Payload, Point};
use badger_api::telemetry::{self, Group, Telemetry};
pub use badger_api::throttle::LogThrottle;

/// The running agent.
pub struct Agent {
    meta: Arc<HostMeta>,
    modules: Vec<ModuleWorker>,
    /// The thread the modules that never block share; `None` once one of them overran on it
    /// (from then on every module has a thread of its own).
    shared: Option<SharedThread>,
    /// A module overran on the shared thread: no other is started.
    shared_retired: bool,
    emitters: Vec<EmitterWorker>,
    /// The emitters' queues, as a tick is sent to them (by this thread or the shared one).
    outlets: Arc<[Arc<Outlet>]>,
    /// Emitters no longer configured, still writing what they held: (name, done).
    retired: Vec<(String, Receiver<()>)>,
    results: Arc<ResultBox>,
    next_id: u64,
    queue_size: usize,
    pub tick_stats: Arc<TickStats>,
    /// Set at shutdown before the queues close: when emitters must be done flushing.
    deadline: Arc<Mutex<Option<Instant>>>,
    telemetry: Telemetry,
    /// HTTP routes of the running plugins, by fingerprint.
    routes: HashMap<String, Vec<Route>>,
    http: Option<HttpServer>,
    /// What collection timeouts are measured on.
    clock: Arc<dyn Clock>,
}

impl Agent {
    /// Starts the workers of a plan (every plugin must be `Built` or `Skipped`).
    pub fn start(plan: Plan) -> Agent {
        Agent::start_with_clock(plan, Arc::new(SystemClock))
    }

    /// [`Agent::start`] on a given clock (tests run on a [`crate::clock::ManualClock`]).
    pub fn start_with_clock(plan: Plan, clock: Arc<dyn Clock>) -> Agent {
        let mut agent = Agent {
            meta: Arc::new(plan.meta.clone()),
            modules: Vec::new(),
            shared: None,
            shared_retired: false,
            emitters: Vec::new(),
            outlets: Arc::new([]),
            retired: Vec::new(),
            results: Arc::new(ResultBox::new()),
            next_id: 0,
            queue_size: plan.config.core.queue_size,
            tick_stats: Arc::default(),
            deadline: Arc::default(),
            telemetry: plan.telemetry.clone(),
            routes: HashMap::new(),
            http: None,
            clock,
        };
        let tick: Arc<dyn telemetry::Source> = agent.tick_stats.clone();
        agent.telemetry.publish(Group::Tick, "", &tick);
        agent.apply(plan);
        agent
    }

    /// What runs now, for [`crate::plan::plan`] on reload.
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

    /// Starts, moves, updates or stops the HTTP listener for a plan.
    fn apply_http(
        &mut self,
        listen: Option<std::net::SocketAddr>,
        limits: &badger_api::listener::ListenerLimits,
        router: Option<axum::Router>,
    ) {
        match (self.http.take(), listen, router) {
            (Some(server), Some(addr), Some(router)) if server.addr() == addr && server.limits() == limits => {
                server.set_router(router);
                self.http = Some(server);
            }
            (old, Some(addr), Some(router)) => {
                if let Some(server) = old {
                    server.stop(Instant::now() + Duration::from_secs(2));
                }
                match HttpServer::start_with(addr, router, limits.clone(), Some(&self.telemetry)) {
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

    #[cfg(test)]
    pub fn module_stats(&self) -> Vec<(String, Arc<ModuleStats>)> {
        self.modules.iter().map(|m| (m.name.clone(), m.stats.clone())).collect()
    }

    #[cfg(test)]
    pub fn emitter_stats(&self) -> Vec<(String, Arc<EmitterStats>)> {
        self.emitters.iter().map(|e| (e.name.clone(), e.outlet.stats.clone())).collect()
    }

    /// Whether no module thread is collecting (tests wait for a late module with it).
    #[cfg(test)]
    pub(crate) fn modules_idle(&self) -> bool {
        self.modules.iter().all(|m| !m.busy.load(Ordering::Acquire))
    }

    /// Switches to a new plan: kept plugins keep running (with their state and buffers),
    /// new ones start, the ones no longer configured stop (emitters flush first).
    pub fn apply(&mut self, plan: Plan) {
        self.routes = plan.routes;
        self.apply_http(plan.config.core.http_listen, &plan.config.core.http_limits, plan.router);
        self.meta = Arc::new(plan.meta);
        self.queue_size = plan.config.core.queue_size;
        let mut old: HashMap<String, ModuleWorker> =
            self.modules.drain(..).map(|m| (m.fingerprint.clone(), m)).collect();
        for p in plan.modules {
            let (entry, fp, timeout) = (p.entry, p.fingerprint, p.timeout);
            match p.planned {
                Planned::Keep => {
                    if let Some(mut w) = old.remove(&fp) {
                        w.interval = entry.interval;
                        w.timeout = timeout;
                        self.modules.push(w);
                    }
                }
                Planned::Built(module) => {
                    self.next_id += 1;
                    if module.shares_thread() && self.shared.is_none() && !self.shared_retired {
                        self.shared = Some(SharedThread::spawn());
                    }
                    let w = spawn_module(
                        self.next_id,
                        &entry,
                        fp,
                        module,
                        timeout,
                        self.results.clone(),
                        &self.telemetry,
                        self.shared.as_ref(),
                    );
                    self.modules.push(w);
                }
                Planned::Skipped(why) => log::error!("module \"{}\" skipped: {why}", entry.name),
            }
        }
        // Dropping the job sender ends a removed module's thread after its current job.
        drop(old);
        let mut old: HashMap<String, EmitterWorker> =
            self.emitters.drain(..).map(|e| (e.fingerprint.clone(), e)).collect();
        for p in plan.emitters {
            let (entry, fp) = (p.entry, p.fingerprint);
            match p.planned {
                Planned::Keep => {
                    if let Some(w) = old.remove(&fp) {
                        self.emitters.push(w);
                    }
                }
                Planned::Built(e) => {
                    let w = spawn_emitter(&entry, fp, e, self.queue_size, self.deadline.clone(), &self.telemetry);
                    self.emitters.push(w);
                }
                Planned::Skipped(why) => log::error!("emitter \"{}\" skipped: {why}", entry.name),
            }
        }
        self.outlets = self.emitters.iter().map(|e| e.outlet.clone()).collect();
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

    /// Collects one tick: every due module (all of them with `force`), waiting for each at
    /// most its timeout. Returns the payload, or `None` when no module gave a point.
    ///
    /// When every due module runs on the shared thread (and not `force`), that thread sends
    /// the tick out itself once its last module is done, and this returns `None` at once: the
    /// scheduler is not woken for the results. A tick so handed out that is still not sent at
    /// the next one goes out then, without its late modules (which count a timeout).
    pub fn collect(&mut self, tick: u64, timestamp: i64, force: bool) -> Option<Arc<Payload>> {
        self.tick_stats.ticks.fetch_add(1, Ordering::Relaxed);
        let started = self.clock.now();
        let mut wait_until = started;
        let late = {
            let mut r = self.results.state.lock().unwrap_or_else(|e| e.into_inner());
            let late = ResultBox::take_open(&mut r);
            r.tick = tick;
            r.arrived = 0;
            r.expected = usize::MAX;
            late
        };
        if let Some((finisher, results)) = late {
            self.send_late_tick(finisher, results);
        }
        self.retire_a_late_shared_thread();
        let mut expected = 0usize;
        let mut shared = Vec::new();
        for w in &mut self.modules {
            if !force && !w.due(timestamp) {
                continue;
            }
            if w.busy.load(Ordering::Acquire) {
                w.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            w.busy.store(true, Ordering::Release);
            match &w.runner {
                Runner::Own(jobs) => {
                    if !jobs.offer(tick) {
                        w.busy.store(false, Ordering::Release);
                        continue;
                    }
                }
                Runner::Shared => shared.push(w.runnable.clone()),
            }
            w.pending = Some(tick);
            expected += 1;
            wait_until = wait_until.max(started + w.timeout);
        }
        let Some(thread) = self.shared.as_ref().filter(|_| !shared.is_empty()) else {
            return self.wait_and_assemble(tick, timestamp, expected, wait_until);
        };
        if force || shared.len() < expected {
            thread.offer(tick, &shared);
            return self.wait_and_assemble(tick, timestamp, expected, wait_until);
        }
        // Every due module is on the shared thread: it sends the tick itself.
        for w in self.modules.iter_mut().filter(|w| w.pending == Some(tick)) {
            w.pending = None;
            w.collected = true;
        }
        let finisher = Finisher {
            tick,
            timestamp,
            meta: self.meta.clone(),
            modules: shared,
            outlets: self.outlets.clone(),
            tick_stats: self.tick_stats.clone(),
            clock: self.clock.clone(),
        };
        let modules = finisher.modules.clone();
        {
            let mut r = self.results.state.lock().unwrap_or_else(|e| e.into_inner());
            r.expected = expected;
            r.finisher = Some(finisher);
            r.open += 1;
        }
        thread.offer(tick, &modules);
        None
    }

    /// A tick the shared thread was to send but had not by the next one: it goes out with
    /// the modules that answered; the others count a timeout and are stuck until they answer.
    fn send_late_tick(&mut self, finisher: Finisher, results: Vec<ModuleResult>) {
        for m in &finisher.modules {
            if results.iter().any(|r| r.worker == m.id) {
                continue;
            }
            m.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            if let Some(w) = self.modules.iter_mut().find(|w| w.id == m.id) {
                if w.stuck_since.is_none() {
                    w.stuck_since = Some(self.clock.now());
                    log::warn!(
                        "module \"{}\" did not answer by the next tick; the tick went out without it, and it is skipped until it answers",
                        m.name
                    );
                }
            }
        }
        finisher.finish(results);
    }

    /// Waits for the tick's `expected` results until `wait_until` and builds its payload.
    fn wait_and_assemble(
        &mut self,
        tick: u64,
        timestamp: i64,
        expected: usize,
        wait_until: Instant,
    ) -> Option<Arc<Payload>> {
        let arrived = {
            let mut r = self.results.state.lock().unwrap_or_else(|e| e.into_inner());
            r.expected = expected;
            while r.arrived < r.expected {
                let Some(wait) = self.clock.wait_for(wait_until) else { break };
                let (guard, waited) = self.results.cv.wait_timeout(r, wait).unwrap_or_else(|e| e.into_inner());
                r = guard;
                if waited.timed_out() && r.arrived < r.expected {
                    self.clock.waited(wait_until);
                }
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
                    self.clock.now().saturating_duration_since(since).as_secs_f64() + w.timeout.as_secs_f64()
                );
            }
            if !current {
                continue;
            }
            w.pending = None;
            w.collected = true;
            account(&w.name, &w.stats, &r);
            per_module[idx] = r.points;
        }
        for w in &mut self.modules {
            if w.pending.take() == Some(tick) {
                w.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                if w.stuck_since.is_none() {
                    w.stuck_since = Some(self.clock.now());
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
        let mut points = Vec::with_capacity(total);
        for p in per_module {
            points.extend(p);
        }
        Some(Arc::new(Payload { meta: self.meta.clone(), timestamp, points }))
    }

    /// A module on the shared thread still busy at a new tick means the thread is late (that
    /// module overran): the thread is let go after that module, and every module that was on
    /// it gets a thread of its own, so one slow module never holds the others up again.
    fn retire_a_late_shared_thread(&mut self) {
        let late = self.modules.iter().find(|w| matches!(w.runner, Runner::Shared) && w.busy.load(Ordering::Acquire));
        let Some(late) = late else { return };
        log::warn!(
            "module \"{}\" is still running on the shared module thread at the next tick: its modules get threads of their own",
            late.name
        );
        if let Some(thread) = self.shared.take() {
            thread.retire();
        }
        self.shared_retired = true;
        for w in &mut self.modules {
            if matches!(w.runner, Runner::Shared) {
                w.runner = spawn_own(&w.name, w.runnable.clone());
            }
        }
    }

    /// Hands a payload to every emitter without blocking.
    pub fn dispatch(&mut self, payload: Arc<Payload>) {
        dispatch(&self.outlets, &self.tick_stats, payload, self.clock.now());
    }

    /// Until a tick handed to the shared thread has been sent, at most until `deadline`.
    fn wait_for_open_ticks(&self, deadline: Instant) {
        while self.results.state.lock().unwrap_or_else(|e| e.into_inner()).open > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops everything: emitters write what they hold and flush, until `deadline`.
    /// Returns false if some emitter had not finished by then.
    // Never inlined: scripts/symbol-order.sh ends its profiles' steady state where it begins.
    #[inline(never)]
    pub fn shutdown(self, deadline: Instant) -> bool {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Some(deadline);
        }
        // A tick the shared thread is sending goes out before the queues close.
        self.wait_for_open_ticks(deadline.min(Instant::now() + Duration::from_secs(1)));
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
