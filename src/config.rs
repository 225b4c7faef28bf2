//! Loading and validating `config.json` and its `conf.d/<name>.conf` files.
//!
//! Both the new shape and the original Stat Badger shape load:
//!
//! ```json
//! { "core": {…}, "modules": ["cpu", "load"], "emitters": ["stdout_pretty"], "conf_dir": "conf.d" }
//! { "core": {…},
//!   "modules":       { "dir": "badger_modules",  "config": "badger_modules/conf.d",  "included_modules": […] },
//!   "async_modules": { "dir": "badger_modules",  "config": "badger_modules/conf.d",  "included_modules": […] },
//!   "emitters":      { "dir": "badger_emitters", "config": "badger_emitters/conf.d", "included_emitters": […] } }
//! ```
//!
//! Every relative path resolves against the directory of the file that names it. Every
//! error names the file, the line and the key.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use badger_api::config::line_of_key;
use badger_api::config::strip_comments;
use badger_api::duration::Seconds;
use badger_api::logging::{LogConfig, LogFormat};
use badger_api::matcher::{Matcher, NameList};
use badger_api::plugin::{ConfigError, EmitterSpec, HostRoots, ModuleSpec, PluginConf, EXEC_KIND};

/// The longest a module may take before its tick goes out without it.
pub const MAX_MODULE_TIMEOUT: Duration = Duration::from_millis(900);
const DEFAULT_MODULE_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_QUEUE_SIZE: usize = 600;
/// Where shared-library plugins are looked up when `core.plugin_dirs` is not set.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/usr/lib/badger/modules", "/usr/lib/badger/emitters"];

/// The registries the core is handed by the binary.
#[derive(Clone, Copy)]
pub struct Registries {
    pub modules: &'static [&'static ModuleSpec],
    pub emitters: &'static [&'static EmitterSpec],
}

impl Registries {
    pub fn module(&self, name: &str) -> Option<&'static ModuleSpec> {
        self.modules.iter().copied().find(|s| s.name == name || s.aliases.contains(&name))
    }
    pub fn emitter(&self, name: &str) -> Option<&'static EmitterSpec> {
        self.emitters.iter().copied().find(|s| s.name == name || s.aliases.contains(&name))
    }
}

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub core: CoreConfig,
    pub modules: Vec<PluginEntry>,
    pub emitters: Vec<PluginEntry>,
}

/// The `core` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// `None` = auto-detect (hostname, ipv4, ipv6) or empty (datacenter, region, zone, cluster).
    pub datacenter: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub cluster: Option<String>,
    pub hostname: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub log: LogConfig,
    pub roots: HostRootsConfig,
    /// Default module timeout.
    pub module_timeout: Duration,
    /// Payloads an emitter's queue holds before the oldest is dropped.
    pub queue_size: usize,
    /// Where `lib<name>.so` is looked up for a listed name that is not built in.
    pub plugin_dirs: Vec<PathBuf>,
    /// The agent's HTTP listener (`core.http_listen`); `None`: no listener.
    pub http_listen: Option<std::net::SocketAddr>,
    /// Its bounds (`core.http_limits`).
    pub http_limits: badger_api::listener::ListenerLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostRootsConfig {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub host: PathBuf,
}

impl HostRootsConfig {
    pub fn roots(&self) -> HostRoots {
        HostRoots { proc: self.proc.clone(), sys: self.sys.clone(), host: self.host.clone() }
    }
}

/// A module or emitter as configured.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The name as listed (an alias stays an alias; its conf file is `<alias>.conf`).
    pub name: String,
    /// Where it comes from: the registry, the registry's exec kind, or a shared library.
    pub source: Source,
    /// Whole seconds; 0 and 1 both mean every tick.
    pub interval: u64,
    pub blacklist: Matcher,
    pub timeout: Option<Duration>,
    pub conf: PluginConf,
}

impl PluginEntry {
    /// What must be equal for a reload to keep the running instance.
    pub fn fingerprint(&self) -> String {
        let (kind, lib) = match &self.source {
            Source::Builtin(name) => (*name, String::new()),
            Source::Exec => (EXEC_KIND, String::new()),
            Source::Library(path) => ("shared library", path.display().to_string()),
        };
        format!("{kind}\u{0}{lib}\u{0}{}\u{0}{}", self.conf.file.display(), self.conf.text)
    }
}

/// Where a configured plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A built-in of the registry, by its registry name (an alias resolves to it).
    Builtin(&'static str),
    /// An exec plugin: a conf file with an `exec` key, built by the registry's [`EXEC_KIND`].
    Exec,
    /// A shared library (`<dir>/lib<name>.so`).
    Library(PathBuf),
}

impl Source {
    /// The registry entry that builds it; `None` for a shared library.
    pub fn registry_name(&self) -> Option<&'static str> {
        match self {
            Source::Builtin(name) => Some(name),
            Source::Exec => Some(EXEC_KIND),
            Source::Library(_) => None,
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug)]
pub struct LoadError(pub ConfigError);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}", self.0)
    }
}

impl std::error::Error for LoadError {}

impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> Self {
        LoadError(e)
    }
}

impl Config {
    /// Reads and validates the main file and every listed plugin's conf file.
    pub fn load(path: &Path, reg: &Registries) -> Result<Config, LoadError> {
        let raw_text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, None, format!("cannot read the config file: {e}")))?;
        let text = strip_comments(&raw_text);
        let mut de = serde_json::Deserializer::from_str(&text);
        let main: RawMain = serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_json(path, e))?;
        de.end().map_err(|e| ConfigError::new(path, Some(e.line()), None, "trailing characters after the object"))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_relative() { base.join(p) } else { p.to_path_buf() };

        let core = core_config(&main.core, path, &text, &resolve)?;
        let default_conf_dir = resolve(main.conf_dir.as_deref().unwrap_or(Path::new("conf.d")));

        let mut modules = Vec::new();
        let mut seen = HashSet::new();
        for (section, list) in [("modules", Some(&main.modules)), ("async_modules", main.async_modules.as_ref())] {
            let Some(list) = list else { continue };
            let (names, conf_dir, dir) =
                list.resolve(section, "included_modules", path, &text, &default_conf_dir, &resolve)?;
            let dirs: Vec<PathBuf> = dir.into_iter().chain(core.plugin_dirs.iter().cloned()).collect();
            for name in names {
                let (conf, common) = read_conf(&name, &conf_dir)?;
                let builtin = reg.module(&name).map(|s| s.name);
                let exec = common.exec.is_some() && reg.module(EXEC_KIND).is_some();
                let source = resolve_source(&name, builtin, exec, &dirs).ok_or_else(|| {
                    let known: Vec<&str> = reg.modules.iter().map(|s| s.name).collect();
                    name_error(path, &text, section, &name, &unknown("module", &name, &known, &conf, &dirs))
                })?;
                // A built-in runs once (an alias is the same module); plugins by their names.
                let key = match &source {
                    Source::Builtin(kind) => kind.to_string(),
                    _ => name.clone(),
                };
                if !seen.insert(key) {
                    return Err(name_error(path, &text, section, &name, "module listed twice").into());
                }
                modules.push(plugin_entry(&name, source, conf, common)?);
            }
        }
        let mut emitters = Vec::new();
        let (names, conf_dir, dir) =
            main.emitters.resolve("emitters", "included_emitters", path, &text, &default_conf_dir, &resolve)?;
        let dirs: Vec<PathBuf> = dir.into_iter().chain(core.plugin_dirs.iter().cloned()).collect();
        let mut seen = HashSet::new();
        for name in names {
            let (conf, common) = read_conf(&name, &conf_dir)?;
            let builtin = reg.emitter(&name).map(|s| s.name);
            let exec = common.exec.is_some() && reg.emitter(EXEC_KIND).is_some();
            let source = resolve_source(&name, builtin, exec, &dirs).ok_or_else(|| {
                let known: Vec<&str> = reg.emitters.iter().map(|s| s.name).collect();
                name_error(path, &text, "emitters", &name, &unknown("emitter", &name, &known, &conf, &dirs))
            })?;
            if !seen.insert(name.clone()) {
                return Err(name_error(path, &text, "emitters", &name, "emitter listed twice").into());
            }
            let entry = plugin_entry(&name, source, conf, common)?;
            if let Some(m) = modules.iter().find(|m: &&PluginEntry| m.conf.file == entry.conf.file) {
                return Err(name_error(
                    path,
                    &text,
                    "emitters",
                    &name,
                    &format!(
                        "the module \"{}\" reads the same file {}: give one of them its own conf dir",
                        m.name,
                        entry.conf.file.display()
                    ),
                )
                .into());
            }
            emitters.push(entry);
        }
        Ok(Config { file: path.to_path_buf(), core, modules, emitters })
    }
}

/// What a listed name is: a built-in (or alias), an exec plugin (a conf file with an `exec`
/// key, built by the registry's `exec` kind), or a shared library found in `dirs`.
fn resolve_source(name: &str, builtin: Option<&'static str>, exec: bool, dirs: &[PathBuf]) -> Option<Source> {
    if let Some(kind) = builtin {
        return Some(Source::Builtin(kind));
    }
    if exec {
        return Some(Source::Exec);
    }
    crate::loader::find(dirs, name).map(Source::Library)
}

fn unknown(what: &str, name: &str, known: &[&str], conf: &PluginConf, dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "unknown {what}; known: {}; and no {} has an \"{EXEC_KIND}\" key, nor is there a {} in {}",
        known.join(", "),
        conf.file.display(),
        crate::loader::file_name(name),
        if dirs.is_empty() { "(no plugin directory)".to_string() } else { dirs.join(", ") }
    )
}

fn name_error(file: &Path, text: &str, section: &str, name: &str, msg: &str) -> ConfigError {
    let at = text.find(&format!("\"{section}\"")).unwrap_or(0);
    let line = text[at..]
        .find(&format!("\"{name}\""))
        .map(|p| text[..at + p].matches('\n').count() + 1)
        .or_else(|| line_of_key(text, section));
    ConfigError::new(file, line, Some(section.to_string()), format!("\"{name}\": {msg}"))
}

fn core_config(
    raw: &RawCore,
    file: &Path,
    text: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<CoreConfig, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, line_of_key(text, key), Some(format!("core.{key}")), msg);
    let level = match raw.log.level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("info") => log::LevelFilter::Info,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        Some("warn") | Some("warning") => log::LevelFilter::Warn,
        Some("error") | Some("err") => log::LevelFilter::Error,
        Some(other) => {
            return Err(ConfigError::new(
                file,
                line_of_key(text, "level"),
                Some("core.log.level".into()),
                format!("unknown log level \"{other}\"; use debug, info, warn or error"),
            ))
        }
    };
    let format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::new(
                file,
                line_of_key(text, "format"),
                Some("core.log.format".into()),
                format!("unknown log format \"{other}\"; use text or json"),
            ))
        }
    };
    let log_file = match raw.log.dest.as_deref() {
        // The original's "stdout" went to stderr as well: stats own stdout.
        None | Some("stderr") | Some("stdout") => None,
        Some("file") => match &raw.log.file_name {
            Some(f) => Some(resolve(f)),
            None => {
                return Err(ConfigError::new(
                    file,
                    line_of_key(text, "dest"),
                    Some("core.log.fileName".into()),
                    "dest \"file\" needs \"fileName\"",
                ))
            }
        },
        Some(other) => {
            return Err(ConfigError::new(
                file,
                line_of_key(text, "dest"),
                Some("core.log.dest".into()),
                format!("unknown log destination \"{other}\"; use stderr or file"),
            ))
        }
    };
    let module_timeout = raw.module_timeout.map(|d| d.0).unwrap_or(DEFAULT_MODULE_TIMEOUT);
    if module_timeout.is_zero() || module_timeout > MAX_MODULE_TIMEOUT {
        return Err(err("module_timeout", "must be more than 0 and at most 900ms (a tick is 1 s)".into()));
    }
    let plugin_dirs = match &raw.plugin_dirs {
        Some(dirs) => dirs.iter().map(|d| resolve(d)).collect(),
        None => DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
    };
    let queue_size = raw.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
    if queue_size == 0 {
        return Err(err("queue_size", "must be at least 1".into()));
    }
    let http_listen = match raw.http_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => Some(a.parse::<std::net::SocketAddr>().map_err(|e| {
            err(
                "http_listen",
                format!("\"{a}\": {e}; use an address and a port, e.g. \"127.0.0.1:9273\" or \"[::1]:9273\""),
            )
        })?),
    };
    let http_limits = match &raw.http_limits {
        None => badger_api::listener::ListenerLimits::default(),
        Some(l) => {
            let d = badger_api::listener::ListenerLimits::default();
            let lim = badger_api::listener::ListenerLimits {
                max_connections: l.max_connections.unwrap_or(d.max_connections),
                header_timeout: l.header_timeout.map_or(d.header_timeout, |s| s.0),
                request_timeout: l.request_timeout.map_or(d.request_timeout, |s| s.0),
                max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
            };
            if lim.max_connections == 0 {
                return Err(err("http_limits.max_connections", "must be at least 1".into()));
            }
            if lim.header_timeout.is_zero() || lim.request_timeout.is_zero() {
                return Err(err("http_limits", "timeouts must be more than 0".into()));
            }
            if lim.max_header_bytes < 8192 {
                return Err(err("http_limits.max_header_bytes", "must be at least 8192".into()));
            }
            lim
        }
    };
    Ok(CoreConfig {
        datacenter: raw.datacenter.clone(),
        region: raw.region.clone(),
        zone: raw.zone.clone(),
        cluster: raw.cluster.clone(),
        hostname: raw.hostname.clone(),
        ipv4: raw.ipv4.clone(),
        ipv6: raw.ipv6.clone(),
        log: LogConfig { level, format, file: log_file },
        roots: HostRootsConfig {
            proc: resolve(raw.proc_root.as_deref().unwrap_or(Path::new("/proc"))),
            sys: resolve(raw.sys_root.as_deref().unwrap_or(Path::new("/sys"))),
            host: resolve(raw.host_root.as_deref().unwrap_or(Path::new("/"))),
        },
        module_timeout,
        queue_size,
        plugin_dirs,
        http_listen,
        http_limits,
    })
}

/// Reads `<conf_dir>/<name>.conf` (`{}` when it does not exist) and its common keys.
fn read_conf(name: &str, conf_dir: &Path) -> Result<(PluginConf, RawCommon), ConfigError> {
    let file = conf_dir.join(format!("{name}.conf"));
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}".to_string(),
        Err(e) => return Err(ConfigError::new(&file, None, None, format!("cannot read: {e}"))),
    };
    let conf = PluginConf::from_text(name, &file, &text);
    let mut de = serde_json::Deserializer::from_str(&conf.text);
    let common: RawCommon = serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_json(&file, e))?;
    Ok((conf, common))
}

fn plugin_entry(name: &str, source: Source, conf: PluginConf, common: RawCommon) -> Result<PluginEntry, ConfigError> {
    let blacklist = Matcher::new(&common.blacklist.unwrap_or_default()).map_err(|m| conf.error("blacklist", m))?;
    let timeout = common.timeout.map(|d| d.0);
    if let Some(t) = timeout {
        if t.is_zero() {
            return Err(conf.error("timeout", "must be more than 0"));
        }
    }
    Ok(PluginEntry {
        name: name.to_string(),
        source,
        interval: common.interval.map(|i| i.0).unwrap_or(0),
        blacklist,
        timeout,
        conf,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMain {
    #[serde(default)]
    core: RawCore,
    modules: PluginList,
    #[serde(default)]
    async_modules: Option<PluginList>,
    emitters: PluginList,
    #[serde(default)]
    conf_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCore {
    datacenter: Option<String>,
    region: Option<String>,
    zone: Option<String>,
    cluster: Option<String>,
    hostname: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    #[serde(default)]
    log: RawLog,
    proc_root: Option<PathBuf>,
    sys_root: Option<PathBuf>,
    host_root: Option<PathBuf>,
    module_timeout: Option<Seconds>,
    queue_size: Option<usize>,
    plugin_dirs: Option<Vec<PathBuf>>,
    http_listen: Option<String>,
    http_limits: Option<RawListenerLimits>,
}

/// `core.http_limits`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListenerLimits {
    max_connections: Option<usize>,
    header_timeout: Option<Seconds>,
    request_timeout: Option<Seconds>,
    max_header_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
    dest: Option<String>,
    #[serde(rename = "fileName", alias = "file")]
    file_name: Option<PathBuf>,
}

/// The keys every plugin takes (others are ignored here; the plugin checks them).
#[derive(Deserialize)]
struct RawCommon {
    interval: Option<Interval>,
    blacklist: Option<NameList>,
    timeout: Option<Seconds>,
    /// Only whether it is there: a name that is not built in runs as an exec plugin.
    exec: Option<de::IgnoredAny>,
}

/// A list of plugin names: an array, or the original's section object.
enum PluginList {
    Names(Vec<String>),
    Section(RawSection),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    /// The original's plugin code directory: searched first for `lib<name>.so` of the
    /// section's names that are not built in.
    dir: Option<PathBuf>,
    config: Option<PathBuf>,
    included_modules: Option<Vec<String>>,
    included_emitters: Option<Vec<String>>,
}

impl PluginList {
    fn resolve(
        &self,
        section: &str,
        list_key: &str,
        file: &Path,
        text: &str,
        default_conf_dir: &Path,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<(Vec<String>, PathBuf, Option<PathBuf>), ConfigError> {
        match self {
            PluginList::Names(n) => Ok((n.clone(), default_conf_dir.to_path_buf(), None)),
            PluginList::Section(s) => {
                let (names, wrong) = if list_key == "included_modules" {
                    (&s.included_modules, s.included_emitters.is_some().then_some("included_emitters"))
                } else {
                    (&s.included_emitters, s.included_modules.is_some().then_some("included_modules"))
                };
                if let Some(wrong) = wrong {
                    return Err(ConfigError::new(
                        file,
                        line_of_key(text, wrong),
                        Some(format!("{section}.{wrong}")),
                        format!("this section lists its names in \"{list_key}\""),
                    ));
                }
                let names = names.clone().ok_or_else(|| {
                    ConfigError::new(
                        file,
                        line_of_key(text, section),
                        Some(format!("{section}.{list_key}")),
                        format!("missing \"{list_key}\""),
                    )
                })?;
                let conf_dir = s.config.as_deref().map(resolve).unwrap_or_else(|| default_conf_dir.to_path_buf());
                Ok((names, conf_dir, s.dir.as_deref().map(resolve)))
            }
        }
    }
}

impl<'de> Deserialize<'de> for PluginList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PluginList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an array of names or an object with \"config\" and \"included_modules\"/\"included_emitters\"",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PluginList, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(PluginList::Names)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PluginList, A::Error> {
                RawSection::deserialize(de::value::MapAccessDeserializer::new(map)).map(PluginList::Section)
            }
        }
        d.deserialize_any(V)
    }
}

/// An interval: whole seconds as a number, or a humantime string ("5s", "1m").
#[derive(Debug, Clone, Copy)]
struct Interval(u64);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Seconds::deserialize(d)?;
        if s.0.subsec_nanos() != 0 {
            return Err(de::Error::custom("an interval is whole seconds (ticks are 1 s apart)"));
        }
        Ok(Interval(s.0.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_forms() {
        let p = |s: &str| serde_json::from_str::<Interval>(s).map(|i| i.0).map_err(|e| e.to_string());
        assert_eq!(p("5"), Ok(5));
        assert_eq!(p("\"1m\""), Ok(60));
        assert_eq!(p("\"5s\""), Ok(5));
        assert_eq!(p("2.0"), Ok(2));
        assert!(p("1.5").unwrap_err().contains("whole seconds"));
        assert!(p("-1").unwrap_err().contains("negative"));
        assert!(p("\"soon\"").is_err());
    }
}
