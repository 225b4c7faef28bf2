//! The plugin API: what a module or an emitter implements and how it reads its config.
//!
//! A module is built from its `conf.d/<name>.conf` by the `build` function of its
//! [`ModuleSpec`] and then asked to [`Module::collect`] on every tick it is due. An emitter is
//! built the same way from its [`EmitterSpec`] and receives every payload, batched by its
//! interval, through [`Emitter::emit`].
//!
//! The keys every plugin shares (`interval`, `blacklist`, `timeout`) are read by the core;
//! [`PluginConf::parse`] hands the plugin only its own keys, so a plugin's config struct can
//! `deny_unknown_fields` and every error still names the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use crate::http::HttpRoutes;
use crate::matcher::Matcher;
use crate::point::{HostMeta, Payload, Point};
use crate::telemetry::Telemetry;

/// Keys that every module and emitter takes; the core reads them, plugins never see them.
pub const COMMON_KEYS: &[&str] = &["interval", "blacklist", "timeout"];

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
}

/// What an emitter's `build` gets besides its config.
#[derive(Debug, Clone, Default)]
pub struct EmitterContext {
    pub meta: Arc<HostMeta>,
    /// Routes the emitter serves on the agent's HTTP listener.
    pub http: HttpRoutes,
    /// Where the emitter publishes its own counters (e.g. its outbox's).
    pub telemetry: Telemetry,
}

/// A stats module. `collect` is called on the module's own thread; it may block (the core
/// isolates it), but should return in well under a second.
pub trait Module: Send {
    /// Appends this collection's points to `out`. `now` is when the collection started
    /// (monotonic); rates divide by the real time between two collections.
    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError>;
}

/// An emitter. `emit` is called on the emitter's own thread with every payload since the
/// last call; the core has already removed what the emitter's blacklist names.
pub trait Emitter: Send {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError>;
    /// Called about once a second while no batch is due, so an emitter that holds unsent
    /// data can retry without waiting for the next payload.
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
    pub fn points(&self) -> impl Iterator<Item = &'a Point> + 'a {
        let blacklist = self.blacklist;
        self.payload.points.iter().filter(move |p| !blacklist.matches(&p.name))
    }
}

/// Logs at most once a minute, and says how many were left out.
#[derive(Default)]
pub struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(60) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
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
}

/// A config error that names the file, the line and the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, line: Option<usize>, key: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: file.to_path_buf(), line, key, message: message.into() }
    }

    /// Turns a serde_json error (with its path) into a ConfigError.
    pub fn from_json(file: &Path, err: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let line = if inner.line() > 0 { Some(inner.line()) } else { None };
        let mut message = inner.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // serde_path_to_error's path already ends with an unknown key's name.
        let key = if path == "." || path == "?" || path.is_empty() {
            unknown_field_name(&message).map(str::to_string)
        } else {
            Some(path)
        };
        ConfigError { file: file.to_path_buf(), line, key, message }
    }
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key \"{key}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One plugin's config file, comments stripped (line numbers kept).
#[derive(Debug, Clone)]
pub struct PluginConf {
    /// The plugin's name as listed in the main config.
    pub name: String,
    /// `conf.d/<name>.conf`; it need not exist (then every key takes its default).
    pub file: PathBuf,
    /// JSON text without comments; `{}` when the file does not exist.
    pub text: String,
}

impl PluginConf {
    /// A config from literal text (tests, and files that do not exist).
    pub fn from_text(name: &str, file: &Path, text: &str) -> PluginConf {
        PluginConf { name: name.to_string(), file: file.to_path_buf(), text: strip_comments(text) }
    }

    /// Deserializes the plugin's own keys (everything but [`COMMON_KEYS`]) into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.parse_except(&[])
    }

    /// Like [`PluginConf::parse`], but also hides `shared` keys, which a shared part of the
    /// plugin reads with [`PluginConf::parse_shared`] (e.g. the buffering keys of every
    /// network emitter). Unknown keys are still errors.
    pub fn parse_except<T: DeserializeOwned>(&self, shared: &[&str]) -> Result<T, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(&self.text);
        let value = serde_path_to_error::deserialize(SkipCommonKeys(&mut de, shared))
            .map_err(|e| ConfigError::from_json(&self.file, e))?;
        de.end()
            .map_err(|e| ConfigError::new(&self.file, Some(e.line()), None, "trailing characters after the object"))?;
        Ok(value)
    }

    /// Deserializes a shared block of keys from the same object; other keys are ignored here
    /// (the plugin's own [`PluginConf::parse_except`] rejects unknown ones), so `T` must not
    /// deny unknown fields.
    pub fn parse_shared<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(&self.text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_json(&self.file, e))
    }

    /// Resolves a path from this config against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The line a key is on (first `"key":`), for errors found after parsing.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        line_of_key(&self.text, key)
    }

    /// A config error about `key` in this file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, self.line_of(key), Some(key.to_string()), message)
    }
}

/// Deserializes a duration: a number of seconds (`5`, `0.5`) or a string with a unit
/// (`"500ms"`, `"30s"`, `"2m"`). For plugin config keys: `#[serde(deserialize_with = "de_duration")]`.
pub fn de_duration<'de, D: de::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = std::time::Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration: a number of seconds or a string like \"500ms\" or \"30s\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(std::time::Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v).map(std::time::Duration::from_secs).map_err(|_| E::custom("must not be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            std::time::Duration::try_from_secs_f64(v).map_err(|_| E::custom("must be a non-negative number"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            humantime::parse_duration(v.trim()).map_err(|e| E::custom(format!("\"{v}\": {e}")))
        }
    }
    d.deserialize_any(V)
}

/// Finds the line of the first `"key"` followed by `:`.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let at = from + pos;
        let after = text[at + needle.len()..].trim_start();
        if after.starts_with(':') {
            return Some(text[..at].matches('\n').count() + 1);
        }
        from = at + needle.len();
    }
    None
}

/// Removes `//`, `/* */` and `#` comments outside strings; newlines (also those inside block
/// comments) are kept, so serde_json's line numbers are the file's.
pub fn strip_comments(text: &str) -> String {
    use std::io::Read;
    let mut out = String::with_capacity(text.len());
    let mut stripper = json_comments::StripComments::new(text.as_bytes());
    if stripper.read_to_string(&mut out).is_err() {
        // Only a lone '/' outside a string fails; hand the text to serde_json as it is, which
        // then reports the exact position.
        return text.to_string();
    }
    if out.len() != text.len() {
        return out;
    }
    // Put back the newlines that block comments turned into spaces.
    let mut bytes = out.into_bytes();
    for (o, &c) in bytes.iter_mut().zip(text.as_bytes()) {
        if c == b'\n' {
            *o = b'\n';
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A deserializer that presents a JSON object without the common keys.
struct SkipCommonKeys<'a, 'de>(&'a mut serde_json::Deserializer<serde_json::de::StrRead<'de>>, &'a [&'a str]);

impl<'de> de::Deserializer<'de> for SkipCommonKeys<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_map(self.0, SkipVisitor(visitor, self.1))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SkipVisitor<'a, V>(V, &'a [&'a str]);

impl<'de, V: Visitor<'de>> Visitor<'de> for SkipVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(SkipMap(map, self.1))
    }
}

struct SkipMap<'a, A>(A, &'a [&'a str]);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        loop {
            match self.0.next_key::<String>()? {
                None => return Ok(None),
                Some(k) if COMMON_KEYS.contains(&k.as_str()) || self.1.contains(&k.as_str()) => {
                    self.0.next_value::<de::IgnoredAny>()?;
                }
                Some(k) => {
                    let key: de::value::StringDeserializer<A::Error> = k.into_deserializer();
                    return seed.deserialize(key).map(Some);
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        #[serde(default)]
        host: String,
        #[serde(default)]
        port: u16,
    }

    fn conf(text: &str) -> PluginConf {
        PluginConf::from_text("x", Path::new("conf.d/x.conf"), text)
    }

    #[test]
    fn common_keys_are_skipped() {
        let c: Conf = conf(r#"{"interval": 5, "blacklist": ["a"], "host": "h", "port": 7}"#).parse().unwrap();
        assert_eq!(c, Conf { host: "h".into(), port: 7 });
    }

    #[test]
    fn shared_keys_are_hidden_from_the_plugin_and_read_apart() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Shared {
            buffer_bytes: u64,
        }
        let c = conf(r#"{"host": "h", "buffer_bytes": 10}"#);
        assert_eq!(c.parse_except::<Conf>(&["buffer_bytes"]).unwrap().host, "h");
        assert_eq!(c.parse_shared::<Shared>().unwrap(), Shared { buffer_bytes: 10 });
        assert!(c.parse::<Conf>().is_err());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = conf("{\n  \"host\": \"h\",\n  // a comment\n  \"prot\": 7\n}").parse::<Conf>().unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.key.as_deref(), Some("prot"));
        assert!(err.message.starts_with("unknown field `prot`"), "{}", err.message);
        assert_eq!(
            err.to_string().lines().next().unwrap().split(':').next().unwrap(),
            "conf.d/x.conf, line 4, key \"prot\""
        );
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = conf("{\n/* two\nlines */\n\"port\": \"x\"}").parse::<Conf>().unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.key.as_deref(), Some("port"));
        assert!(err.message.contains("invalid type: string \"x\""), "{}", err.message);
    }

    #[test]
    fn comments_are_string_aware() {
        let stripped = strip_comments("{\"u\": \"http://x/*y*/\", // c\n \"v\": 1 /* z */}");
        let v: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v["u"], "http://x/*y*/");
        assert_eq!(v["v"], 1);
    }

    #[test]
    fn line_of_key_skips_values() {
        assert_eq!(line_of_key("{\"a\": \"b\",\n\"b\": 1}", "b"), Some(2));
    }
}
