//! The badger process in integration tests: a config directory in a temp dir, running the
//! binary, its output as text.

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

/// The `badger` binary cargo built for the integration test that calls this: the test's
/// executable is `target/<profile>/deps/<test>-<hash>`, the binary `target/<profile>/badger`.
pub fn badger_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    profile.join("badger")
}

pub fn badger() -> Command {
    Command::new(badger_path())
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
    crate::fixture::workspace_root().join("tests/fixtures").join(rel)
}

/// Starts `badger -f config.json` in `c`'s directory with stdout and stderr piped. Each
/// stdout line goes through `line` on a reader thread; what it returns (`None`: nothing) is
/// sent to the receiver. The join handle gives stderr once badger has exited.
pub fn spawn_lines<T: Send + 'static>(
    c: &TempConfig,
    line: impl Fn(String) -> Option<T> + Send + 'static,
) -> (std::process::Child, std::sync::mpsc::Receiver<T>, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start badger");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if let Some(v) = line(l) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    (child, rx, err)
}

/// [`spawn_lines`] with every stdout line parsed as one JSON object (NDJSON).
pub fn spawn_ndjson(
    c: &TempConfig,
) -> (std::process::Child, std::sync::mpsc::Receiver<serde_json::Value>, std::thread::JoinHandle<String>) {
    spawn_lines(c, |l| Some(serde_json::from_str(&l).expect("stdout is NDJSON")))
}

/// Sends `sig` (`-TERM`, `-HUP` …) to a child with kill(1).
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(ok.success(), "kill {sig} failed");
}
