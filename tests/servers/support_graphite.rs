//! A real carbon-cache (Debian's graphite-carbon) for the Graphite tests: started in a temp
//! dir on free loopback ports, stopped by its PID, and its whisper files read back with
//! Debian's `/usr/bin/python3` and its `whisper` module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const CARBON: &str = "/usr/bin/carbon-cache";
pub const PYTHON: &str = "/usr/bin/python3";

/// Path (relative to the whisper root, without `.wsp`) → its (timestamp, value) points.
pub type Series = BTreeMap<String, Vec<(i64, f64)>>;

/// True when carbon-cache is installed. Without it, the test fails when
/// `BADGER_REQUIRE_SERVERS=1` (scripts/test.sh sets it), and is skipped otherwise.
pub fn carbon_installed(test: &str) -> bool {
    if Path::new(CARBON).exists() && Path::new(PYTHON).exists() {
        return true;
    }
    if std::env::var("BADGER_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{test}: {CARBON} not found: install graphite-carbon (scripts/test.sh does)");
    }
    eprintln!("note: {test} skipped: {CARBON} not found (apt-get install graphite-carbon)");
    false
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Three consecutive free loopback ports (line/UDP, pickle, cache query).
fn free_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) ^ std::process::id();
    for _ in 0..200 {
        let slot = (seed as u16 % 4000).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7)) % 4000;
        let base = 21000 + slot * 3;
        let free = (0..3).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok())
            && UdpSocket::bind(("127.0.0.1", base)).is_ok();
        if free {
            return base;
        }
    }
    panic!("no three free loopback ports found");
}

pub struct Carbon {
    pub dir: tempfile::TempDir,
    /// Line receiver (TCP) and UDP receiver.
    pub port: u16,
    pub pickle_port: u16,
    child: Option<Child>,
}

impl Carbon {
    /// Starts carbon-cache (ENABLE_TAGS false, retention 1s:1h so every point keeps its
    /// own value), or returns None when it is not installed and not required.
    pub fn start(test: &str) -> Option<Carbon> {
        if !carbon_installed(test) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("carbon.").tempdir().expect("tempdir");
        let port = free_ports();
        let mut c = Carbon { dir, port, pickle_port: port + 1, child: None };
        c.write_config();
        c.launch();
        Some(c)
    }

    pub fn whisper_dir(&self) -> PathBuf {
        self.dir.path().join("whisper")
    }

    fn write_config(&self) {
        let d = self.dir.path();
        for sub in ["whisper", "log", "run", "conf"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        std::fs::write(
            d.join("conf/storage-schemas.conf"),
            "[carbon]\npattern = ^carbon\\.\nretentions = 60:90d\n\n[default]\npattern = .*\nretentions = 1s:1h,60s:1d\n",
        )
        .expect("write storage-schemas.conf");
        let dir = d.display();
        let conf = format!(
            "[cache]
STORAGE_DIR = {dir}/
LOCAL_DATA_DIR = {dir}/whisper/
CONF_DIR = {dir}/conf/
LOG_DIR = {dir}/log/
PID_DIR = {dir}/run/
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
ENABLE_UDP_LISTENER = True
UDP_RECEIVER_INTERFACE = 127.0.0.1
UDP_RECEIVER_PORT = {line}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query}
CARBON_METRIC_INTERVAL = 0
LOG_UPDATES = False
LOG_CREATES = True
WHISPER_AUTOFLUSH = True
WHISPER_FALLOCATE_CREATE = False
ENABLE_TAGS = False
TAG_HASH_FILENAMES = False
",
            line = self.port,
            pickle = self.pickle_port,
            query = self.port + 2
        );
        std::fs::write(d.join("conf/carbon.conf"), conf).expect("write carbon.conf");
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("carbon.log")).expect("log");
        let child = Command::new(CARBON)
            .arg(format!("--config={}", d.join("conf/carbon.conf").display()))
            .arg(format!("--pidfile={}", d.join("run/carbon.pid").display()))
            .args(["--debug", "start"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start carbon-cache");
        self.child = Some(child);
        let t = Instant::now();
        loop {
            let up =
                |p: u16| TcpStream::connect_timeout(&([127, 0, 0, 1], p).into(), Duration::from_millis(200)).is_ok();
            if up(self.port) && up(self.pickle_port) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("carbon-cache exited ({status}); log:\n{}", self.log());
                }
            }
            if t.elapsed() > Duration::from_secs(40) {
                panic!("carbon-cache did not come up in 40 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops carbon by its PID (SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same ports and files.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("carbon.log")).unwrap_or_default()
    }

    /// Every whisper file and its points of the last 50 minutes (from the 1 s archive).
    pub fn series(&self) -> Series {
        let script = r#"
import json, os, sys, time, whisper
root = sys.argv[1]
since = int(time.time()) - 3000
out = {}
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith('.wsp'):
            p = os.path.join(d, f)
            (start, end, step), values = whisper.fetch(p, since)
            out[os.path.relpath(p, root)[:-4]] = [[start + i * step, v] for i, v in enumerate(values) if v is not None]
print(json.dumps(out))
"#;
        let o = Command::new(PYTHON).args(["-c", script]).arg(self.whisper_dir()).output().expect("run python3");
        assert!(o.status.success(), "reading whisper files: {}", String::from_utf8_lossy(&o.stderr));
        let v: BTreeMap<String, Vec<(i64, f64)>> = serde_json::from_slice(&o.stdout).expect("whisper json");
        v
    }

    /// Polls the whisper files until `done` holds (carbon's writer flushes about once a
    /// second); panics with what is there and carbon's log after `within`.
    pub fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&Series) -> bool) -> Series {
        let t = Instant::now();
        loop {
            let s = self.series();
            if done(&s) {
                return s;
            }
            if t.elapsed() > within {
                panic!("carbon did not get {what} within {within:?}; whisper: {s:#?}\ncarbon log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
