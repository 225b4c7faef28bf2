//! `badger server` settings: the original Pulse's flags, config-file keys and defaults,
//! plus badger's own (`--storage`, `--raw-retention`, `--time-zone`, `--tls-cert`,
//! `--tls-key`). Precedence as the original: a flag given on the command line, then the
//! config file (`-c`, JSON; keys are the long flag names), then the default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use badger_api::duration::parse_duration;

/// Flags of `badger server` (also `badger -s`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Relay listener [default: 127.0.0.1:3000]
    #[arg(short = 'S', long = "server-listen-address", value_name = "ADDR")]
    pub server_listen_address: Option<String>,
    /// HTTP(S) API listener [default: 127.0.0.1:8080]
    #[arg(short = 'H', long = "http-listen-address", value_name = "ADDR")]
    pub http_listen_address: Option<String>,
    /// InfluxDB base URL (e.g. http://127.0.0.1:8086); empty: the embedded store [default: ""]
    #[arg(short = 'i', long = "influx-address", value_name = "URL")]
    pub influx_address: Option<String>,
    /// Kapacitor base URL (e.g. http://127.0.0.1:9092): alerts are also pushed there as tasks
    #[arg(short = 'k', long = "kapacitor-address", value_name = "URL")]
    pub kapacitor_address: Option<String>,
    /// Mist address (host:port): every stat is published there
    #[arg(short = 'm', long = "mist-address", value_name = "ADDR")]
    pub mist_address: Option<String>,
    /// Mist auth token
    #[arg(short = 'M', long = "mist-token", value_name = "TOKEN")]
    pub mist_token: Option<String>,
    /// TRACE, DEBUG, INFO, WARN, ERROR or FATAL [default: info]
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Access-Control-Allow-Origin of the API [default: *]
    #[arg(short = 'C', long = "cors-allow", value_name = "ORIGIN")]
    pub cors_allow: Option<String>,
    /// true: plain HTTP; false (--insecure=false): HTTPS [default: true]
    #[arg(short = 'I', long = "insecure", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// API token (X-AUTH-TOKEN); "" disables auth [default: secret]
    #[arg(short = 't', long = "token", value_name = "TOKEN")]
    pub token: Option<String>,
    /// Seconds between polls of the relays [default: 60]
    #[arg(short = 'p', long = "poll-interval", value_name = "SECONDS")]
    pub poll_interval: Option<u64>,
    /// Minutes per aggregate bucket [default: 15]
    #[arg(short = 'a', long = "aggregate-interval", value_name = "MINUTES")]
    pub aggregate_interval: Option<u64>,
    /// Weeks the aggregates are kept [default: 1]
    #[arg(short = 'r', long = "retention", value_name = "WEEKS")]
    pub retention: Option<i64>,
    /// Seconds between relay heartbeats [default: 30]
    #[arg(short = 'b', long = "beat-interval", value_name = "SECONDS")]
    pub beat_interval: Option<i64>,
    /// Config file (JSON; keys are the long flag names)
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Print the version and exit
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Data directory of the embedded store and of the alerts [default: /var/lib/badger/pulse]
    #[arg(long = "storage", value_name = "DIR")]
    pub storage: Option<PathBuf>,
    /// How long raw points are kept, e.g. 8h, 2d [default: 8h]
    #[arg(long = "raw-retention", value_name = "DURATION")]
    pub raw_retention: Option<String>,
    /// Time zone of the daily HH:MM labels (IANA name) [default: UTC]
    #[arg(long = "time-zone", value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// Seconds between two evaluations of the alerts [default: 30]
    #[arg(long = "alert-interval", value_name = "SECONDS")]
    pub alert_interval: Option<u64>,
    /// Store the server's own metrics (pulse_relays, pulse_points, …) [default: true]
    #[arg(long = "self-metrics", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub self_metrics: Option<bool>,
    /// PEM certificate chain for HTTPS (with --tls-key); without: a generated self-signed one
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Relay token: relays must send `id <id> <token>`; "" accepts any relay [default: ""]
    #[arg(long = "relay-token", value_name = "TOKEN")]
    pub relay_token: Option<String>,
    /// Series the embedded store holds at most; new ones past it are refused [default: 100000]
    #[arg(long = "max-series", value_name = "N")]
    pub max_series: Option<u64>,
    /// Stat and collector names one relay may register (`add`) or send (`got`) [default: 10000]
    #[arg(long = "max-relay-stats", value_name = "N")]
    pub max_relay_stats: Option<u64>,
    /// Stat and collector names of all relays together [default: 200000]
    #[arg(long = "max-stats", value_name = "N")]
    pub max_stats: Option<u64>,
    /// Relay connections at once (identified or not); more wait in the kernel's backlog [default: half the open-files limit, 64 to 10000]
    #[arg(long = "max-relays", value_name = "N")]
    pub max_relays: Option<u64>,
    /// Bytes of `get` lines queued for one relay; a poll past it is skipped [default: 1048576]
    #[arg(long = "relay-queue-bytes", value_name = "BYTES")]
    pub relay_queue_bytes: Option<u64>,
    /// API connections at once; more wait in the kernel's backlog [default: 256]
    #[arg(long = "max-api-connections", value_name = "N")]
    pub max_api_connections: Option<u64>,
    /// Buckets one /hourly or /daily query may span [default: 10000]
    #[arg(long = "max-query-buckets", value_name = "N")]
    pub max_query_buckets: Option<u64>,
    /// Time one API query may take before it is answered 503 [default: 10s]
    #[arg(long = "query-timeout", value_name = "DURATION")]
    pub query_timeout: Option<String>,
}

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

impl ServerArgs {
    /// Flags over the config file over the defaults, checked.
    pub fn settings(&self) -> Result<Settings, String> {
        let file = match &self.config_file {
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
        let poll = i(self.poll_interval.map(|v| v as i64), "poll-interval", 60)?;
        let poll = if poll <= 0 { 60 } else { poll };
        let mut beat = i(self.beat_interval, "beat-interval", 30)?;
        if beat < 1 {
            notes.push("Bad value for beat-interval, resetting to 30".to_string());
            beat = 30;
        }
        let mut retention = i(self.retention, "retention", 1)?;
        if retention < 1 {
            notes.push("Bad value for retention, resetting to 1".to_string());
            retention = 1;
        }
        let mut agg = i(self.aggregate_interval.map(|v| v as i64), "aggregate-interval", 15)?;
        if agg < 1 {
            notes.push("Bad value for aggregate-interval, resetting to 15".to_string());
            agg = 15;
        }
        let insecure = match (self.insecure, file.get("insecure")) {
            (Some(b), _) => b,
            (None, Some(v)) => as_bool("insecure", v)?,
            (None, None) => true,
        };
        let self_metrics = match (self.self_metrics, file.get("self-metrics")) {
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
        let raw_retention = parse_duration(&s(&self.raw_retention, "raw-retention", "8h")?)?;
        if raw_retention < Duration::from_secs(60) {
            return Err("raw-retention must be at least 1m".into());
        }
        let time_zone = s(&self.time_zone, "time-zone", "UTC")?;
        jiff::tz::TimeZone::get(&time_zone).map_err(|e| format!("time-zone {time_zone:?}: {e}"))?;
        let tls_cert = path(&self.tls_cert, "tls-cert")?;
        let tls_key = path(&self.tls_key, "tls-key")?;
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
        let query_timeout = parse_duration(&s(&self.query_timeout, "query-timeout", "10s")?)?;
        if query_timeout < Duration::from_millis(100) {
            return Err("query-timeout must be at least 100ms".into());
        }
        Ok(Settings {
            relay_token: s(&self.relay_token, "relay-token", "")?,
            max_series: n(self.max_series, "max-series", d.max_series)?,
            max_relay_stats: n(self.max_relay_stats, "max-relay-stats", d.max_relay_stats)?,
            max_stats: n(self.max_stats, "max-stats", d.max_stats)?,
            max_relays: n(self.max_relays, "max-relays", d.max_relays)?,
            relay_queue_bytes: n(self.relay_queue_bytes, "relay-queue-bytes", d.relay_queue_bytes)?,
            max_query_buckets: n(self.max_query_buckets, "max-query-buckets", 10_000)? as u64,
            query_timeout,
            max_api_connections: n(self.max_api_connections, "max-api-connections", d.max_api_connections)?,
            server_listen_address: s(&self.server_listen_address, "server-listen-address", &d.server_listen_address)?,
            http_listen_address: s(&self.http_listen_address, "http-listen-address", &d.http_listen_address)?,
            influx_address: s(&self.influx_address, "influx-address", "")?.trim_end_matches('/').to_string(),
            kapacitor_address: s(&self.kapacitor_address, "kapacitor-address", "")?.trim_end_matches('/').to_string(),
            mist_address: s(&self.mist_address, "mist-address", "")?,
            mist_token: s(&self.mist_token, "mist-token", "")?,
            log_level: parse_level(&s(&self.log_level, "log-level", "info")?)?,
            cors_allow: s(&self.cors_allow, "cors-allow", "*")?,
            insecure,
            token: s(&self.token, "token", "secret")?,
            poll_interval: Duration::from_secs(poll as u64),
            aggregate_interval: Duration::from_secs((agg as u64).saturating_mul(60)),
            retention_weeks: retention,
            beat_interval: Duration::from_secs(beat as u64),
            storage: path(&self.storage, "storage")?.unwrap_or(d.storage),
            raw_retention,
            time_zone,
            alert_interval: Duration::from_secs(
                i(self.alert_interval.map(|v| v as i64), "alert-interval", 30)?.max(1) as u64
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
        let s = ServerArgs::default().settings().unwrap();
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
        let s = args.settings().unwrap();
        assert_eq!(s.poll_interval, Duration::from_secs(30));
        assert_eq!(s.token, "y");
        assert_eq!(s.retention_weeks, 12);
        assert!(!s.insecure);
        assert_eq!(s.beat_interval, Duration::from_secs(30));
        assert_eq!(s.notes, ["Bad value for beat-interval, resetting to 30"]);
        std::fs::write(&f, r#"{"pol-interval": 30}"#).unwrap();
        assert!(args.settings().unwrap_err().contains("pol-interval"));
        let bad = ServerArgs { time_zone: Some("Nowhere/Else".into()), ..Default::default() };
        assert!(bad.settings().is_err());
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("2x").is_err());
    }
}
