//! The workers: a thread per module (or one shared by the modules that never block), a
//! thread per emitter.
//!
//! * A module's thread waits on its [`JobSlot`] for a tick, collects, and leaves the result
//!   in the agent's [`ResultBox`].
//! * An emitter's thread ([`emitter_loop`]) reads payloads from its bounded queue (a
//!   [`Mailbox`]) and hands them to the emitter, batched by its interval; when the queue
//!   closes it writes what it holds and flushes.
//!
//! Both hand-offs are a Mutex and a Condvar, not a channel: a thread that wakes once a second
//! would spend more CPU in a channel's spin-then-yield wait (and, on a busy tick, in the
//! context switches its yields cause) than in its work. Each side notifies after it has
//! released the lock, so the thread it wakes does not wake only to wait for the lock.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::clock::Clock;
use crate::config::PluginEntry;
use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, Module};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_api::telemetry::{self, Group, Telemetry};
use badger_api::throttle::LogThrottle;

const WORKER_STACK: usize = 256 * 1024;
/// Emitters encode, compress and talk TLS: more headroom (untouched stack costs no memory).
const EMITTER_STACK: usize = 1024 * 1024;
const IDLE_EVERY: Duration = Duration::from_secs(1);
/// How long after `IDLE_EVERY` an emitter waits for the next payload before its idle turn:
/// payloads come a second apart, so a wait of exactly a second would end a moment before
/// each one (two wake-ups a tick instead of one).
const IDLE_GRACE: Duration = Duration::from_millis(250);

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

/// A one-job handoff to a module's thread. A Mutex and a Condvar park the thread at once;
/// a channel's blocking receive spins and yields first, which costs more CPU than the
/// job itself for a thread that wakes once a second.
pub(crate) struct JobSlot {
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

    pub(crate) fn offer(&self, tick: u64) -> bool {
        let offered = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let idle = matches!(*s, SlotState::Idle);
            if idle {
                *s = SlotState::Job(tick);
            }
            idle
        };
        // Woken after the lock is released, the thread does not wake only to wait for it.
        if offered {
            self.cv.notify_one();
        }
        offered
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
pub(crate) struct ResultBox {
    pub(crate) state: Mutex<Results>,
    pub(crate) cv: Condvar,
}

#[derive(Default)]
pub(crate) struct Results {
    pub(crate) tick: u64,
    pub(crate) expected: usize,
    pub(crate) arrived: usize,
    pub(crate) list: Vec<ModuleResult>,
    /// A tick the shared thread sends out itself when its last module is done (every due
    /// module of the tick ran there): the scheduler does not wait for it.
    pub(crate) finisher: Option<Finisher>,
    /// Ticks handed out so and not sent yet (shutdown waits for them).
    pub(crate) open: usize,
}

impl ResultBox {
    pub(crate) fn new() -> ResultBox {
        ResultBox { state: Mutex::default(), cv: Condvar::new() }
    }

    /// Leaves a module's result. The result that completes the tick wakes the scheduler, or,
    /// when the tick was handed out with a [`Finisher`], sends the tick out on this thread.
    pub(crate) fn put(&self, r: ModuleResult) {
        let (complete, finish) = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let current = r.tick == s.tick;
            s.list.push(r);
            if current {
                s.arrived += 1;
            }
            let complete = current && s.arrived >= s.expected;
            let finish = match complete.then(|| s.finisher.take()).flatten() {
                Some(f) => {
                    let tick = f.tick;
                    Some((f, take_tick(&mut s.list, tick)))
                }
                None => None,
            };
            (complete, finish)
        };
        match finish {
            Some((f, results)) => {
                f.finish(results);
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.open = s.open.saturating_sub(1);
            }
            None if complete => self.cv.notify_one(),
            None => {}
        }
    }

    /// Takes back a tick handed out with a [`Finisher`] that has not been sent (a module of it
    /// is late), with the results of it that are in.
    pub(crate) fn take_open(s: &mut Results) -> Option<(Finisher, Vec<ModuleResult>)> {
        let f = s.finisher.take()?;
        s.open = s.open.saturating_sub(1);
        let tick = f.tick;
        Some((f, take_tick(&mut s.list, tick)))
    }
}

/// Takes the results of `tick` out of `list`, leaving the late ones of earlier ticks.
fn take_tick(list: &mut Vec<ModuleResult>, tick: u64) -> Vec<ModuleResult> {
    if list.iter().all(|r| r.tick == tick) {
        return std::mem::take(list);
    }
    let (mine, rest) = std::mem::take(list).into_iter().partition(|r| r.tick == tick);
    *list = rest;
    mine
}

/// What a module's result adds to its counters and the log, whoever sends its tick.
pub(crate) fn account(name: &str, stats: &ModuleStats, r: &ModuleResult) {
    if let Some(e) = &r.error {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        log::warn!("module \"{name}\": {e}");
    }
    log::trace!("module \"{name}\": {} points in {:?}", r.points.len(), r.took);
    stats.points.fetch_add(r.points.len() as u64, Ordering::Relaxed);
}

/// A tick's modules in module order, and what sending the tick needs: the shared thread
/// sends a tick whose every due module ran on it, so the scheduler is not woken for it
/// (one thread wake-up less a tick).
pub(crate) struct Finisher {
    pub(crate) tick: u64,
    pub(crate) timestamp: i64,
    pub(crate) meta: Arc<HostMeta>,
    /// The tick's modules, in module order.
    pub(crate) modules: Vec<Arc<Runnable>>,
    pub(crate) outlets: Arc<[Arc<Outlet>]>,
    pub(crate) tick_stats: Arc<TickStats>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Finisher {
    /// Sends the tick with `results` (this tick's), in module order; nothing when no module
    /// gave a point.
    pub(crate) fn finish(self, mut results: Vec<ModuleResult>) {
        let mut points = Vec::with_capacity(results.iter().map(|r| r.points.len()).sum());
        for m in &self.modules {
            let Some(r) = results.iter_mut().find(|r| r.worker == m.id) else { continue };
            account(&m.name, &m.stats, r);
            points.append(&mut r.points);
        }
        if points.is_empty() {
            log::debug!("tick {}: no points", self.tick);
            return;
        }
        let payload = Arc::new(Payload { meta: self.meta, timestamp: self.timestamp, points });
        dispatch(&self.outlets, &self.tick_stats, payload, self.clock.now());
    }
}

/// An emitter's queue as a tick is sent to it, from whichever thread sends the tick.
pub(crate) struct Outlet {
    pub(crate) name: String,
    mailbox: Arc<Mailbox>,
    pub(crate) stats: Arc<EmitterStats>,
    drop_log: Mutex<LogThrottle>,
    dead_logged: AtomicBool,
}

/// Hands a payload to every emitter without blocking, and counts it.
pub(crate) fn dispatch(outlets: &[Arc<Outlet>], tick_stats: &TickStats, payload: Arc<Payload>, now: Instant) {
    tick_stats.payloads.fetch_add(1, Ordering::Relaxed);
    tick_stats.points.fetch_add(payload.points.len() as u64, Ordering::Relaxed);
    for e in outlets {
        match e.mailbox.push(payload.clone()) {
            Pushed::Queued => {}
            Pushed::DroppedOldest => {
                // The oldest was dropped, the newest kept.
                e.stats.dropped.fetch_add(1, Ordering::Relaxed);
                let more = e.drop_log.lock().unwrap_or_else(|e| e.into_inner()).allow_at(now);
                if let Some(more) = more {
                    log::warn!(
                        "emitter \"{}\" is behind: its queue is full, dropped the oldest payload ({} more since the last warning, {} in all)",
                        e.name,
                        more,
                        e.stats.dropped.load(Ordering::Relaxed)
                    );
                }
            }
            Pushed::Gone => {
                if !e.dead_logged.swap(true, Ordering::Relaxed) {
                    log::error!("emitter \"{}\" has stopped; its payloads are dropped", e.name);
                }
                e.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub(crate) struct ModuleResult {
    pub(crate) worker: u64,
    pub(crate) tick: u64,
    pub(crate) points: Vec<Point>,
    pub(crate) error: Option<String>,
    pub(crate) took: Duration,
}

pub(crate) struct ModuleWorker {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) fingerprint: String,
    pub(crate) interval: u64,
    pub(crate) timeout: Duration,
    pub(crate) runner: Runner,
    pub(crate) runnable: Arc<Runnable>,
    pub(crate) busy: Arc<AtomicBool>,
    pub(crate) stats: Arc<ModuleStats>,
    pub(crate) collected: bool,
    /// The tick it was asked about and has not answered, once its timeout passed.
    pub(crate) stuck_since: Option<Instant>,
    pub(crate) pending: Option<u64>,
}

/// Which thread runs a module.
pub(crate) enum Runner {
    /// Its own, behind this job slot.
    Own(Arc<JobSlot>),
    /// The agent's [`SharedThread`].
    Shared,
}

impl Drop for ModuleWorker {
    fn drop(&mut self) {
        // Ends its own thread after its current job (a hung one stays parked in its module).
        if let Runner::Own(jobs) = &self.runner {
            jobs.close();
        }
    }
}

impl ModuleWorker {
    pub(crate) fn due(&self, ts: i64) -> bool {
        self.interval <= 1 || !self.collected || ts.rem_euclid(self.interval as i64) == 0
    }
}

/// An emitter's bounded queue of payloads. The agent pushes (dropping the oldest when it is
/// full); the emitter's thread waits for the next one.
pub(crate) struct Mailbox {
    state: Mutex<Mail>,
    cv: Condvar,
}

struct Mail {
    queue: VecDeque<Arc<Payload>>,
    capacity: usize,
    /// No more payloads will come: the emitter writes what it holds and stops.
    closed: bool,
    /// The emitter's thread has ended: nothing reads the queue.
    gone: bool,
}

/// What [`Mailbox::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue was full: its oldest payload was dropped to make room.
    DroppedOldest,
    /// The emitter's thread has ended; the payload was dropped.
    Gone,
}

impl Mailbox {
    fn new(capacity: usize) -> Arc<Mailbox> {
        let mail = Mail { queue: VecDeque::new(), capacity: capacity.max(1), closed: false, gone: false };
        Arc::new(Mailbox { state: Mutex::new(mail), cv: Condvar::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mail> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, payload: Arc<Payload>) -> Pushed {
        let dropped = {
            let mut m = self.lock();
            if m.gone {
                return Pushed::Gone;
            }
            let dropped = m.queue.len() >= m.capacity && m.queue.pop_front().is_some();
            m.queue.push_back(payload);
            dropped
        };
        self.cv.notify_one();
        if dropped {
            Pushed::DroppedOldest
        } else {
            Pushed::Queued
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_one();
    }

    /// The next payload, waiting until `deadline`; `Disconnected` once closed and empty.
    fn pop_until(&self, deadline: Instant) -> Result<Arc<Payload>, RecvTimeoutError> {
        let mut m = self.lock();
        loop {
            if let Some(p) = m.queue.pop_front() {
                return Ok(p);
            }
            if m.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            m = self.cv.wait_timeout(m, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The agent's end of a [`Mailbox`]: dropping it closes the queue, so the emitter writes what
/// it holds and stops.
pub(crate) struct QueueSender(pub(crate) Arc<Mailbox>);

impl Drop for QueueSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Marks the mailbox gone when the emitter's thread ends, however it ends.
struct Reader(Arc<Mailbox>);

impl Drop for Reader {
    fn drop(&mut self) {
        let mut m = self.0.lock();
        m.gone = true;
        m.queue.clear();
    }
}

pub(crate) struct EmitterWorker {
    pub(crate) name: String,
    pub(crate) fingerprint: String,
    pub(crate) tx: QueueSender,
    pub(crate) done: Receiver<()>,
    pub(crate) outlet: Arc<Outlet>,
}

/// A module with what every run of it needs, whichever thread runs it.
pub(crate) struct Runnable {
    pub(crate) id: u64,
    pub(crate) name: String,
    module: Mutex<Box<dyn Module>>,
    blacklist: Matcher,
    busy: Arc<AtomicBool>,
    pub(crate) stats: Arc<ModuleStats>,
    results: Arc<ResultBox>,
    /// The largest collection so far, the next one's starting capacity.
    capacity: AtomicUsize,
}

impl Runnable {
    /// Collects once for `tick` and leaves the result in the agent's [`ResultBox`].
    fn run(&self, tick: u64) {
        let start = Instant::now();
        let mut points = Vec::with_capacity(self.capacity.load(Ordering::Relaxed));
        let error = {
            let mut module = self.module.lock().unwrap_or_else(|e| e.into_inner());
            match catch_unwind(AssertUnwindSafe(|| module.collect(start, &mut points))) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.0),
                Err(panic) => Some(format!("panicked: {}", panic_message(&panic))),
            }
        };
        if !self.blacklist.is_empty() {
            points.retain(|p| !self.blacklist.matches(&p.name));
        }
        self.capacity.fetch_max(points.len(), Ordering::Relaxed);
        let took = start.elapsed();
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        self.stats.last_micros.store(took.as_micros() as u64, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        self.results.put(ModuleResult { worker: self.id, tick, points, error, took });
    }
}

/// Starts a thread of its own for a module.
pub(crate) fn spawn_own(name: &str, runnable: Arc<Runnable>) -> Runner {
    let jobs = Arc::new(JobSlot::new());
    let slot = jobs.clone();
    let spawned = thread::Builder::new().name(format!("mod-{name}")).stack_size(WORKER_STACK).spawn(move || {
        while let Some(tick) = slot.take() {
            runnable.run(tick);
        }
    });
    if let Err(e) = spawned {
        log::error!("module \"{name}\": cannot start its thread: {e}");
    }
    Runner::Own(jobs)
}

/// The thread that the modules which never block (`Module::shares_thread`) share: it runs a
/// tick's modules one after the other, in module order.
pub(crate) struct SharedThread {
    slot: Arc<SharedSlot>,
}

struct SharedSlot {
    state: Mutex<SharedState>,
    cv: Condvar,
}

#[derive(Default)]
struct SharedState {
    tick: u64,
    /// This tick's modules not started yet.
    queue: VecDeque<Arc<Runnable>>,
    closed: bool,
}

impl SharedThread {
    pub(crate) fn spawn() -> SharedThread {
        let slot = Arc::new(SharedSlot { state: Mutex::default(), cv: Condvar::new() });
        let s = slot.clone();
        let spawned = thread::Builder::new().name("mod-shared".into()).stack_size(WORKER_STACK).spawn(move || loop {
            let (tick, next) = {
                let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if st.closed {
                        return;
                    }
                    if let Some(r) = st.queue.pop_front() {
                        break (st.tick, r);
                    }
                    st = s.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            next.run(tick);
        });
        if let Err(e) = spawned {
            log::error!("cannot start the shared module thread: {e}");
        }
        SharedThread { slot }
    }

    /// Hands it a tick's modules (marked busy by the caller).
    pub(crate) fn offer(&self, tick: u64, modules: &[Arc<Runnable>]) {
        {
            let mut st = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tick = tick;
            st.queue.extend(modules.iter().cloned());
        }
        self.slot.cv.notify_one();
    }

    /// Stops it after the module it is in; the modules it had not started are no longer busy.
    pub(crate) fn retire(&self) {
        let rest = {
            let mut st = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
            st.closed = true;
            std::mem::take(&mut st.queue)
        };
        self.slot.cv.notify_one();
        for r in rest {
            r.busy.store(false, Ordering::Release);
        }
    }
}

impl Drop for SharedThread {
    fn drop(&mut self) {
        self.retire();
    }
}

/// A module's worker: on `shared` (when given and the module never blocks) or on a thread of
/// its own.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_module(
    id: u64,
    entry: &PluginEntry,
    fingerprint: String,
    module: Box<dyn Module>,
    timeout: Duration,
    results: Arc<ResultBox>,
    telemetry: &Telemetry,
    shared: Option<&SharedThread>,
) -> ModuleWorker {
    let busy = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ModuleStats::default());
    let source: Arc<dyn telemetry::Source> = stats.clone();
    telemetry.publish(Group::Module, &entry.name, &source);
    let on_shared = shared.is_some() && module.shares_thread();
    let runnable = Arc::new(Runnable {
        id,
        name: entry.name.clone(),
        module: Mutex::new(module),
        blacklist: entry.blacklist.clone(),
        busy: busy.clone(),
        stats: stats.clone(),
        results,
        capacity: AtomicUsize::new(16),
    });
    let runner = if on_shared { Runner::Shared } else { spawn_own(&entry.name, runnable.clone()) };
    ModuleWorker {
        id,
        name: entry.name.clone(),
        fingerprint,
        interval: entry.interval,
        timeout,
        runner,
        runnable,
        busy,
        stats,
        collected: false,
        stuck_since: None,
        pending: None,
    }
}

/// Starts an emitter's thread behind a queue of `queue_size` payloads.
pub(crate) fn spawn_emitter(
    entry: &PluginEntry,
    fingerprint: String,
    emitter: Box<dyn Emitter>,
    queue_size: usize,
    deadline: Arc<Mutex<Option<Instant>>>,
    telemetry: &Telemetry,
) -> EmitterWorker {
    let mailbox = Mailbox::new(queue_size);
    let (done_tx, done) = bounded::<()>(1);
    let stats = Arc::new(EmitterStats::default());
    let source: Arc<dyn telemetry::Source> = stats.clone();
    telemetry.publish(Group::Emitter, &entry.name, &source);
    let reader = Reader(mailbox.clone());
    let blacklist = entry.blacklist.clone();
    let interval = entry.interval;
    let name = entry.name.clone();
    let s = stats.clone();
    let spawned = thread::Builder::new().name(format!("emit-{name}")).stack_size(EMITTER_STACK).spawn(move || {
        emitter_loop(&name, emitter, &blacklist, interval, &reader.0, &s, &deadline);
        drop(reader);
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        log::error!("emitter \"{}\": cannot start its thread: {e}", entry.name);
    }
    let outlet = Outlet {
        name: entry.name.clone(),
        mailbox: mailbox.clone(),
        stats,
        drop_log: Mutex::default(),
        dead_logged: AtomicBool::new(false),
    };
    EmitterWorker { name: entry.name.clone(), fingerprint, tx: QueueSender(mailbox), done, outlet: Arc::new(outlet) }
}

pub(crate) fn emitter_loop(
    name: &str,
    mut emitter: Box<dyn Emitter>,
    blacklist: &Matcher,
    interval: u64,
    rx: &Mailbox,
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
        // Wake for a batching emitter's deadline, or for the idle hook when no payload came
        // for a little over a second (one that comes gives the emitter its turn instead).
        let idle_at = last_idle + IDLE_EVERY + IDLE_GRACE;
        let wake = match first_at {
            Some(t) if interval > 1 => (t + Duration::from_secs(interval + 1)).min(idle_at),
            _ => idle_at,
        };
        match rx.pop_until(wake) {
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

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
