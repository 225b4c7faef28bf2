//! The agent's HTTP listener in the badger binary: routes swapped on SIGHUP, and the
//! graceful shutdown of promfetcher's check 8 (other-seeds.md §B.6): a request in progress
//! at SIGTERM still completes with 200, new connections are refused, and badger exits
//! within its shutdown deadline.

use crate::support_prom;
use badger_test_support::process as common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{badger, TempConfig};
use support_prom::{free_port, try_get, wait_for, Answer, FakeServer};

fn start(c: &TempConfig) -> Child {
    badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start badger")
}

fn signal(child: &Child, sig: &str) {
    Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn routes_are_swapped_on_reload() {
    let port = free_port();
    let main = format!(
        r#"{{ "core": {{ "http_listen": "127.0.0.1:{port}" }}, "modules": ["load"], "emitters": ["prometheus"] }}"#
    );
    let c = TempConfig::new(&main, &[("prometheus", r#"{"path": "/a"}"#)]);
    let mut child = start(&c);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    wait_for(Duration::from_secs(10), "/a", || try_get(&url("/a")).ok().filter(|r| r.0 == 200));
    assert_eq!(try_get(&url("/b")).unwrap().0, 404);
    c.write("conf.d/prometheus.conf", r#"{"path": "/b"}"#);
    signal(&child, "-HUP");
    wait_for(Duration::from_secs(10), "/b after the reload", || try_get(&url("/b")).ok().filter(|r| r.0 == 200));
    assert_eq!(try_get(&url("/a")).unwrap().0, 404);
    // A reload that drops the listener: nothing listens any more.
    c.write("config.json", r#"{ "modules": ["load"], "emitters": ["stdout_pretty"] }"#);
    signal(&child, "-HUP");
    wait_for(Duration::from_secs(10), "the listener to close", || {
        TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
    });
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(8)).is_some());
}

#[test]
fn b6_8_a_request_in_progress_completes_at_shutdown() {
    let slow = FakeServer::start(|_| Answer { delay: Duration::from_secs(3), ..Answer::text("200 OK", "m 1\n") });
    let port = free_port();
    let main = format!(
        r#"{{ "core": {{ "http_listen": "127.0.0.1:{port}" }}, "modules": ["prometheus_scrape"], "emitters": ["stdout"] }}"#
    );
    // interval 3600: the periodic round runs once, at start; the request below is the test.
    let conf = format!(r#"{{"interval": 3600, "apps": [{{"name": "o/s/app", "instances": ["{}"]}}]}}"#, slow.addr());
    let c = TempConfig::new(&main, &[("prometheus_scrape", &conf)]);
    let mut child = start(&c);
    let url = format!("http://127.0.0.1:{port}/v1/apps/o/s/app/metrics");
    wait_for(Duration::from_secs(10), "the listener", || TcpStream::connect(("127.0.0.1", port)).ok());
    let request = std::thread::spawn(move || {
        let t = Instant::now();
        (try_get(&url), t.elapsed())
    });
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "new connections are refused after SIGTERM");
    let (result, took) = request.join().unwrap();
    let (status, _, body) = result.expect("the request in progress completes");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("m{index=\"0\",instance_id=\"0\",instance="), "{body}");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert!(wait_exit(&mut child, Duration::from_secs(6)).is_some(), "badger did not exit");
    assert!(signalled.elapsed() < Duration::from_secs(6), "{:?}", signalled.elapsed());
}
