//! The `otlp` emitter against a real OpenTelemetry collector (Rotel, started here on free
//! loopback ports) that re-exports to a receiver decoding with the official OTLP protobuf
//! definitions; and the OTLP answer rules (4xx, Retry-After, partial success) against that
//! receiver alone. Without the pinned wheels (`BADGER_OTLP_PKG`) the tests are skipped, or
//! fail under `BADGER_REQUIRE_SERVERS=1`.

use crate::support_otlp::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::otlp::Otlp;
use badger_test_support::fixture::{self, FixtureRoot};
use serde_json::Value as Json;

const T0: i64 = 1_700_000_000;
const NS: u64 = 1_000_000_000;

fn meta() -> Arc<HostMeta> {
    Arc::new(HostMeta {
        hostname: "h1".into(),
        region: "eu-west-1".into(),
        zone: "eu-west-1b".into(),
        cluster: "c1".into(),
        ..HostMeta::default()
    })
}

fn emitter(conf: &str) -> Otlp {
    let conf = PluginConf::from_text("otlp", Path::new("conf.d/otlp.conf"), conf);
    match Otlp::from_conf(&conf) {
        Ok(e) => e,
        Err(e) => panic!("config: {e}"),
    }
}

fn emit(e: &mut Otlp, payloads: &[Arc<Payload>]) {
    let blacklist = Matcher::default();
    e.emit(&Batch::new(payloads, &blacklist)).expect("emit");
}

fn flush(e: &mut Otlp) {
    e.flush(Instant::now() + Duration::from_secs(5)).expect("flush");
}

/// Two collections of the host modules on a fixture tree, one second apart.
fn fixture_payloads(tree: &str) -> Vec<Arc<Payload>> {
    let root = FixtureRoot::new(tree);
    let mods: Vec<_> = [
        ("cpu", "{}"),
        ("load", "{}"),
        ("memory", "{}"),
        ("disk", r#"{"filesystems": false}"#),
        ("network", "{}"),
        ("system", "{}"),
    ]
    .iter()
    .map(|(name, conf)| {
        let spec = badger_modules::REGISTRY.iter().find(|s| s.name == *name).expect("module");
        fixture::build(spec, &root.ctx(), conf)
    })
    .collect();
    let mut mods = mods;
    let mut out = Vec::new();
    for (i, secs) in [0.0, 1.0].into_iter().enumerate() {
        if i == 1 {
            root.advance();
        }
        let mut points = Vec::new();
        for m in &mut mods {
            points.extend(fixture::collect(m.as_mut(), secs));
        }
        out.push(Arc::new(Payload { meta: meta(), timestamp: T0 + i as i64, points }));
    }
    out
}

/// The host's boot time (what the emitter uses as the start of the host counters).
fn btime() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok()).expect("btime")
}

/// Points of one metric at one time, by attributes.
fn series(points: &[Json], name: &str, time: i64) -> BTreeMap<Vec<(String, String)>, Json> {
    let t = time as u64 * NS;
    points
        .iter()
        .filter(|p| p["name"] == name && p["time"].as_u64() == Some(t))
        .map(|p| (pairs(&p["attributes"]), p.clone()))
        .collect()
}

fn a(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The numbers after `label` on a line of a fixture file.
fn numbers(text: &str, label: &str) -> Vec<u64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no {label}"))
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect()
}

#[track_caller]
fn assert_sum(p: &Json, unit: &str, monotonic: bool, start: u64) {
    assert_eq!(p["type"], "sum", "{p}");
    assert_eq!(p["unit"], unit, "{p}");
    assert_eq!(p["temporality"], 2, "cumulative: {p}");
    assert_eq!(p["monotonic"], monotonic, "{p}");
    assert_eq!(p["start"].as_u64(), Some(start * NS), "{p}");
}

#[test]
fn fixture_stats_pass_through_the_collector_unchanged_under_hostmetrics_names() {
    let Some(pkg) = otlp_pkg() else { return };
    let receiver = Receiver::start(&pkg, "200");
    let direct = Receiver::start(&pkg, "200");
    let rotel = Rotel::start(&pkg, &receiver.endpoint());
    let tree = "vm-6.18";
    let payloads = fixture_payloads(tree);

    let mut via = emitter(&format!(r#"{{"endpoint": "{}"}}"#, rotel.endpoint()));
    emit(&mut via, &payloads);
    flush(&mut via);
    let mut straight = emitter(&format!(r#"{{"endpoint": "{}", "gzip": false}}"#, direct.endpoint()));
    emit(&mut straight, &payloads);
    flush(&mut straight);
    assert_eq!(via.stats().outbox.sent_records.load(Ordering::Relaxed), 2, "{}", rotel.log_text());

    let want_points = direct.points();
    assert!(want_points.len() > 100, "{}", want_points.len());
    let got =
        receiver.wait_points(Duration::from_secs(20), "the collector's re-export", |p| p.len() >= want_points.len());
    // What the collector re-exported is what badger sent (order aside).
    let sorted = |v: &[Json]| {
        let mut s: Vec<String> = v.iter().map(|p| p.to_string()).collect();
        s.sort();
        s
    };
    assert_eq!(sorted(&got), sorted(&want_points));

    // The requests: OTLP/HTTP protobuf, gzip.
    for r in direct.requests() {
        assert_eq!(
            (r["path"].as_str(), r["content_type"].as_str()),
            (Some("/v1/metrics"), Some("application/x-protobuf"))
        );
    }

    // Resource and scope.
    let machine_id = std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default();
    let mut resource = vec![("host.name", "h1")];
    if !machine_id.is_empty() {
        resource.push(("host.id", machine_id.as_str()));
    }
    resource.extend([
        ("os.type", "linux"),
        ("service.name", "badger"),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("cloud.region", "eu-west-1"),
        ("cloud.availability_zone", "eu-west-1b"),
        ("badger.cluster", "c1"),
    ]);
    for p in &got {
        assert_eq!(pairs(&p["resource"]), a(&resource));
        assert_eq!(p["scope"], serde_json::json!(["badger", env!("CARGO_PKG_VERSION")]));
    }

    let boot = btime();
    for (snap, ts) in [("t0", T0), ("t1", T0 + 1)] {
        // system.cpu.time: every core and state, ticks / 100, from the first collection on.
        let stat = fixture::read(tree, snap, "proc/stat");
        let cpu = series(&got, "system.cpu.time", ts);
        let cores: Vec<String> = stat
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|l| l.len() > 3 && l.starts_with("cpu"))
            .map(String::from)
            .collect();
        assert_eq!(cpu.len(), cores.len() * 8, "{snap}");
        for core in &cores {
            let ticks = numbers(&stat, core);
            for (i, state) in
                ["user", "nice", "system", "idle", "wait", "interrupt", "softirq", "steal"].iter().enumerate()
            {
                let p = &cpu[&a(&[("cpu", core), ("state", state)])];
                assert_sum(p, "s", true, boot);
                assert_eq!(p["value_type"], "as_double");
                assert_eq!(p["value"].as_f64(), Some(ticks[i] as f64 / 100.0), "{core} {state}");
            }
        }
        let procs = series(&got, "system.processes.created", ts);
        assert_eq!(procs[&vec![]]["value"].as_u64(), Some(numbers(&stat, "processes")[0]));
        assert_sum(&procs[&vec![]], "{processes}", true, boot);

        // system.disk.*: vda, from /proc/diskstats.
        let disk = fixture::read(tree, snap, "proc/diskstats");
        let f: Vec<u64> =
            disk.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|w| w[2] == "vda").expect("vda")[3..]
                .iter()
                .map(|x| x.parse().unwrap())
                .collect();
        let io = series(&got, "system.disk.io", ts);
        assert_eq!(io.len(), 2);
        assert_eq!(io[&a(&[("device", "vda"), ("direction", "read")])]["value"].as_u64(), Some(f[2] * 512));
        assert_eq!(io[&a(&[("device", "vda"), ("direction", "write")])]["value"].as_u64(), Some(f[6] * 512));
        assert_sum(&io[&a(&[("device", "vda"), ("direction", "read")])], "By", true, boot);
        let ops = series(&got, "system.disk.operations", ts);
        assert_eq!(ops[&a(&[("device", "vda"), ("direction", "read")])]["value"].as_u64(), Some(f[0]));
        assert_eq!(ops[&a(&[("device", "vda"), ("direction", "write")])]["value"].as_u64(), Some(f[4]));
        let merged = series(&got, "system.disk.merged", ts);
        assert_eq!(merged[&a(&[("device", "vda"), ("direction", "write")])]["value"].as_u64(), Some(f[5]));
        let op_time = series(&got, "system.disk.operation_time", ts);
        assert_eq!(
            op_time[&a(&[("device", "vda"), ("direction", "read")])]["value"].as_f64(),
            Some(f[3] as f64 / 1000.0)
        );
        let io_time = series(&got, "system.disk.io_time", ts);
        assert_eq!(io_time[&a(&[("device", "vda")])]["value"].as_f64(), Some(f[9] as f64 / 1000.0));
        assert_sum(&io_time[&a(&[("device", "vda")])], "s", true, boot);
        let pending = series(&got, "system.disk.pending_operations", ts);
        assert_eq!(pending[&a(&[("device", "vda")])]["value"].as_u64(), Some(f[8]));
        assert_sum(&pending[&a(&[("device", "vda")])], "{operations}", false, boot);

        // system.network.*: from /proc/net/dev (every interface but lo).
        let dev = fixture::read(tree, snap, "proc/net/dev");
        let net = series(&got, "system.network.io", ts);
        let packets = series(&got, "system.network.packets", ts);
        let mut ifaces = 0;
        for line in dev.lines().skip(2) {
            let (name, rest) = line.split_once(':').unwrap();
            let name = name.trim();
            if name == "lo" {
                continue;
            }
            ifaces += 1;
            let c: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap()).collect();
            let rx = &net[&a(&[("device", name), ("direction", "receive")])];
            assert_eq!(rx["value"].as_u64(), Some(c[0]));
            assert_sum(rx, "By", true, boot);
            assert_eq!(net[&a(&[("device", name), ("direction", "transmit")])]["value"].as_u64(), Some(c[8]));
            assert_eq!(packets[&a(&[("device", name), ("direction", "receive")])]["value"].as_u64(), Some(c[1]));
            assert_eq!(packets[&a(&[("device", name), ("direction", "transmit")])]["unit"], "{packets}");
        }
        assert_eq!(net.len(), 2 * ifaces);

        // Load averages: gauges.
        let loadavg = fixture::read(tree, snap, "proc/loadavg");
        let l: Vec<f64> = loadavg.split_whitespace().take(3).map(|x| x.parse().unwrap()).collect();
        for (name, want) in
            ["system.cpu.load_average.1m", "system.cpu.load_average.5m", "system.cpu.load_average.15m"].iter().zip(l)
        {
            let s = series(&got, name, ts);
            let p = &s[&vec![]];
            assert_eq!(
                (p["type"].as_str(), p["unit"].as_str(), p["value"].as_f64()),
                (Some("gauge"), Some("{thread}"), Some(want))
            );
        }

        // Memory: gopsutil's states from /proc/meminfo (kB → bytes).
        let meminfo = fixture::read(tree, snap, "proc/meminfo");
        let kb = |key: &str| -> i64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                * 1024
        };
        let usage = series(&got, "system.memory.usage", ts);
        let cached = kb("Cached") + kb("SReclaimable");
        let used = kb("MemTotal") - kb("MemFree") - kb("Buffers") - cached;
        for (state, want) in [("used", used), ("free", kb("MemFree")), ("buffered", kb("Buffers")), ("cached", cached)]
        {
            let p = &usage[&a(&[("state", state)])];
            assert_eq!(p["value"].as_i64(), Some(want), "{state}");
            assert_sum(p, "By", false, boot);
        }
        let util = series(&got, "system.memory.utilization", ts);
        // (serde_json may read a float one unit in the last place off: compare closely.)
        let free_share = util[&a(&[("state", "free")])]["value"].as_f64().unwrap();
        fixture::assert_close(free_share, kb("MemFree") as f64 / kb("MemTotal") as f64);

        // Uptime: a gauge in seconds.
        let uptime: f64 = fixture::read(tree, snap, "proc/uptime").split_whitespace().next().unwrap().parse().unwrap();
        let up = series(&got, "system.uptime", ts);
        assert_eq!((up[&vec![]]["unit"].as_str(), up[&vec![]]["value"].as_f64()), (Some("s"), Some(uptime)));
    }

    // The rates of the second collection go out under their badger names, as gauges.
    let rates = series(&got, "disk.reads", T0 + 1);
    assert_eq!(rates[&a(&[("device", "vda")])]["type"], "gauge");
    assert!(series(&got, "disk.reads", T0).is_empty());
    rotel.stop();
}

/// A small payload of tick `ts`.
fn tick(ts: i64) -> Arc<Payload> {
    Arc::new(Payload {
        meta: meta(),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(0.25)),
            Point::device("disk", "read_bytes_total", "B", "device", "sda", Value::Int(ts * 10)).counter(),
        ],
    })
}

#[test]
fn collector_down_for_20_seconds_every_tick_arrives_once() {
    let Some(pkg) = otlp_pkg() else { return };
    let receiver = Receiver::start(&pkg, "200");
    let rotel = Rotel::start(&pkg, &receiver.endpoint());
    let (http_port, grpc_port) = (rotel.http_port, rotel.grpc_port);
    let mut e = emitter(&format!(
        r#"{{"endpoint": "{}", "retry_initial": "200ms", "retry_max": "1s", "timeout": "2s"}}"#,
        rotel.endpoint()
    ));
    let ticks_of = |points: &[Json]| -> Vec<i64> {
        let mut t: Vec<i64> = points
            .iter()
            .filter(|p| p["name"] == "system.disk.io")
            .map(|p| (p["time"].as_u64().unwrap() / NS) as i64)
            .collect();
        t.sort();
        t
    };
    let mut ts = T0;
    let mut next = |e: &mut Otlp| {
        emit(e, &[tick(ts)]);
        ts += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    for _ in 0..3 {
        next(&mut e);
    }
    receiver.wait_points(Duration::from_secs(10), "ticks before the outage", |p| ticks_of(p).len() == 3);
    rotel.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(20) {
        next(&mut e);
        e.idle();
    }
    assert!(e.stats().outbox.retries.load(Ordering::Relaxed) > 0);
    let rotel = Rotel::start_on(&pkg, &receiver.endpoint(), http_port, grpc_port);
    for _ in 0..3 {
        next(&mut e);
        e.idle();
    }
    flush(&mut e);
    let produced: Vec<i64> = (T0..ts).collect();
    let got = receiver
        .wait_points(Duration::from_secs(20), "every tick after the outage", |p| ticks_of(p).len() >= produced.len());
    assert_eq!(ticks_of(&got), produced, "each tick exactly once");
    let stats = e.stats();
    assert_eq!(stats.outbox.dropped_points.load(Ordering::Relaxed), 0);
    assert_eq!(stats.outbox.rejected_points.load(Ordering::Relaxed), 0);
    assert_eq!(stats.outbox.sent_points.load(Ordering::Relaxed), 2 * produced.len() as u64);
    rotel.stop();
}

#[test]
fn client_errors_are_rejected_and_counted_never_retried() {
    let Some(pkg) = otlp_pkg() else { return };
    let receiver = Receiver::start(&pkg, "400");
    let mut e = emitter(&format!(
        r#"{{"endpoint": "{}", "retry_initial": "100ms", "headers": {{"Authorization": "Bearer t0k"}}}}"#,
        receiver.endpoint()
    ));
    emit(&mut e, &[tick(T0), tick(T0 + 1)]);
    e.idle();
    flush(&mut e);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "one request, never retried: {requests:?}");
    assert_eq!(requests[0]["points"], 4);
    assert_eq!(requests[0]["authorization"], "Bearer t0k");
    assert_eq!(requests[0]["content_encoding"], "gzip");
    let s = e.stats();
    assert_eq!(s.outbox.rejected_points.load(Ordering::Relaxed), 4);
    assert_eq!(s.outbox.retries.load(Ordering::Relaxed), 0);
    assert_eq!(s.outbox.sent_points.load(Ordering::Relaxed), 0);
}

#[test]
fn unavailable_is_retried_after_retry_after_then_partial_success_is_counted() {
    let Some(pkg) = otlp_pkg() else { return };
    // 503 with Retry-After: 2, then a 200 that says 3 data points were dropped.
    let receiver = Receiver::start(&pkg, "503:2,partial:3");
    let mut e =
        emitter(&format!(r#"{{"endpoint": "{}", "retry_initial": "100ms", "retry_max": "10s"}}"#, receiver.endpoint()));
    emit(&mut e, &[tick(T0)]);
    let until = Instant::now() + Duration::from_secs(10);
    while receiver.requests().len() < 2 && Instant::now() < until {
        e.idle();
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = receiver.wait_requests(2, Duration::from_secs(1));
    let gap = r[1]["t"].as_f64().unwrap() - r[0]["t"].as_f64().unwrap();
    assert!((1.9..4.0).contains(&gap), "the retry came {gap}s after the 503, not after Retry-After's 2 s");
    assert_eq!(r.len(), 2);
    let s = e.stats();
    assert_eq!(s.outbox.retries.load(Ordering::Relaxed), 1);
    assert_eq!(s.outbox.sent_points.load(Ordering::Relaxed), 2);
    assert_eq!(s.partial_rejected.load(Ordering::Relaxed), 3);
    // And again on the next request.
    emit(&mut e, &[tick(T0 + 1)]);
    flush(&mut e);
    assert_eq!(s.partial_rejected.load(Ordering::Relaxed), 6);
}

#[test]
fn the_agent_sends_every_tick_through_the_collector() {
    use badger_test_support::process::{badger, TempConfig};
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let Some(pkg) = otlp_pkg() else { return };
    let receiver = Receiver::start(&pkg, "200");
    let rotel = Rotel::start(&pkg, &receiver.endpoint());
    let c = TempConfig::new(
        r#"{"core": {"hostname": "agent-host", "ipv4": "", "ipv6": "", "region": "r1", "proc_root": "proc"},
            "modules": ["load"], "emitters": ["stdout", "otlp"]}"#,
        &[("otlp", &format!(r#"{{"endpoint": "{}"}}"#, rotel.endpoint()))],
    );
    c.write("proc/loadavg", "0.50 1.00 2.00 1/100 999\n");
    let mut child = badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start badger");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| serde_json::from_str::<Json>(&l).expect("NDJSON")["timestamp"].as_i64().expect("timestamp"))
            .collect::<Vec<i64>>()
    });
    std::thread::sleep(Duration::from_millis(3500));
    let ok = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
    assert!(status.success(), "{err}");
    let stamps = reader.join().expect("stdout reader");
    assert!(stamps.len() >= 2, "{stamps:?}");
    let got = receiver.wait_points(Duration::from_secs(10), "every tick of the agent", |p| {
        p.iter().filter(|p| p["name"] == "system.cpu.load_average.1m").count() >= stamps.len()
    });
    let mut times: Vec<i64> = got
        .iter()
        .filter(|p| p["name"] == "system.cpu.load_average.1m")
        .map(|p| {
            assert_eq!(p["value"].as_f64(), Some(0.5));
            let res = pairs(&p["resource"]);
            assert_eq!(res[0], ("host.name".to_string(), "agent-host".to_string()));
            assert!(res.contains(&("cloud.region".to_string(), "r1".to_string())), "{res:?}");
            (p["time"].as_u64().unwrap() / NS) as i64
        })
        .collect();
    times.sort();
    assert_eq!(times, stamps, "each tick once, with the tick's time");
    let five: Vec<&Json> = got.iter().filter(|p| p["name"] == "system.cpu.load_average.15m").collect();
    assert_eq!(five[0]["value"].as_f64(), Some(2.0));
    // load's other stats under their badger names.
    assert!(got.iter().any(|p| p["name"] == "load.runnable_entities" && p["value"] == 1));
    rotel.stop();
}

/// A one-purpose HTTPS server on loopback with a self-signed certificate for `localhost`:
/// answers every request 200 with an empty body, and counts the requests and failed
/// handshakes. Returns (port, certificate PEM, requests, failed handshakes).
fn https_server() -> (u16, String, Arc<std::sync::atomic::AtomicU64>, Arc<std::sync::atomic::AtomicU64>) {
    use rustls_pki_types::PrivateKeyDer;
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicU64;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("server config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (requests, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, f) = (requests.clone(), failed.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
            let tls = rustls::ServerConnection::new(cfg.clone()).expect("connection");
            let mut s = rustls::StreamOwned::new(tls, tcp);
            // One request after the other on the connection, until it closes.
            loop {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    if head.is_empty() && !s.conn.is_handshaking() {
                        break;
                    }
                    if s.conn.is_handshaking() {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if s.read_exact(&mut body).is_err() {
                    break;
                }
                r.fetch_add(1, Ordering::Relaxed);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                let _ = s.flush();
            }
        }
    });
    (port, pem, requests, failed)
}

#[test]
fn https_with_the_given_ca_only() {
    let (port, pem, requests, failed) = https_server();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &pem).expect("write ca");
    let conf = |extra: &str| {
        let text =
            format!(r#"{{"endpoint": "https://localhost:{port}", "retry_initial": "5s", "timeout": "3s"{extra}}}"#);
        match Otlp::from_conf(&PluginConf::from_text("otlp", &dir.path().join("otlp.conf"), &text)) {
            Ok(e) => e,
            Err(e) => panic!("config: {e}"),
        }
    };
    // With the certificate as ca_file: sent.
    let mut e = conf(r#", "ca_file": "ca.pem""#);
    emit(&mut e, &[tick(T0)]);
    assert_eq!(e.stats().outbox.sent_points.load(Ordering::Relaxed), 2);
    assert_eq!(requests.load(Ordering::Relaxed), 1);
    drop(e);
    // With the system's roots the self-signed certificate is refused: kept and retried.
    let mut e = conf("");
    emit(&mut e, &[tick(T0)]);
    let s = e.stats();
    assert_eq!(s.outbox.sent_points.load(Ordering::Relaxed), 0);
    assert_eq!(s.outbox.retries.load(Ordering::Relaxed), 1);
    assert_eq!(s.outbox.queued_records.load(Ordering::Relaxed), 1);
    assert_eq!(requests.load(Ordering::Relaxed), 1);
    let until = Instant::now() + Duration::from_secs(5);
    while failed.load(Ordering::Relaxed) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(failed.load(Ordering::Relaxed), 1, "one refused handshake");
}
