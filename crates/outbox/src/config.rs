//! The outbox's config block: keys, defaults, parsing of sizes and durations, validation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use badger_api::plugin::{ConfigError, PluginConf};

/// The keys of [`OutboxConfig`]; an emitter hides them from its own config struct with
/// `conf.parse_except::<TheirConfig>(OUTBOX_KEYS)`.
pub const OUTBOX_KEYS: &[&str] = &[
    "buffer_bytes",
    "when_full",
    "retry_initial",
    "retry_max",
    "max_batch_bytes",
    "send_budget",
    "spool_dir",
    "spool_max_bytes",
];

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// What to drop when the buffer (or the spool) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Drop the oldest records to make room for the new one (the newest data is kept).
    #[default]
    DropOldest,
    /// Refuse the new record (the oldest data is kept).
    DropNewest,
}

impl WhenFull {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::DropOldest => "drop_oldest",
            WhenFull::DropNewest => "drop_newest",
        }
    }
}

/// The buffering, retry and spool settings of a network emitter. See the module doc for
/// the table of keys; read it with [`OutboxConfig::from_conf`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// Bytes of records held in memory at most.
    #[serde(deserialize_with = "de_size")]
    pub buffer_bytes: u64,
    pub when_full: WhenFull,
    /// First wait after a failed send; doubles on every failure up to `retry_max`.
    #[serde(deserialize_with = "de_duration")]
    pub retry_initial: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub retry_max: Duration,
    /// Bytes handed to the transport in one send at most (a bigger record goes alone).
    #[serde(deserialize_with = "de_size")]
    pub max_batch_bytes: u64,
    /// How long one `pump` may keep sending.
    #[serde(deserialize_with = "de_duration")]
    pub send_budget: Duration,
    /// Directory of the disk spool (`None`: no spool). [`OutboxConfig::from_conf`] resolves
    /// a relative path against the config file's directory.
    pub spool_dir: Option<PathBuf>,
    /// Bytes the spool may hold on disk at most.
    #[serde(deserialize_with = "de_size")]
    pub spool_max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            buffer_bytes: 32 * MIB,
            when_full: WhenFull::DropOldest,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_batch_bytes: MIB,
            send_budget: Duration::from_secs(2),
            spool_dir: None,
            spool_max_bytes: 256 * MIB,
        }
    }
}

impl OutboxConfig {
    /// Reads the outbox keys of a plugin's config, checks them and resolves `spool_dir`.
    pub fn from_conf(conf: &PluginConf) -> Result<OutboxConfig, ConfigError> {
        let mut cfg: OutboxConfig = conf.parse_shared()?;
        cfg.validate(conf)?;
        cfg.spool_dir = cfg.spool_dir.map(|d| conf.resolve(&d));
        Ok(cfg)
    }

    /// Checks the values; every error names its key.
    pub fn validate(&self, conf: &PluginConf) -> Result<(), ConfigError> {
        if self.buffer_bytes < KIB {
            return Err(conf.error("buffer_bytes", format!("{} bytes is too small: at least 1KiB", self.buffer_bytes)));
        }
        if self.max_batch_bytes < KIB {
            return Err(
                conf.error("max_batch_bytes", format!("{} bytes is too small: at least 1KiB", self.max_batch_bytes))
            );
        }
        if self.retry_initial.is_zero() {
            return Err(conf.error("retry_initial", "must be more than 0"));
        }
        if self.retry_initial > self.retry_max {
            return Err(conf.error(
                "retry_initial",
                format!("{:?} is more than retry_max ({:?})", self.retry_initial, self.retry_max),
            ));
        }
        if self.retry_max > Duration::from_secs(86_400) {
            return Err(conf.error("retry_max", format!("{:?} is more than a day", self.retry_max)));
        }
        if self.send_budget.is_zero() {
            return Err(conf.error("send_budget", "must be more than 0"));
        }
        if let Some(dir) = &self.spool_dir {
            if dir.as_os_str().is_empty() {
                return Err(conf.error("spool_dir", "empty path; leave the key out (or null) for no spool"));
            }
        }
        if self.spool_max_bytes < 64 * KIB {
            return Err(
                conf.error("spool_max_bytes", format!("{} bytes is too small: at least 64KiB", self.spool_max_bytes))
            );
        }
        Ok(())
    }
}

/// Parses a size: a number of bytes, optionally followed by a unit (case-insensitive,
/// spaces allowed): `B`; `k`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of 1000);
/// `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). Fractions are allowed: `1.5GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000 * 1000,
        "g" | "gb" => 1000 * 1000 * 1000,
        "t" | "tb" => 1000 * 1000 * 1000 * 1000,
        "ki" | "kib" => KIB,
        "mi" | "mib" => MIB,
        "gi" | "gib" => 1024 * MIB,
        "ti" | "tib" => 1024 * 1024 * MIB,
        _ => return Err(format!("unknown size unit \"{unit}\" in \"{text}\" (use B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    if num.is_empty() {
        return Err(format!("\"{text}\" is not a size: expected a number of bytes like 1048576 or \"32MiB\""));
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(|| format!("\"{text}\" is too large"));
    }
    let f: f64 = num.parse().map_err(|_| format!("\"{text}\" is not a size: bad number \"{num}\""))?;
    size_from_f64(f * mult as f64).ok_or_else(|| format!("\"{text}\" is not a valid size"))
}

fn size_from_f64(f: f64) -> Option<u64> {
    if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 {
        Some(f.round() as u64)
    } else {
        None
    }
}

use badger_api::duration::de_duration;

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct SizeVisitor;
    impl Visitor<'_> for SizeVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size: a number of bytes or a string like \"32MiB\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a size: it is negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            size_from_f64(v).ok_or_else(|| E::custom(format!("{v} is not a valid size")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(E::custom)
        }
    }
    d.deserialize_any(SizeVisitor)
}
