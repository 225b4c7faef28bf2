//! The command line (also the source of the man page and shell completions).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use badger_pulse::ServerArgs;

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
