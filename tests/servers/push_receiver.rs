//! The `pushgateway_receiver` module: the InfluxDB telemetry push gateway's acceptance
//! checks (other-seeds.md §C.5 checks 1–6) through the agent's real HTTP listener, with the
//! issue's changes: the route is `/metrics/job/<job>` rather than every path, a body over
//! the limit is answered 413 instead of being cut, and the protobuf format is not taken
//! (415). The store of the original is the module's buffer: pushed samples become points.

use crate::support_prom;
use badger_test_support::process as common;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::Method;
use badger::httpd::{build_router, HttpServer};
use badger_api::http::HttpRoutes;
use badger_api::plugin::{BuildError, Module, ModuleContext, PluginConf};
use badger_api::point::{Point, Value};
use badger_formats::prometheus::{self, Family};
use badger_modules::pushgateway_receiver::{self as receiver, Store};
use common::TempConfig;
use support_prom::{free_port, try_get, wait_for};

const T: i64 = 1_700_000_000_123;
const BODY: &str = "# TYPE mf1 counter\nmf1{n1=\"v1\"} 1\n";
const TEXT: &str = "text/plain; version=0.0.4";

/// The original's test store: records the text encoding it is given, or fails.
#[derive(Default)]
struct Recorder {
    writes: Mutex<Vec<String>>,
    fail: Option<&'static str>,
}

impl Store for Recorder {
    fn write(&self, families: Vec<Family>, _grouping: Vec<(String, String)>, _at: i64) -> Result<(), String> {
        let mut text = String::new();
        for f in &families {
            prometheus::write_family(&mut text, f);
        }
        self.writes.lock().unwrap().push(text);
        match self.fail {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// (status, body) of [`receiver::handle`] on a recording store.
fn handle(store: &Recorder, method: Method, ct: Option<&str>, body: &str) -> (u16, String) {
    let r = receiver::handle(
        &method,
        ct,
        "test",
        Ok(body.as_bytes()),
        T,
        Some("https://www.influxdata.com/telemetry"),
        store,
    );
    let status = r.status().as_u16();
    let bytes = futures_body(r);
    (status, bytes)
}

fn futures_body(r: axum::response::Response) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let b = rt.block_on(axum::body::to_bytes(r.into_body(), usize::MAX)).unwrap();
    String::from_utf8_lossy(&b).into_owned()
}

/// The module on a loopback listener.
struct Receiver {
    module: Box<dyn Module>,
    server: HttpServer,
}

impl Receiver {
    fn new(conf: &str) -> Receiver {
        let http = HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json"));
        let ctx = ModuleContext { http: http.clone(), ..ModuleContext::default() };
        let conf = PluginConf::from_text("pushgateway_receiver", Path::new("conf.d/pushgateway_receiver.conf"), conf);
        let module = match (receiver::SPEC.build)(&ctx, &conf) {
            Ok(m) => m,
            Err(BuildError::Config(e)) => panic!("{e}"),
            Err(BuildError::Unavailable(e)) => panic!("{e}"),
        };
        let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), build_router(&http.take()).unwrap()).unwrap();
        Receiver { module, server }
    }

    /// (status, headers, body).
    fn send(&self, method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let url = format!("http://{}{path}", self.server.local_addr());
        let mut req = axum::http::Request::builder().method(method).uri(&url);
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let req = req.body(body.to_vec()).unwrap();
        let mut resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (resp.status().as_u16(), headers, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn collect(&mut self) -> Vec<Point> {
        let mut out = Vec::new();
        self.module.collect(Instant::now(), &mut out).unwrap();
        out
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// C.5 check 1: a text push is accepted, stamped with the receive time; `text/plain`
/// without a version too. The points carry what the line-protocol encoder wrote
/// (`mf1,n1=v1 counter=1`): measurement `mf1`, field `counter`, tag `n1`.
#[test]
fn c5_1_a_text_push_is_accepted_and_stamped() {
    for ct in [TEXT, "text/plain"] {
        let store = Recorder::default();
        assert_eq!(handle(&store, Method::POST, Some(ct), BODY), (202, String::new()));
        assert_eq!(*store.writes.lock().unwrap(), ["# TYPE mf1 counter\nmf1{n1=\"v1\"} 1 1700000000123\n"]);
    }
    let mut r = Receiver::new("{}");
    let (status, _, body) = r.send("POST", "/metrics/job/test", Some(TEXT), BODY.as_bytes());
    assert_eq!((status, body.as_str()), (202, ""));
    let points = r.collect();
    let p = points.iter().find(|p| p.measurement == "mf1").expect("the pushed sample");
    assert_eq!((p.field.as_ref(), p.value), ("counter", Value::Float(1.0)));
    let tags: Vec<(String, String)> = p.tags.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    assert_eq!(tags, [("n1".into(), "v1".into()), ("job".into(), "test".into())]);
    let t = points.iter().find(|p| p.measurement == "push_time_seconds").expect("push_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(matches!(t.value, Value::Float(v) if (now - v).abs() < 10.0), "{t:?}");
    assert!(r.collect().is_empty(), "a push is reported once");
}

/// C.5 check 2: samples with a timestamp are refused, the store is not called.
#[test]
fn c5_2_timestamps_are_rejected() {
    let store = Recorder::default();
    assert_eq!(
        handle(&store, Method::POST, Some(TEXT), "mf1{n1=\"v1\"} 1 1\n"),
        (400, "pushed metrics must not have timestamp\n".into())
    );
    assert!(store.writes.lock().unwrap().is_empty());
}

/// C.5 check 3: content types (protobuf is answered 415 here: the issue asks for text).
#[test]
fn c5_3_content_types() {
    let r = Receiver::new("{}");
    for ct in [
        None,
        Some("application/json"),
        Some("text/plain; version=0.0.3"),
        Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"),
    ] {
        let (status, _, body) = r.send("POST", "/metrics/job/test", ct, BODY.as_bytes());
        assert_eq!((status, body.as_str()), (400, "unknown format metrics format\n"), "{ct:?}");
    }
    let delimited = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
    assert_eq!(r.send("POST", "/metrics/job/test", Some(delimited), b"\x1e").0, 415);
}

/// C.5 check 4: methods.
#[test]
fn c5_4_methods() {
    let r = Receiver::new("{}");
    for m in ["GET", "HEAD"] {
        let (status, h, _) = r.send(m, "/metrics/job/test", None, b"");
        assert_eq!((status, header(&h, "location")), (303, Some("https://www.influxdata.com/telemetry")), "{m}");
    }
    let (status, h, body) = r.send("DELETE", "/metrics/job/test", None, b"");
    assert_eq!(
        (status, header(&h, "allow"), body.as_str()),
        (405, Some("GET, HEAD, PUT, POST"), "Method Not Allowed\n")
    );
    assert_eq!(r.send("PUT", "/metrics/job/test", Some(TEXT), BODY.as_bytes()).0, 202);
    // Without a redirect GET is refused too.
    let r = Receiver::new(r#"{"redirect": null}"#);
    let (status, h, _) = r.send("GET", "/metrics/job/test", None, b"");
    assert_eq!((status, header(&h, "allow")), (405, Some("PUT, POST")));
}

/// C.5 check 5: the body limit (413 instead of silent truncation), an empty body.
#[test]
fn c5_5_body_limit() {
    let mut r = Receiver::new("{}");
    let mut body = String::from(BODY);
    while body.len() < receiver::DEFAULT_MAX_BYTES {
        let room = receiver::DEFAULT_MAX_BYTES - body.len();
        let line = "# padding padding padding padding padding padding padding padding\n";
        if room >= line.len() + 2 {
            body.push_str(line);
        } else {
            body.push('#');
            body.push_str(&" ".repeat(room - 2));
            body.push('\n');
        }
    }
    assert_eq!(body.len(), 1_024_000);
    assert_eq!(r.send("POST", "/metrics/job/big", Some(TEXT), body.as_bytes()).0, 202);
    assert!(r.collect().iter().any(|p| p.measurement == "mf1"));
    body.push('\n');
    let (status, _, text) = r.send("POST", "/metrics/job/big", Some(TEXT), body.as_bytes());
    assert_eq!((status, text.as_str()), (413, "the pushed body is larger than 1024000 bytes\n"));
    assert!(r.collect().is_empty(), "nothing of a refused push is kept");
    let small = Receiver::new(r#"{"max_bytes": 31}"#);
    assert_eq!(small.send("POST", "/metrics/job/x", Some(TEXT), &[b'#'; 32]).0, 413);
    assert_eq!(small.send("POST", "/metrics/job/x", Some(TEXT), &[b'\n'; 31]).0, 202);
    let store = Recorder::default();
    assert_eq!(handle(&store, Method::POST, Some(TEXT), ""), (202, String::new()));
    assert_eq!(*store.writes.lock().unwrap(), [""]);
}

/// C.5 check 6: a failing store is 500 with its error; bad text is 400 with the parser's
/// message and the store is not called; a full buffer is the store failure here.
#[test]
fn c5_6_store_failure_and_bad_text() {
    let store = Recorder { fail: Some("e1"), ..Recorder::default() };
    assert_eq!(handle(&store, Method::POST, Some(TEXT), BODY), (500, "e1\n".into()));
    assert_eq!(store.writes.lock().unwrap().len(), 1, "the store still received the data");
    let store = Recorder::default();
    let (status, body) = handle(&store, Method::POST, Some(TEXT), "mf1{ 1");
    assert_eq!(status, 400);
    assert!(body.starts_with("text format parsing error in line 1: "), "{body}");
    assert!(store.writes.lock().unwrap().is_empty());
    let r = Receiver::new(r#"{"max_pending": 1}"#);
    assert_eq!(r.send("POST", "/metrics/job/a", Some(TEXT), BODY.as_bytes()).0, 202);
    let (status, _, body) = r.send("POST", "/metrics/job/a", Some(TEXT), BODY.as_bytes());
    assert_eq!(status, 500);
    assert!(body.contains("max_pending"), "{body}");
}

/// Grouping labels of the path replace the samples' own, as in the Pushgateway.
#[test]
fn grouping_labels_replace_the_samples() {
    let mut r = Receiver::new("{}");
    let body = "m{job=\"evil\",instance=\"x\",k=\"v\"} 3\n";
    assert_eq!(
        r.send("POST", "/metrics/job/batch/instance/h1/path@base64/L3Zhci90bXA=", Some(TEXT), body.as_bytes()).0,
        202
    );
    let points = r.collect();
    let m = points.iter().find(|p| p.measurement == "m").unwrap();
    let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(tags, ["k=v", "job=batch", "instance=h1", "path=/var/tmp"]);
    assert_eq!(m.field, "value");
    assert_eq!(r.send("POST", "/metrics/job/batch/instance", Some(TEXT), body.as_bytes()).0, 400);
}

/// End to end in the binary: a push reaches the prometheus emitter's /metrics.
#[test]
fn a_push_reaches_the_prometheus_emitter() {
    let port = free_port();
    let main = format!(
        r#"{{ "core": {{ "hostname": "h1", "ipv4": "", "ipv6": "", "http_listen": "127.0.0.1:{port}" }},
            "modules": ["pushgateway_receiver"], "emitters": ["prometheus"] }}"#
    );
    let c = TempConfig::new(&main, &[]);
    let mut child = common::badger()
        .args(["-f", "config.json"])
        .current_dir(c.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(10), "the listener", || try_get(&format!("{url}/metrics")).ok());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent
        .post(&format!("{url}/metrics/job/nightly"))
        .header("Content-Type", "text/plain")
        .send("# TYPE backup_bytes gauge\nbackup_bytes{db=\"main\"} 123\n")
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 202);
    let body = wait_for(Duration::from_secs(10), "the pushed series on /metrics", || {
        let (_, _, b) = try_get(&format!("{url}/metrics")).ok()?;
        b.contains("backup_bytes{").then_some(b)
    });
    assert!(
        body.contains("# TYPE backup_bytes gauge\nbackup_bytes{db=\"main\",job=\"nightly\",hostname=\"h1\"} 123\n"),
        "{body}"
    );
    assert!(body.contains("push_time_seconds{job=\"nightly\",hostname=\"h1\"} "), "{body}");
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// C.5 check 8, end to end: badger's `pushgateway` emitter (the pusher) pushes to the
/// receiver (the gateway), which takes the push (202) and stamps it; the samples come out
/// as points with the grouping labels. The original's family filter is the emitter's
/// blacklist here.
#[test]
fn c5_8_the_pusher_pushes_into_the_receiver() {
    use std::sync::Arc;

    use badger_api::matcher::Matcher;
    use badger_api::plugin::{Batch, EmitterContext};
    use badger_api::point::{HostMeta, Payload};
    use badger_emitters::pushgateway;

    let mut r = Receiver::new("{}");
    let meta = Arc::new(HostMeta { hostname: "h1".into(), ..HostMeta::default() });
    let ctx = EmitterContext { meta: meta.clone(), ..EmitterContext::default() };
    let conf = format!(r#"{{"url": "http://{}", "job": "badger"}}"#, r.server.local_addr());
    let conf = PluginConf::from_text("pushgateway", Path::new("conf.d/pushgateway.conf"), &conf);
    let Ok(mut pusher) = (pushgateway::SPEC.build)(&ctx, &conf) else { panic!("pushgateway") };
    let payload = Arc::new(Payload {
        meta,
        timestamp: 1,
        points: vec![
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "five", "", Value::Float(0.25)),
        ],
    });
    let blacklist = Matcher::new(&badger_api::matcher::NameList(vec!["load.five".to_string()])).unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // A payload older than expire_after is not pushed: nothing to push, no request.
    pusher.emit(&Batch::new(std::slice::from_ref(&payload), &blacklist)).expect("push");
    assert!(r.collect().is_empty());
    let fresh = Arc::new(Payload { timestamp: before as i64, ..(*payload).clone() });
    pusher.emit(&Batch::new(&[fresh], &blacklist)).expect("push");
    let points = r.collect();
    let one = points.iter().find(|p| p.measurement == "load_one").expect("load_one");
    let tags: Vec<String> = one.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(tags, ["hostname=h1", "job=badger", "instance=h1"]);
    assert_eq!((one.field.as_ref(), one.value), ("gauge", Value::Float(0.5)));
    assert!(!points.iter().any(|p| p.measurement == "load_five"), "blacklisted");
    let t = points.iter().find(|p| p.measurement == "push_time_seconds").unwrap();
    assert!(matches!(t.value, Value::Float(v) if v >= before.floor() && v < before + 10.0), "{t:?}");
}
