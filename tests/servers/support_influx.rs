//! A real InfluxDB 1.x (Debian's `influxd`) for the tests: started on a free loopback port in
//! a temp dir, stopped by its PID. Also a tiny HTTP server that records requests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// True when `influxd` can be run. Without it, a test is skipped, unless
/// `BADGER_REQUIRE_SERVERS=1` (scripts/test.sh sets it), where it fails.
pub fn influxd_available(test: &str) -> bool {
    let found = Command::new("influxd")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("BADGER_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{test}: influxd not found: install influxdb (scripts/test.sh does)");
    }
    eprintln!("{test}: skipped: influxd not found (apt-get install influxdb influxdb-client, or run scripts/test.sh)");
    false
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One influxd process on 127.0.0.1:`port`, its data in `dir`.
pub struct Influxd {
    pub port: u16,
    pub dir: PathBuf,
    /// Admin credentials when started with auth.
    pub auth: Option<(String, String)>,
    child: Option<Child>,
}

impl Influxd {
    /// Starts influxd and waits until `/ping` answers. With `auth`, HTTP auth is on and an
    /// admin user with that name and password is created.
    pub fn start(dir: &Path, port: u16, auth: Option<(&str, &str)>) -> Influxd {
        std::fs::create_dir_all(dir).expect("influx dir");
        let conf = format!(
            r#"reporting-enabled = false
bind-address = "127.0.0.1:0"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = {auth}
[logging]
  level = "warn"
"#,
            d = dir.display(),
            auth = auth.is_some()
        );
        std::fs::write(dir.join("influxdb.conf"), conf).expect("influxdb.conf");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("influxd.log")).expect("influxd.log");
        let err = log.try_clone().expect("log clone");
        let child = Command::new("influxd")
            .args(["run", "-config"])
            .arg(dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start influxd");
        let mut s = Influxd {
            port,
            dir: dir.to_path_buf(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            child: Some(child),
        };
        let t = Instant::now();
        loop {
            if let Ok(r) = agent().get(&format!("{}/ping", s.url())).call() {
                if r.status().as_u16() == 204 {
                    break;
                }
            }
            if let Some(c) = &mut s.child {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(dir.join("influxd.log")).unwrap_or_default();
                    panic!("influxd exited ({status}) on port {port}:\n{log}");
                }
            }
            assert!(t.elapsed() < Duration::from_secs(15), "influxd did not answer /ping on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some((u, p)) = auth {
            // With auth on and no user yet, influxd takes the first admin without credentials.
            let q = format!("CREATE USER \"{u}\" WITH PASSWORD '{p}' WITH ALL PRIVILEGES");
            let r = agent().post(&format!("{}/query", s.url())).send_form([("q", q.as_str())]).expect("create admin");
            assert_eq!(r.status().as_u16(), 200);
        }
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM by PID, then waits for it to exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs InfluxQL (`epoch=s`), as the admin when auth is on; returns the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let mut req = agent().post(&format!("{}/query", self.url()));
        if let Some((u, p)) = &self.auth {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("Authorization", &format!("Basic {basic}"));
        }
        let mut r = req.send_form([("db", db), ("epoch", "s"), ("q", q)]).expect("query");
        let text = r.body_mut().read_to_string().expect("query body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("query {q}: {e}: {text}"))
    }

    /// The values of the first series of the first result (empty when none, or when the
    /// database does not exist yet).
    pub fn rows(&self, db: &str, q: &str) -> Vec<Vec<serde_json::Value>> {
        let v = self.query(db, q);
        let error = &v["results"][0]["error"];
        if error.as_str().is_some_and(|e| e.starts_with("database not found")) {
            return Vec::new();
        }
        assert!(error.is_null(), "{q}: {v}");
        v["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
            .unwrap_or_default()
    }

    /// The columns of the first series of the first result.
    pub fn columns(&self, db: &str, q: &str) -> Vec<String> {
        let v = self.query(db, q);
        v["results"][0]["series"][0]["columns"]
            .as_array()
            .map(|c| c.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// One column of every row, as strings.
    pub fn column(&self, db: &str, q: &str) -> Vec<String> {
        self.rows(db, q)
            .iter()
            .map(|r| match &r[0] {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect()
    }

    /// The timestamps of `SELECT <field> FROM <measurement>`.
    pub fn times(&self, db: &str, measurement: &str, field: &str) -> Vec<i64> {
        self.rows(db, &format!("SELECT \"{field}\" FROM \"{measurement}\""))
            .iter()
            .filter_map(|r| r.first().and_then(|t| t.as_i64()))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("influxd.log")).unwrap_or_default()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into()
}

/// A request as the tiny server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query string.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body, gunzipped when `Content-Encoding: gzip`.
    pub fn text(&self) -> String {
        if self.header("content-encoding") == Some("gzip") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&self.body[..]).read_to_string(&mut s).expect("gunzip");
            s
        } else {
            String::from_utf8(self.body.clone()).expect("utf-8 body")
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that records every request and answers each with the
/// next of `answers` (status, body), the last one over and over.
pub struct Recorder {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    pub fn start(answers: Vec<(u16, &'static str)>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen = requests.clone();
        let answered = Arc::new(Mutex::new(0usize));
        let answers = Arc::new(answers);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (seen, answered, answers) = (seen.clone(), answered.clone(), answers.clone());
                // One thread per connection; a connection may carry several requests.
                std::thread::spawn(move || {
                    let Ok(read_half) = stream.try_clone() else { return };
                    let mut reader = BufReader::new(read_half);
                    let mut writer = stream;
                    while let Some(req) = read_request(&mut reader) {
                        let (status, body) = {
                            let mut n = answered.lock().expect("lock");
                            let a = answers[(*n).min(answers.len() - 1)];
                            *n += 1;
                            seen.lock().expect("lock").push(req);
                            a
                        };
                        let _ = write!(
                            writer,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = writer.flush();
                    }
                });
            }
        });
        Recorder { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, target, headers, body })
}
