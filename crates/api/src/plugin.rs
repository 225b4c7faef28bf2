//! The plugin API: what a module or an emitter implements and how it reads its config.
//!
//! A module is built from its `conf.d/<name>.conf` by the `build` function of its
//! [`ModuleSpec`] and then asked to [`Module::collect`] on every tick it is due. An emitter is
//! built the same way from its [`EmitterSpec`] and receives every payload, batched by its
//! interval, through [`Emitter::emit`].
//! Its config file is read through [`crate::config::PluginConf`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::config::{ConfigError, PluginConf, COMMON_KEYS};
use crate::http::HttpRoutes;
use crate::matcher::Matcher;
use crate::point::{HostMeta, Kind, Payload, Point};
use crate::telemetry::Telemetry;

/// The registry kind of exec plugins. A listed name that is not in the registry and whose
/// conf file has an `exec` key is built by the registry's entry of this name.
pub const EXEC_KIND: &str = "exec";

/// Where a module reads the kernel's view of the machine. Tests point these at fixture trees.
#[derive(Debug, Clone)]
pub struct HostRoots {
    /// procfs mount, `/proc` by default.
    pub proc: PathBuf,
    /// sysfs mount, `/sys` by default.
    pub sys: PathBuf,
    /// Prefix for filesystem paths (mount points), `/` by default; `/host` in a container.
    pub host: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots { proc: PathBuf::from("/proc"), sys: PathBuf::from("/sys"), host: PathBuf::from("/") }
    }
}

impl HostRoots {
    pub fn proc_path(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
    pub fn sys_path(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}

/// What a module's `build` gets besides its config.
#[derive(Debug, Clone, Default)]
pub struct ModuleContext {
    pub roots: HostRoots,
    /// How long a tick waits for this module (its `timeout`, else `core.module_timeout`);
    /// zero when unknown (tests).
    pub timeout: Duration,
    /// Routes the module serves on the agent's HTTP listener.
    pub http: HttpRoutes,
    /// badger's own counters (the `internal` module reads them).
    pub telemetry: Telemetry,
    /// No configured emitter reads raw counters ([`Kind::Counter`]: only those whose
    /// [`EmitterSpec::counters`] is set do), so a module may leave them out and save building
    /// points nobody reads. `false` (counters wanted) by default.
    pub gauges_only: bool,
}

/// What an emitter's `build` gets besides its config.
#[derive(Debug, Clone, Default)]
pub struct EmitterContext {
    pub meta: Arc<HostMeta>,
    /// Routes the emitter serves on the agent's HTTP listener.
    pub http: HttpRoutes,
    /// Where the emitter publishes its own counters (e.g. its outbox's).
    pub telemetry: Telemetry,
    /// The emitter's `timeout` key; zero when it is not set (the emitter picks its own).
    pub timeout: Duration,
}

/// A stats module. `collect` is called on the module's own thread; it may block (the core
/// isolates it), but should return in well under a second.
pub trait Module: Send {
    /// Appends this collection's points to `out`. `now` is when the collection started
    /// (monotonic); rates divide by the real time between two collections.
    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError>;

    /// Whether the module only asks the local kernel (procfs and sysfs files, statvfs of
    /// local filesystems) and so never blocks for long. Such modules share one thread in the
    /// core: one wake-up a tick for all of them instead of one each, the largest part of an
    /// idle agent's CPU. If one of them overruns anyway (still running at the next tick),
    /// each gets a thread of its own. A module that can wait on a server (the network, a
    /// network or FUSE filesystem) or on another process says no.
    fn shares_thread(&self) -> bool {
        false
    }
}

/// An emitter. `emit` is called on the emitter's own thread with every payload since the
/// last call; the core has already removed what the emitter's blacklist names.
pub trait Emitter: Send {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError>;
    /// Called when no payload has come for a little over a second (1.25 s), or once a
    /// second while a batching emitter collects, so an emitter that holds unsent data can
    /// retry without waiting for the next payload.
    fn idle(&mut self) {}
    /// Called once at shutdown after the last `emit`; `deadline` is when badger exits.
    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        let _ = deadline;
        Ok(())
    }
}

/// Payloads handed to an emitter at once, seen through the emitter's blacklist.
pub struct Batch<'a> {
    payloads: &'a [Arc<Payload>],
    blacklist: &'a Matcher,
}

impl<'a> Batch<'a> {
    pub fn new(payloads: &'a [Arc<Payload>], blacklist: &'a Matcher) -> Batch<'a> {
        Batch { payloads, blacklist }
    }

    /// Payloads in tick order; those left empty by the blacklist are skipped.
    pub fn payloads(&self) -> impl Iterator<Item = PayloadView<'a>> + '_ {
        let blacklist = self.blacklist;
        self.payloads.iter().map(move |p| PayloadView { payload: p, blacklist }).filter(|v| v.points().next().is_some())
    }

    /// Payloads in tick order, seen by an emitter that reads counters too
    /// ([`PayloadView::all_points`]); those left empty by the blacklist are skipped.
    pub fn all_payloads(&self) -> impl Iterator<Item = PayloadView<'a>> + '_ {
        let blacklist = self.blacklist;
        self.payloads
            .iter()
            .map(move |p| PayloadView { payload: p, blacklist })
            .filter(|v| v.all_points().next().is_some())
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

/// One payload as one emitter sees it.
#[derive(Clone, Copy)]
pub struct PayloadView<'a> {
    payload: &'a Payload,
    blacklist: &'a Matcher,
}

impl<'a> PayloadView<'a> {
    pub fn meta(&self) -> &'a HostMeta {
        &self.payload.meta
    }
    pub fn timestamp(&self) -> i64 {
        self.payload.timestamp
    }
    /// The Stat Badger stats (gauges and rates) the blacklist lets through; counters are left
    /// out, so an emitter that prints Stat Badger's stats is unchanged by them.
    pub fn points(&self) -> impl Iterator<Item = &'a Point> + 'a {
        let blacklist = self.blacklist;
        self.payload.points.iter().filter(move |p| p.kind == Kind::Gauge && !blacklist.matches(&p.name))
    }

    /// Every point the blacklist lets through, cumulative counters too (exposition formats).
    pub fn all_points(&self) -> impl Iterator<Item = &'a Point> + 'a {
        let blacklist = self.blacklist;
        self.payload.points.iter().filter(move |p| !blacklist.matches(&p.name))
    }
}

/// A collection failed; the module contributes nothing this tick and is asked again next time.
#[derive(Debug)]
pub struct CollectError(pub String);

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CollectError {
    /// "reading <path>: <error>"
    pub fn io(path: &Path, err: impl fmt::Display) -> CollectError {
        CollectError(format!("reading {}: {err}", path.display()))
    }
}

/// An emit failed. The emitter decides what it keeps for a retry.
#[derive(Debug)]
pub struct EmitError(pub String);

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a plugin could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The config is wrong: badger refuses to start (exit 2), or keeps the old config on reload.
    Config(ConfigError),
    /// The config is fine but the plugin cannot run here (e.g. an unreadable file):
    /// it is reported and skipped, the rest runs.
    Unavailable(String),
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
            BuildError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Builds a module from its config.
pub type BuildModule = fn(&ModuleContext, &PluginConf) -> Result<Box<dyn Module>, BuildError>;
/// Builds an emitter from its config.
pub type BuildEmitter = fn(&EmitterContext, &PluginConf) -> Result<Box<dyn Emitter>, BuildError>;

/// A module's entry in the registry.
pub struct ModuleSpec {
    pub name: &'static str,
    /// Other names that select this module (the original plugin names).
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub build: BuildModule,
}

/// An emitter's entry in the registry.
pub struct EmitterSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub build: BuildEmitter,
    /// Whether the emitter reads raw counters ([`PayloadView::all_points`]). Modules build
    /// counters only when at least one configured emitter does ([`ModuleContext::gauges_only`]).
    pub counters: bool,
}
