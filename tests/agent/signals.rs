//! SIGTERM flushes and exits 0 in time; SIGHUP reloads a good config and keeps running on
//! the old one when the new one is bad. These run the real binary.

use badger_test_support::process as common;

use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn start(c: &TempConfig) -> (Child, mpsc::Receiver<serde_json::Value>, std::thread::JoinHandle<String>) {
    common::spawn_ndjson(c)
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["points"].as_array().unwrap().iter().map(|p| p.as_object().unwrap().keys().next().unwrap().clone()).collect()
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(t.elapsed() < within, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config() -> TempConfig {
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": "", "proc_root": "proc"},
            "modules": ["load"], "emitters": ["stdout"]}"#,
        &[],
    );
    c.write("proc/loadavg", "1.00 2.00 3.00 1/100 999\n");
    c
}

#[test]
fn sigterm_flushes_batched_payloads_and_exits_0() {
    let c = config();
    // The emitter writes once an hour (on timestamps that are multiples of 3600): everything
    // it holds comes out at SIGTERM. Keep the run away from an hour boundary.
    c.write("conf.d/stdout.conf", r#"{"interval": 3600}"#);
    let into_hour = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 3600;
    if into_hour > 3590 {
        std::thread::sleep(Duration::from_secs(3601 - into_hour));
    }
    let (mut child, rx, err) = start(&c);
    std::thread::sleep(Duration::from_millis(3500));
    assert!(rx.try_recv().is_err(), "nothing is written before the hour is up");
    let t = Instant::now();
    common::signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let got: Vec<_> = rx.try_iter().collect();
    assert!(got.len() >= 2, "batched payloads flushed at exit: {}", got.len());
    let ts: Vec<i64> = got.iter().map(|v| v["timestamp"].as_i64().unwrap()).collect();
    for w in ts.windows(2) {
        assert_eq!(w[1] - w[0], 1);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    let err = err.join().unwrap();
    assert!(err.contains("stopping: flushing emitters"), "{err}");
}

#[test]
fn sigint_exits_0() {
    let c = config();
    let (mut child, rx, _err) = start(&c);
    rx.recv_timeout(Duration::from_secs(3)).expect("a payload");
    common::signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
}

#[test]
fn sighup_reloads_good_config_and_keeps_old_on_bad() {
    let c = config();
    let (mut child, rx, err) = start(&c);
    let first = rx.recv_timeout(Duration::from_secs(3)).expect("a payload");
    assert_eq!(
        names(&first),
        ["load.one", "load.five", "load.fifteen", "load.runnable_entities", "load.total_entities"]
    );

    // Good config: blacklist load.one and change the metadata.
    c.write("conf.d/load.conf", r#"{"blacklist": ["load.one"]}"#);
    c.write(
        "config.json",
        r#"{"core": {"hostname": "h2", "ipv4": "", "ipv6": "", "proc_root": "proc"}, "modules": ["load"], "emitters": ["stdout"]}"#,
    );
    common::signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(4);
    let reloaded = loop {
        let v = rx.recv_deadline_compat(deadline).expect("payloads after reload");
        if v["hostname"] == "h2" {
            break v;
        }
    };
    assert_eq!(names(&reloaded), ["load.five", "load.fifteen", "load.runnable_entities", "load.total_entities"]);

    // Bad config: a syntax error. badger logs it and keeps the running config.
    c.write("config.json", "{ \"modules\": [\"load\"], \n oops }");
    common::signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(2500));
    let after: Vec<_> = rx.try_iter().collect();
    assert!(after.len() >= 2, "still collecting after a bad reload");
    for v in &after {
        assert_eq!(v["hostname"], "h2");
        assert_eq!(names(v).len(), 4);
    }
    common::signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let err = err.join().unwrap();
    assert!(
        err.contains("reload failed, still running the previous config: config error: config.json, line 2"),
        "{err}"
    );
    assert!(err.contains("reloaded: modules [load], emitters [stdout] (1 kept running unchanged)"), "{err}");
}

trait RecvDeadline<T> {
    fn recv_deadline_compat(&self, deadline: Instant) -> Result<T, mpsc::RecvTimeoutError>;
}

impl<T> RecvDeadline<T> for mpsc::Receiver<T> {
    fn recv_deadline_compat(&self, deadline: Instant) -> Result<T, mpsc::RecvTimeoutError> {
        self.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}

#[test]
fn a_stall_skips_missed_ticks_and_never_bursts() {
    let c = config();
    let (mut child, rx, err) = start(&c);
    let before = rx.recv_timeout(Duration::from_secs(3)).expect("a payload");
    // Freeze the whole process for 3.5 s, as a VM pause or a swap storm would.
    common::signal(&child, "-STOP");
    std::thread::sleep(Duration::from_millis(3500));
    common::signal(&child, "-CONT");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push((Instant::now(), v["timestamp"].as_i64().unwrap()));
        }
    }
    common::signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let mut ts: Vec<i64> = rx.try_iter().map(|v| v["timestamp"].as_i64().unwrap()).collect();
    ts.splice(0..0, std::iter::once(before["timestamp"].as_i64().unwrap()));
    let after: Vec<i64> = got.iter().map(|g| g.1).collect();
    let all: Vec<i64> = ts.iter().chain(after.iter()).copied().collect();
    assert!(all.windows(2).any(|w| w[1] - w[0] >= 3), "the stalled ticks are skipped: {all:?}");
    let ts = all;
    // No burst: after the first payload that comes out of the stall, payloads keep 1 s apart.
    for w in got.windows(2).skip(1) {
        assert!(w[1].0 - w[0].0 > Duration::from_millis(500), "burst: {ts:?}");
    }
    assert!(err.join().unwrap().contains("skipped"), "the stall is logged");
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": "", "proc_root": "proc", "log": {"format": "json"}},
            "modules": ["load"], "emitters": ["stdout"]}"#,
        &[],
    );
    c.write("proc/loadavg", "1.00 2.00 3.00 1/100 999\n");
    let (mut child, rx, err) = start(&c);
    rx.recv_timeout(Duration::from_secs(3)).expect("a payload");
    common::signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let err = err.join().unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "{err}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert_eq!(v["level"], "info");
        assert!(v["msg"].is_string() && v["timestamp"].is_string() && v["target"].is_string(), "{l}");
    }
}

#[test]
fn the_start_up_pages_are_released_after_start_up_before_the_first_and_fourth_ticks_and_likewise_after_a_reload() {
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": "", "proc_root": "proc", "log": {"level": "debug"}},
            "modules": ["load"], "emitters": ["stdout"]}"#,
        &[],
    );
    c.write("proc/loadavg", "1.00 2.00 3.00 1/100 999\n");
    let (mut child, rx, err) = start(&c);
    // Payloads come out a tick after collection: five of them means the fourth tick is past.
    for _ in 0..5 {
        rx.recv_timeout(Duration::from_secs(3)).expect("a payload");
    }
    common::signal(&child, "-HUP");
    for _ in 0..5 {
        rx.recv_timeout(Duration::from_secs(3)).expect("a payload after the reload");
    }
    common::signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let err = err.join().unwrap();
    let released: Vec<&str> = err.lines().filter(|l| l.contains("released the start-up pages")).collect();
    // Logged from when the config has set logging up: after the plan, before the first tick
    // and before the fourth; after the reload, before the next tick and three ticks later.
    assert_eq!(released.len(), 5, "{err}");
    // The code and constants of the executable, in KiB: more than none.
    for l in released {
        let kib: u64 = l.rsplit('(').next().and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(kib > 0, "{l}");
    }
    let reloaded = err.find("reloaded:").expect("the reload is logged");
    assert_eq!(err[reloaded..].matches("released the start-up pages").count(), 2, "{err}");
}
