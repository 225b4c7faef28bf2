//! The `prometheus_scrape` module: promfetcher's acceptance checks (other-seeds.md §B.6, checks
//! 1–7, with the app configured instead of learnt from NATS) against fake instances on
//! loopback ports, through the agent's real HTTP listener; and the periodic scrape of
//! targets (text format, OpenMetrics, gzip, a target that is down) into points.

use crate::support_prom;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use badger::httpd::{build_router, HttpServer};
use badger_api::http::HttpRoutes;
use badger_api::plugin::{BuildError, Module, ModuleContext, PluginConf};
use badger_api::point::{Point, Value};
use badger_modules::prometheus_scrape as prometheus;
use support_prom::{Answer, FakeServer};

const APP_ID: &str = "a758f25d-2d01-419e-b63b-de3aabcd9e15";

/// The module built from `conf`, its routes served on a loopback port.
struct Fetcher {
    module: Box<dyn Module>,
    server: HttpServer,
}

impl Fetcher {
    fn new(conf: &str) -> Fetcher {
        let http = HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json"));
        let ctx = ModuleContext { http: http.clone(), ..ModuleContext::default() };
        let conf = PluginConf::from_text("prometheus_scrape", Path::new("conf.d/prometheus_scrape.conf"), conf);
        let module = match (prometheus::SPEC.build)(&ctx, &conf) {
            Ok(m) => m,
            Err(BuildError::Config(e)) => panic!("{e}"),
            Err(BuildError::Unavailable(e)) => panic!("{e}"),
        };
        let router = build_router(&http.take()).expect("routes");
        let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), router).expect("listen");
        Fetcher { module, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    /// (status, content type, body) of a request with extra headers.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = self.url(path);
        let resp = if method == "POST" {
            let mut r = agent.post(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send("")
        } else {
            let mut r = agent.get(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (resp.status().as_u16(), ct, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        self.request("GET", path, &[])
    }

    fn collect(&mut self) -> Vec<Point> {
        let mut out = Vec::new();
        // A round may take longer than one collection waits: collect until it reported.
        let t = Instant::now();
        loop {
            self.module.collect(Instant::now(), &mut out).expect("collect");
            if out.iter().any(|p| p.field != "fetch_success_total" && p.field != "fetch_failed_total")
                || t.elapsed() > Duration::from_secs(40)
            {
                return out;
            }
            out.clear();
        }
    }
}

fn app_conf(instances: &[String], extra: &str) -> String {
    let list: Vec<String> = instances.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        r#"{{ {extra}
            "apps": [{{
                "name": "o/s/app", "id": "{APP_ID}", "routes": ["App.Example.com"],
                "labels": {{"organization_id": "O1", "space_id": "S1", "app_id": "{APP_ID}",
                            "organization_name": "o", "space_name": "s", "app_name": "app"}},
                "instances": [{}]
            }}] }}"#,
        list.join(", ")
    )
}

fn labels(index: usize, addr: &str) -> String {
    format!(
        r#"organization_id="O1",space_id="S1",app_id="{APP_ID}",organization_name="o",space_name="s",app_name="app",index="{index}",instance_id="{index}",instance="{addr}""#
    )
}

fn serving(body: &'static str) -> FakeServer {
    FakeServer::start(move |_| Answer::text("200 OK", body))
}

/// The sample lines of a body, sorted.
fn samples(body: &str) -> Vec<String> {
    let mut s: Vec<String> = body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(String::from).collect();
    s.sort();
    s
}

/// Check 1: merge and labels.
#[test]
fn b6_1_merges_the_instances_with_promfetchers_labels() {
    let p0 = serving("# TYPE m gauge\nm{k=\"v\"} 1\n");
    let p1 = serving("# TYPE m gauge\nm{k=\"v\"} 2\n");
    let f = Fetcher::new(&app_conf(&[p0.addr(), p1.addr()], ""));
    let (status, ct, body) = f.get("/v1/apps/o/s/app/metrics");
    assert_eq!((status, ct.as_str()), (200, "text/plain; version=0.0.4"), "{body}");
    assert_eq!(body.matches("# TYPE m gauge").count(), 1, "{body}");
    assert_eq!(
        samples(&body),
        [format!("m{{k=\"v\",{}}} 1", labels(0, &p0.addr())), format!("m{{k=\"v\",{}}} 2", labels(1, &p1.addr()))]
    );
    // Each family is followed by a blank line, as promfetcher wrote it.
    assert!(body.ends_with("} 2\n\n"), "{body:?}");
}

/// Check 2: the app cannot override the labels badger sets.
#[test]
fn b6_2_the_app_cannot_override_labels() {
    let p0 = serving("m{instance=\"evil\",app_name=\"x\",z=\"1\"} 5\n");
    let f = Fetcher::new(&app_conf(&[p0.addr()], ""));
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    assert_eq!(status, 200, "{body}");
    let want = format!("m{{z=\"1\",{}}} 5", labels(0, &p0.addr()));
    assert_eq!(samples(&body), std::slice::from_ref(&want));
    for name in ["instance=", "app_name=", "index=", "instance_id=", "organization_id="] {
        assert_eq!(want.matches(&format!("{{{name}")).count() + want.matches(&format!(",{name}")).count(), 1, "{name}");
    }
}

/// Check 3: lookup forms, 400, 404, 405.
#[test]
fn b6_3_lookup_forms_agree_and_errors_have_the_originals_bodies() {
    let p0 = serving("m 1\n");
    let p1 = serving("m 2\n");
    let f = Fetcher::new(&app_conf(&[p0.addr(), p1.addr()], ""));
    let base = samples(&f.get("/v1/apps/o/s/app/metrics").2);
    assert_eq!(base.len(), 2);
    for path in [
        format!("/v1/apps/{APP_ID}/metrics"),
        "/v1/apps/metrics?app=o/s/app".to_string(),
        "/v2/apps/metrics?route_url=app.example.COM/".to_string(),
        "/v1/apps/App.Example.com/metrics".to_string(),
        "/v2/apps/o/s/app/only-app-metrics".to_string(),
    ] {
        let (status, _, body) = f.get(&path);
        assert_eq!((status, samples(&body)), (200, base.clone()), "{path}");
    }
    assert_eq!(
        f.get("/v1/apps/metrics"),
        (400, "text/plain; charset=utf-8".into(), "400 Bad Request: You must set app id or path".into())
    );
    let (status, _, body) = f.get("/v1/apps/o/s/nope/metrics");
    assert_eq!((status, body.as_str()), (404, "404 Cannot found app with id or path o/s/nope\n"));
    for path in ["/v1/apps/o/s/app/metrics", "/v1/apps/metrics", "/v2/apps/metrics?app=o/s/app"] {
        assert_eq!(f.request("POST", path, &[]).0, 405, "{path}");
    }
}

/// Check 4: an instance that is down becomes a scrape error; the others are served; the
/// success and failure counters go up.
#[test]
fn b6_4_one_instance_down_does_not_fail_the_request() {
    let p0 = serving("m 1\n");
    let down = support_prom::free_port();
    let p1 = format!("127.0.0.1:{down}");
    let mut f = Fetcher::new(&app_conf(&[p0.addr(), p1.clone()], ""));
    let count = |points: &[Point], field: &str, index: Option<&str>| -> i64 {
        points
            .iter()
            .filter(|p| p.field == field && index.is_none_or(|i| p.tags.iter().any(|(k, v)| k == "index" && v == i)))
            .map(|p| match p.value {
                Value::Int(n) => n,
                Value::Float(x) => x as i64,
            })
            .sum()
    };
    let before = f.collect();
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("m{{{}}} 1\n", labels(0, &p0.addr()))), "{body}");
    assert!(body.contains("# HELP promfetcher_scrape_error Promfetcher scrap error on your instance\n# TYPE promfetcher_scrape_error counter\n"), "{body}");
    let err_line = body.lines().find(|l| l.starts_with("promfetcher_scrape_error{")).expect("an error sample");
    assert!(err_line.starts_with(&format!("promfetcher_scrape_error{{{},error=\"", labels(1, &p1))), "{err_line}");
    assert!(err_line.ends_with("\"} 1") && !err_line.contains("error=\"\""), "{err_line}");
    let after = f.collect();
    // One periodic round and the request: each counted once.
    assert_eq!(count(&after, "fetch_failed_total", Some("1")) - count(&before, "fetch_failed_total", Some("1")), 2);
    assert_eq!(count(&after, "fetch_success_total", None) - count(&before, "fetch_success_total", None), 2);
    let failed = after.iter().find(|p| p.field == "fetch_failed_total").unwrap();
    let keys: Vec<&str> = failed.tags.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(
        keys,
        [
            "organization_id",
            "space_id",
            "app_id",
            "organization_name",
            "space_name",
            "app_name",
            "index",
            "instance_id"
        ]
    );
}

/// Check 5: upstream 500 is a scrape error; 404 fails the whole request with 406.
#[test]
fn b6_5_upstream_status_codes() {
    let p0 = serving("m 1\n");
    let p500 = FakeServer::start(|_| Answer::text("500 Internal Server Error", "oops"));
    let f = Fetcher::new(&app_conf(&[p0.addr(), p500.addr()], ""));
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(
            "promfetcher_scrape_error{{{},error=\"server returned HTTP status 500 Internal Server Error\"}} 1\n",
            labels(1, &p500.addr())
        )),
        "{body}"
    );
    let p404 = FakeServer::start(|_| Answer::text("404 Not Found", "no"));
    let f = Fetcher::new(&app_conf(&[p0.addr(), p404.addr()], ""));
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    assert_eq!(
        (status, body.as_str()),
        (406, "406 Cannot found endpoint '/metrics' for app with id or path 'o/s/app (status code 404)', please create one\n")
    );
}

/// Check 6: what the instances receive; gzip answers are decompressed.
#[test]
fn b6_6_what_the_instances_receive() {
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"# TYPE m gauge\nm 7\n").unwrap();
        e.finish().unwrap()
    };
    let p0 = FakeServer::start(move |_| Answer {
        status: "200 OK",
        headers: vec![
            ("Content-Type".into(), "text/plain; version=0.0.4".into()),
            ("Content-Encoding".into(), "gzip".into()),
        ],
        body: gz.clone(),
        delay: Duration::ZERO,
    });
    let f = Fetcher::new(&app_conf(&[p0.addr()], ""));
    let headers = [("Authorization", "Basic Zm9vOmJhcg=="), ("X-Foo", "1")];
    let (status, _, body) = f.request("GET", "/v1/apps/o/s/app/metrics?metric_path=custom/path", &headers);
    assert_eq!(status, 200, "{body}");
    assert_eq!(samples(&body), [format!("m{{{}}} 7", labels(0, &p0.addr()))]);
    let r = p0.requests().into_iter().find(|r| r.path == "/custom/path").expect("a request for /custom/path");
    assert_eq!(r.method, "GET");
    assert_eq!(r.header("authorization"), Some("Basic Zm9vOmJhcg=="));
    assert_eq!(r.header("x-foo"), None);
    assert_eq!(r.header("x-promfetcher-scrapping"), Some("true"));
    assert_eq!(r.header("accept-encoding"), Some("gzip"));
    assert_eq!(
        r.header("accept"),
        Some("application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    );
    assert_eq!(r.header("x-prometheus-scrape-timeout-seconds"), Some("30.000000"));
    f.request("GET", "/v2/apps/o/s/app/metrics?metric_path=/v2path", &headers);
    let r = p0.requests().into_iter().find(|r| r.path == "/v2path").expect("a request for /v2path");
    assert_eq!(r.header("accept"), Some("text/plain; version=0.0.4; charset=utf-8"));
}

/// Check 7: 5 scrapes at once; a hung instance times out (2 s here instead of 30 s) and the
/// request still answers 200.
#[test]
fn b6_7_concurrency_and_timeout() {
    let slow: Vec<FakeServer> = (0..10)
        .map(|_| FakeServer::start(|_| Answer { delay: Duration::from_secs(1), ..Answer::text("200 OK", "m 1\n") }))
        .collect();
    let addrs: Vec<String> = slow.iter().map(FakeServer::addr).collect();
    let f = Fetcher::new(&app_conf(&addrs, ""));
    let t = Instant::now();
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    let took = t.elapsed();
    assert_eq!((status, samples(&body).len()), (200, 10), "{body}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(4000), "{took:?}");

    let p0 = serving("m 1\n");
    let hung = FakeServer::start(|_| Answer { delay: Duration::from_secs(20), ..Answer::text("200 OK", "m 1\n") });
    let f = Fetcher::new(&app_conf(&[p0.addr(), hung.addr()], r#""scrape_timeout": "2s","#));
    let t = Instant::now();
    let (status, _, body) = f.get("/v1/apps/o/s/app/metrics");
    let took = t.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(6), "{took:?}");
    assert!(body.contains(&format!("promfetcher_scrape_error{{{},error=", labels(1, &hung.addr()))), "{body}");
    assert!(body.contains("timed out"), "{body}");
}

/// The periodic scrape: text, OpenMetrics and gzip targets become points with their labels
/// and `instance`; a target that is down becomes a `scrape_error` point.
#[test]
fn targets_are_scraped_into_points() {
    let text = serving("# HELP up_x x\n# TYPE up_x gauge\nup_x{instance=\"evil\",job=\"j\"} 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 2\nh_count 3\n");
    let om = FakeServer::start(|_| Answer {
        status: "200 OK",
        headers: vec![("Content-Type".into(), "application/openmetrics-text; version=1.0.0; charset=utf-8".into())],
        body: b"# TYPE c counter\nc_total 4\nc_created 1.7e9\n# EOF\n".to_vec(),
        delay: Duration::ZERO,
    });
    let down = format!("127.0.0.1:{}", support_prom::free_port());
    let conf = format!(
        r#"{{"targets": ["http://{}/metrics", "{}", "{down}"], "labels": {{"env": "test"}}}}"#,
        text.addr(),
        om.addr()
    );
    let mut f = Fetcher::new(&conf);
    let points = f.collect();
    let find = |m: &str| points.iter().find(|p| p.measurement == m).unwrap_or_else(|| panic!("{m}: {points:#?}"));
    let up = find("up_x");
    assert_eq!((up.field.as_ref(), up.value), ("gauge", Value::Float(1.0)));
    let tags: Vec<(String, String)> = up.tags.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    assert_eq!(tags, [("job".into(), "j".into()), ("env".into(), "test".into()), ("instance".into(), text.addr())]);
    assert_eq!(up.name, format!("up_x.j.test.{}", text.addr()));
    assert_eq!(find("h_bucket").field, "histogram");
    let c = find("c_total");
    assert_eq!((c.field.as_ref(), c.value), ("counter", Value::Float(4.0)));
    assert!(!points.iter().any(|p| p.measurement == "c_created"));
    let err = points.iter().find(|p| p.field == "scrape_error").expect("a scrape error");
    assert_eq!(err.name, format!("prometheus.scrape_error.{down}"));
    assert!(err.tags.iter().any(|(k, v)| k == "instance" && *v == down));
    assert!(err.tags.iter().any(|(k, v)| k == "error" && !v.is_empty()));
    assert_eq!(points.iter().filter(|p| p.field == "fetch_success_total").count(), 2);
}

#[test]
fn config_errors_name_their_key() {
    let build = |text: &str| {
        let http = HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json"));
        let ctx = ModuleContext { http, ..ModuleContext::default() };
        (prometheus::SPEC.build)(&ctx, &PluginConf::from_text("prometheus", Path::new("p.conf"), text))
    };
    for (text, key) in [
        (r#"{"targets": ["nope"]}"#, "targets"),
        (r#"{"concurrency": 0}"#, "concurrency"),
        (r#"{"scrape_timeout": 0}"#, "scrape_timeout"),
        (r#"{"labels": {"1x": "a"}}"#, "labels"),
        (r#"{"apps": [{"name": "a", "instances": []}]}"#, "apps"),
        (r#"{"apps": [{"name": "a", "instances": ["h"]}]}"#, "instances"),
        (r#"{"apps": [{"name": "a", "instances": ["h:1"], "nope": 1}]}"#, "apps[0].nope"),
    ] {
        match build(text) {
            Err(BuildError::Config(e)) => assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}"),
            Err(BuildError::Unavailable(e)) => panic!("{text}: {e}"),
            Ok(_) => panic!("{text}: expected an error"),
        }
    }
    // Apps served over HTTP need core.http_listen.
    let ctx = ModuleContext::default();
    let conf =
        PluginConf::from_text("prometheus", Path::new("p.conf"), r#"{"apps": [{"name": "a", "instances": ["h:1"]}]}"#);
    match (prometheus::SPEC.build)(&ctx, &conf) {
        Err(BuildError::Config(e)) => assert_eq!(e.key.as_deref(), Some("core.http_listen")),
        _ => panic!("expected a config error"),
    }
    let conf = PluginConf::from_text(
        "prometheus",
        Path::new("p.conf"),
        r#"{"serve_apps": false, "apps": [{"name": "a", "instances": ["h:1"]}]}"#,
    );
    assert!((prometheus::SPEC.build)(&ctx, &conf).is_ok());
}
