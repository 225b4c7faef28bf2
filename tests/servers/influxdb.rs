//! The `influxdb` emitter against a real InfluxDB 1.6 (Debian's `influxd`, started here on a
//! free loopback port), and the exact shape of its requests against a tiny local HTTP server.
//! Without `influxd` the server tests are skipped, or fail under `BADGER_REQUIRE_SERVERS=1`.

use crate::support_influx;
use badger_test_support::process as common;

use std::path::Path;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::influxdb::InfluxDb;
use serde_json::json;

use common::*;
use support_influx::*;

const T0: i64 = 1_700_000_000;

fn meta() -> Arc<HostMeta> {
    Arc::new(HostMeta {
        datacenter: "dc1".into(),
        cluster: "c1".into(),
        hostname: "h1".into(),
        ipv4: "10.0.0.1".into(),
        ..HostMeta::default()
    })
}

fn emitter(conf: &str) -> InfluxDb {
    let conf = PluginConf::from_text("influxdb", Path::new("conf.d/influxdb.conf"), conf);
    match InfluxDb::from_conf(&conf) {
        Ok(e) => e,
        Err(e) => panic!("config: {e}"),
    }
}

fn emit(e: &mut InfluxDb, payloads: Vec<Payload>) {
    let payloads: Vec<Arc<Payload>> = payloads.into_iter().map(Arc::new).collect();
    let blacklist = Matcher::default();
    e.emit(&Batch::new(&payloads, &blacklist)).expect("emit");
}

fn flush(e: &mut InfluxDb) {
    e.flush(Instant::now() + Duration::from_secs(5)).expect("flush");
}

fn sample(ts: i64, k: f64) -> Payload {
    Payload {
        meta: meta(),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(0.5 * k)),
            Point::simple("load", "five", "", Value::Float(1.0)),
            Point::simple("load", "runnable_entities", "", Value::Int(2)),
            Point::device("disk", "reads", "", "device", "sda", Value::Float(1.5 * k)),
            Point::device("disk", "reads", "", "device", "my disk,1=x", Value::Float(2.0)),
            Point::device("disk", "io", "", "device", "sda", Value::Int(0)),
            Point::simple("cpu", "user", "percent", Value::Float(7.25)),
            Point::device("cpu", "user", "percent", "cpu", "cpu0", Value::Float(9.0 * k)),
        ],
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn writes_and_reads_back_with_and_without_gzip() {
    if !influxd_available("writes_and_reads_back_with_and_without_gzip") {
        return;
    }
    let dir = tmp();
    let server = Influxd::start(dir.path(), free_port(), None);
    for (gzip, db) in [(true, "gz_on"), (false, "gz_off")] {
        let mut e = emitter(&format!(r#"{{"url": "{}", "database": "{db}", "gzip": {gzip}}}"#, server.url()));
        emit(&mut e, vec![sample(T0, 1.0)]);
        emit(&mut e, vec![sample(T0 + 1, 2.0)]);
        flush(&mut e);
        let stats = e.stats();
        assert_eq!(stats.sent_records.load(Ordering::Relaxed), 2, "{db}");
        assert_eq!(stats.sent_points.load(Ordering::Relaxed), 16, "{db}");

        assert_eq!(server.column(db, "SHOW MEASUREMENTS"), ["cpu", "disk", "load"], "{db}");
        assert_eq!(
            server.rows(db, "SHOW FIELD KEYS FROM \"load\""),
            [
                [json!("five"), json!("float")],
                [json!("one"), json!("float")],
                [json!("runnable_entities"), json!("integer")]
            ]
        );
        assert_eq!(
            server.rows(db, "SHOW FIELD KEYS FROM \"disk\""),
            [[json!("io"), json!("integer")], [json!("reads"), json!("float")]]
        );
        // Empty metadata (region, zone) is not a tag.
        assert_eq!(server.column(db, "SHOW TAG KEYS FROM \"load\""), ["cluster", "datacenter", "host"]);
        assert_eq!(
            server.rows(db, "SHOW TAG VALUES FROM \"disk\" WITH KEY = \"device\""),
            [[json!("device"), json!("my disk,1=x")], [json!("device"), json!("sda")]]
        );
        // InfluxDB's JSON prints a whole float without a fraction (`1`); the types are the
        // ones SHOW FIELD KEYS gave above.
        assert_eq!(
            server.columns(db, "SELECT * FROM \"load\""),
            ["time", "cluster", "datacenter", "five", "host", "one", "runnable_entities"]
        );
        assert_eq!(
            server.rows(db, "SELECT * FROM \"load\""),
            [
                [json!(T0), json!("c1"), json!("dc1"), json!(1), json!("h1"), json!(0.5), json!(2)],
                [json!(T0 + 1), json!("c1"), json!("dc1"), json!(1), json!("h1"), json!(1), json!(2)]
            ]
        );
        assert_eq!(
            server.rows(db, "SELECT \"reads\", \"io\" FROM \"disk\" WHERE \"device\" = 'sda'"),
            [[json!(T0), json!(1.5), json!(0)], [json!(T0 + 1), json!(3), json!(0)]]
        );
        assert_eq!(
            server.rows(db, "SELECT \"reads\" FROM \"disk\" WHERE \"device\" = 'my disk,1=x'"),
            [[json!(T0), json!(2)], [json!(T0 + 1), json!(2)]]
        );
        assert_eq!(
            server.rows(db, "SELECT \"user\" FROM \"cpu\" WHERE \"cpu\" = 'cpu0'"),
            [[json!(T0), json!(9)], [json!(T0 + 1), json!(18)]]
        );
        assert_eq!(
            server.rows(db, "SELECT \"user\" FROM \"cpu\" WHERE \"cpu\" = ''"),
            [[json!(T0), json!(7.25)], [json!(T0 + 1), json!(7.25)]]
        );
    }
}

#[test]
fn telegraf_names_reach_the_server() {
    if !influxd_available("telegraf_names_reach_the_server") {
        return;
    }
    let dir = tmp();
    let server = Influxd::start(dir.path(), free_port(), None);
    let mut e = emitter(&format!(r#"{{"url": "{}", "database": "tg", "naming": "telegraf"}}"#, server.url()));
    let mut p = sample(T0, 1.0);
    p.points.push(Point::simple("mem", "memtotal", "B", Value::Int(1 << 30)));
    emit(&mut e, vec![p]);
    flush(&mut e);
    assert_eq!(server.column("tg", "SHOW MEASUREMENTS"), ["cpu", "diskio", "mem", "system"]);
    assert_eq!(
        server.rows("tg", "SELECT \"usage_user\" FROM \"cpu\" WHERE \"cpu\" = 'cpu-total'"),
        [[json!(T0), json!(7.25)]]
    );
    assert_eq!(server.rows("tg", "SELECT \"usage_user\" FROM \"cpu\" WHERE \"cpu\" = 'cpu0'"), [[json!(T0), json!(9)]]);
    assert_eq!(server.rows("tg", "SELECT \"load1\", \"load5\" FROM \"system\""), [[json!(T0), json!(0.5), json!(1)]]);
    assert_eq!(server.column("tg", "SHOW TAG KEYS FROM \"diskio\""), ["cluster", "datacenter", "host", "name"]);
    assert_eq!(
        server.rows("tg", "SELECT \"reads\", \"iops_in_progress\" FROM \"diskio\" WHERE \"name\" = 'sda'"),
        [[json!(T0), json!(1.5), json!(0)]]
    );
    assert_eq!(server.rows("tg", "SELECT \"total\" FROM \"mem\""), [[json!(T0), json!(1 << 30)]]);
}

#[test]
fn a_missing_database_is_created_and_created_again_after_a_drop() {
    if !influxd_available("a_missing_database_is_created_and_created_again_after_a_drop") {
        return;
    }
    let dir = tmp();
    let server = Influxd::start(dir.path(), free_port(), None);
    // `stats` is an InfluxQL keyword: only a quoted name works.
    let mut e = emitter(&format!(r#"{{"url": "{}", "database": "stats"}}"#, server.url()));
    emit(&mut e, vec![sample(T0, 1.0)]);
    assert_eq!(server.times("stats", "load", "one"), [T0]);
    server.query("", "DROP DATABASE \"stats\"");
    emit(&mut e, vec![sample(T0 + 1, 1.0)]);
    assert_eq!(e.queued(), 0, "written right after creating the database again");
    assert_eq!(server.times("stats", "load", "one"), [T0 + 1]);

    // create_database: false: the data waits (nothing is created) until the database exists.
    let mut e = emitter(&format!(
        r#"{{"url": "{}", "database": "later", "create_database": false, "retry_initial": "100ms", "retry_max": "100ms"}}"#,
        server.url()
    ));
    emit(&mut e, vec![sample(T0, 1.0)]);
    emit(&mut e, vec![sample(T0 + 1, 1.0)]);
    assert_eq!(e.queued(), 2);
    assert!(!server.column("", "SHOW DATABASES").contains(&"later".to_string()));
    server.query("", "CREATE DATABASE \"later\"");
    std::thread::sleep(Duration::from_millis(250));
    e.idle();
    assert_eq!(e.queued(), 0);
    assert_eq!(server.times("later", "load", "one"), [T0, T0 + 1]);
    assert_eq!(e.stats().dropped_records.load(Ordering::Relaxed), 0);
}

#[test]
fn points_the_server_rejects_are_dropped_and_counted() {
    if !influxd_available("points_the_server_rejects_are_dropped_and_counted") {
        return;
    }
    let dir = tmp();
    let server = Influxd::start(dir.path(), free_port(), None);
    let mut e = emitter(&format!(r#"{{"url": "{}", "database": "rej"}}"#, server.url()));
    let p = |ts, v| Payload { meta: meta(), timestamp: ts, points: vec![Point::simple("x", "v", "", v)] };
    emit(&mut e, vec![p(T0, Value::Int(1))]);
    // The same field as a float in the same shard: HTTP 400 "field type conflict".
    emit(&mut e, vec![p(T0 + 1, Value::Float(1.5))]);
    emit(&mut e, vec![p(T0 + 2, Value::Int(3))]);
    let stats = e.stats();
    assert_eq!(stats.rejected_records.load(Ordering::Relaxed), 1);
    assert_eq!(stats.rejected_points.load(Ordering::Relaxed), 1);
    assert_eq!(stats.sent_records.load(Ordering::Relaxed), 2);
    assert_eq!(e.queued(), 0);
    assert_eq!(server.times("rej", "x", "v"), [T0, T0 + 2]);
}

#[test]
fn when_the_buffer_is_full_the_oldest_are_dropped_and_counted() {
    if !influxd_available("when_the_buffer_is_full_the_oldest_are_dropped_and_counted") {
        return;
    }
    let dir = tmp();
    let port = free_port();
    // No server yet: every send fails, the 1 KiB buffer overflows.
    let mut e = emitter(&format!(
        r#"{{"url": "http://127.0.0.1:{port}", "database": "full", "buffer_bytes": "1KiB", "retry_initial": "100ms", "retry_max": "100ms"}}"#
    ));
    const N: i64 = 40;
    for i in 0..N {
        emit(&mut e, vec![sample(T0 + i, 1.0)]);
    }
    let stats = e.stats();
    let dropped = stats.dropped_records.load(Ordering::Relaxed);
    assert!(dropped > 0 && dropped < N as u64, "dropped {dropped}");
    assert_eq!(stats.dropped_points.load(Ordering::Relaxed), dropped * 8);
    assert!(stats.queued_bytes.load(Ordering::Relaxed) <= 1024);
    assert_eq!(e.queued() + dropped, N as u64);

    let server = Influxd::start(dir.path(), port, None);
    let t = Instant::now();
    while e.queued() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "still {} queued", e.queued());
        std::thread::sleep(Duration::from_millis(150));
        e.idle();
    }
    let times = server.times("full", "load", "one");
    // Exactly what was not dropped arrived: the newest records.
    let kept: Vec<i64> = (T0 + dropped as i64..T0 + N).collect();
    assert_eq!(times, kept);
    assert_eq!(stats.dropped_records.load(Ordering::Relaxed), dropped);
}

// ---- request shape, against a local recorder ----

#[test]
fn v2_write_request_shape() {
    let rec = Recorder::start(vec![(204, "")]);
    let mut e = emitter(&format!(
        r#"{{"version": 2, "url": "{}/", "org": "my org", "bucket": "b/1", "token": "tok-123"}}"#,
        rec.url()
    ));
    emit(&mut e, vec![sample(T0, 1.0)]);
    let mut e = emitter(&format!(
        r#"{{"version": 2, "url": "{}", "org": "o", "bucket": "b", "token": "tok-123", "gzip": false, "naming": "telegraf"}}"#,
        rec.url()
    ));
    emit(&mut e, vec![sample(T0 + 1, 1.0)]);
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/api/v2/write?org=my%20org&bucket=b%2F1&precision=s");
    assert_eq!(r.header("authorization"), Some("Token tok-123"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    assert_eq!(
        r.text(),
        "load,cluster=c1,datacenter=dc1,host=h1 one=0.5,five=1,runnable_entities=2i 1700000000\n\
         disk,cluster=c1,datacenter=dc1,device=sda,host=h1 reads=1.5,io=0i 1700000000\n\
         disk,cluster=c1,datacenter=dc1,device=my\\ disk\\,1\\=x,host=h1 reads=2 1700000000\n\
         cpu,cluster=c1,datacenter=dc1,host=h1 user=7.25 1700000000\n\
         cpu,cluster=c1,cpu=cpu0,datacenter=dc1,host=h1 user=9 1700000000\n"
    );
    let r = &reqs[1];
    assert_eq!(r.target, "/api/v2/write?org=o&bucket=b&precision=s");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        r.text(),
        "system,cluster=c1,datacenter=dc1,host=h1 load1=0.5,load5=1,runnable_entities=2i 1700000001\n\
         diskio,cluster=c1,datacenter=dc1,host=h1,name=sda reads=1.5,iops_in_progress=0i 1700000001\n\
         diskio,cluster=c1,datacenter=dc1,host=h1,name=my\\ disk\\,1\\=x reads=2 1700000001\n\
         cpu,cluster=c1,cpu=cpu-total,datacenter=dc1,host=h1 usage_user=7.25 1700000001\n\
         cpu,cluster=c1,cpu=cpu0,datacenter=dc1,host=h1 usage_user=9 1700000001\n"
    );
}

#[test]
fn v1_request_shape_and_answers() {
    // CREATE DATABASE, then a 401, a 503 and a 404 "database not found" (created again,
    // written again at once), then success; a 400 rejects.
    let rec = Recorder::start(vec![
        (200, r#"{"results":[{"statement_id":0}]}"#),
        (401, r#"{"error":"authorization failed"}"#),
        (503, "busy"),
        (404, r#"{"error":"database not found: \"a \\\"b\""}"#),
        (200, r#"{"results":[{"statement_id":0}]}"#),
        (204, ""),
        (400, r#"{"error":"unable to parse 'x': bad"}"#),
    ]);
    let mut e = emitter(&format!(
        r#"{{"url": "{}", "database": "a \"b", "retention_policy": "one week", "user": "bob", "pass": "pa:ss", "retry_initial": "50ms", "retry_max": "50ms"}}"#,
        rec.url()
    ));
    emit(&mut e, vec![sample(T0, 1.0)]);
    assert_eq!(e.queued(), 1, "401: kept");
    std::thread::sleep(Duration::from_millis(80));
    e.idle();
    assert_eq!(e.queued(), 1, "503: kept");
    std::thread::sleep(Duration::from_millis(80));
    e.idle();
    assert_eq!(e.queued(), 0, "404: created and written");
    emit(&mut e, vec![sample(T0 + 1, 1.0)]);
    assert_eq!(e.queued(), 0, "400: rejected");
    let stats = e.stats();
    assert_eq!(stats.sent_records.load(Ordering::Relaxed), 1);
    assert_eq!(stats.rejected_records.load(Ordering::Relaxed), 1);

    let reqs = rec.requests();
    let shape: Vec<(&str, &str)> = reqs.iter().map(|r| (r.method.as_str(), r.target.as_str())).collect();
    let write = "/write?db=a%20%22b&rp=one%20week&precision=s";
    assert_eq!(
        shape,
        [
            ("POST", "/query"),
            ("POST", write),
            ("POST", write),
            ("POST", write),
            ("POST", "/query"),
            ("POST", write),
            ("POST", write)
        ]
    );
    let create = &reqs[0];
    assert_eq!(create.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(create.text(), "q=CREATE%20DATABASE%20%22a%20%5C%22b%22");
    for r in &reqs {
        // base64("bob:pa:ss")
        assert_eq!(r.header("authorization"), Some("Basic Ym9iOnBhOnNz"));
        assert!(!r.target.contains("pa:ss") && !r.target.contains("bob"));
    }
    assert_eq!(reqs[1].header("content-encoding"), Some("gzip"));
    assert!(reqs[1].text().starts_with("load,cluster=c1,datacenter=dc1,host=h1 one=0.5,"));
}

// ---- the badger binary ----

/// A running badger with `stdout` next to the emitter under test: stdout says which
/// timestamps were produced.
struct Badger {
    child: Child,
    stamps: Arc<Mutex<Vec<i64>>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Badger {
    /// A test that fails half-way leaves no badger behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config(emitters: &str, confs: &[(&str, &str)]) -> TempConfig {
    let c = TempConfig::new(
        &format!(
            r#"{{"core": {{"hostname": "h", "ipv4": "", "ipv6": "", "proc_root": "proc"}},
                "modules": ["load"], "emitters": {emitters}}}"#
        ),
        confs,
    );
    c.write("proc/loadavg", "0.50 1.00 2.00 1/100 999\n");
    c
}

fn start_badger(c: &TempConfig) -> Badger {
    let stamps: Arc<Mutex<Vec<i64>>> = Arc::default();
    let s = stamps.clone();
    let (child, _, err) = common::spawn_lines(c, move |line| {
        let v: serde_json::Value = serde_json::from_str(&line).expect("NDJSON on stdout");
        s.lock().expect("lock").push(v["timestamp"].as_i64().expect("timestamp"));
        None::<()>
    });
    Badger { child, stamps, err: Some(err) }
}

impl Badger {
    fn signal(&self, sig: &str) {
        common::signal(&self.child, sig);
    }

    fn stamps(&self) -> Vec<i64> {
        self.stamps.lock().expect("lock").clone()
    }

    /// VmHWM and VmRSS in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .expect("VmHWM/VmRSS")
        };
        (kb("VmHWM:") * 1024, kb("VmRSS:") * 1024)
    }

    /// Resets VmHWM to the current VmRSS (`/proc/PID/clear_refs`, "5"), so that a later
    /// VmHWM is the peak from now on, not start-up's (which the agent's release of its
    /// start-up pages leaves well above its steady state, by megabytes in a debug build).
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("clear_refs");
    }

    /// SIGTERM, wait for exit 0; returns the timestamps it produced and its stderr.
    fn stop(mut self) -> (Vec<i64>, String) {
        self.signal("-TERM");
        let t = Instant::now();
        let code = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s.code();
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("badger did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stdout reader has seen everything once stdout closed.
        std::thread::sleep(Duration::from_millis(100));
        let stamps = self.stamps();
        let err = self.err.take().map(|e| e.join().expect("stderr")).unwrap_or_default();
        assert_eq!(code, Some(0), "{err}");
        (stamps, err)
    }
}

/// Waits until the server holds every timestamp of `want()` (re-read each time).
fn wait_delivered(server: &Influxd, db: &str, want: impl Fn() -> Vec<i64>, within: Duration) {
    let t = Instant::now();
    loop {
        let want = want();
        let have = server.times(db, "load", "one");
        if !want.is_empty() && want.iter().all(|ts| have.contains(ts)) {
            return;
        }
        assert!(t.elapsed() < within, "not delivered within {within:?}: want {want:?}, have {have:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

/// Every produced timestamp is in InfluxDB exactly once (one row per series and time).
fn assert_exactly_once(server: &Influxd, db: &str, produced: &[i64]) {
    let have = server.times(db, "load", "one");
    assert_eq!(have, sorted(produced.to_vec()), "InfluxDB holds exactly the produced timestamps");
    let counts = server.rows(db, "SELECT count(\"one\") FROM \"load\" GROUP BY time(1s) fill(none)");
    assert_eq!(counts.len(), produced.len());
    assert!(counts.iter().all(|r| r[1] == json!(1)), "one point per timestamp: {counts:?}");
}

#[test]
fn outage_every_timestamp_arrives_once_and_memory_stays_bounded() {
    if !influxd_available("outage_every_timestamp_arrives_once_and_memory_stays_bounded") {
        return;
    }
    let dir = tmp();
    let port = free_port();
    let mut server = Influxd::start(dir.path(), port, None);
    const BUFFER: u64 = 256 * 1024;
    let c = config(
        r#"["influxdb", "stdout"]"#,
        &[(
            "influxdb",
            &format!(
                r#"{{"url": "http://127.0.0.1:{port}", "database": "outage", "retry_max": "2s", "buffer_bytes": {BUFFER}}}"#
            ),
        )],
    );
    // An 8 KB cluster name makes each record about 8 KB, so the outage fills most of the
    // 256 KiB buffer (about 22 records) without overflowing it.
    let main = std::fs::read_to_string(c.path()).expect("config.json");
    let cluster = "c".repeat(8000);
    c.write("config.json", &main.replace(r#""hostname": "h""#, &format!(r#""hostname": "h", "cluster": "{cluster}""#)));
    let b = start_badger(&c);
    std::thread::sleep(Duration::from_secs(3));
    wait_delivered(&server, "outage", || b.stamps(), Duration::from_secs(5));
    b.reset_peak();
    let (_, rss_before) = b.memory();
    server.stop();
    let down_at = b.stamps().last().copied().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(20));
    let server = Influxd::start(dir.path(), port, None);
    wait_delivered(&server, "outage", || b.stamps(), Duration::from_secs(15));
    let (hwm, rss) = b.memory();
    let (produced, err) = b.stop();
    let during = produced.iter().filter(|&&t| t > down_at).count();
    eprintln!(
        "outage: {} timestamps produced, {during} during the outage; badger VmRSS before the outage {} KiB, VmRSS after {} KiB, VmHWM {} KiB (buffer_bytes {} KiB)",
        produced.len(),
        rss_before / 1024,
        rss / 1024,
        hwm / 1024,
        BUFFER / 1024
    );
    assert!(during >= 18, "{during} timestamps during the outage: {produced:?}");
    assert_exactly_once(&server, "outage", &produced);
    assert!(err.contains("send failed"), "{err}");
    assert!(!err.contains("dropped"), "{err}");
    assert!(hwm <= rss_before + BUFFER + 4 * 1024 * 1024, "VmHWM {hwm} vs VmRSS before the outage {rss_before}");
}

#[test]
fn restart_during_an_outage_with_a_spool_loses_nothing() {
    if !influxd_available("restart_during_an_outage_with_a_spool_loses_nothing") {
        return;
    }
    let dir = tmp();
    let port = free_port();
    let mut server = Influxd::start(dir.path(), port, None);
    let c = config(
        r#"["influxdb", "stdout"]"#,
        &[(
            "influxdb",
            &format!(
                r#"{{"url": "http://127.0.0.1:{port}", "database": "spooled", "retry_max": "1s", "spool_dir": "spool"}}"#
            ),
        )],
    );
    let b = start_badger(&c);
    std::thread::sleep(Duration::from_secs(2));
    server.stop();
    std::thread::sleep(Duration::from_secs(5));
    let (first, err1) = b.stop();
    assert!(err1.contains("kept in the spool"), "{err1}");
    let b = start_badger(&c);
    std::thread::sleep(Duration::from_secs(4));
    let server = Influxd::start(dir.path(), port, None);
    let first2 = first.clone();
    wait_delivered(&server, "spooled", || first2.iter().copied().chain(b.stamps()).collect(), Duration::from_secs(15));
    let (second, _) = b.stop();
    eprintln!("spool restart: run 1 produced {}, run 2 produced {}", first.len(), second.len());
    let all: Vec<i64> = first.into_iter().chain(second).collect();
    assert_exactly_once(&server, "spooled", &all);
}

#[test]
fn wrong_credentials_keep_the_data_until_the_password_is_fixed() {
    if !influxd_available("wrong_credentials_keep_the_data_until_the_password_is_fixed") {
        return;
    }
    let dir = tmp();
    let port = free_port();
    let server = Influxd::start(dir.path(), port, Some(("admin", "Right-Pa55")));
    let conf = |pass: &str| {
        format!(
            r#"{{"url": "http://127.0.0.1:{port}", "database": "authdb", "user": "admin", "pass": "{pass}",
                 "retry_max": "1s", "spool_dir": "spool"}}"#
        )
    };
    let c = config(r#"["influxdb", "stdout"]"#, &[("influxdb", &conf("Wrong-Pa55"))]);
    let b = start_badger(&c);
    std::thread::sleep(Duration::from_secs(4));
    assert!(server.times("authdb", "load", "one").is_empty());
    c.write("conf.d/influxdb.conf", &conf("Right-Pa55"));
    b.signal("-HUP");
    wait_delivered(&server, "authdb", || b.stamps(), Duration::from_secs(15));
    let (produced, err) = b.stop();
    assert_exactly_once(&server, "authdb", &produced);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("refused the credentials of user \"admin\""), "{err}");
    assert!(!err.contains("Wrong-Pa55") && !err.contains("Right-Pa55"), "a password was logged:\n{err}");
    assert!(!err.contains("dropped"), "{err}");
}

#[test]
fn influxdb08_emitter_takes_the_originals_conf() {
    if !influxd_available("influxdb08_emitter_takes_the_originals_conf") {
        return;
    }
    let dir = tmp();
    let port = free_port();
    let server = Influxd::start(dir.path(), port, None);
    let c = config(
        r#"["influxdb08_emitter", "stdout"]"#,
        &[(
            "influxdb08_emitter",
            &format!(
                r#"{{
    "interval": 0,
    "blacklist": [],
    "host": "127.0.0.1",
    "port": {port},
    "database": "system_stats",
    "user": "test",
    "pass": "test"
}}"#
            ),
        )],
    );
    let b = start_badger(&c);
    std::thread::sleep(Duration::from_millis(2500));
    let (produced, err) = b.stop();
    assert_exactly_once(&server, "system_stats", &produced);
    assert_eq!(err.matches("InfluxDB 0.8's JSON API is gone").count(), 1, "{err}");
    assert!(err.contains(&format!("http://127.0.0.1:{port}/write?db=system_stats&precision=s")), "{err}");
}

// ---- the real modules, on a fixture tree ----

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy fixture file");
        }
    }
}

/// One payload of every host module on the `vm-6.18` fixture tree (its second capture, so
/// rates exist); filesystems are those of this machine that the tree's mount table names.
fn real_payload() -> Payload {
    use badger_api::plugin::{HostRoots, ModuleContext};
    let fixture = badger_test_support::fixture::fixture_dir("vm-6.18");
    let dir = tmp();
    let load = |snapshot: &str| {
        for sub in ["proc", "sys"] {
            let dst = dir.path().join(sub);
            if dst.exists() {
                std::fs::remove_dir_all(&dst).expect("clear");
            }
            copy_tree(&fixture.join(snapshot).join(sub), &dst);
        }
    };
    load("t0");
    let ctx = ModuleContext {
        roots: HostRoots { proc: dir.path().join("proc"), sys: dir.path().join("sys"), host: "/".into() },
        ..Default::default()
    };
    let confs = [
        ("cpu", r#"{"per_core": true}"#),
        ("load", "{}"),
        ("disk", "{}"),
        ("network", "{}"),
        ("memory", "{}"),
        ("system", "{}"),
        ("process_stats", r#"{"processes": [{"name": "all", "pattern": ".*"}]}"#),
    ];
    let mut modules: Vec<_> = confs
        .iter()
        .map(|(name, text)| {
            let spec = badger_modules::REGISTRY.iter().find(|s| s.name == *name).expect("module");
            let conf = PluginConf::from_text(name, Path::new("conf.d/x.conf"), text);
            match (spec.build)(&ctx, &conf) {
                Ok(m) => m,
                Err(e) => panic!("{name}: {e}"),
            }
        })
        .collect();
    let t = Instant::now();
    let mut points = Vec::new();
    for m in &mut modules {
        m.collect(t, &mut points).expect("collect t0");
    }
    load("t1");
    points.clear();
    for m in &mut modules {
        m.collect(t + Duration::from_secs(1), &mut points).expect("collect t1");
    }
    Payload { meta: meta(), timestamp: T0, points }
}

fn lines_of(p: &Payload, naming: badger_emitters::influxdb::Naming) -> (String, u64) {
    let payloads = [Arc::new(p.clone())];
    let blacklist = Matcher::default();
    let mut out = String::new();
    let mut n = 0;
    for v in Batch::new(&payloads, &blacklist).payloads() {
        n += badger_formats::influx::encode_payload(&mut out, &v, naming);
    }
    (out, n)
}

#[test]
fn every_stat_of_the_real_modules_goes_out_under_telegraf_names() {
    use badger_emitters::influxdb::Naming;
    let mut p = real_payload();
    // The raw counters (Kind::Counter) never reach line protocol: emitters see Stat Badger's stats.
    p.points.retain(|x| x.kind == badger_api::point::Kind::Gauge);
    assert!(p.points.len() > 100, "{}", p.points.len());
    let (badger_lines, n_badger) = lines_of(&p, Naming::Badger);
    let (telegraf_lines, n_telegraf) = lines_of(&p, Naming::Telegraf);
    // Nothing is dropped or merged away in either naming.
    assert_eq!(n_badger, p.points.len() as u64);
    assert_eq!(n_telegraf, p.points.len() as u64);
    let telegraf_measurements =
        ["cpu", "processes", "kernel", "system", "mem", "swap", "diskio", "disk", "net", "procstat", "procstat_lookup"];
    let mut seen = std::collections::BTreeSet::new();
    for line in telegraf_lines.lines() {
        let measurement = line.split([',', ' ']).next().unwrap_or("");
        assert!(telegraf_measurements.contains(&measurement), "{line}");
        seen.insert(measurement);
        if measurement == "cpu" {
            assert!(line.contains(",cpu=cpu"), "every cpu line has a cpu tag: {line}");
        }
        if measurement == "diskio" && !line.contains(" count=") {
            assert!(line.contains(",name="), "{line}");
        }
        if measurement == "disk" {
            assert!(line.contains(",path=") && !line.contains("device=/dev/"), "{line}");
        }
    }
    assert_eq!(seen.len(), telegraf_measurements.len(), "{seen:?}");
    for want in [
        "cpu,cluster=c1,cpu=cpu-total,datacenter=dc1,host=h1 usage_user=",
        ",cpu=cpu0,",
        "system,cluster=c1,datacenter=dc1,host=h1 load1=",
        ",n_cpus=2i,",
        "mem,cluster=c1,datacenter=dc1,host=h1 total=",
        "swap,cluster=c1,datacenter=dc1,host=h1 used=",
        "kernel,cluster=c1,datacenter=dc1,host=h1 processes_forked=",
        " bytes_recv=",
        ",weighted_io_time=",
        ",inodes_used_percent=",
        "procstat,cluster=c1,datacenter=dc1,host=h1,process_name=all ",
    ] {
        assert!(telegraf_lines.contains(want), "{want} missing from\n{telegraf_lines}");
    }
    if !influxd_available("every_stat_of_the_real_modules_goes_out_under_telegraf_names") {
        return;
    }
    // InfluxDB takes every line of both namings.
    let dir = tmp();
    let server = Influxd::start(dir.path(), free_port(), None);
    for (db, lines) in [("real_badger", &badger_lines), ("real_telegraf", &telegraf_lines)] {
        let naming = if db == "real_badger" { "badger" } else { "telegraf" };
        let mut e2 = emitter(&format!(r#"{{"url": "{}", "database": "{db}", "naming": "{naming}"}}"#, server.url()));
        emit(&mut e2, vec![p.clone()]);
        flush(&mut e2);
        let stats = e2.stats();
        assert_eq!(stats.sent_points.load(Ordering::Relaxed), p.points.len() as u64, "{db}");
        assert_eq!(stats.rejected_records.load(Ordering::Relaxed), 0, "{db}");
        let fields: usize = server
            .query(db, "SHOW FIELD KEYS")
            .get("results")
            .and_then(|r| r[0]["series"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|s| s["values"].as_array().map_or(0, |v| v.len()))
            .sum();
        assert!(fields > 90, "{db}: {fields} fields\n{lines}");
    }
}
