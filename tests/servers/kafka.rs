#![cfg(feature = "kafka")]
//! The `kafka` emitter against a real Kafka-protocol broker (tansu, see support_kafka): the
//! emitter in-process in each format and compression, a broker that comes up late, one that
//! never answers (the timeout path), and the badger binary end to end (the `load` module on a
//! fixture proc root) in each format and under the original's `kafka082_emitter` name.
//! Without `BADGER_TANSU` these tests skip (or fail with `BADGER_REQUIRE_SERVERS=1`, as in
//! scripts/test.sh).

use crate::support_kafka;
use badger_test_support::process as common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, EmitterContext, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::kafka::{Kafka, SPEC};
use common::{badger, TempConfig};
use support_kafka::{consume, read, tansu, Broker};

const WAIT: Duration = Duration::from_secs(20);

fn emitter(text: &str) -> Box<dyn Emitter> {
    let conf = PluginConf::from_text("kafka", Path::new("/nonexistent/conf.d/kafka.conf"), text);
    match (SPEC.build)(&EmitterContext::default(), &conf) {
        Ok(e) => e,
        Err(e) => panic!("build: {e}"),
    }
}

fn payload(ts: i64) -> Arc<Payload> {
    Arc::new(Payload {
        meta: Arc::new(HostMeta {
            datacenter: "dc1".into(),
            zone: "z 1".into(),
            hostname: "h1".into(),
            ipv4: "10.0.0.1".into(),
            ..HostMeta::default()
        }),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(0.25)),
            Point::device("disk", "reads", "", "device", "sda", Value::Int(42)),
        ],
    })
}

fn emit(e: &mut dyn Emitter, payloads: &[Arc<Payload>]) {
    e.emit(&Batch::new(payloads, &Matcher::default())).expect("emit");
}

#[test]
fn each_format_arrives_exactly_with_the_hostname_as_key() {
    let Some(bin) = tansu() else { return };
    let broker = Broker::start(&bin);
    let b = broker.bootstrap();
    for topic in ["json", "influx", "graphite"] {
        broker.create_topic(topic);
        let prefix = if topic == "graphite" { r#", "prefix": "stats""# } else { "" };
        let mut e = emitter(&format!(r#"{{"brokers": "{b}", "topic": "{topic}", "format": "{topic}"{prefix}}}"#));
        emit(e.as_mut(), &[payload(1_700_000_000), payload(1_700_000_001)]);
        e.flush(Instant::now() + Duration::from_secs(5)).expect("flush");
    }
    let json = consume(&b, "json", 2, WAIT);
    let influx = consume(&b, "influx", 2, WAIT);
    let graphite = consume(&b, "graphite", 2, WAIT);
    for m in json.iter().chain(&influx).chain(&graphite) {
        assert_eq!(m.key(), "h1");
    }
    assert_eq!(json.len(), 2, "{json:?}");
    assert_eq!(
        json[0].text(),
        r#"{"cluster":"","datacenter":"dc1","hostname":"h1","ipv4":"10.0.0.1","ipv6":"","points":[{"load.one":{"units":"","value":0.25}},{"disk.reads.sda":{"units":"","value":42}}],"region":"","timestamp":1700000000,"zone":"z 1"}"#
    );
    assert_eq!(json[0].timestamp, Some(1_700_000_000_000));
    assert!(json[1].text().contains(r#""timestamp":1700000001,"#));
    assert_eq!(
        influx[1].text(),
        "load,datacenter=dc1,host=h1,zone=z\\ 1 one=0.25 1700000001\n\
         disk,datacenter=dc1,device=sda,host=h1,zone=z\\ 1 reads=42i 1700000001\n"
    );
    assert_eq!(
        graphite[0].text(),
        "stats.dc1.z_1.h1.load.one 0.25 1700000000\nstats.dc1.z_1.h1.disk.reads.sda 42 1700000000\n"
    );
}

#[test]
fn every_compression_is_taken_by_the_broker() {
    let Some(bin) = tansu() else { return };
    let broker = Broker::start(&bin);
    let b = broker.bootstrap();
    broker.create_topic("z");
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, c) in codecs.iter().enumerate() {
        let mut e =
            emitter(&format!(r#"{{"brokers": "{b}", "topic": "z", "compression": "{c}", "format": "graphite"}}"#));
        emit(e.as_mut(), &[payload(i as i64 + 1)]);
        e.flush(Instant::now() + Duration::from_secs(5)).expect("flush");
    }
    let got = consume(&b, "z", codecs.len(), WAIT);
    let ts: Vec<i64> = got.iter().map(|m| m.timestamp.unwrap_or(-1)).collect();
    assert_eq!(ts, [1000, 2000, 3000, 4000, 5000], "one message per codec, in order");
    assert!(got[4].text().starts_with("dc1.z_1.h1.load.one 0.25 5\n"), "{:?}", got[4]);
}

#[test]
fn messages_wait_for_a_broker_that_comes_up_late() {
    let Some(bin) = tansu() else { return };
    // Reserve a port for the broker, send while nothing listens there, then start it.
    // (tansu creates a topic a producer asks about, with 4 partitions: the producer must not
    // ask before the test creates it with one.)
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let text = format!(
        r#"{{"brokers": "127.0.0.1:{port}", "topic": "late", "format": "graphite",
            "timeout": "500ms", "retry_initial": "200ms", "retry_max": "400ms",
            "properties": {{"allow.auto.create.topics": false}}}}"#
    );
    let mut e = emitter(&text);
    emit(e.as_mut(), &[payload(1), payload(2)]);
    // Start tansu on that very port (it may have been taken meanwhile: then skip the rest).
    let log = tempfile::NamedTempFile::new().expect("log");
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = std::process::Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("start tansu");
    let stop = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > up || matches!(child.try_wait(), Ok(Some(_))) {
            stop(&mut child);
            eprintln!("note: port {port} was taken before tansu could bind it; skipping the rest");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let created = std::process::Command::new(&bin)
        .args(["topic", "create", "late", "--broker", &url, "--partitions", "1"])
        .output()
        .expect("topic create");
    assert!(created.status.success(), "{created:?}");
    // idle() retries what the outbox holds.
    let until = Instant::now() + WAIT;
    let got = loop {
        e.idle();
        let got = read(&format!("127.0.0.1:{port}"), "late", 2, Duration::from_secs(1));
        if got.len() >= 2 {
            break got;
        }
        assert!(Instant::now() < until, "the messages did not arrive: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    stop(&mut child);
    let mut ts: Vec<i64> = got.iter().map(|m| m.timestamp.unwrap_or(-1)).collect();
    ts.dedup();
    assert_eq!(&ts[..2], [1000, 2000], "in order, none lost");
}

#[test]
fn a_broker_that_never_answers_times_out_then_everything_goes_once_to_a_real_one() {
    let Some(bin) = tansu() else { return };
    // A "broker" that takes connections and never answers: sends wait out their timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let silent = {
        let stop = stop.clone();
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok((sock, _)) = listener.accept() {
                    held.push(sock);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let conf = PluginConf::from_text(
        "kafka",
        Path::new("/nonexistent/conf.d/kafka.conf"),
        &format!(
            r#"{{"brokers": "127.0.0.1:{port}", "topic": "late2", "timeout": "1s",
                "retry_initial": "100ms", "retry_max": "200ms",
                "properties": {{"allow.auto.create.topics": false}}}}"#
        ),
    );
    let mut k = match Kafka::new(&conf) {
        Ok(k) => k,
        Err(e) => panic!("build: {e}"),
    };
    let started = Instant::now();
    emit(&mut k, &[payload(1), payload(2)]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(k.queued(), 2, "kept after the timeout");
    let (outbox, kafka) = (k.outbox_stats(), k.kafka_stats());
    assert_eq!(outbox.retries.load(Ordering::Relaxed), 1);
    assert_eq!(kafka.failed.load(Ordering::Relaxed), 2, "both messages counted as not delivered");
    assert_eq!(kafka.delivered.load(Ordering::Relaxed), 0);

    // Close the silent one (and its connections) and start tansu on the same port.
    stop.store(true, Ordering::Relaxed);
    silent.join().expect("silent broker thread");
    let log = tempfile::NamedTempFile::new().expect("log");
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = std::process::Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("start tansu");
    let stop_child = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > up || matches!(child.try_wait(), Ok(Some(_))) {
            stop_child(&mut child);
            eprintln!("note: port {port} was taken before tansu could bind it; skipping the rest");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let created = std::process::Command::new(&bin)
        .args(["topic", "create", "late2", "--broker", &url, "--partitions", "1"])
        .output()
        .expect("topic create");
    assert!(created.status.success(), "{created:?}");
    let until = Instant::now() + WAIT;
    while k.queued() > 0 {
        assert!(Instant::now() < until, "still queued: {}", k.queued());
        k.idle();
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = consume(&format!("127.0.0.1:{port}"), "late2", 2, WAIT);
    stop_child(&mut child);
    let ts: Vec<i64> = got.iter().map(|m| m.timestamp.unwrap_or(-1)).collect();
    assert_eq!(ts, [1000, 2000], "purged after the timeout, so sent once each, in order: {got:?}");
    assert_eq!(kafka.delivered.load(Ordering::Relaxed), 2);
}

// ---- the binary, end to end -----------------------------------------------------------------

fn agent_config(emitter: &str, emitter_conf: &str) -> TempConfig {
    let c = TempConfig::new(
        &format!(
            r#"{{"core": {{"hostname": "e2e-host", "datacenter": "dc1", "ipv4": "", "ipv6": "",
                          "proc_root": "proc", "log": {{"level": "info"}}}},
                "modules": ["load"], "emitters": ["{emitter}"]}}"#
        ),
        &[("load", r#"{"interval": 0}"#), (emitter, emitter_conf)],
    );
    c.write("proc/loadavg", "1.00 2.50 3.00 1/100 999\n");
    c
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code().unwrap_or(-1);
        }
        if t.elapsed() > within {
            let _ = child.kill();
            panic!("badger did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[test]
fn the_binary_sends_one_tick_in_each_format() {
    let Some(bin) = tansu() else { return };
    let broker = Broker::start(&bin);
    let b = broker.bootstrap();
    let formats = ["json", "influx", "graphite"];
    let mut runs = Vec::new();
    for f in formats {
        broker.create_topic(&format!("e2e-{f}"));
        let c = agent_config("kafka", &format!(r#"{{"brokers": "{b}", "topic": "e2e-{f}", "format": "{f}"}}"#));
        // --once: one tick, emitted and flushed, then exit.
        let child = badger()
            .args(["--once", "-f", "config.json"])
            .current_dir(c.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run badger");
        runs.push((f, c, child));
    }
    for (f, _c, child) in &mut runs {
        let code = wait_exit(child, Duration::from_secs(20));
        let err = stderr_of(child);
        assert_eq!(code, 0, "{f}: {err}");
    }
    let json = consume(&b, "e2e-json", 1, WAIT);
    let influx = consume(&b, "e2e-influx", 1, WAIT);
    let graphite = consume(&b, "e2e-graphite", 1, WAIT);
    for m in [&json, &influx, &graphite] {
        assert_eq!(m.len(), 1, "one tick, one message: {m:?}");
        assert_eq!(m[0].key(), "e2e-host");
    }
    let ts = json[0].timestamp.expect("a timestamp") / 1000;
    let v: serde_json::Value = serde_json::from_slice(&json[0].value).expect("JSON");
    assert_eq!(v["hostname"], "e2e-host");
    assert_eq!(v["datacenter"], "dc1");
    assert_eq!(v["timestamp"], ts);
    assert_eq!(
        v["points"],
        serde_json::json!([
            {"load.one": {"units": "", "value": 1.0}},
            {"load.five": {"units": "", "value": 2.5}},
            {"load.fifteen": {"units": "", "value": 3.0}},
            {"load.runnable_entities": {"units": "", "value": 1}},
            {"load.total_entities": {"units": "", "value": 100}}
        ])
    );
    let ts = influx[0].timestamp.expect("a timestamp") / 1000;
    assert_eq!(
        influx[0].text(),
        format!(
            "load,datacenter=dc1,host=e2e-host one=1,five=2.5,fifteen=3,runnable_entities=1i,total_entities=100i {ts}\n"
        )
    );
    let ts = graphite[0].timestamp.expect("a timestamp") / 1000;
    assert_eq!(
        graphite[0].text(),
        format!(
            "dc1.e2e-host.load.one 1.0 {ts}\ndc1.e2e-host.load.five 2.5 {ts}\ndc1.e2e-host.load.fifteen 3.0 {ts}\n\
             dc1.e2e-host.load.runnable_entities 1 {ts}\ndc1.e2e-host.load.total_entities 100 {ts}\n"
        )
    );
}

#[test]
fn the_binary_runs_the_original_kafka082_conf_until_sigterm() {
    let Some(bin) = tansu() else { return };
    let broker = Broker::start(&bin);
    broker.create_topic("stat-badger-3");
    let c = agent_config(
        "kafka082_emitter",
        &format!(
            r#"{{
    "interval": 0,
    "blacklist": [],
    "brokers": "{}",
    "topic": "stat-badger-3",
    "codec": "gzip" // none, gzip, speedy
}}"#,
            broker.bootstrap()
        ),
    );
    let mut child = badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run badger");
    std::thread::sleep(Duration::from_millis(3500));
    let ok = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    assert_eq!(code, 0, "{err}");
    let got = consume(&broker.bootstrap(), "stat-badger-3", 2, WAIT);
    let ts: Vec<i64> = got
        .iter()
        .map(|m| {
            assert_eq!(m.key(), "e2e-host");
            let v: serde_json::Value = serde_json::from_slice(&m.value).expect("JSON");
            assert_eq!(v["points"][1]["load.five"]["value"], 2.5);
            v["timestamp"].as_i64().expect("timestamp")
        })
        .collect();
    for w in ts.windows(2) {
        assert_eq!(w[1] - w[0], 1, "a message every tick, none twice: {ts:?}");
    }
    assert!(!err.contains("ERROR") && !err.contains("error"), "{err}");
}
