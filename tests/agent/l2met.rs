//! The l2met module in the real binary, on 127.0.0.1 only: the HTTP drain (logplex frames,
//! HTTP Basic auth), the syslog listeners (UDP and TCP, RFC 5424 and RFC 3164), tailed files
//! (remembered offsets across a restart), a SIGHUP reload that keeps the ports, and --check.
//! Lines carry the current time, so the buckets (resolution 1 s) close while the test waits.

use badger_test_support::process as common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The current time as RFC 3339 (UTC).
fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn frame(procid: &str, msg: &str) -> String {
    let body = format!("<190>1 {} host app {procid} - {msg}", now_rfc3339());
    format!("{} {body}", body.len())
}

struct Badger {
    child: Child,
    rx: mpsc::Receiver<serde_json::Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Badger {
    fn start(c: &TempConfig) -> Badger {
        let (child, rx, err) = common::spawn_ndjson(c);
        Badger { child, rx, stderr: Some(err) }
    }

    fn signal(&self, sig: &str) {
        common::signal(&self.child, sig);
    }

    /// Stops it with SIGTERM; returns its stderr.
    fn stop(mut self) -> String {
        self.signal("-TERM");
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(10), "badger did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr.take().unwrap().join().unwrap()
    }

    /// Collects `name → (units, value)` of every point until `done` says so (15 s at most).
    fn collect_until(&self, done: impl Fn(&HashMap<String, (String, serde_json::Value)>) -> bool) -> Stats {
        let mut seen = HashMap::new();
        let t = Instant::now();
        while !done(&seen) {
            assert!(t.elapsed() < Duration::from_secs(15), "timed out; saw {seen:#?}");
            let Ok(doc) = self.rx.recv_timeout(Duration::from_millis(200)) else { continue };
            for p in doc["points"].as_array().unwrap() {
                let (name, v) = p.as_object().unwrap().iter().next().unwrap();
                let units = v["units"].as_str().unwrap().to_string();
                // Sums of several payloads for counters (a bucket may close in two ticks).
                let value = match (seen.get(name), &v["value"]) {
                    (Some((_, serde_json::Value::Number(old))), serde_json::Value::Number(new))
                        if name.starts_with("l2met.") && !name.starts_with("l2met_") =>
                    {
                        serde_json::json!(old.as_f64().unwrap() + new.as_f64().unwrap())
                    }
                    _ => v["value"].clone(),
                };
                seen.insert(name.clone(), (units, value));
            }
        }
        Stats(seen)
    }
}

impl Drop for Badger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stats(HashMap<String, (String, serde_json::Value)>);

impl Stats {
    fn get(&self, name: &str) -> (&str, f64) {
        let (u, v) = self.0.get(name).unwrap_or_else(|| panic!("no {name} in {:#?}", self.0));
        (u.as_str(), v.as_f64().unwrap())
    }
}

fn config(l2met: &str) -> TempConfig {
    TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": ""}, "modules": ["l2met"], "emitters": ["stdout"]}"#,
        &[("l2met", l2met)],
    )
}

fn post(port: u16, target: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/logplex-1\r\nLogplex-Msg-Count: 1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// Waits until something accepts on the port.
fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// base64("tok:") and base64("tok")
const AUTH: &str = "Basic dG9rOg==";

#[test]
fn http_drain_end_to_end() {
    let port = free_port();
    let c = config(&format!(r#"{{"listen": "127.0.0.1:{port}", "tokens": ["tok"]}}"#));
    let b = Badger::start(&c);
    wait_listening(port);
    assert_eq!(post(port, "/logs", None, "").0, 401);
    assert_eq!(post(port, "/logs", Some("Bearer x"), "").0, 400);
    assert_eq!(post(port, "/logs", Some("Basic d3Jvbmc6"), ""), (400, "Invalid Request".into()));
    let body = [
        frame(
            "web.1",
            "measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1",
        ),
        frame("router", "at=info host=l2met.net connect=1ms service=4ms bytes=10"),
        frame("web.2", "measure.a measure#b=0.5s count#c=-3 measure#d=abc sample#e=1.5.3ms"),
    ]
    .concat();
    assert_eq!(post(port, "/logs?resolution=1&prefix=app", Some(AUTH), &body), (200, String::new()));
    let s = b.collect_until(|s| {
        [
            "l2met.app.db.latency.perc99.db1",
            "l2met.app.router.bytes.count",
            "l2met.app.e",
            "l2met_receiver.requests_per_sec",
        ]
        .iter()
        .all(|n| s.contains_key(*n))
    });
    assert_eq!(s.get("l2met.app.db.latency.count.db1"), ("", 2.0));
    assert_eq!(s.get("l2met.app.db.latency.sum.db1"), ("ms", 14.0));
    assert_eq!(s.get("l2met.app.db.latency.min.db1"), ("ms", 4.0));
    assert_eq!(s.get("l2met.app.db.latency.max.db1"), ("ms", 10.0));
    assert_eq!(s.get("l2met.app.db.latency.mean.db1"), ("ms", 7.0));
    assert_eq!(s.get("l2met.app.db.latency.median.db1"), ("ms", 10.0));
    assert_eq!(s.get("l2met.app.db.vaccum.db1"), ("", 1.0));
    assert_eq!(s.get("l2met.app.db.size.db1"), ("GB", 100.0));
    assert_eq!(s.get("l2met.app.router.connect.sum"), ("ms", 1.0));
    assert_eq!(s.get("l2met.app.router.service.perc95"), ("ms", 4.0));
    assert_eq!(s.get("l2met.app.router.bytes.max"), ("", 10.0));
    assert_eq!(s.get("l2met.app.a.sum"), ("", 1.0));
    assert_eq!(s.get("l2met.app.b.sum"), ("s", 0.5));
    assert_eq!(s.get("l2met.app.e"), ("ms", 1.5));
    assert!(!s.0.keys().any(|k| k.contains(".c.") || k.ends_with(".c") || k.contains(".d.")), "{:#?}", s.0);
    let err = b.stop();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn syslog_udp_and_tcp_end_to_end() {
    let (udp, tcp) = (free_udp_port(), free_port());
    let c =
        config(&format!(r#"{{"syslog_udp": "127.0.0.1:{udp}", "syslog_tcp": "127.0.0.1:{tcp}", "resolution": 1}}"#));
    let b = Badger::start(&c);
    wait_listening(tcp);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let m5424 = format!("<134>1 {} host app web.1 - - count#u5424=2 source=s1", now_rfc3339());
    u.send_to(m5424.as_bytes(), ("127.0.0.1", udp)).unwrap();
    u.send_to(b"<134>Jul 22 00:06:29 host app[router]: connect=3ms", ("127.0.0.1", udp)).unwrap();
    let mut t = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let t5424 = format!("<134>1 {} host app web.1 - - count#t5424=5", now_rfc3339());
    writeln!(t, "{} {t5424}<134>Jul 22 00:06:29 host app: sample#t3164=7kB", t5424.len()).unwrap();
    drop(t);
    let s = b.collect_until(|s| {
        ["l2met.u5424.s1", "l2met.router.connect.sum", "l2met.t5424", "l2met.t3164"].iter().all(|n| s.contains_key(*n))
    });
    assert_eq!(s.get("l2met.u5424.s1"), ("", 2.0));
    assert_eq!(s.get("l2met.router.connect.sum"), ("ms", 3.0));
    assert_eq!(s.get("l2met.t5424"), ("", 5.0));
    assert_eq!(s.get("l2met.t3164"), ("kB", 7.0));
    b.stop();
}

#[test]
fn tailed_files_resume_after_a_restart() {
    // Relative paths are relative to the conf file's directory (conf.d).
    let c = config(r#"{"files": ["../logs/*.log"], "state_dir": "../state", "resolution": 1, "from_beginning": true}"#);
    c.write("logs/app.log", "count#old=1\n");
    let log = c.dir.path().join("logs/app.log");
    let append =
        |s: &str| std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(s.as_bytes()).unwrap();
    let b = Badger::start(&c);
    let s = b.collect_until(|s| s.contains_key("l2met.old"));
    assert_eq!(s.get("l2met.old"), ("", 1.0));
    append("count#one=1\n");
    let s = b.collect_until(|s| s.contains_key("l2met.one"));
    assert_eq!(s.get("l2met.one"), ("", 1.0));
    b.stop();
    let state = std::fs::read_to_string(c.dir.path().join("state/l2met-offsets.json")).expect("offsets saved");
    assert!(state.contains("app.log"), "{state}");
    // Written while badger was stopped: read after the restart, and nothing twice.
    append("count#two=2\n");
    let b = Badger::start(&c);
    let s = b.collect_until(|s| s.contains_key("l2met.two"));
    assert_eq!(s.get("l2met.two"), ("", 2.0));
    std::thread::sleep(Duration::from_millis(2500));
    let s2 = b.collect_until(|s| s.contains_key("l2met_receiver.buckets"));
    for seen in [&s.0, &s2.0] {
        assert!(!seen.contains_key("l2met.one") && !seen.contains_key("l2met.old"), "read twice: {seen:#?}");
    }
    b.stop();
}

#[test]
fn sighup_with_changed_settings_keeps_the_port() {
    let port = free_port();
    let c = config(&format!(r#"{{"listen": "127.0.0.1:{port}", "tokens": ["tok"]}}"#));
    let b = Badger::start(&c);
    wait_listening(port);
    c.write("conf.d/l2met.conf", &format!(r#"{{"listen": "127.0.0.1:{port}", "tokens": ["tok"], "prefix": "new"}}"#));
    b.signal("-HUP");
    // The rebuilt instance serves the same port; its prefix shows it is the new one.
    let t = Instant::now();
    loop {
        assert_eq!(post(port, "/logs?resolution=1", Some(AUTH), &frame("web.1", "count#after=1")).0, 200);
        let s = b.collect_until(|s| s.contains_key("l2met_receiver.buckets"));
        if s.0.contains_key("l2met.new.after") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "the reloaded instance never answered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let err = b.stop();
    assert!(err.contains("reloaded"), "{err}");
    assert!(!err.contains("skipped"), "{err}");
}

#[test]
fn check_reports_config_errors_and_ports_in_use() {
    let c = config("{\n  \"listen\": \"127.0.0.1:1\",\n  \"tokens\": []\n}");
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("l2met.conf, line 3, key \"tokens\""), "{}", stderr(&o));
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let c = config(&format!(r#"{{"listen": "127.0.0.1:{port}", "tokens": "tok"}}"#));
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("module l2met: every tick, "), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("would be skipped: listen 127.0.0.1:{port}: ")), "{}", stdout(&o));
}
