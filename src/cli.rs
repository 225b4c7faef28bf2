//! The command line (also the source of the man page and shell completions).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// badger: per-host Linux stats agent (the successor of Stat Badger).
///
/// Runs until SIGTERM or SIGINT (finishes the tick, flushes every emitter, exits 0);
/// SIGHUP reloads the config and keeps the old one if the new one is invalid.
#[derive(Debug, Parser)]
#[command(name = "badger", version, disable_help_subcommand = true)]
pub struct Cli {
    /// The main config file (JSON with // and /* */ comments).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Collect, wait one second so rates exist, print one payload as stdout_pretty, exit 0.
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
