//! Live data: Mist publishing (reference §7 bonus), `GET /live` server-sent events, and
//! the server's own metrics.

use crate::support as support_pulse;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::cases::feed;
use support_pulse::{Client, Server};

#[test]
fn mist_gets_every_stat() {
    let mist = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = mist.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (conn, _) = mist.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let mut lines = Vec::new();
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_string());
        l.clear();
        r.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_string());
        w.write_all(b"{\"command\":\"ping\",\"tags\":[],\"data\":\"pong\"}\n").unwrap();
        loop {
            l.clear();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            lines.push(l.trim_end().to_string());
            if l.contains("cpu_used") {
                break;
            }
        }
        lines
    });
    let s = Server::start(&["-p", "1", "-m", &addr, "-M", "tok"]);
    let _c = feed(&s, "host1", &[("cpu_used", "service:web1", "0.2500")]);
    let lines = fake.join().unwrap();
    assert_eq!(lines[0], r#"{"command":"auth","data":"tok"}"#);
    assert_eq!(lines[1], r#"{"command":"ping"}"#);
    assert_eq!(
        lines.last().unwrap(),
        r#"{"command":"publish","tags":["service:web1","metrics","host:host1","cpu_used"],"data":"0.2500"}"#
    );
}

#[test]
fn no_mist_no_start() {
    let port = support_pulse::free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_badger"))
        .args(["server", "-S", "127.0.0.1:0", "-H", "127.0.0.1:0", "--storage"])
        .arg(dir.path())
        .args(["-m", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "fixed: a failed start is exit status 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Mist failed to start - "));
}

#[test]
fn live_streams_new_points() {
    let s = Server::start(&["-p", "1"]);
    let url = format!("http://{}/live?stat=cpu_used&X-AUTH-TOKEN=secret", s.http);
    let reader = std::thread::spawn(move || {
        let mut resp = ureq::get(&url).call().unwrap();
        assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
        let mut r = BufReader::new(resp.body_mut().as_reader());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut l = String::new();
        while Instant::now() < deadline {
            l.clear();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            if let Some(data) = l.trim_end().strip_prefix("data: ") {
                return data.to_string();
            }
        }
        String::new()
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::identify(&s.tcp, "host1", 30);
    c.send("add ram_used:");
    c.send("add cpu_used:service:web1");
    c.answer_gets(
        Instant::now() + Duration::from_secs(2),
        |n| if n == "cpu_used" { "0.2500".into() } else { "7".into() },
    );
    let data = reader.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data:?}"));
    assert_eq!(v["stat"], "cpu_used");
    assert_eq!(v["host"], "host1");
    assert_eq!(v["tags"]["service"], "web1");
    assert_eq!(v["value"], 0.25);
    // Auth applies to /live too.
    let r = support_pulse::request("GET", &format!("http://{}/live", s.http), None, None);
    assert_eq!(r.status, 401);
}

#[test]
fn the_server_stores_its_own_metrics() {
    let s = Server::start(&["-p", "1"]);
    let _c = feed(&s, "host1", &[("cpu_used", "", "1")]);
    let r = s.get_ok("/latest/pulse_relays?service=pulse");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["value"].as_f64().unwrap() >= 1.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = s.get("/keys").body;
        if ["pulse_points", "pulse_polls", "pulse_query_ms", "pulse_queries"].iter().all(|k| keys.contains(k)) {
            break;
        }
        assert!(Instant::now() < deadline, "{keys}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
