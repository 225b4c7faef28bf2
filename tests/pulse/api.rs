//! Black-box tests of `badger server`'s HTTP API over real TCP and HTTP (reference §7,
//! checks 5, 9, 10, 11, adapted to the embedded store), the relay library and the `pulse`
//! emitter against the server end to end.

use crate::support as support_pulse;
use badger_test_support::process as common;

use std::time::Duration;

use crate::cases::{self, feed, now_ms, seed};
use support_pulse::{request, Client, Server, Store};

#[test]
fn ingest_and_latest() {
    cases::ingest_and_latest(Store::Embedded);
}

#[test]
fn latest_raw_rows_with_repeated_filters() {
    cases::latest_raw_rows_with_repeated_filters(Store::Embedded);
}

#[test]
fn auth_cors_and_routes() {
    cases::auth_cors_and_routes(Store::Embedded);
}

#[test]
fn hourly_and_daily() {
    cases::hourly_and_daily(Store::Embedded);
}

#[test]
fn our_relay_against_our_server() {
    cases::our_relay_against_our_server(Store::Embedded);
}

#[test]
fn tls_self_signed_and_given() {
    let s = Server::start(&["-I=false"]);
    let r = request("GET", &format!("https://{}/ping", s.http), Some("secret"), None);
    assert_eq!((r.status, r.body.as_str()), (200, "pong"));
    // A certificate from files.
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let s =
        Server::start(&["--insecure=false", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let r = request("GET", &format!("https://{}/ping", s.http), Some("secret"), None);
    assert_eq!(r.body, "pong");
}

#[test]
fn the_pulse_emitter_end_to_end() {
    let s = Server::start(&["-p", "1"]);
    let cfg = common::TempConfig::new(
        r#"{"core": {"hostname": "agent1", "cluster": "c1"}, "modules": ["load", "memory"], "emitters": ["pulse"]}"#,
        &[("pulse", &format!("{{\"address\": \"{}\"}}", s.tcp))],
    );
    let mut agent = common::badger()
        .args(["-f", cfg.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let r = s.get_ok("/latest/load.one?host=agent1&cluster=c1");
    // A loaded machine can send the first tick without the memory module's points (a module
    // late for its tick is left out of it): wait for them too before stopping the agent.
    let mem = s.get_ok("/latest/mem.used?host=agent1&cluster=c1");
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["value"].as_f64().unwrap() >= 0.0);
    assert_eq!(mem.status, 200, "{}", mem.body);
    let keys = s.get("/keys").json();
    assert!(keys.as_array().unwrap().iter().any(|k| k == "mem.used"), "{keys}");
    let tags = s.get("/tags").json();
    for t in ["cluster", "host", "hostname"] {
        assert!(tags.as_array().unwrap().iter().any(|k| k == t), "{tags}");
    }
}

#[test]
fn restart_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &["-p", "1", "--self-metrics=false"]);
    let c = feed(&s, "host1", &[("cpu_used", "service:web1", "0.5000")]);
    assert_eq!(s.get_ok("/latest/cpu_used").json()["value"], 0.5);
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(dir.path(), &["-p", "60", "--self-metrics=false"]);
    assert_eq!(s.get("/keys").body, "[\"cpu_used\"]\n");
    assert_eq!(s.get_ok("/latest/cpu_used").json()["value"], 0.5);
}

#[test]
fn aggregates_come_from_live_data() {
    // -a 1: one-minute buckets; the bucket closes with the first point of the next minute.
    let s = Server::start(&["-p", "1", "-a", "1"]);
    let mut c = Client::identify(&s.tcp, "host1", 30);
    c.send("add cpu_used:service:web1");
    let start = now_ms();
    let next_minute = (start / 60_000 + 1) * 60_000;
    let n = std::sync::atomic::AtomicU64::new(0);
    let until = std::time::Instant::now() + Duration::from_millis((next_minute - start + 3_000) as u64);
    c.answer_gets(until, |_| format!("{}.0000", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2));
    let r = s.get_ok("/hourly/cpu_used?start=1h&service=web1");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", r.body);
    // The values alternate 0 and 1: the minute's mean is within [0, 1].
    let mean = rows[0]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mean), "{mean}");
    assert_eq!(rows[0]["time"].as_i64().unwrap(), start / 3_600_000 * 3_600_000);
    let d = s.get("/daily/cpu_used").json();
    assert_eq!(d.as_array().unwrap().len(), 1);
}

#[test]
fn retention_cuts_old_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 240);
    let s = Server::start_in(dir.path(), &["-r", "1"]);
    let v = s.get("/hourly/cpu_used?start=10d").json();
    let times: Vec<i64> = v.as_array().unwrap().iter().map(|o| o["time"].as_i64().unwrap()).collect();
    let week = 7 * 86_400_000;
    assert!(times[0] >= now_ms() - week - 3_600_000, "{} is older than a week", times[0]);
    assert!(times.len() >= 24 * 7 - 2, "{}", times.len());
    // The day files older than the retention are gone from the disk too.
    let oldest = std::fs::read_dir(dir.path().join("agg"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse::<i64>().ok())
        .min()
        .unwrap();
    assert!(oldest + 86_400_000 > now_ms() - week, "a day file past retention is left");
}
