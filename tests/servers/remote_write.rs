//! The `remote_write` emitter against a real Prometheus (Debian `prometheus`, started with
//! `--web.enable-remote-write-receiver` on a loopback port in a temp dir), read back through
//! its query API with exact names, labels and values; an outage (Prometheus stopped, then
//! restarted on the same data) loses nothing the buffer held; and against a fake receiver
//! for the headers, the snappy body and what each status means.

use crate::support_prom::{self, free_port, get, installed, Answer, Daemon, FakeServer};

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::remote_write::RemoteWrite;

fn emitter(conf: &str) -> RemoteWrite {
    let conf = PluginConf::from_text("remote_write", Path::new("conf.d/remote_write.conf"), conf);
    RemoteWrite::from_conf(&conf).unwrap_or_else(|e| panic!("{e:?}"))
}

fn emit(e: &mut RemoteWrite, payloads: &[Arc<Payload>]) {
    let bl = Matcher::default();
    e.emit(&Batch::new(payloads, &bl)).expect("emit");
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A payload with a gauge of the table, a raw counter and a rate (left out).
fn payload(ts: i64, load: f64, user_seconds: f64) -> Arc<Payload> {
    let mut cpu = Point::device("cpu", "seconds_total", "s", "cpu", "0", Value::Float(user_seconds)).counter();
    cpu.tags.push(("mode".into(), "user".into()));
    Arc::new(Payload {
        meta: Arc::new(HostMeta { hostname: "h1".into(), ..HostMeta::default() }),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(load)),
            cpu,
            Point::simple("cpu", "user", "percent", Value::Float(3.0)),
        ],
    })
}

/// Waits until the emitter's buffer is empty, pumping it.
fn drain(e: &mut RemoteWrite, within: Duration) {
    let t = Instant::now();
    while e.queued() > 0 {
        assert!(t.elapsed() < within, "{} records still queued after {within:?}", e.queued());
        std::thread::sleep(Duration::from_millis(50));
        e.idle();
    }
}

/// `query` evaluated at `ts`: the `result` part of Prometheus' answer.
fn query(prom: &Daemon, q: &str, ts: i64) -> String {
    let url = prom.url(&format!("/api/v1/query?query={q}&time={ts}"));
    let body = get(&url).2;
    assert!(body.contains(r#""status":"success""#), "{url}: {body}");
    body
}

#[test]
fn points_read_back_from_a_real_prometheus_and_an_outage_loses_nothing() {
    let test = "points_read_back_from_a_real_prometheus_and_an_outage_loses_nothing";
    if !installed(test, support_prom::PROMETHEUS, "prometheus") {
        return;
    }
    let port = free_port();
    let prom = Daemon::remote_write_receiver_in(
        tempfile::Builder::new().prefix("prometheus.").tempdir().expect("tempdir"),
        port,
    );
    let mut e = emitter(&format!(
        r#"{{"url": "http://127.0.0.1:{port}/api/v1/write", "retry_initial": "100ms", "retry_max": "200ms"}}"#
    ));
    let t0 = now() - 30;
    emit(&mut e, &[payload(t0, 0.5, 12.25)]);
    drain(&mut e, Duration::from_secs(10));
    let stats = e.stats();
    assert_eq!(
        stats.sent_points.load(Ordering::Relaxed),
        2,
        "node_load1 and node_cpu_seconds_total; the rate is left out"
    );

    let body = query(&prom, "node_load1", t0);
    assert!(
        body.contains(&format!(r#"{{"metric":{{"__name__":"node_load1","hostname":"h1"}},"value":[{t0},"0.5"]}}"#)),
        "{body}"
    );
    let body = query(&prom, "node_cpu_seconds_total", t0);
    assert!(
        body.contains(&format!(
            r#"{{"metric":{{"__name__":"node_cpu_seconds_total","cpu":"0","hostname":"h1","mode":"user"}},"value":[{t0},"12.25"]}}"#
        )),
        "{body}"
    );
    assert!(query(&prom, "cpu_user_percent", t0).contains(r#""result":[]"#));

    // Outage: Prometheus stops; three collections wait in the buffer, retried with backoff.
    let dir = prom.stop();
    for i in 1..=3 {
        emit(&mut e, &[payload(t0 + i, 0.5 + i as f64, 12.25 + i as f64)]);
        std::thread::sleep(Duration::from_millis(150));
        e.idle();
    }
    assert_eq!(e.queued(), 3, "kept while the receiver is down");
    assert!(stats.retries.load(Ordering::Relaxed) >= 1);
    let prom = Daemon::remote_write_receiver_in(dir, port);
    drain(&mut e, Duration::from_secs(15));
    let body = query(&prom, "node_load1[10s]", t0 + 3);
    let values: Vec<String> = (0..=3).map(|i| format!("[{},\"{}\"]", t0 + i, 0.5 + i as f64)).collect();
    assert!(body.contains(&format!(r#""values":[{}]"#, values.join(","))), "{body}");
    let body = query(&prom, "node_cpu_seconds_total[10s]", t0 + 3);
    let values: Vec<String> = (0..=3).map(|i| format!("[{},\"{}\"]", t0 + i, 12.25 + i as f64)).collect();
    assert!(body.contains(&format!(r#""values":[{}]"#, values.join(","))), "{body}");
    assert_eq!(stats.dropped_points.load(Ordering::Relaxed), 0);
    assert_eq!(stats.rejected_points.load(Ordering::Relaxed), 0);

    // A sample older than the newest of its series: Prometheus answers 400, the record is
    // dropped and counted, and what follows still goes through.
    emit(&mut e, &[payload(t0 + 1, 9.0, 99.0)]);
    drain(&mut e, Duration::from_secs(10));
    assert_eq!(stats.rejected_points.load(Ordering::Relaxed), 2);
    emit(&mut e, &[payload(t0 + 4, 4.5, 16.25)]);
    drain(&mut e, Duration::from_secs(10));
    assert!(query(&prom, "node_load1", t0 + 4).contains(&format!(r#""value":[{},"4.5"]"#, t0 + 4)));
}

#[test]
fn requests_follow_the_protocol() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // 429, then 503, then 204; the fourth request is answered 401 (dropped, counted).
    let server = FakeServer::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => Answer::text("429 Too Many Requests", "slow down"),
        1 => Answer::text("503 Service Unavailable", "busy"),
        2 => Answer::text("204 No Content", ""),
        _ => Answer::text("401 Unauthorized", "who are you"),
    });
    let mut e = emitter(&format!(
        r#"{{"url": "http://{}/api/v1/write", "retry_initial": "50ms", "retry_max": "100ms", "max_series": 1}}"#,
        server.addr()
    ));
    emit(&mut e, &[payload(1_700_000_000, 0.5, 12.25)]);
    drain(&mut e, Duration::from_secs(10));
    let reqs = server.requests();
    // max_series 1: node_load1 went alone; the 401 dropped node_cpu_seconds_total.
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    let stats = e.stats();
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(stats.sent_points.load(Ordering::Relaxed), 0, "the batch ended in a rejection");
    assert_eq!(stats.rejected_points.load(Ordering::Relaxed), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/v1/write");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("content-encoding"), Some("snappy"));
        assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    }
    let body = snap::raw::Decoder::new().decompress_vec(&reqs[2].body).expect("snappy block format");
    let mut want = Vec::new();
    badger_emitters::remote_write::proto::write_series(
        &mut want,
        &[("__name__", "node_load1"), ("hostname", "h1")],
        0.5,
        1_700_000_000_000,
    );
    assert_eq!(body, want);
    let body = snap::raw::Decoder::new().decompress_vec(&reqs[3].body).expect("snappy block format");
    let mut want = Vec::new();
    badger_emitters::remote_write::proto::write_series(
        &mut want,
        &[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("hostname", "h1"), ("mode", "user")],
        12.25,
        1_700_000_000_000,
    );
    assert_eq!(body, want);
}

/// The badger binary with the cpu and memory modules writes node_exporter's series to a real
/// Prometheus.
#[test]
fn the_agent_writes_node_exporter_series() {
    let test = "the_agent_writes_node_exporter_series";
    if !installed(test, support_prom::PROMETHEUS, "prometheus") {
        return;
    }
    let prom = Daemon::remote_write_receiver();
    let main = r#"{ "core": { "hostname": "h1", "ipv4": "", "ipv6": "" },
                    "modules": ["cpu", "memory"], "emitters": ["remote_write"] }"#;
    let conf = format!(r#"{{"url": "http://127.0.0.1:{}/api/v1/write"}}"#, prom.port);
    let c = badger_test_support::process::TempConfig::new(main, &[("remote_write", &conf)]);
    let _agent = crate::prometheus::Agent::start(&c);
    let q = |query: &str| get(&prom.url(&format!("/api/v1/query?query={query}"))).2;
    let body = support_prom::wait_for(Duration::from_secs(15), "node_cpu_seconds_total in Prometheus", || {
        let r = q("node_cpu_seconds_total");
        r.contains(r#""mode":"idle""#).then_some(r)
    });
    assert!(
        body.contains(r#"{"__name__":"node_cpu_seconds_total","cpu":"0","hostname":"h1","mode":"idle"}"#),
        "{body}"
    );
    let body = q("node_memory_MemTotal_bytes");
    assert!(body.contains(r#"{"__name__":"node_memory_MemTotal_bytes","hostname":"h1"}"#), "{body}");
    assert!(q("cpu_user_percent").contains(r#""result":[]"#), "no rates under node_exporter naming");
}
