//! Prometheus out: the `prometheus` emitter's `/metrics` checked by the real `promtool
//! check metrics` and scraped by a real Prometheus server; the `pushgateway` emitter
//! against a real Pushgateway and against a fake one for the original pusher's rules
//! (InfluxDB telemetry, other-seeds.md §C.5 check 7). Servers are Debian's `prometheus`
//! and `prometheus-pushgateway`, started by the tests on loopback ports; without them the
//! tests are skipped, or fail with `BADGER_REQUIRE_SERVERS=1`.

use crate::support_prom;
use badger_test_support::process as common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::matcher::Matcher;
use badger_api::plugin::{Batch, BuildError, Emitter, EmitterContext, PluginConf};
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::pushgateway;
use common::{badger, TempConfig};
use support_prom::{free_port, get, installed, promtool_check, try_get, wait_for, Answer, Daemon, FakeServer};

/// The badger binary on a config, stopped with SIGTERM when dropped.
pub(crate) struct Agent(Child);

impl Agent {
    pub(crate) fn start(c: &TempConfig) -> Agent {
        let child = badger()
            .args(["-f", "config.json"])
            .current_dir(c.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start badger");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(8) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn meta() -> Arc<HostMeta> {
    Arc::new(HostMeta { datacenter: "dc1".into(), hostname: "h1".into(), ..HostMeta::default() })
}

fn payload(v: f64) -> Arc<Payload> {
    Arc::new(Payload {
        meta: meta(),
        timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64,
        points: vec![
            Point::simple("load", "one", "", Value::Float(v)),
            Point::device("fs", "used", "B", "mount", "/var/lib", Value::Int(4096)),
        ],
    })
}

fn pusher(conf: &str) -> Box<dyn Emitter> {
    let ctx = EmitterContext { meta: meta(), ..EmitterContext::default() };
    let conf = PluginConf::from_text("pushgateway", Path::new("conf.d/pushgateway.conf"), conf);
    match (pushgateway::SPEC.build)(&ctx, &conf) {
        Ok(e) => e,
        Err(BuildError::Config(e)) => panic!("{e}"),
        Err(BuildError::Unavailable(e)) => panic!("{e}"),
    }
}

fn emit(e: &mut dyn Emitter, payloads: &[Arc<Payload>]) -> Result<(), String> {
    let bl = Matcher::default();
    e.emit(&Batch::new(payloads, &bl)).map_err(|e| e.0)
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let test = "metrics_pass_promtool_and_a_real_prometheus_scrapes_them";
    if !installed(test, support_prom::PROMTOOL, "prometheus")
        || !installed(test, support_prom::PROMETHEUS, "prometheus")
    {
        return;
    }
    let port = free_port();
    let main = format!(
        r#"{{ "core": {{ "datacenter": "dc1", "hostname": "h1", "ipv4": "", "ipv6": "", "http_listen": "127.0.0.1:{port}" }},
            "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
            "emitters": ["prometheus", "graphite"] }}"#
    );
    // graphite points at a closed port: its outbox counts retries and holds bytes.
    let graphite = format!(r#"{{"port": {}, "retry_initial": "100ms", "retry_max": "200ms"}}"#, free_port());
    let c = TempConfig::new(&main, &[("cpu", r#"{"per_core": true}"#), ("internal", "{}"), ("graphite", &graphite)]);
    let _agent = Agent::start(&c);
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Rates appear from the second collection on.
    let (ct, body) = wait_for(Duration::from_secs(15), "cpu rates on /metrics", || {
        let (status, ct, body) = try_get(&url).ok()?;
        (status == 200 && body.contains("cpu_user_percent{")).then_some((ct, body))
    });
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# TYPE load_one gauge\nload_one{datacenter=\"dc1\",hostname=\"h1\"} "), "{body}");
    assert!(body.contains("mem_memtotal_bytes{"), "{body}");
    assert!(body.contains("cpu_ctxt_per_second{"), "{body}");
    assert!(!body.contains("_bits"), "bits are left out: {body}");
    // internal: badger's own metrics, with the graphite emitter's outbox.
    let body = wait_for(Duration::from_secs(10), "graphite retries on /metrics", || {
        let (_, _, body) = try_get(&url).ok()?;
        body.contains("badger_emitter_retries{emitter=\"graphite\"").then_some(body)
    });
    for want in [
        "badger_ticks{",
        "badger_module_runs{module=\"cpu\",",
        "badger_module_collect_micros{module=\"load\",",
        "badger_emitter_batches{emitter=\"prometheus\",",
        "badger_emitter_queued_bytes{emitter=\"graphite\",",
        "badger_rss_bytes{",
        "badger_cpu_seconds{",
    ] {
        assert!(body.contains(want), "{want}: {body}");
    }
    let (ok, out) = promtool_check(&body);
    assert!(ok, "promtool check metrics failed:\n{out}\n--- body:\n{body}");

    let prom = Daemon::prometheus(&format!("127.0.0.1:{port}"), "/metrics");
    let q = |query: &str| get(&prom.url(&format!("/api/v1/query?query={query}"))).2;
    let up = wait_for(Duration::from_secs(20), "Prometheus to scrape badger", || {
        let r = q("up");
        r.contains(r#","1"]"#).then_some(r)
    });
    assert!(up.contains(r#""job":"badger""#), "{up}");
    let targets = get(&prom.url("/api/v1/targets")).2;
    assert!(targets.contains(r#""health":"up""#) && targets.contains(r#""lastError":"""#), "{targets}");
    let load = wait_for(Duration::from_secs(10), "load_one in Prometheus", || {
        let r = q("load_one");
        r.contains(r#""hostname":"h1""#).then_some(r)
    });
    assert!(load.contains(r#""datacenter":"dc1""#), "{load}");
}

#[test]
fn pushes_reach_a_real_pushgateway() {
    if !installed("pushes_reach_a_real_pushgateway", support_prom::PUSHGATEWAY, "prometheus-pushgateway") {
        return;
    }
    let pg = Daemon::pushgateway();
    let mut e = pusher(&format!(r#"{{"url": "http://127.0.0.1:{}", "grouping": {{"cluster": "web/1"}}}}"#, pg.port));
    emit(e.as_mut(), &[payload(1.5)]).expect("push");
    let (_, _, body) = get(&pg.url("/metrics"));
    assert!(
        body.contains(r#"load_one{cluster="web/1",datacenter="dc1",hostname="h1",instance="h1",job="badger"} 1.5"#),
        "{body}"
    );
    assert!(body.contains(r#"fs_used_bytes{cluster="web/1",datacenter="dc1",hostname="h1",instance="h1",job="badger",mount="/var/lib"} 4096"#), "{body}");
    // PUT replaces the group; the next push carries the new value.
    let mut put = pusher(&format!(r#"{{"url": "http://127.0.0.1:{}", "method": "PUT", "job": "j2"}}"#, pg.port));
    emit(put.as_mut(), &[payload(2.5)]).expect("put");
    let (_, _, body) = get(&pg.url("/metrics"));
    assert!(body.contains(r#"load_one{datacenter="dc1",hostname="h1",instance="h1",job="j2"} 2.5"#), "{body}");
    // The Pushgateway's own record of the push.
    assert!(body.contains(r#"push_time_seconds{instance="h1",job="j2"}"#), "{body}");
}

/// other-seeds.md §C.5 check 7: no metrics → no request; 202 (and any 2xx) → Ok with a
/// POST of the exact content type; 500 `boom` → the original's error text; a server that
/// hangs → a timeout error.
#[test]
fn pusher_follows_the_original_rules() {
    let server = FakeServer::start(|r| match r.path.as_str() {
        p if p.contains("/job/accepted/") => Answer::text("202 Accepted", ""),
        p if p.contains("/job/ok/") => Answer::text("200 OK", ""),
        p if p.contains("/job/hang/") => Answer { delay: Duration::from_secs(3), ..Answer::text("202 Accepted", "") },
        _ => Answer::text("500 Internal Server Error", "boom"),
    });
    let url = format!("http://{}", server.addr());

    let mut e = pusher(&format!(r#"{{"url": "{url}", "job": "accepted"}}"#));
    emit(e.as_mut(), &[]).expect("nothing to push is a success");
    let empty = Arc::new(Payload { meta: meta(), timestamp: 1, points: vec![] });
    emit(e.as_mut(), &[empty]).expect("a payload without points");
    assert_eq!(server.requests().len(), 0, "no request without metrics");

    emit(e.as_mut(), &[payload(1.0)]).expect("202 is a success");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/metrics/job/accepted/instance/h1");
    assert_eq!(reqs[0].header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let body = String::from_utf8_lossy(&reqs[0].body);
    assert!(body.contains("load_one{datacenter=\"dc1\",hostname=\"h1\"} 1\n"), "{body}");

    let mut ok = pusher(&format!(r#"{{"url": "{url}", "job": "ok"}}"#));
    emit(ok.as_mut(), &[payload(1.0)]).expect("200 is a success");

    let mut bad = pusher(&format!(r#"{{"url": "{url}", "job": "bad"}}"#));
    let err = emit(bad.as_mut(), &[payload(1.0)]).expect_err("500 fails");
    assert!(err.contains("unable to POST metrics; received status Internal Server Error: boom"), "{err}");

    let mut hang = pusher(&format!(r#"{{"url": "{url}", "job": "hang", "timeout": "500ms"}}"#));
    let t = Instant::now();
    let err = emit(hang.as_mut(), &[payload(1.0)]).expect_err("a hung server times out");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(err.contains("timed out"), "{err}");

    let closed = free_port();
    let mut down = pusher(&format!(r#"{{"url": "http://127.0.0.1:{closed}"}}"#));
    let err = emit(down.as_mut(), &[payload(1.0)]).expect_err("refused");
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "{err}");
}

#[test]
fn a_plugin_that_serves_http_needs_core_http_listen() {
    let c = TempConfig::new(r#"{ "modules": ["load"], "emitters": ["prometheus"] }"#, &[]);
    let o = common::run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(2));
    let e = common::stderr(&o);
    assert!(e.contains("key \"core.http_listen\": \"prometheus\" serves the Prometheus exposition on /metrics"), "{e}");
    let c = TempConfig::new(
        r#"{ "core": {"http_listen": "127.0.0.1:0"}, "modules": ["load"], "emitters": ["prometheus", "stdout"] }"#,
        &[],
    );
    let o = common::run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("http: 127.0.0.1:0: /metrics (prometheus)\n"), "{}", common::stdout(&o));
    let c =
        TempConfig::new(r#"{ "core": {"http_listen": "nowhere"}, "modules": ["load"], "emitters": ["stdout"] }"#, &[]);
    let o = common::run(&["--check", "-f", "config.json"], c.dir.path());
    assert!(common::stderr(&o).contains("key \"core.http_listen\": \"nowhere\""), "{}", common::stderr(&o));
}
