//! A real OpenTelemetry collector for the tests: Rotel (`rotel/rotel-agent`, an OTLP
//! collector written in Rust), and the test receiver it re-exports to
//! (`tests/servers/otlp_receiver.py`, decoding with the official OTLP protobuf definitions).
//! Both come from `BADGER_OTLP_PKG`, the directory scripts/test.sh installs the pinned wheels
//! of `otlp-requirements.txt` into. Both run on free loopback ports and are stopped by PID.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// The wheel directory, or `None` (with a note) when the test should be skipped.
/// With `BADGER_REQUIRE_SERVERS=1` (scripts/test.sh sets it) a missing one fails the test.
pub fn otlp_pkg() -> Option<PathBuf> {
    match std::env::var_os("BADGER_OTLP_PKG") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.join("rotel/rotel-agent").is_file(), "BADGER_OTLP_PKG={}: no rotel/rotel-agent", p.display());
            Some(p)
        }
        _ => {
            let required = std::env::var("BADGER_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "BADGER_OTLP_PKG is not set but BADGER_REQUIRE_SERVERS=1: scripts/test.sh installs Rotel and \
                 opentelemetry-proto (tests/servers/otlp-requirements.txt) and sets BADGER_OTLP_PKG"
            );
            eprintln!("note: BADGER_OTLP_PKG is not set: skipping this test against a real OTLP collector");
            None
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

/// The test receiver: every request and data point it got, as JSON lines in a file.
pub struct Receiver {
    child: Child,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// `answers`: see the script's docs (`"200"`, `"400"`, `"503:2,200"`, `"partial:5"`).
    pub fn start(pkg: &Path, answers: &str) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--out", out.to_str().expect("utf-8 path"), "--answers", answers])
            .env("PYTHONPATH", pkg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 otlp_receiver.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read the receiver's port");
        let port = match line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None => {
                let _ = child.kill();
                panic!("otlp_receiver.py said {line:?} instead of its port");
            }
        };
        Receiver { child, port, out, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<Json> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("receiver line is JSON")).collect()
    }

    pub fn requests(&self) -> Vec<Json> {
        self.lines().into_iter().filter(|l| l["kind"] == "request").collect()
    }

    pub fn points(&self) -> Vec<Json> {
        self.lines().into_iter().filter(|l| l["kind"] == "point").collect()
    }

    /// Waits until `done(points)` holds; panics after `within`.
    pub fn wait_points(&self, within: Duration, what: &str, done: impl Fn(&[Json]) -> bool) -> Vec<Json> {
        let until = Instant::now() + within;
        loop {
            let p = self.points();
            if done(&p) {
                return p;
            }
            assert!(Instant::now() < until, "{what}: not there after {within:?}; {} points so far", p.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_requests(&self, n: usize, within: Duration) -> Vec<Json> {
        let until = Instant::now() + within;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(Instant::now() < until, "{n} requests not there after {within:?}: {}", r.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Rotel collector: OTLP/HTTP in on `http_port`, re-exported over OTLP/HTTP to `to`.
pub struct Rotel {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    dir: tempfile::TempDir,
}

impl Rotel {
    pub fn start(pkg: &Path, to: &str) -> Rotel {
        Rotel::start_on(pkg, to, free_port(), free_port())
    }

    /// Starts on the given ports (a restart after an outage keeps the address).
    pub fn start_on(pkg: &Path, to: &str, http_port: u16, grpc_port: u16) -> Rotel {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("stdout.log")).expect("log");
        let mut cmd = Command::new(pkg.join("rotel/rotel-agent"));
        // Rotel reads ROTEL_* variables: none may leak in from the environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROTEL_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("start")
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--exporter", "otlp", "--otlp-exporter-endpoint", to, "--otlp-exporter-protocol", "http"])
            .args(["--pid-file", dir.path().join("rotel.pid").to_str().expect("utf-8")])
            .args(["--log-file", dir.path().join("rotel.log").to_str().expect("utf-8")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rotel-agent");
        let mut r = Rotel { child, http_port, grpc_port, dir };
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if TcpStream::connect(("127.0.0.1", http_port)).is_ok() {
                return r;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rotel-agent exited ({status}); its output:\n{}", r.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = r.log_text();
        panic!("rotel-agent did not listen on {http_port}; its output:\n{text}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn log_text(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.path().join("rotel.log")).unwrap_or_default());
        s
    }

    /// Stops it with SIGTERM (by PID), so it exports what it holds, and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[[k, v], …]` of a receiver line as pairs of strings.
pub fn pairs(v: &Json) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let k = kv[0].as_str().unwrap_or_default().to_string();
                    let v = match &kv[1] {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect()
        })
        .unwrap_or_default()
}
