//! Config files: a plugin's `conf.d/<name>.conf` ([`PluginConf`]), the errors that name the
//! file, the line and the key ([`ConfigError`]), and comment stripping that keeps line numbers.
//!
//! The keys every plugin shares (`interval`, `blacklist`, `timeout`) are read by the core;
//! [`PluginConf::parse`] hands the plugin only its own keys, so a plugin's config struct can
//! `deny_unknown_fields` and every error still names the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

/// Keys that every module and emitter takes; the core reads them, plugins never see them.
pub const COMMON_KEYS: &[&str] = &["interval", "blacklist", "timeout"];

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

    /// The common `timeout` key (which the core hands to modules in their context) as a
    /// network emitter reads it from its own file: `default` when absent, zero refused.
    pub fn timeout_or(&self, default: std::time::Duration) -> Result<std::time::Duration, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Common {
            #[serde(default)]
            timeout: Option<crate::duration::Seconds>,
        }
        let timeout = self.parse_shared::<Common>()?.timeout.map_or(default, |t| t.0);
        if timeout.is_zero() {
            return Err(self.error("timeout", "must be more than 0"));
        }
        Ok(timeout)
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
