//! `jsonl_file`: an example emitter plugin, a shared library built with `badger-plugin-sdk`.
//! Appends every payload to a file as one JSON object per line (the `stdout` shape), and
//! syncs the file at shutdown.
//!
//! Build it with `cargo build --release -p jsonl_file`, copy `target/release/libjsonl_file.so`
//! into a plugin directory (`/usr/lib/badger/emitters`), list `"jsonl_file"` in `emitters`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | required | absolute path of the file; created if missing, appended to (rotate it with `copytruncate`) |

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use badger_plugin_sdk::{badger_emitter, ConfigError, Emitter, Error, Payload};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    path: PathBuf,
}

pub struct JsonlFile {
    file: File,
    buf: Vec<u8>,
}

impl Emitter for JsonlFile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        if !config.path.is_absolute() {
            return Err(ConfigError::new("path", "the path must be absolute").into());
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| format!("opening {}: {e}", config.path.display()))?;
        Ok(JsonlFile { file, buf: Vec::new() })
    }

    fn emit(&mut self, payloads: &[Payload]) -> Result<(), Error> {
        self.buf.clear();
        for p in payloads {
            serde_json::to_writer(&mut self.buf, p)?;
            self.buf.push(b'\n');
        }
        // One write per batch: with O_APPEND, a line is never split by a concurrent writer.
        self.file.write_all(&self.buf)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.file.sync_data()?;
        Ok(())
    }
}

badger_emitter!(JsonlFile);
