//! Helpers for the Pulse server tests: start `badger server` on free loopback ports, and a
//! relay client written from the protocol text (not from badger's own relay code).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `badger server` child process; killed (by its own handle) when dropped.
pub struct Server {
    pub child: Child,
    pub tcp: String,
    pub http: String,
    pub dir: PathBuf,
    /// The InfluxDB this server stores into, if any (stopped after the server).
    pub influx: Option<Influxd>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server with `args` (besides -S, -H and --storage) and waits until both
    /// ports answer.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, args);
        s._tmp = Some(tmp);
        s
    }

    pub fn start_in(dir: &std::path::Path, args: &[&str]) -> Server {
        let tcp = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_badger"));
        cmd.args(["server", "-S", &tcp, "-H", &http, "--storage"]).arg(dir).args(args);
        if std::env::var_os("PULSE_TEST_LOG").is_none() {
            cmd.stderr(Stdio::null());
        }
        let child = cmd.stdout(Stdio::null()).spawn().expect("spawn badger server");
        let s = Server { child, tcp, http, dir: dir.to_path_buf(), influx: None, _tmp: None };
        s.wait_port(&s.tcp.clone());
        s
    }

    pub fn wait_port(&self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not listen on {addr}");
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay client from the protocol text: newline-terminated lines over TCP.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        Client { reader: BufReader::new(stream.try_clone().expect("clone")), stream }
    }

    /// Connects and identifies; checks the `ok` and `beat` answers.
    pub fn identify(addr: &str, id: &str, beat: u64) -> Client {
        let mut c = Client::connect(addr);
        c.send(&format!("id {id}"));
        assert_eq!(c.line().as_deref(), Some("ok"));
        assert_eq!(c.line(), Some(format!("beat {beat}")));
        c
    }

    pub fn send(&mut self, line: &str) {
        self.stream.write_all(format!("{line}\n").as_bytes()).expect("write");
    }

    /// The next line, or None on close or timeout.
    pub fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.reader.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches('\n').to_string()),
        }
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("timeout");
    }

    /// True if the server closed the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
            || matches!(self.reader.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }

    /// Waits for one `get` (at most `timeout`), answers it and returns its names.
    pub fn answer_one_get(&mut self, timeout: Duration, f: impl Fn(&str) -> String) -> Option<String> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            self.set_timeout((until - Instant::now()).max(Duration::from_millis(10)));
            let l = self.line()?;
            if let Some(names) = l.strip_prefix("get ") {
                let items: Vec<String> = names.split(',').map(|n| format!("{n}-{n}:{}", f(n))).collect();
                self.send(&format!("got {}", items.join(",")));
                return Some(names.to_string());
            }
        }
        None
    }

    /// Answers `get` lines with values from `f(name)` until `until`; returns the gets seen.
    pub fn answer_gets(&mut self, until: Instant, f: impl Fn(&str) -> String) -> Vec<String> {
        let mut seen = Vec::new();
        while Instant::now() < until {
            self.set_timeout((until - Instant::now()).max(Duration::from_millis(10)));
            let Some(l) = self.line() else { break };
            if let Some(names) = l.strip_prefix("get ") {
                let items: Vec<String> = names.split(',').map(|n| format!("{n}-{n}:{}", f(n))).collect();
                self.send(&format!("got {}", items.join(",")));
                seen.push(names.to_string());
            }
        }
        seen
    }
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().disable_verification(true).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// One request; `token` goes in the X-AUTH-TOKEN header.
pub fn request(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    let agent = agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("X-AUTH-TOKEN", t);
    }
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body.unwrap_or("").to_string()).expect("request");
    let mut resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}

impl Server {
    pub fn get(&self, path: &str) -> Reply {
        request("GET", &format!("http://{}{path}", self.http), Some("secret"), None)
    }

    /// Polls `path` until it answers 200 (at most 10 s).
    pub fn get_ok(&self, path: &str) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(path);
            if r.status == 200 || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A request a [`FakeHttp`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// A tiny HTTP/1.1 server on loopback that records every request and answers 200 `{}`
/// (or `status` while set): stands in for Kapacitor, InfluxDB or an alert receiver.
pub struct FakeHttp {
    pub addr: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeHttp {
    pub fn start() -> FakeHttp {
        use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
        use std::sync::{Arc, Mutex};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2, stop2) = (seen.clone(), status.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                s2.lock().unwrap().push(Recorded { method, path, body: String::from_utf8_lossy(&body).into_owned() });
                let code = st2.load(Ordering::Relaxed);
                let text = if code == 200 { "{}" } else { "{\"error\":\"nope\"}" };
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            }
        });
        FakeHttp { addr, seen, status, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until a request matching `f` arrived (at most `timeout`).
    pub fn wait_for(&self, timeout: Duration, f: impl Fn(&Recorded) -> bool) -> Option<Recorded> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(r) = self.requests().into_iter().find(|r| f(r)) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A real InfluxDB 1.x (Debian's `influxd`) on free loopback ports, in a temp dir; stopped
/// (by its own handle) when dropped.
pub struct Influxd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts influxd; `None` (the test skips) when it is not installed, unless
    /// `BADGER_REQUIRE_SERVERS=1`, where that is a failure.
    pub fn start() -> Option<Influxd> {
        let found = Command::new("influxd").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            assert!(
                std::env::var("BADGER_REQUIRE_SERVERS").as_deref() != Ok("1"),
                "influxd is not installed (apt-get install influxdb) and BADGER_REQUIRE_SERVERS=1"
            );
            eprintln!("influxd not installed: skipping");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // Two ports: HTTP, and the RPC/backup bind address.
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "reporting-enabled = false\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[monitor]\n  store-enabled = false\n[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n[continuous_queries]\n  run-interval = \"1s\"\n[logging]\n  level = \"warn\"\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).expect("conf");
        let child = Command::new("influxd")
            .args(["run", "-config"])
            .arg(dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd");
        let url = format!("http://127.0.0.1:{http}");
        let i = Influxd { child, url, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(format!("127.0.0.1:{http}")).is_ok()
                && request("GET", &format!("{}/ping", i.url), None, None).status == 204
            {
                return Some(i);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("influxd did not come up");
    }

    /// Runs InfluxQL against `statistics`, returns the JSON answer.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let url = format!("{}/query?db=statistics&epoch=ms&q={}", self.url, urlencode(q));
        request("GET", &url, None, None).json()
    }

    /// Writes line protocol into `statistics` with the retention policy `rp`.
    pub fn write(&self, rp: &str, lines: &str) {
        let r = request("POST", &format!("{}/write?db=statistics&rp={rp}&precision=ms", self.url), None, Some(lines));
        assert_eq!(r.status, 204, "{}", r.body);
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Which storage a test runs against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Store {
    Embedded,
    Influx,
}

impl Store {
    /// A server on this storage; `None` when InfluxDB is wanted but not installed.
    pub fn server(self, args: &[&str]) -> Option<Server> {
        match self {
            Store::Embedded => Some(Server::start(args)),
            Store::Influx => {
                let influx = Influxd::start()?;
                let mut a: Vec<&str> = args.to_vec();
                a.extend(["-i", influx.url.as_str()]);
                let mut s = Server::start(&a);
                s.influx = Some(influx);
                Some(s)
            }
        }
    }
}
