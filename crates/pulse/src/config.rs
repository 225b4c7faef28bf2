//! `badger server` settings: the original Pulse's flags, config-file keys and defaults,
//! plus badger's own (`--storage`, `--raw-retention`, `--time-zone`, `--tls-cert`,
//! `--tls-key`). Precedence as the original: a flag given on the command line, then the
//! config file (`-c`, JSON; keys are the long flag names), then the default.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use badger_api::duration::parse_duration;
pub use badger_cli::ServerArgs;

/// The checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub server_listen_address: String,
    pub http_listen_address: String,
    pub influx_address: String,
    pub kapacitor_address: String,
    pub mist_address: String,
    pub mist_token: String,
    pub log_level: log::LevelFilter,
    pub cors_allow: String,
    pub insecure: bool,
    pub token: String,
    pub poll_interval: Duration,
    pub aggregate_interval: Duration,
    pub retention_weeks: i64,
    pub beat_interval: Duration,
    pub storage: PathBuf,
    pub raw_retention: Duration,
    pub time_zone: String,
    pub alert_interval: Duration,
    pub self_metrics: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub relay_token: String,
    pub max_series: usize,
    pub max_relay_stats: usize,
    pub max_stats: usize,
    pub max_relays: usize,
    pub relay_queue_bytes: usize,
    pub max_query_buckets: u64,
    pub query_timeout: Duration,
    pub max_api_connections: usize,
    /// Warnings to log once the logger is up (values reset to their defaults).
    pub notes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_listen_address: "127.0.0.1:3000".into(),
            http_listen_address: "127.0.0.1:8080".into(),
            influx_address: String::new(),
            kapacitor_address: String::new(),
            mist_address: String::new(),
            mist_token: String::new(),
            log_level: log::LevelFilter::Info,
            cors_allow: "*".into(),
            insecure: true,
            token: "secret".into(),
            poll_interval: Duration::from_secs(60),
            aggregate_interval: Duration::from_secs(15 * 60),
            retention_weeks: 1,
            beat_interval: Duration::from_secs(30),
            storage: PathBuf::from("/var/lib/badger/pulse"),
            raw_retention: Duration::from_secs(8 * 3600),
            time_zone: "UTC".into(),
            alert_interval: Duration::from_secs(30),
            self_metrics: true,
            tls_cert: None,
            tls_key: None,
            relay_token: String::new(),
            max_series: 100_000,
            max_relay_stats: 10_000,
            max_stats: 200_000,
            max_relays: default_max_relays(),
            relay_queue_bytes: 1 << 20,
            max_query_buckets: 10_000,
            query_timeout: Duration::from_secs(10),
            max_api_connections: 256,
            notes: Vec::new(),
        }
    }
}

const KEYS: &[&str] = &[
    "server",
    "server-listen-address",
    "http-listen-address",
    "influx-address",
    "kapacitor-address",
    "mist-address",
    "mist-token",
    "log-level",
    "cors-allow",
    "insecure",
    "token",
    "poll-interval",
    "aggregate-interval",
    "retention",
    "beat-interval",
    "storage",
    "raw-retention",
    "time-zone",
    "alert-interval",
    "self-metrics",
    "tls-cert",
    "tls-key",
    "relay-token",
    "max-series",
    "max-relay-stats",
    "max-stats",
    "max-relays",
    "relay-queue-bytes",
    "max-query-buckets",
    "query-timeout",
    "max-api-connections",
];

/// Half the soft open-files limit (`Max open files` of /proc/self/limits), within
/// 64..=10,000, so relays alone can never take every descriptor (the API, the store and
/// the other half stay served); 512 when the limit cannot be read.
pub fn default_max_relays() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<usize>().ok())
    });
    soft.map_or(512, |n| (n / 2).clamp(64, 10_000))
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        "error" | "fatal" => log::LevelFilter::Error,
        _ => return Err(format!("log-level {s:?}: use TRACE, DEBUG, INFO, WARN, ERROR or FATAL")),
    })
}

fn as_string(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("config key {key:?}: expected a string")),
    }
}

fn as_int(key: &str, v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("config key {key:?}: expected a whole number")),
        Value::String(s) => s.trim().parse().map_err(|_| format!("config key {key:?}: {s:?} is not a whole number")),
        _ => Err(format!("config key {key:?}: expected a whole number")),
    }
}

fn as_bool(key: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => s.trim().parse().map_err(|_| format!("config key {key:?}: {s:?} is not true or false")),
        _ => Err(format!("config key {key:?}: expected true or false")),
    }
}

impl Settings {
    /// The server's flags over the config file over the defaults, checked.
    pub fn from_args(args: &ServerArgs) -> Result<Settings, String> {
        let file = match &args.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("Failed to read config - {}: {e}", path.display()))?;
                let v: Value = serde_json::from_str(&badger_api::config::strip_comments(&text))
                    .map_err(|e| format!("Failed to read config - {}: {e}", path.display()))?;
                match v {
                    Value::Object(m) => m,
                    _ => return Err(format!("Failed to read config - {}: not a JSON object", path.display())),
                }
            }
            None => serde_json::Map::new(),
        };
        for k in file.keys() {
            if !KEYS.contains(&k.as_str()) {
                return Err(format!(
                    "config key {k:?} is unknown (keys are the long flag names, e.g. \"poll-interval\")"
                ));
            }
        }
        let d = Settings::default();
        let s = |flag: &Option<String>, key: &str, def: &str| -> Result<String, String> {
            match (flag, file.get(key)) {
                (Some(v), _) => Ok(v.clone()),
                (None, Some(v)) => as_string(key, v),
                (None, None) => Ok(def.to_string()),
            }
        };
        let i = |flag: Option<i64>, key: &str, def: i64| -> Result<i64, String> {
            match (flag, file.get(key)) {
                (Some(v), _) => Ok(v),
                (None, Some(v)) => as_int(key, v),
                (None, None) => Ok(def),
            }
        };
        let mut notes = Vec::new();
        let poll = i(args.poll_interval.map(|v| v as i64), "poll-interval", 60)?;
        let poll = if poll <= 0 { 60 } else { poll };
        let mut beat = i(args.beat_interval, "beat-interval", 30)?;
        if beat < 1 {
            notes.push("Bad value for beat-interval, resetting to 30".to_string());
            beat = 30;
        }
        let mut retention = i(args.retention, "retention", 1)?;
        if retention < 1 {
            notes.push("Bad value for retention, resetting to 1".to_string());
            retention = 1;
        }
        let mut agg = i(args.aggregate_interval.map(|v| v as i64), "aggregate-interval", 15)?;
        if agg < 1 {
            notes.push("Bad value for aggregate-interval, resetting to 15".to_string());
            agg = 15;
        }
        let insecure = match (args.insecure, file.get("insecure")) {
            (Some(b), _) => b,
            (None, Some(v)) => as_bool("insecure", v)?,
            (None, None) => true,
        };
        let self_metrics = match (args.self_metrics, file.get("self-metrics")) {
            (Some(b), _) => b,
            (None, Some(v)) => as_bool("self-metrics", v)?,
            (None, None) => true,
        };
        let path = |flag: &Option<PathBuf>, key: &str| -> Result<Option<PathBuf>, String> {
            match (flag, file.get(key)) {
                (Some(p), _) => Ok(Some(p.clone())),
                (None, Some(v)) => Ok(Some(PathBuf::from(as_string(key, v)?)).filter(|p| !p.as_os_str().is_empty())),
                (None, None) => Ok(None),
            }
        };
        let raw_retention = parse_duration(&s(&args.raw_retention, "raw-retention", "8h")?)?;
        if raw_retention < Duration::from_secs(60) {
            return Err("raw-retention must be at least 1m".into());
        }
        let time_zone = s(&args.time_zone, "time-zone", "UTC")?;
        jiff::tz::TimeZone::get(&time_zone).map_err(|e| format!("time-zone {time_zone:?}: {e}"))?;
        let tls_cert = path(&args.tls_cert, "tls-cert")?;
        let tls_key = path(&args.tls_key, "tls-key")?;
        if tls_cert.is_some() != tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        let n = |flag: Option<u64>, key: &str, def: usize| -> Result<usize, String> {
            let v = i(flag.map(|v| i64::try_from(v).unwrap_or(i64::MAX)), key, def as i64)?;
            if v < 1 {
                return Err(format!("{key} must be at least 1"));
            }
            Ok(usize::try_from(v).unwrap_or(usize::MAX))
        };
        let query_timeout = parse_duration(&s(&args.query_timeout, "query-timeout", "10s")?)?;
        if query_timeout < Duration::from_millis(100) {
            return Err("query-timeout must be at least 100ms".into());
        }
        Ok(Settings {
            relay_token: s(&args.relay_token, "relay-token", "")?,
            max_series: n(args.max_series, "max-series", d.max_series)?,
            max_relay_stats: n(args.max_relay_stats, "max-relay-stats", d.max_relay_stats)?,
            max_stats: n(args.max_stats, "max-stats", d.max_stats)?,
            max_relays: n(args.max_relays, "max-relays", d.max_relays)?,
            relay_queue_bytes: n(args.relay_queue_bytes, "relay-queue-bytes", d.relay_queue_bytes)?,
            max_query_buckets: n(args.max_query_buckets, "max-query-buckets", 10_000)? as u64,
            query_timeout,
            max_api_connections: n(args.max_api_connections, "max-api-connections", d.max_api_connections)?,
            server_listen_address: s(&args.server_listen_address, "server-listen-address", &d.server_listen_address)?,
            http_listen_address: s(&args.http_listen_address, "http-listen-address", &d.http_listen_address)?,
            influx_address: s(&args.influx_address, "influx-address", "")?.trim_end_matches('/').to_string(),
            kapacitor_address: s(&args.kapacitor_address, "kapacitor-address", "")?.trim_end_matches('/').to_string(),
            mist_address: s(&args.mist_address, "mist-address", "")?,
            mist_token: s(&args.mist_token, "mist-token", "")?,
            log_level: parse_level(&s(&args.log_level, "log-level", "info")?)?,
            cors_allow: s(&args.cors_allow, "cors-allow", "*")?,
            insecure,
            token: s(&args.token, "token", "secret")?,
            poll_interval: Duration::from_secs(poll as u64),
            aggregate_interval: Duration::from_secs((agg as u64).saturating_mul(60)),
            retention_weeks: retention,
            beat_interval: Duration::from_secs(beat as u64),
            storage: path(&args.storage, "storage")?.unwrap_or(d.storage),
            raw_retention,
            time_zone,
            alert_interval: Duration::from_secs(
                i(args.alert_interval.map(|v| v as i64), "alert-interval", 30)?.max(1) as u64
            ),
            self_metrics,
            tls_cert,
            tls_key,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let s = Settings::from_args(&ServerArgs::default()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.poll_interval, Duration::from_secs(60));
        assert_eq!(s.token, "secret");
        assert!(s.insecure);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pulse.json");
        std::fs::write(&f, r#"{"poll-interval": 30, "token": "x", "retention": "12", "insecure": false, "beat-interval": 0, "server": true}"#)
            .unwrap();
        let args = ServerArgs { config_file: Some(f.clone()), token: Some("y".into()), ..Default::default() };
        let s = Settings::from_args(&args).unwrap();
        assert_eq!(s.poll_interval, Duration::from_secs(30));
        assert_eq!(s.token, "y");
        assert_eq!(s.retention_weeks, 12);
        assert!(!s.insecure);
        assert_eq!(s.beat_interval, Duration::from_secs(30));
        assert_eq!(s.notes, ["Bad value for beat-interval, resetting to 30"]);
        std::fs::write(&f, r#"{"pol-interval": 30}"#).unwrap();
        assert!(Settings::from_args(&args).unwrap_err().contains("pol-interval"));
        let bad = ServerArgs { time_zone: Some("Nowhere/Else".into()), ..Default::default() };
        assert!(Settings::from_args(&bad).is_err());
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("2x").is_err());
    }
}
