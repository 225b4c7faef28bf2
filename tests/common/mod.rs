//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A config directory in a temp dir: `config.json` plus `conf.d/<name>.conf` files.
pub struct TempConfig {
    pub dir: tempfile::TempDir,
}

impl TempConfig {
    pub fn new(main: &str, confs: &[(&str, &str)]) -> TempConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
        std::fs::write(dir.path().join("config.json"), main).expect("write config");
        for (name, text) in confs {
            std::fs::write(dir.path().join("conf.d").join(format!("{name}.conf")), text).expect("write conf");
        }
        TempConfig { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }
}

pub fn badger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_badger"))
}

pub fn run(args: &[&str], cwd: &Path) -> Output {
    badger().args(args).current_dir(cwd).output().expect("run badger")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}
