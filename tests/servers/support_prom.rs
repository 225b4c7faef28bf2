//! Real Prometheus tools for the tests (Debian `prometheus`: the server and promtool;
//! `prometheus-pushgateway`), started on free loopback ports in temp dirs and stopped by
//! their PID; and a small fake HTTP server that records what it is sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// True when `bin` is installed. Without it the test fails when `BADGER_REQUIRE_SERVERS=1`
/// (scripts/test.sh sets it) and is skipped with a note otherwise.
pub fn installed(test: &str, bin: &str, package: &str) -> bool {
    if Path::new(bin).exists() {
        return true;
    }
    if std::env::var("BADGER_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{test}: {bin} not found: install {package} (scripts/test.sh does)");
    }
    eprintln!("note: {test} skipped: {bin} not found (apt-get install {package})");
    false
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// GET with a timeout: (status, content type, body).
pub fn get(url: &str) -> (u16, String, String) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET with a timeout, or why it failed.
pub fn try_get(url: &str) -> Result<(u16, String, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().map_err(|e| e.to_string())?;
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    Ok((r.status().as_u16(), ct, body))
}

/// Polls `f` every 100 ms until it gives `Some`, or panics with `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t.elapsed() > within {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `promtool check metrics` on a body: (passed, what it printed).
pub fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write to promtool");
    let o = child.wait_with_output().expect("promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

/// A child process stopped by its PID when dropped.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn spawn(name: &str, bin: &str, args: &[String], dir: tempfile::TempDir, port: u16, ready: &str) -> Daemon {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut d = Daemon { dir, port, child, log };
        let url = format!("http://127.0.0.1:{port}{ready}");
        let t = Instant::now();
        loop {
            if try_get(&url).is_ok_and(|r| r.0 == 200) {
                break;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("{name} exited ({status}); log:\n{}", d.log());
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!("{name} was not ready in 30 s; log:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A real Prometheus server scraping `target` (`host:port`) at `path` every second.
    pub fn prometheus(target: &str, path: &str) -> Daemon {
        let dir = tempfile::Builder::new().prefix("prometheus.").tempdir().expect("tempdir");
        let port = free_port();
        let conf = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: badger\n    metrics_path: {path}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), conf).expect("prometheus.yml");
        let args = vec![
            format!("--config.file={}", dir.path().join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_string(),
        ];
        Daemon::spawn("prometheus", PROMETHEUS, &args, dir, port, "/-/ready")
    }

    /// The real node_exporter with its default collectors.
    pub fn node_exporter() -> Daemon {
        Daemon::node_exporter_with(&[])
    }

    /// node_exporter with more command-line flags (`--collector.textfile.directory=…`).
    pub fn node_exporter_with(extra: &[String]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("node_exporter.").tempdir().expect("tempdir");
        let port = free_port();
        let mut args = vec![format!("--web.listen-address=127.0.0.1:{port}"), "--log.level=warn".to_string()];
        args.extend(extra.iter().cloned());
        Daemon::spawn("node_exporter", NODE_EXPORTER, &args, dir, port, "/metrics")
    }

    /// A real Prometheus server that accepts remote write at `/api/v1/write` and scrapes
    /// nothing.
    pub fn remote_write_receiver() -> Daemon {
        Daemon::remote_write_receiver_in(
            tempfile::Builder::new().prefix("prometheus.").tempdir().expect("tempdir"),
            free_port(),
        )
    }

    /// The same, on a given directory and port (a restart keeps its data).
    pub fn remote_write_receiver_in(dir: tempfile::TempDir, port: u16) -> Daemon {
        std::fs::write(dir.path().join("prometheus.yml"), "global:\n  evaluation_interval: 1s\n")
            .expect("prometheus.yml");
        let args = vec![
            format!("--config.file={}", dir.path().join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
            "--log.level=warn".to_string(),
        ];
        Daemon::spawn("prometheus", PROMETHEUS, &args, dir, port, "/-/ready")
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s) and gives back its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let dir = tempfile::Builder::new().prefix("moved.").tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// A real Pushgateway, without persistence.
    pub fn pushgateway() -> Daemon {
        let dir = tempfile::Builder::new().prefix("pushgateway.").tempdir().expect("tempdir");
        let port = free_port();
        let args = vec![format!("--web.listen-address=127.0.0.1:{port}"), "--log.level=warn".to_string()];
        Daemon::spawn("pushgateway", PUSHGATEWAY, &args, dir, port, "/-/ready")
    }
}

impl Daemon {
    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A request the fake server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the fake server answers: (status line such as "200 OK", headers, body), after a delay.
pub struct Answer {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Answer {
    pub fn text(status: &'static str, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "text/plain; version=0.0.4; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Received) -> Answer + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server on a loopback port, answering with
/// `handler` on a thread per connection, recording every request.
pub struct FakeServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, st) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, r) = (handler.clone(), reqs.clone());
                        std::thread::spawn(move || serve_one(stream, &*h, &r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer { port, requests, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Received>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let req = Received { method, path, headers, body };
    requests.lock().unwrap().push(req.clone());
    let answer = handler(&req);
    std::thread::sleep(answer.delay);
    let mut out =
        format!("HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n", answer.status, answer.body.len());
    for (k, v) in &answer.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut s = stream;
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(&answer.body);
    let _ = s.flush();
}
