//! badger's log: stderr (or a file), text or JSON lines, never on stdout (stdout is for stats).
//!
//! Text: `2026-11-21T12:00:00.123Z WARN  module "disk": …`.
//! JSON: `{"timestamp":"2026-11-21T12:00:00.123Z","level":"warn","target":"badger::agent","msg":"…"}`.
//! The level, format and destination change on SIGHUP reload.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Log lines as text or as JSON objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where and how badger logs (the main config's `core.log_*` keys, or the server's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: log::LevelFilter,
    pub format: LogFormat,
    /// `None` = stderr.
    pub file: Option<PathBuf>,
}

struct Logger {
    state: Mutex<State>,
}

struct State {
    format: LogFormat,
    out: Box<dyn Write + Send>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger (first call) or reconfigures it (later calls).
/// `override_level` is the `-l` flag, which wins over the config.
pub fn configure(cfg: &LogConfig, override_level: Option<log::LevelFilter>) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match &cfg.file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stderr()),
    };
    let logger = LOGGER
        .get_or_init(|| Logger { state: Mutex::new(State { format: cfg.format, out: Box::new(std::io::stderr()) }) });
    if let Ok(mut s) = logger.state.lock() {
        s.format = cfg.format;
        s.out = out;
    }
    // Fails only when another logger is installed (never in badger); reconfiguring keeps ours.
    let _ = log::set_logger(logger);
    log::set_max_level(override_level.unwrap_or(cfg.level));
    Ok(())
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let Ok(mut s) = self.state.lock() else { return };
        let line = match s.format {
            LogFormat::Text => format!("{ts} {:<5} {}\n", record.level(), record.args()),
            LogFormat::Json => {
                let obj = serde_json::json!({
                    "timestamp": ts.to_string(),
                    "level": record.level().as_str().to_ascii_lowercase(),
                    "target": record.target(),
                    "msg": record.args().to_string(),
                });
                format!("{obj}\n")
            }
        };
        let _ = s.out.write_all(line.as_bytes());
    }

    fn flush(&self) {
        if let Ok(mut s) = self.state.lock() {
            let _ = s.out.flush();
        }
    }
}
