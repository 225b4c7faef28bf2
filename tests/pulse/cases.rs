//! API cases that run on every storage backend: the embedded store (tests/pulse_api.rs)
//! and a real InfluxDB 1.6 (tests/pulse_influx.rs).

use std::time::Duration;

use badger_formats::pulse::{Collector, Relay};
use badger_pulse::embedded::{Embedded, Options};
use badger_pulse::store::{Backend, SeriesKey};

use crate::support::{request, Client, Server, Store};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A relay (hand-written client) with some stats that answers one poll.
pub fn feed(s: &Server, id: &str, stats: &[(&str, &str, &str)]) -> Client {
    let mut c = Client::identify(&s.tcp, id, 30);
    for (name, tags, _) in stats {
        c.send(&format!("add {name}:{tags}"));
    }
    let values: Vec<(String, String)> = stats.iter().map(|(n, _, v)| (n.to_string(), v.to_string())).collect();
    c.answer_one_get(Duration::from_secs(5), move |n| {
        values.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default()
    })
    .expect("a get");
    c
}

/// Aggregates of `cpu_used` for hosts h1 (10) and h2 (20), service web1, every 15 minutes
/// of the last `hours` hours but the hour three hours ago.
pub fn seed_buckets(hours: i64) -> Vec<(i64, f64, &'static str)> {
    let now = now_ms();
    let q = 900_000;
    let start = (now - hours * 3_600_000).div_euclid(q) * q;
    let gap = (now - 3 * 3_600_000).div_euclid(3_600_000) * 3_600_000;
    let mut out = Vec::new();
    for (host, base) in [("h1", 10.0), ("h2", 20.0)] {
        for t in (0..).map(|i| start + i * q).take_while(|t| *t < now - q) {
            if !(gap..gap + 3_600_000).contains(&t) {
                out.push((t, base, host));
            }
        }
    }
    out
}

/// Seeds the embedded store in `dir` (before the server starts).
pub fn seed(dir: &std::path::Path, hours: i64) {
    let store = Embedded::open(Options {
        dir: dir.to_path_buf(),
        raw_retention: Duration::from_secs(8 * 3600),
        agg_retention: Duration::from_secs(7 * 86_400),
        agg_interval: Duration::from_secs(900),
        max_series: badger_pulse::embedded::MAX_SERIES,
    })
    .unwrap();
    for host in ["h1", "h2"] {
        let key = SeriesKey::new("cpu_used", vec![("host".into(), host.into()), ("service".into(), "web1".into())]);
        let b: Vec<(i64, f64)> = seed_buckets(hours).into_iter().filter(|x| x.2 == host).map(|x| (x.0, x.1)).collect();
        store.seed_aggregates(&key, &b).unwrap();
    }
    store.close();
}

/// A server on `store` with the seeded aggregates (and the temp dir of an embedded one).
pub fn seeded(store: Store, hours: i64, args: &[&str]) -> Option<(Server, Option<tempfile::TempDir>)> {
    match store {
        Store::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            seed(dir.path(), hours);
            let s = Server::start_in(dir.path(), args);
            Some((s, Some(dir)))
        }
        Store::Influx => {
            let s = store.server(args)?;
            let lines: Vec<String> = seed_buckets(hours)
                .into_iter()
                .map(|(t, v, h)| format!("aggregate,host={h},service=web1 cpu_used={v} {t}"))
                .collect();
            s.influx.as_ref().unwrap().write("one_week", &lines.join("\n"));
            Some((s, None))
        }
    }
}

pub fn ingest_and_latest(store: Store) {
    let Some(s) = store.server(&["-p", "1", "--self-metrics=false"]) else { return };
    // §7.11 (keys/tags on an empty store): null.
    assert_eq!(s.get("/keys").body, "null\n");
    assert_eq!(s.get("/tags").body, "null\n");
    let before = now_ms();
    let mut c = feed(&s, "host1", &[("cpu_used", "service:web1,guy", "0.2500"), ("ram_used", "", "abc")]);
    // §7.5 / §7.10: the point is stored with host and service tags; time in ms.
    let r = s.get_ok("/latest/cpu_used?service=web1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST, PUT, DELETE"));
    assert_eq!(r.header("access-control-allow-headers"), Some("X-AUTH-TOKEN, X-CSRF-Token"));
    assert!(r.body.ends_with("}\n"), "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["value"], 0.25);
    let t = v["time"].as_i64().unwrap();
    assert!(t >= before - 1000 && t <= now_ms(), "{t} not in ms around {before}");
    // Filters select: another service or a host that does not exist → 404 JSON.
    let r = s.get("/latest/cpu_used?service=web2");
    assert_eq!((r.status, r.body.as_str()), (404, "{\"error\":\"Not Found\"}\n"));
    assert_eq!(s.get("/latest/nothing").status, 404);
    // A value that is not a number is stored as -1.
    assert_eq!(s.get_ok("/latest/ram_used").json()["value"], -1.0);
    // Only key:value tags become tags; host is the relay's id.
    assert_eq!(s.get("/keys").body, "[\"cpu_used\",\"ram_used\"]\n");
    assert_eq!(s.get("/tags").body, "[\"host\",\"service\"]\n");
    assert_eq!(s.get_ok("/latest/cpu_used?host=host1").json()["value"], 0.25);
    // Fixed: a filter value is a value, never query text.
    assert_eq!(s.get("/latest/cpu_used?service=web1'%20OR%20'1'='1").status, 404);
    // §7.6: of a malformed got only the valid item is stored, and the connection stays.
    c.send("got a:1,b-c-d:2,e-f:1:2,ram_used-ram_used:3.0000");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.get_ok("/latest/ram_used?verb=max").json()["value"] != 3 {
        assert!(std::time::Instant::now() < deadline, "ram_used=3 was not stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get("/keys").body, "[\"cpu_used\",\"ram_used\"]\n");
    c.send("ping");
    assert_eq!(c.line().as_deref(), Some("pong"));
    // Verbs are validated.
    let r = s.get("/latest/cpu_used?verb=mean(x)");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("bad verb"));
    assert_eq!(s.get_ok("/latest/cpu_used?verb=max").json()["value"], 0.25);
    assert_eq!(s.get_ok("/latest/cpu_used?verb=COUNT").json()["value"], 1);
}

pub fn latest_raw_rows_with_repeated_filters(store: Store) {
    let Some(s) = store.server(&["-p", "1"]) else { return };
    let _a = feed(&s, "a", &[("load", "", "1.0000")]);
    let _b = feed(&s, "b", &[("load", "", "2.0000")]);
    // Both points are stored (InfluxDB sees them after the server's next flush).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = s.get_ok("/latest/load?verb=none&host=a&host=b");
        if r.json().is_array() || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rows = r.json();
    let rows = rows.as_array().unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(rows.len(), 2, "{}", r.body);
    let mut hosts: Vec<(&str, f64)> =
        rows.iter().map(|o| (o["host"].as_str().unwrap(), o["value"].as_f64().unwrap())).collect();
    hosts.sort_by(|x, y| x.0.cmp(y.0));
    assert_eq!(hosts, [("a", 1.0), ("b", 2.0)]);
    // Keys sorted, as Go prints maps.
    assert!(r.body.starts_with("[{\"host\":"), "{}", r.body);
    // One row is an object.
    assert_eq!(s.get_ok("/latest/load?verb=none&host=a").json()["value"], 1);
}

pub fn auth_cors_and_routes(store: Store) {
    let Some(s) = store.server(&[]) else { return };
    let url = |p: &str| format!("http://{}{p}", s.http);
    // §7.9
    let r = request("GET", &url("/ping"), Some("secret"), None);
    assert_eq!((r.status, r.body.as_str()), (200, "pong"));
    for token in [None, Some("wrong"), Some("secre"), Some("")] {
        let r = request("GET", &url("/ping"), token, None);
        assert_eq!((r.status, r.body.as_str()), (401, ""), "{token:?}");
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    assert_eq!(request("GET", &url("/ping?X-AUTH-TOKEN=secret"), None, None).body, "pong");
    assert_eq!(request("GET", &url("/ping?x-auth-token=secret"), None, None).status, 401);
    assert_eq!(request("GET", &url("/nowhere"), None, None).status, 401);
    let r = request("OPTIONS", &url("/latest/x"), None, None);
    assert_eq!((r.status, r.body.as_str()), (200, "{\"msg\":\"Success\"}\n"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST, PUT, DELETE"));
    assert_eq!(r.header("access-control-allow-headers"), Some("X-AUTH-TOKEN, X-CSRF-Token"));
    // Auth is per request: after an OPTIONS it is still required.
    assert_eq!(request("GET", &url("/ping"), None, None).status, 401);
    // No CORS on /ping, /keys, /tags.
    assert_eq!(s.get("/keys").header("access-control-allow-origin"), None);
    // §7.11: unknown routes.
    let r = s.get("/daily_peak/x");
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
    assert_eq!(s.get("/latest/cpu/extra").status, 404);
    // Without -k there is still the native alert API (the issue), see tests/pulse_alerts.rs.

    // -t "" disables auth; -C sets the origin.
    let Some(open) = store.server(&["-t", "", "-C", "https://example.org"]) else { return };
    let r = request("GET", &format!("http://{}/ping", open.http), None, None);
    assert_eq!((r.status, r.body.as_str()), (200, "pong"));
    let r = request("GET", &format!("http://{}/latest/x", open.http), None, None);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.org"));
}

pub fn hourly_and_daily(store: Store) {
    let Some((s, dir)) = seeded(store, 50, &[]) else { return };
    // §7.11: mean over both hosts, buckets of an hour, FILL(5).
    let r = s.get("/hourly/cpu_used?backfill=5&start=2d");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let rows = v.as_array().unwrap();
    assert!(rows.len() >= 48 && rows.len() <= 49, "{}", rows.len());
    let times: Vec<i64> = rows.iter().map(|o| o["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 3_600_000), "ascending, an hour apart");
    assert!(times.iter().all(|t| t % 3_600_000 == 0));
    let values: Vec<f64> = rows.iter().map(|o| o["value"].as_f64().unwrap()).collect();
    assert!(values.contains(&15.0) && values.contains(&5.0), "{values:?}");
    // Without backfill the gap is left out; filters and verbs apply.
    // (the hour three hours ago, and the current hour if its first bucket is not closed yet)
    let plain = s.get("/hourly/cpu_used?start=2d").json();
    let plain = plain.as_array().unwrap();
    assert!(plain.len() < rows.len() && plain.len() + 2 >= rows.len(), "{} {}", plain.len(), rows.len());
    assert!(plain.iter().all(|o| o["value"] == 15));
    let r = s.get("/hourly/cpu_used?start=1d&host=h2&verb=max").json();
    assert!(r.as_array().unwrap().iter().all(|o| o["value"] == 20));
    assert_eq!(s.get("/hourly/cpu_used?start=1d;%20DROP%20DATABASE").status, 400);
    assert_eq!(s.get("/hourly/cpu_used?stop=x").status, 400);
    assert_eq!(s.get("/hourly/nothing").status, 404);
    // §7.11: daily with backfill gives the 96 labels 00:00 … 23:45 in order.
    for route in ["/daily/cpu_used?backfill=1", "/daily_peaks/cpu_used?backfill=1"] {
        let r = s.get(route);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 96);
        let labels: Vec<&str> = rows.iter().map(|o| o["time"].as_str().unwrap()).collect();
        assert_eq!(labels[0], "00:00");
        assert_eq!(labels[1], "00:15");
        assert_eq!(labels[95], "23:45");
        assert!(labels.windows(2).all(|w| w[0] < w[1]));
        assert!(rows.iter().all(|o| o["value"] == 15));
    }
    // A time zone moves the labels, not the values.
    let t = match &dir {
        Some(dir) => Server::start_in(dir.path(), &["--time-zone", "Asia/Kolkata"]),
        None => Server::start(&["-i", &s.influx.as_ref().unwrap().url, "--time-zone", "Asia/Kolkata"]),
    };
    let s = t;
    let v = s.get("/daily/cpu_used?start=2h&stop=1h").json();
    let labels: Vec<&str> = v.as_array().unwrap().iter().map(|o| o["time"].as_str().unwrap()).collect();
    assert!(labels
        .iter()
        .all(|l| l.ends_with(":15") || l.ends_with(":45") || l.ends_with(":00") || l.ends_with(":30")));
}

pub fn our_relay_against_our_server(store: Store) {
    let Some(s) = store.server(&["-p", "1"]) else { return };
    let relay = Relay::connect(&s.tcp, "lester.tester").unwrap();
    relay.add_collector("cpu_used", &["", "service:web1"], Collector::point(|| 0.2207)).unwrap();
    relay
        .add_collector("mem", &[], Collector::set(|| [("used".to_string(), 1.5), ("free".to_string(), 2.0)].into()))
        .unwrap();
    let r = s.get_ok("/latest/cpu_used?service=web1&host=lester.tester");
    assert_eq!(r.json()["value"], 0.2207);
    // A set collector's values are measurements of their own.
    assert_eq!(s.get_ok("/latest/used").json()["value"], 1.5);
    assert_eq!(s.get_ok("/latest/free").json()["value"], 2);
    relay.close();
}

/// An alert on `cpu_used` of host abcd fires (CRITICAL) when its mean over 3 s passes 80
/// and recovers (OK) when it drops, one post per change of state.
pub fn alert_fires_and_recovers(store: Store) {
    let hook = crate::support::FakeHttp::start();
    let Some(s) = store.server(&["-p", "1", "--alert-interval", "1"]) else { return };
    let body = format!(
        r#"{{"metric":"cpu_used","threshold":80,"tags":{{"host":"abcd"}},"duration":"3s","post":"{}/alert"}}"#,
        hook.url()
    );
    let r = request("POST", &format!("http://{}/alerts", s.http), Some("secret"), Some(&body));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut other = Client::identify(&s.tcp, "efgh", 30);
    other.send("add cpu_used:");
    let mut c = Client::identify(&s.tcp, "abcd", 30);
    c.send("add cpu_used:");
    let high = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < high {
        other.answer_one_get(Duration::from_millis(1500), |_| "99.0000".into());
        c.answer_one_get(Duration::from_millis(1500), |_| "93.0000".into());
    }
    let crit = hook.wait_for(Duration::from_secs(10), |r| r.path == "/alert").expect("a CRITICAL post");
    let a: serde_json::Value = serde_json::from_str(&crit.body).unwrap();
    assert_eq!(a["level"], "CRITICAL");
    assert_eq!(a["id"], "[abcd] cpu_used");
    assert!(a["message"].as_str().unwrap().starts_with("[abcd] cpu_used is CRITICAL value:93"), "{a}");
    assert_eq!(a["data"]["series"][0]["columns"], serde_json::json!(["time", "mean_cpu_used"]));
    let low = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < low {
        other.answer_one_get(Duration::from_millis(1500), |_| "99.0000".into());
        c.answer_one_get(Duration::from_millis(1500), |_| "10.0000".into());
    }
    let ok = hook.wait_for(Duration::from_secs(10), |r| r.body.contains("\"OK\"")).expect("an OK post");
    assert!(ok.body.contains("cpu_used is OK value:"), "{}", ok.body);
    let posts = hook.requests().into_iter().filter(|r| r.path == "/alert").count();
    assert_eq!(posts, 2, "state changes only");
}
