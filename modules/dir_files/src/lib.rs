//! `dir_files`: an example module plugin, a shared library built with `badger-plugin-sdk`.
//! For every configured directory, how many regular files it holds and their total size
//! (not recursive; symlinks are not followed).
//!
//! Build it with `cargo build --release -p dir_files`, copy `target/release/libdir_files.so`
//! into a plugin directory (`/usr/lib/badger/modules`), list `"dir_files"` in `modules`.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `dir_files.count.<name>` | | int | gauge | regular files directly in the directory, tag `dir` |
//! | `dir_files.bytes.<name>` | B | int | gauge | their total size, tag `dir` |
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `dirs` | required | object of `"<name>": "<absolute path>"`; `<name>` ends the stat names (no dots or spaces) |
//!
//! A directory that cannot be read fails that collection (the module gives nothing that tick).

use std::path::PathBuf;

use badger_plugin_sdk::{badger_module, ConfigError, Error, Module, Point};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    dirs: std::collections::BTreeMap<String, PathBuf>,
}

pub struct DirFiles {
    dirs: Vec<(String, PathBuf)>,
}

impl Module for DirFiles {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        if config.dirs.is_empty() {
            return Err(ConfigError::new("dirs", "name at least one directory").into());
        }
        for (name, path) in &config.dirs {
            if name.is_empty() || name.contains(|c: char| c == '.' || c.is_whitespace()) {
                return Err(ConfigError::new(format!("dirs.{name}"), "a name has no dots or spaces").into());
            }
            if !path.is_absolute() {
                return Err(ConfigError::new(format!("dirs.{name}"), "the path must be absolute").into());
            }
        }
        Ok(DirFiles { dirs: config.dirs.into_iter().collect() })
    }

    fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), Error> {
        for (name, path) in &self.dirs {
            let (mut count, mut bytes) = (0i64, 0u64);
            let entries = std::fs::read_dir(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            for entry in entries.flatten() {
                // DirEntry::metadata does not follow symlinks.
                if let Ok(m) = entry.metadata() {
                    if m.is_file() {
                        count += 1;
                        bytes += m.len();
                    }
                }
            }
            let point = |field: &str, value: badger_plugin_sdk::Value, units: &str| {
                Point::new(format!("dir_files.{field}.{name}"), value)
                    .units(units)
                    .measurement("dir_files")
                    .field(field)
                    .tag("dir", name.as_str())
            };
            out.push(point("count", count.into(), ""));
            out.push(point("bytes", bytes.into(), "B"));
        }
        Ok(())
    }
}

badger_module!(DirFiles);
