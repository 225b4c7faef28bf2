//! The graphite emitter against a real carbon-cache (Debian graphite-carbon), started by
//! each test on its own loopback ports: plaintext TCP, UDP, pickle and tags read back from
//! the whisper files; reconnection after carbon restarts; the badger binary end to end.
//! Without carbon-cache the tests are skipped, or fail with `BADGER_REQUIRE_SERVERS=1`.

use crate::support_graphite;
use badger_test_support::process as common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, Emitter, EmitterContext, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::graphite::{self, Encoder, Graphite, Protocol, Settings};
use common::{badger, TempConfig};
use support_graphite::{now, Carbon, Series, PYTHON};

const WAIT: Duration = Duration::from_secs(20);

fn meta(dc: &str, region: &str, zone: &str, cluster: &str, host: &str) -> Arc<HostMeta> {
    Arc::new(HostMeta {
        datacenter: dc.into(),
        region: region.into(),
        zone: zone.into(),
        cluster: cluster.into(),
        hostname: host.into(),
        ipv4: "10.0.0.1".into(),
        ipv6: String::new(),
    })
}

/// load points (floats and ints) and a filesystem point whose name holds a mount point.
fn payload(meta: &Arc<HostMeta>, ts: i64, n: f64) -> Arc<Payload> {
    Arc::new(Payload {
        meta: meta.clone(),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(n + 0.09)),
            Point::simple("load", "runnable_entities", "", Value::Int(3)),
            Point::device("fs", "used", "B", "mount", "/var/lib", Value::Int(1_000_000 + n as i64))
                .with_tag("fstype", "ext4"),
        ],
    })
}

fn emitter(name: &str, conf: &str) -> Box<dyn Emitter> {
    let conf = PluginConf::from_text(name, Path::new("conf.d/graphite.conf"), conf);
    match (graphite::SPEC.build)(&EmitterContext::default(), &conf) {
        Ok(e) => e,
        Err(e) => panic!("building {name}: {e}"),
    }
}

fn emit(e: &mut dyn Emitter, payloads: &[Arc<Payload>]) {
    let blacklist = Matcher::default();
    e.emit(&Batch::new(payloads, &blacklist)).expect("emit");
}

/// The points of `path`, or none.
fn points(s: &Series, path: &str) -> Vec<(i64, f64)> {
    s.get(path).cloned().unwrap_or_default()
}

fn has_all(s: &Series, path: &str, want: &[(i64, f64)]) -> bool {
    let got = points(s, path);
    want.iter().all(|w| got.contains(w))
}

// ---- the pickle frame, read back by Python ------------------------------------------------

#[test]
fn pickle_frames_read_back_in_python_as_the_original_wrote_them() {
    if !support_graphite::carbon_installed("pickle_frames_read_back_in_python") {
        return;
    }
    let m = meta("dc1", "", "", "c1", "h1");
    let p = Arc::new(Payload {
        meta: m.clone(),
        timestamp: 1795263131,
        points: vec![
            Point::simple("load", "one", "", Value::Float(2.09)),
            Point::simple("load", "five", "", Value::Float(2.0)),
            Point::simple("load", "fifteen", "", Value::Float(1.5)),
            Point::simple("load", "runnable_entities", "", Value::Int(1)),
            Point::simple("load", "total_entities", "", Value::Int(100)),
        ],
    });
    let big = Arc::new(Payload {
        meta: m,
        timestamp: 1795263132,
        points: (0..1203).map(|i| Point::device("x", "y", "", "n", &i.to_string(), Value::Int(i))).collect(),
    });
    let mut enc = Encoder::new(Protocol::Pickle, "", false, 1400);
    let blacklist = Matcher::default();
    let payloads = [p, big];
    let batch = Batch::new(&payloads, &blacklist);
    let mut frames = Vec::new();
    let views: Vec<_> = batch.payloads().collect();
    enc.encode(&views[0], &mut frames);
    let first_len = frames.len();
    enc.encode(&views[1], &mut frames);

    // Frame by frame, with the standard unpickler and with carbon's own (safe) unpickler.
    let script = r#"
import pickle, pickletools, struct, sys
from carbon.util import get_unpickler
data = sys.stdin.buffer.read()
frames, ops = [], set()
while data:
    (n,) = struct.unpack('!L', data[:4])
    body = data[4:4 + n]
    assert len(body) == n
    items = pickle.loads(body)
    assert get_unpickler().loads(body) == items
    ops.update(op.name for op, _, _ in pickletools.genops(body))
    frames.append(items)
    data = data[4 + n:]
print(repr(frames[0]))
print(' '.join(str(len(f)) for f in frames[1:]))
print(frames[-1][-1])
print(' '.join(sorted(ops)))
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(&frames).expect("write frames");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "[('dc1.c1.h1.load.one', (1795263131, 2.09)), ('dc1.c1.h1.load.five', (1795263131, 2.0)), \
         ('dc1.c1.h1.load.fifteen', (1795263131, 1.5)), ('dc1.c1.h1.load.runnable_entities', (1795263131, 1)), \
         ('dc1.c1.h1.load.total_entities', (1795263131, 100))]"
    );
    assert_eq!(lines[1], "500 500 203", "1203 points in frames of 500");
    assert_eq!(lines[2], "('dc1.c1.h1.x.y.1202', (1795263132, 1202))");
    assert_eq!(lines[3], "APPENDS BINFLOAT BININT BINUNICODE EMPTY_LIST MARK PROTO STOP TUPLE2");
    assert_eq!(u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize, first_len - 4);
}

// ---- against carbon ---------------------------------------------------------------------

#[test]
fn plaintext_tcp_paths_and_sanitising_in_the_whisper_tree() {
    let Some(carbon) = Carbon::start("plaintext_tcp") else { return };
    let t0 = now() - 30;
    let plain = meta("dc1", "", "", "c1", "h1");
    let mut e = emitter("graphite", &format!(r#"{{"port": {}}}"#, carbon.port));
    emit(&mut *e, &[payload(&plain, t0, 2.0), payload(&plain, t0 + 1, 3.0)]);
    // Unsafe characters everywhere, and a prefix.
    let odd = meta("dc 1", "eu/west", "", "web:front;x=y", "h1.example.com");
    let mut p = emitter("graphite", &format!(r#"{{"port": {}, "prefix": "servers.prod"}}"#, carbon.port));
    emit(&mut *p, &[payload(&odd, t0, 4.0)]);

    let s = carbon.wait_for(WAIT, "the plaintext points", |s| s.len() >= 6);
    let files: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "dc1/c1/h1/fs/used/_var_lib",
            "dc1/c1/h1/load/one",
            "dc1/c1/h1/load/runnable_entities",
            "servers/prod/dc_1/eu_west/web_front_x_y/h1/example/com/fs/used/_var_lib",
            "servers/prod/dc_1/eu_west/web_front_x_y/h1/example/com/load/one",
            "servers/prod/dc_1/eu_west/web_front_x_y/h1/example/com/load/runnable_entities",
        ]
    );
    let s = carbon.wait_for(WAIT, "both ticks", |s| {
        has_all(s, "dc1/c1/h1/load/one", &[(t0, 2.09), (t0 + 1, 3.09)])
            && has_all(s, "dc1/c1/h1/load/runnable_entities", &[(t0, 3.0), (t0 + 1, 3.0)])
            && has_all(s, "dc1/c1/h1/fs/used/_var_lib", &[(t0, 1_000_002.0), (t0 + 1, 1_000_003.0)])
    });
    assert_eq!(points(&s, "dc1/c1/h1/load/one"), [(t0, 2.09), (t0 + 1, 3.09)]);
    assert_eq!(points(&s, "servers/prod/dc_1/eu_west/web_front_x_y/h1/example/com/load/one"), [(t0, 4.09)]);
    e.flush(Instant::now() + Duration::from_secs(2)).unwrap();
    p.flush(Instant::now() + Duration::from_secs(2)).unwrap();
}

#[test]
fn udp_datagrams_reach_carbon() {
    let Some(carbon) = Carbon::start("udp") else { return };
    let t0 = now() - 30;
    let m = meta("dc1", "", "", "c1", "h1");
    // Small datagrams: the 24 points of a payload take several.
    let mut e =
        emitter("graphite", &format!(r#"{{"protocol": "udp", "port": {}, "udp_max_bytes": 120}}"#, carbon.port));
    let many = Arc::new(Payload {
        meta: m.clone(),
        timestamp: t0,
        points: (0..24)
            .map(|i| Point::device("net", "rx_bytes", "B", "interface", &format!("eth{i}"), Value::Int(i)))
            .collect(),
    });
    emit(&mut *e, &[many, payload(&m, t0 + 1, 5.0)]);
    let s = carbon.wait_for(WAIT, "the UDP points", |s| {
        (0..24).all(|i| has_all(s, &format!("dc1/c1/h1/net/rx_bytes/eth{i}"), &[(t0, i as f64)]))
            && has_all(s, "dc1/c1/h1/load/one", &[(t0 + 1, 5.09)])
            && has_all(s, "dc1/c1/h1/fs/used/_var_lib", &[(t0 + 1, 1_000_005.0)])
    });
    assert_eq!(points(&s, "dc1/c1/h1/net/rx_bytes/eth23"), [(t0, 23.0)]);
    assert_eq!(points(&s, "dc1/c1/h1/load/runnable_entities"), [(t0 + 1, 3.0)]);
}

#[test]
fn pickle_reaches_carbon() {
    let Some(carbon) = Carbon::start("pickle") else { return };
    let t0 = now() - 30;
    let m = meta("dc1", "", "", "c1", "h1");
    let mut e = emitter("graphite", &format!(r#"{{"protocol": "pickle", "port": {}}}"#, carbon.pickle_port));
    emit(&mut *e, &[payload(&m, t0, 6.0)]);
    emit(&mut *e, &[payload(&m, t0 + 1, 7.0), payload(&m, t0 + 2, 8.0)]);
    let want = [(t0, 6.09), (t0 + 1, 7.09), (t0 + 2, 8.09)];
    let s = carbon.wait_for(WAIT, "the pickled points", |s| {
        has_all(s, "dc1/c1/h1/load/one", &want)
            && has_all(s, "dc1/c1/h1/load/runnable_entities", &[(t0 + 2, 3.0)])
            && has_all(s, "dc1/c1/h1/fs/used/_var_lib", &[(t0 + 2, 1_000_008.0)])
    });
    assert_eq!(points(&s, "dc1/c1/h1/load/one"), want);
    assert_eq!(s.len(), 3, "{s:?}");
}

#[test]
fn tags_reach_carbon_as_tagged_series() {
    let Some(carbon) = Carbon::start("tags") else { return };
    let t0 = now() - 30;
    let m = meta("dc1", "", "", "c1", "h1");
    let mut e = emitter("graphite", &format!(r#"{{"port": {}, "tags": true, "prefix": "b"}}"#, carbon.port));
    emit(&mut *e, &[payload(&m, t0, 9.0)]);
    // carbon sorts the tags and files a tagged series under _tagged/<hash>/, dots as _DOT_.
    let s = carbon.wait_for(WAIT, "the tagged points", |s| s.len() >= 3);
    let mut names: Vec<String> = s.keys().map(|k| k.splitn(4, '/').last().unwrap_or_default().to_string()).collect();
    names.sort();
    assert!(s.keys().all(|k| k.starts_with("_tagged/")), "{s:?}");
    assert_eq!(
        names,
        [
            "b_DOT_fs_DOT_used;cluster=c1;datacenter=dc1;fstype=ext4;hostname=h1;mount=_var_lib",
            "b_DOT_load_DOT_one;cluster=c1;datacenter=dc1;hostname=h1",
            "b_DOT_load_DOT_runnable_entities;cluster=c1;datacenter=dc1;hostname=h1",
        ]
    );
    let one = s.keys().find(|k| k.contains("load_DOT_one")).cloned().unwrap_or_default();
    let s = carbon.wait_for(WAIT, "the tagged value", |s| has_all(s, &one, &[(t0, 9.09)]));
    assert_eq!(points(&s, &one), [(t0, 9.09)]);
}

#[test]
fn points_sent_while_carbon_was_down_arrive_after_it_restarts() {
    let Some(mut carbon) = Carbon::start("reconnect") else { return };
    let t0 = now() - 60;
    let m = meta("dc1", "", "", "c1", "h1");
    let conf = format!(r#"{{"port": {}, "retry_initial": "100ms", "retry_max": "500ms", "timeout": 2}}"#, carbon.port);
    let settings = Settings::from_conf(&PluginConf::from_text("graphite", Path::new("graphite.conf"), &conf)).unwrap();
    let mut g = match Graphite::new("graphite", &settings) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let stats = g.outbox().stats();
    let e: &mut dyn Emitter = &mut g;
    let path = "dc1/c1/h1/load/one";
    let want = |n: i64| (0..n).map(|i| (t0 + i, i as f64 + 0.09)).collect::<Vec<_>>();

    for i in 0..3 {
        emit(e, &[payload(&m, t0 + i, i as f64)]);
    }
    carbon.wait_for(WAIT, "the points before the stop", |s| has_all(s, path, &want(3)));

    carbon.stop();
    // carbon is away: the first send finds the connection closed, reconnecting fails, the
    // outbox keeps the records and backs off.
    for i in 3..8 {
        emit(e, &[payload(&m, t0 + i, i as f64)]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid_log = carbon.log();
    carbon.restart();
    // Nothing new is emitted: the idle hook retries until the queue is empty.
    let t = Instant::now();
    while t.elapsed() < WAIT && !has_all(&carbon.series(), path, &want(8)) {
        e.idle();
        std::thread::sleep(Duration::from_millis(200));
    }
    emit(e, &[payload(&m, t0 + 8, 8.0)]);
    let s = carbon.wait_for(WAIT, "every point, the gap's too", |s| has_all(s, path, &want(9)));
    assert_eq!(points(&s, path), want(9), "carbon's log before the restart:\n{pid_log}");
    e.flush(Instant::now() + Duration::from_secs(2)).unwrap();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    assert!(n(&stats.retries) >= 1, "sends failed while carbon was down");
    assert_eq!((n(&stats.sent_records), n(&stats.sent_points)), (9, 27));
    assert_eq!((n(&stats.dropped_records), n(&stats.queued_records)), (0, 0));
}

// ---- the binary -------------------------------------------------------------------------

#[test]
fn badger_binary_sends_load_to_carbon_with_the_original_conf_and_the_new_one() {
    let Some(carbon) = Carbon::start("binary") else { return };
    let c = TempConfig::new(
        r#"{"core": {"datacenter": "dc1", "region": "", "zone": "", "cluster": "c1", "hostname": "h1",
                     "ipv4": "", "ipv6": "", "proc_root": "proc"},
            "modules": ["load"], "emitters": ["graphite_emitter", "graphite"]}"#,
        &[
            // Stat Badger's own file, unchanged but for the port.
            (
                "graphite_emitter",
                &format!(
                    "{{\n    \"interval\": 0,\n    \"blacklist\": [],\n    \"host\": \"127.0.0.1\",\n    \
                     // use the pickle/bulk port\n    \"port\": {}\n}}\n",
                    carbon.pickle_port
                ),
            ),
            ("graphite", &format!(r#"{{"port": {}, "prefix": "new", "blacklist": ["load.five"]}}"#, carbon.port)),
        ],
    );
    c.write("proc/loadavg", "1.00 2.50 3.00 1/100 999\n");
    let started = now();
    let child = badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run badger");
    let s = carbon.wait_for(WAIT, "two ticks from each emitter", |s| {
        points(s, "dc1/c1/h1/load/one").len() >= 2 && points(s, "new/dc1/c1/h1/load/one").len() >= 2
    });
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");

    for (path, value) in [
        ("dc1/c1/h1/load/one", 1.0),
        ("dc1/c1/h1/load/five", 2.5),
        ("dc1/c1/h1/load/fifteen", 3.0),
        ("dc1/c1/h1/load/runnable_entities", 1.0),
        ("dc1/c1/h1/load/total_entities", 100.0),
        ("new/dc1/c1/h1/load/one", 1.0),
        ("new/dc1/c1/h1/load/total_entities", 100.0),
    ] {
        let got = points(&s, path);
        assert!(!got.is_empty(), "{path} missing: {s:?}");
        for (ts, v) in &got {
            assert_eq!(*v, value, "{path}");
            assert!(*ts >= started - 1 && *ts <= now(), "{path}: timestamp {ts}");
        }
    }
    let ticks: Vec<i64> = points(&s, "dc1/c1/h1/load/one").iter().map(|p| p.0).collect();
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 1), "one point a second: {ticks:?}");
    assert!(!s.contains_key("new/dc1/c1/h1/load/five"), "blacklisted for the new emitter");
    assert!(err.contains("emitters [graphite_emitter, graphite]"), "{err}");
}
