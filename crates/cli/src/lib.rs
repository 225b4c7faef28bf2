//! badger's command line: the agent's flags, `badger server`'s flags ([`ServerArgs`]), and
//! the original Pulse's `-s`. A crate of its own (clap only) so that the build script
//! generates the man page and the shell completions from it without compiling badger.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// badger: per-host Linux stats agent (the successor of Stat Badger).
///
/// Runs until SIGTERM or SIGINT (finishes the tick, flushes every emitter, exits 0);
/// SIGHUP reloads the config and keeps the old one if the new one is invalid.
///
/// `badger server` (or `badger -s`) runs a Pulse server instead of the agent.
#[derive(Debug, Parser)]
#[command(name = "badger", version, disable_help_subcommand = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The main config file (JSON with // and /* */ comments).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Collect, wait one second so rates exist, print one payload as stdout_pretty, exit 0
    /// (1 when the payload could not be written before the shutdown deadline).
    #[arg(long, conflicts_with_all = ["once", "check"])]
    pub test: bool,

    /// Like --test, but through the configured emitters, flushing them before exit.
    #[arg(long, conflicts_with = "check")]
    pub once: bool,

    /// Validate the whole config (main file and every conf.d file), print what would run;
    /// exit 0, or 2 with the error.
    #[arg(long)]
    pub check: bool,

    /// Log level, overriding core.log.level.
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(rewrite_server_flag(args.iter().map(Into::into).collect())).unwrap()
    }

    #[test]
    fn dash_s_is_the_server_subcommand() {
        let Some(Command::Server(a)) = parse(&["badger", "-s", "-p", "1", "-I=false", "-t", ""]).command else {
            panic!("not the server")
        };
        assert_eq!((a.poll_interval, a.insecure, a.token.as_deref()), (Some(1), Some(false), Some("")));
        let Some(Command::Server(a)) = parse(&["badger", "server", "-b", "10", "--insecure"]).command else {
            panic!("not the server")
        };
        assert_eq!((a.beat_interval, a.insecure), (Some(10), Some(true)));
        assert!(parse(&["badger", "-f", "x.json"]).command.is_none());
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Pulse server: relays connect over TCP, the HTTP API serves their stats
    /// (also `badger -s`, the original's flag).
    Server(ServerArgs),
}

/// The arguments with the original Pulse's `-s` (anywhere before `--`) turned into the
/// `server` subcommand, so `badger -s -p 30` means `badger server -p 30`.
pub fn rewrite_server_flag(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let is_flag = |a: &std::ffi::OsString| a == "-s" || a == "--server" || a == "--server=true";
    if args.len() < 2 || !args[1..end].iter().any(is_flag) || args.get(1).is_some_and(|a| a == "server") {
        return args;
    }
    let mut out = vec![args[0].clone(), "server".into()];
    for (i, a) in args.into_iter().enumerate().skip(1) {
        if i < end && is_flag(&a) {
            continue;
        }
        out.push(a);
    }
    out
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

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
