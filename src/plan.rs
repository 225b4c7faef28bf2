//! What runs: a config turned into built (or kept, or skipped) modules and emitters.
//!
//! [`plan`] builds every plugin of a config whose fingerprint is not running already; the
//! [`crate::agent::Agent`] then starts, keeps or stops workers by that plan.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, PluginEntry, Registries, Source};
use crate::httpd::build_router;
use badger_api::http::{HttpRoutes, Route};
use badger_api::matcher::Matcher;
use badger_api::plugin::{
    BuildError, ConfigError, Emitter, EmitterContext, EmitterSpec, Module, ModuleContext, PluginConf,
};
use badger_api::point::HostMeta;
use badger_api::telemetry::Telemetry;

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
pub struct PlannedPlugin<T: ?Sized> {
    pub entry: PluginEntry,
    /// What must be equal for a reload to keep the running instance.
    pub fingerprint: String,
    /// A module's: how long a tick waits for it. An emitter's: its `timeout` key, zero when unset.
    pub timeout: Duration,
    pub planned: Planned<Box<T>>,
}

impl<T: ?Sized> PlannedPlugin<T> {
    pub fn kept(&self) -> bool {
        matches!(self.planned, Planned::Keep)
    }
}

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

/// The routes of a plan as it is built.
#[derive(Default)]
struct Routes {
    by_fingerprint: HashMap<String, Vec<Route>>,
    all: Vec<Route>,
}

impl Routes {
    fn keep(&mut self, fp: &str, new: Vec<Route>) {
        self.all.extend(new.iter().cloned());
        self.by_fingerprint.insert(fp.to_string(), new);
    }
}

/// What is the same for every plugin of one plan.
struct Shared<'a> {
    config: &'a Config,
    running: &'a Running,
    /// A plugin built without a listener must be rebuilt when one appears, and the other way.
    http_fp: &'static str,
}

/// The one loop for modules and emitters: keeps what runs with the same fingerprint, builds
/// the rest. `fingerprint` gives an entry's fingerprint and timeout; `build` builds it.
fn plan_plugins<T: ?Sized>(
    entries: &[PluginEntry],
    shared: &Shared<'_>,
    routes: &mut Routes,
    fingerprint: impl Fn(&PluginEntry) -> (String, Duration),
    mut build: impl FnMut(&PluginEntry, Duration, &HttpRoutes) -> Result<Box<T>, BuildError>,
) -> Result<Vec<PlannedPlugin<T>>, ConfigError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let (fp, timeout) = fingerprint(entry);
        let fp = format!("{fp}{}", shared.http_fp);
        let planned = if shared.running.fingerprints.contains(&fp) {
            routes.keep(&fp, shared.running.routes.get(&fp).cloned().unwrap_or_default());
            Planned::Keep
        } else {
            let http = HttpRoutes::new(shared.config.core.http_listen, &shared.config.file);
            let built = match build(entry, timeout, &http) {
                Ok(p) => Planned::Built(p),
                Err(BuildError::Config(e)) => return Err(e),
                Err(BuildError::Unavailable(why)) => Planned::Skipped(why),
            };
            routes.keep(&fp, if matches!(built, Planned::Built(_)) { http.take() } else { Vec::new() });
            built
        };
        out.push(PlannedPlugin { entry: entry.clone(), fingerprint: fp, timeout, planned });
    }
    Ok(out)
}

/// A module's timeout: its own `timeout`, else `core.module_timeout`, at most
/// [`crate::config::MAX_MODULE_TIMEOUT`].
pub fn module_timeout(entry: &PluginEntry, default: Duration) -> Duration {
    entry.timeout.unwrap_or(default).min(crate::config::MAX_MODULE_TIMEOUT)
}

/// Builds every plugin of `config` whose fingerprint is not in `running`.
/// A config error in any plugin fails the whole plan.
pub fn plan(config: Config, reg: &Registries, running: &Running) -> Result<Plan, ConfigError> {
    let meta = crate::hostmeta::resolve(&config.core);
    let roots = config.core.roots.roots();
    let meta_arc = Arc::new(meta.clone());
    let telemetry = running.telemetry.clone();
    let shared =
        Shared { config: &config, running, http_fp: if config.core.http_listen.is_some() { "\u{0}http" } else { "" } };
    let mut routes = Routes::default();
    // Modules build raw counters only when an emitter reads them (otlp, prometheus,
    // pushgateway, remote_write); a change of that rebuilds the modules (it is in their
    // fingerprint). Exec and library emitters see Stat Badger's stats only.
    let gauges_only = !config.emitters.iter().any(|e| match &e.source {
        Source::Library(_) => false,
        source => source.registry_name().and_then(|kind| reg.emitter(kind)).is_some_and(|s| s.counters),
    });
    let modules = plan_plugins(
        &config.modules,
        &shared,
        &mut routes,
        |entry| {
            let timeout = module_timeout(entry, config.core.module_timeout);
            (format!("{}\u{0}{:?}\u{0}{timeout:?}\u{0}{gauges_only}", entry.fingerprint(), roots), timeout)
        },
        |entry, timeout, http| {
            let mctx = ModuleContext {
                roots: roots.clone(),
                timeout,
                http: http.clone(),
                telemetry: telemetry.clone(),
                gauges_only,
            };
            match &entry.source {
                Source::Library(lib) => crate::loader::build_module(lib, &mctx, &entry.conf),
                source => {
                    let spec = source
                        .registry_name()
                        .and_then(|kind| reg.module(kind))
                        .ok_or_else(|| entry.conf.error(&entry.name, "not a module"))?;
                    (spec.build)(&mctx, &entry.conf)
                }
            }
        },
    )?;
    let emitters = plan_plugins(
        &config.emitters,
        &shared,
        &mut routes,
        |entry| (entry.fingerprint(), entry.timeout.unwrap_or_default()),
        |entry, timeout, http| {
            let ectx =
                EmitterContext { meta: meta_arc.clone(), http: http.clone(), telemetry: telemetry.clone(), timeout };
            match &entry.source {
                Source::Library(lib) => crate::loader::build_emitter(lib, &entry.conf),
                source => {
                    let spec = source
                        .registry_name()
                        .and_then(|kind| reg.emitter(kind))
                        .ok_or_else(|| entry.conf.error(&entry.name, "not an emitter"))?;
                    (spec.build)(&ectx, &entry.conf)
                }
            }
        },
    )?;
    let router = match config.core.http_listen {
        Some(_) => Some(
            build_router(&routes.all)
                .map_err(|m| ConfigError::new(&config.file, None, Some("core.http_listen".into()), m))?,
        ),
        None => None,
    };
    Ok(Plan { config, meta, modules, emitters, routes: routes.by_fingerprint, router, telemetry })
}

/// Builds one emitter from a spec with default settings (`--test` prints through one).
pub fn default_emitter(spec: &EmitterSpec, meta: &HostMeta) -> Result<PlannedPlugin<dyn Emitter>, BuildError> {
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
    Ok(PlannedPlugin { entry, fingerprint: String::new(), timeout: Duration::ZERO, planned: Planned::Built(e) })
}
