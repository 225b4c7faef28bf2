//! Tests of the l2met module: the reference's acceptance checks (§A.10) through the real HTTP
//! drain with an injected clock, the syslog listeners, the file tailer and the limits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use super::parse::{parse_rfc3339, Kind};
use super::store::{delay, measure_stats, MeasureStats};
use super::*;
use badger_test_support::fixture;

/// `2013-07-22T00:06:30Z` as epoch milliseconds (the reference's "now").
fn ms(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339.as_bytes()).expect("time") * 1000
}

const TOKEN: &str = "s3cr3t-token";

/// A module with the drain on 127.0.0.1 (port 0) and a clock the test sets.
struct Harness {
    m: L2met,
    now: Arc<AtomicI64>,
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut Settings)) -> Harness {
        let now = Arc::new(AtomicI64::new(ms("2013-07-22T00:06:30Z")));
        let n = now.clone();
        let mut s = Settings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            tokens: vec![TOKEN.into(), "user:pass".into()],
            ..Settings::default()
        };
        tweak(&mut s);
        let m = L2met::start(s, Arc::new(move || n.load(Ordering::SeqCst))).unwrap_or_else(|e| panic!("{e}"));
        Harness { m, now }
    }

    fn set_now(&self, t: &str) {
        self.now.store(ms(t), Ordering::SeqCst);
    }

    fn http(&self) -> SocketAddr {
        self.m.local_addrs().0.expect("drain address")
    }

    /// POSTs a body to `/logs?query` with the test token.
    fn post(&self, query: &str, body: &str) -> (u16, String) {
        let (status, _, body) = request(self.http(), "POST", &format!("/logs{query}"), Some(&basic(TOKEN)), body);
        (status, body)
    }

    /// The series ready at `t`.
    fn series_at(&self, t: &str) -> Vec<Series> {
        self.set_now(t);
        self.m.ready_series()
    }

    fn counter(&self, f: impl Fn(&store::Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.m.shared().store.counters).load(Ordering::SeqCst)
    }
}

fn basic(creds: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds))
}

/// One HTTP/1.1 request on a new connection: (status, head, body).
fn request(addr: SocketAddr, method: &str, target: &str, auth: Option<&str>, body: &str) -> (u16, String, String) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/logplex-1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, head.to_string(), body.to_string())
}

/// A logplex frame, byte for byte.
fn frame(ts: &str, procid: &str, msg: &str) -> String {
    let body = format!("<190>1 {ts} host app {procid} - {msg}");
    format!("{} {body}", body.len())
}

fn find<'a>(series: &'a [Series], name: &str) -> &'a Series {
    series.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no series {name} in {series:#?}"))
}

fn measure(s: &Series) -> MeasureStats {
    match s.stats {
        Stats::Measure(m) => m,
        other => panic!("{}: not a measurement: {other:?}", s.name),
    }
}

fn points(series: &[Series]) -> Vec<Point> {
    let mut out = Vec::new();
    for s in series {
        push_points(s, &mut out);
    }
    out
}

const T0: &str = "2013-07-22T00:06:26+00:00";
const MINUTE: i64 = 1374451560;

/// §A.10 check 1: several metrics on one line, all kinds.
#[test]
fn check1_several_metrics_all_kinds() {
    let h = Harness::new(|_| {});
    let body = "146 <190>1 2013-07-22T00:06:26+00:00 host app web.1 - measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1";
    assert_eq!(
        body,
        frame(
            T0,
            "web.1",
            "measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1"
        )
    );
    assert_eq!(h.post("", body), (200, String::new()));
    // Not ready before the window has closed (and the flush delay passed).
    assert!(h.series_at("2013-07-22T00:07:00Z").is_empty());
    let s = h.series_at("2013-07-22T00:07:01Z");
    assert_eq!(s.len(), 3, "{s:#?}");
    for x in &s {
        assert_eq!((x.source.as_str(), x.time, x.resolution, x.windows), ("db1", MINUTE, 60, 1));
    }
    let lat = find(&s, "db.latency");
    assert_eq!(lat.units, "ms");
    assert_eq!(
        measure(lat),
        MeasureStats { count: 2, sum: 14.0, min: 4.0, max: 10.0, mean: 7.0, median: 10.0, perc95: 10.0, perc99: 10.0 }
    );
    let vac = find(&s, "db.vaccum");
    assert_eq!((vac.kind, vac.stats, vac.units.as_str()), (Kind::Counter, Stats::Counter(1.0), ""));
    let size = find(&s, "db.size");
    assert_eq!((size.kind, size.stats, size.units.as_str()), (Kind::Sample, Stats::Sample(100.0), "GB"));
    // As points: the reference's six gauges, with the complex one split into its parts.
    let p = points(&s);
    let got: Vec<(&str, &str, Value)> = p.iter().map(|p| (p.name.as_str(), p.units.as_ref(), p.value)).collect();
    assert_eq!(
        got,
        [
            ("l2met.db.latency.count.db1", "", Value::Int(2)),
            ("l2met.db.latency.sum.db1", "ms", Value::Float(14.0)),
            ("l2met.db.latency.min.db1", "ms", Value::Float(4.0)),
            ("l2met.db.latency.max.db1", "ms", Value::Float(10.0)),
            ("l2met.db.latency.mean.db1", "ms", Value::Float(7.0)),
            ("l2met.db.latency.median.db1", "ms", Value::Float(10.0)),
            ("l2met.db.latency.perc95.db1", "ms", Value::Float(10.0)),
            ("l2met.db.latency.perc99.db1", "ms", Value::Float(10.0)),
            ("l2met.db.size.db1", "GB", Value::Float(100.0)),
            ("l2met.db.vaccum.db1", "", Value::Float(1.0)),
        ]
    );
    for x in &p {
        assert_eq!(x.measurement, "l2met");
        assert_eq!(x.tags, [(Cow::Borrowed("source"), "db1".to_string())]);
        assert_eq!(x.name, format!("l2met.{}.db1", x.field));
    }
    // Taken out: nothing is sent twice.
    assert!(h.series_at("2013-07-22T00:08:01Z").is_empty());
}

/// §A.10 check 2: edge values and the older prefix.
#[test]
fn check2_edge_values_and_older_prefix() {
    let h = Harness::new(|_| {});
    let body = frame(T0, "web.1", "measure.a measure#b=0.5s count#c=-3 measure#d=abc sample#e=1.5.3ms");
    assert!(body.starts_with("116 "));
    assert_eq!(h.post("", &body), (200, String::new()));
    let s = h.series_at("2013-07-22T00:07:01Z");
    let got: Vec<(&str, &str, Kind)> = s.iter().map(|s| (s.name.as_str(), s.units.as_str(), s.kind)).collect();
    assert_eq!(got, [("a", "", Kind::Measure), ("b", "s", Kind::Measure), ("e", "ms", Kind::Sample)]);
    assert_eq!(measure(find(&s, "a")).sum, 1.0);
    assert_eq!(measure(find(&s, "b")).sum, 0.5);
    assert_eq!(find(&s, "e").stats, Stats::Sample(1.5));
    assert_eq!(h.counter(|c| &c.bad_lines), 0);
}

/// §A.10 check 3: percentile indices.
#[test]
fn check3_percentile_indices() {
    let h = Harness::new(|_| {});
    // 1..=100 in a scrambled order, over four requests.
    let mut values: Vec<u32> = (1..=100).collect();
    values.sort_by_key(|v| (v * 37) % 101);
    for chunk in values.chunks(25) {
        let body: String = chunk.iter().map(|v| frame(T0, "web.1", &format!("measure#x={v}"))).collect();
        assert_eq!(h.post("", &body).0, 200);
    }
    let s = h.series_at("2013-07-22T00:07:01Z");
    assert_eq!(
        measure(find(&s, "x")),
        MeasureStats {
            count: 100,
            sum: 5050.0,
            min: 1.0,
            max: 100.0,
            mean: 50.5,
            median: 51.0,
            perc95: 96.0,
            perc99: 100.0
        }
    );
    let m = measure_stats(4, 10.0, 1.0, 4.0, &mut [4.0, 2.0, 1.0, 3.0]);
    assert_eq!((m.median, m.perc95, m.perc99), (3.0, 4.0, 4.0));
    let m = measure_stats(20, 210.0, 1.0, 20.0, &mut (1..=20).map(f64::from).collect::<Vec<_>>());
    assert_eq!((m.perc95, m.perc99), (20.0, 20.0));
    let m = measure_stats(2, 14.0, 4.0, 10.0, &mut [10.0, 4.0]);
    assert_eq!(m.median, 10.0, "the upper median");
}

/// §A.10 check 4: counters sum, samples keep the last value.
#[test]
fn check4_counters_sum_samples_keep_the_last() {
    let h = Harness::new(|_| {});
    assert_eq!(h.post("", &frame(T0, "web.1", "count#hits=2 sample#mem=10")).0, 200);
    assert_eq!(h.post("", &frame("2013-07-22T00:06:29+00:00", "web.1", "count#hits=3 sample#mem=20")).0, 200);
    // store/redis_test: values keep their arrival order (the sample is the last one).
    assert_eq!(h.post("", &frame(T0, "web.1", "sample#order=99.99999 sample#order=1 sample#order=0.2")).0, 200);
    let s = h.series_at("2013-07-22T00:07:01Z");
    assert_eq!(find(&s, "hits").stats, Stats::Counter(5.0));
    assert_eq!(find(&s, "mem").stats, Stats::Sample(20.0));
    assert_eq!(find(&s, "order").stats, Stats::Sample(0.2));
    let names: Vec<String> = points(&s).into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["l2met.hits", "l2met.mem", "l2met.order"]);
}

/// §A.10 check 5: Heroku router lines.
#[test]
fn check5_router_lines() {
    let h = Harness::new(|_| {});
    let body = frame(T0, "router", "at=info host=l2met.net connect=1ms service=4ms bytes=10");
    assert_eq!(body, "106 <190>1 2013-07-22T00:06:26+00:00 host app router - at=info host=l2met.net connect=1ms service=4ms bytes=10");
    assert_eq!(h.post("", &body).0, 200);
    assert_eq!(h.post("", &frame(T0, "web.1", "at=info host=l2met.net connect=1ms service=4ms bytes=10")).0, 200);
    let s = h.series_at("2013-07-22T00:07:01Z");
    let got: Vec<(&str, &str, f64)> = s.iter().map(|s| (s.name.as_str(), s.units.as_str(), measure(s).sum)).collect();
    assert_eq!(got, [("router.bytes", "", 10.0), ("router.connect", "ms", 1.0), ("router.service", "ms", 4.0)]);
    let p = points(&s);
    assert_eq!(p.len(), 3 * 8);
    assert!(p.iter().any(|p| p.name == "l2met.router.service.perc99" && p.value == Value::Float(4.0)));
}

/// Issue 11, row 11: `resolution=86400` and 10,000 names × 10,000 values from one source
/// (the issue: RSS 20 → 936 MB held for the day, and another source's counter dropped since
/// the 10,000-bucket cap is shared). Bounds: `max_resolution`, `max_source_buckets` and
/// `max_kept_values` (scaled down here: 50 buckets a source, 2,000 kept values).
#[test]
fn row11_resolution_sources_and_kept_values_are_bounded() {
    let h = Harness::new(|s| {
        s.limits.max_source_buckets = 50;
        s.limits.max_kept_values = 2_000;
    });
    h.set_now("2013-07-22T00:06:27Z");
    assert_eq!(h.post("?resolution=86400", &frame(T0, "web.1", "measure#x=1")).0, 400);
    assert_eq!(h.counter(|c| &c.rejected), 1);
    // One source opens 200 measurements with 100 values each: 50 buckets at most.
    let mut body = String::new();
    for n in 0..200 {
        let values: Vec<String> = (0..100).map(|v| format!("measure#m{n}={v} source=greedy")).collect();
        body.push_str(&frame(T0, "web.1", &values.join(" ")));
    }
    assert_eq!(h.post("", &body).0, 200);
    let store = &h.m.shared().store;
    assert_eq!(store.len(), 50);
    assert_eq!(h.counter(|c| &c.overflow), 150 * 100);
    // Another source still gets its bucket.
    assert_eq!(h.post("", &frame(T0, "web.2", "count#other=1 source=quiet")).0, 200);
    assert_eq!(store.len(), 51);
    let s = h.series_at("2013-07-22T00:08:00Z");
    let other = s.iter().find(|s| s.name == "other").expect("the other source's counter");
    assert_eq!(other.source, "quiet");
    // 50 buckets × 100 values = 5,000 values, 2,000 kept: counts stay exact.
    let m0 = s.iter().find(|s| s.name == "m0").expect("m0");
    match m0.stats {
        store::Stats::Measure(st) => {
            assert_eq!((st.count, st.sum, st.min, st.max), (100, 4950.0, 0.0, 99.0));
        }
        _ => panic!("a measure"),
    }
}

/// §A.10 check 6: drain options, the deadline at 1 s, units as part of the identity.
#[test]
fn check6_drain_options() {
    let h = Harness::new(|_| {});
    h.set_now("2013-07-22T00:06:27Z");
    let q = "?prefix=myapp&source-prefix=eu&resolution=1";
    assert_eq!(h.post(q, &frame(T0, "web.1", "measure#hello source=web")).0, 200);
    assert_eq!(h.post(q, &frame(T0, "web.1", "measure#nosource")).0, 200);
    assert_eq!(h.post(q, &frame(T0, "web.1", "measure#lat=3ms measure#lat=2s")).0, 200);
    let s = h.series_at("2013-07-22T00:06:28Z");
    let got: Vec<(&str, &str, &str, i64, u32)> =
        s.iter().map(|s| (s.name.as_str(), s.source.as_str(), s.units.as_str(), s.time, s.resolution)).collect();
    assert_eq!(
        got,
        [
            ("myapp.hello", "eu.web", "", 1374451586, 1),
            ("myapp.lat", "eu", "ms", 1374451586, 1),
            ("myapp.lat", "eu", "s", 1374451586, 1),
            ("myapp.nosource", "eu", "", 1374451586, 1),
        ]
    );
    // The same line at 00:06:30: Delay 4 > 2, dropped and counted.
    h.set_now("2013-07-22T00:06:30Z");
    assert_eq!(h.post(q, &frame(T0, "web.1", "measure#hello source=web")).0, 200);
    assert_eq!(h.counter(|c| &c.dropped), 1);
    assert!(h.series_at("2013-07-22T00:06:40Z").is_empty());
    // main_test: source-prefix alone.
    h.set_now("2013-07-22T00:06:30Z");
    assert_eq!(h.post("?source-prefix=srcpre", &frame(T0, "web.1", "measure#a")).0, 200);
    assert_eq!(h.series_at("2013-07-22T00:07:01Z")[0].source, "srcpre");
    // A resolution that is not a positive number of seconds means the configured one.
    for bad in ["0", "-5", "abc", "", "86401"] {
        assert_eq!(net::query_options(&format!("resolution={bad}"), &Options::default()).resolution, 60, "{bad}");
    }
    assert_eq!(
        net::query_options("resolution=%2B5&prefix=a%2Eb+c", &Options::default()).prefix.as_deref(),
        Some("a.b c")
    );
}

/// §A.10 check 7: HTTP status codes (401 without credentials, as the issue asks).
#[test]
fn check7_status_codes() {
    let h = Harness::new(|_| {});
    let addr = h.http();
    let body = frame(T0, "web.1", "count#x=1");
    let cases: [(&str, &str, Option<String>, u16, &str); 8] = [
        ("GET", "/logs", Some(basic(TOKEN)), 400, "Invalid Request"),
        ("POST", "/logs", Some("Bearer x".into()), 400, "Fail: Parse auth."),
        ("POST", "/logs", Some("Basic !!!not-base64".into()), 400, "Fail: Parse auth."),
        ("POST", "/logs", Some(basic("wrong-token")), 400, "Invalid Request"),
        ("POST", "/logs", Some(basic(&format!("{TOKEN}x"))), 400, "Invalid Request"),
        ("POST", "/logs", None, 401, "Fail: Missing auth."),
        ("POST", "/other", Some(basic(TOKEN)), 404, ""),
        ("PUT", "/logs", None, 400, "Invalid Request"),
    ];
    for (method, path, auth, status, text) in cases {
        let (got, head, got_body) = request(addr, method, path, auth.as_deref(), &body);
        assert_eq!((got, got_body.as_str()), (status, text), "{method} {path} {auth:?}");
        if status == 401 {
            assert!(head.to_ascii_lowercase().contains("www-authenticate: basic realm=\"l2met\""), "{head}");
        }
    }
    assert_eq!(h.counter(|c| &c.rejected), 7);
    // Accepted forms of the credentials: `token:` (a drain URL's userinfo), `token`,
    // `user:pass`, URL-safe base64 without padding.
    for auth in [basic(&format!("{TOKEN}:")), basic(TOKEN), basic("user:pass"), "basic czNjcjN0LXRva2Vu".into()] {
        assert_eq!(request(addr, "POST", "/logs", Some(&auth), "").0, 200, "{auth}");
    }
    // A body with no frames: 200, and nothing comes out.
    assert_eq!(h.post("", "").0, 200);
    assert_eq!(h.post("", "garbage that is no frame").0, 200);
    assert!(h.series_at("2013-07-22T00:07:01Z").is_empty());
    // Too big (as declared): 413.
    let mut c = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        basic(TOKEN),
        net::MAX_BODY + 1
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert_eq!(h.counter(|c| &c.requests), 6);
    assert_eq!(h.counter(|c| &c.rejected), 8);
}

/// §A.10 check 8: L10 lines and the deadline.
#[test]
fn check8_l10_and_the_deadline() {
    let h = Harness::new(|_| {});
    let l10 = "169 <174>1 2013-04-17T19:04:46+00:00 d.1234-drain-identifier-567 heroku logplex - - Error L10 (output buffer overflow): 500 messages dropped since 2013-04-17T19:04:46+00:00.";
    assert_eq!(h.post("", l10).0, 200);
    assert_eq!(h.counter(|c| &c.l10), 500);
    assert_eq!(h.post("", &frame("2013-07-22T00:03:26+00:00", "web.1", "measure#old=1")).0, 200);
    assert_eq!(h.counter(|c| &c.dropped), 1);
    assert!(h.series_at("2013-07-22T00:10:00Z").is_empty());
    // l2met's id_test: the Delay of a window at +2 periods is 2 (kept: not more than 2).
    let t = MINUTE * 1000;
    assert_eq!(delay(MINUTE, 60, t + 120_000), 2);
    assert_eq!(delay(MINUTE, 1, t + 2_000), 2);
    assert_eq!(delay(MINUTE, 5, t + 10_000), 2);
    // Check 1's bucket has Delay 1; the old line's 4.
    assert_eq!(delay(MINUTE, 60, ms("2013-07-22T00:06:30Z")), 1);
    assert_eq!(delay(MINUTE - 180, 60, ms("2013-07-22T00:06:30Z")), 4);
}

/// l2met's main_test and parser_test cases through the drain.
#[test]
fn reference_tests_of_l2met() {
    let h = Harness::new(|_| {});
    for (i, msg) in ["measure.a", "measure#a", "measure#a=1"].iter().enumerate() {
        assert_eq!(h.post(&format!("?prefix=p{i}"), &frame(T0, "web.1", msg)).0, 200);
    }
    assert_eq!(h.post("", &frame(T0, "web.1", "measure#big=12345678912 measure#small=0.001")).0, 200);
    let s = h.series_at("2013-07-22T00:07:01Z");
    for i in 0..3 {
        assert_eq!(measure(find(&s, &format!("p{i}.a"))).sum, 1.0);
    }
    assert_eq!(measure(find(&s, "big")).sum, 12345678912.0);
    assert_eq!(measure(find(&s, "small")).sum, 0.001);
}

#[test]
fn late_values_and_slow_collections_merge_into_one_series() {
    let h = Harness::new(|s| s.defaults.resolution = 10);
    h.set_now("2013-07-22T00:06:52Z");
    for (ts, v) in [("00:06:21", 1), ("00:06:31", 2), ("00:06:41", 3), ("00:06:51", 4)] {
        let body =
            frame(&format!("2013-07-22T{ts}+00:00"), "web.1", &format!("measure#m={v} count#c={v} sample#s={v}"));
        assert_eq!(h.post("", &body).0, 200);
    }
    // 00:06:21 was three windows late: dropped. The three others closed by 00:07:02.
    assert_eq!(h.counter(|c| &c.dropped), 3);
    let s = h.series_at("2013-07-22T00:07:01Z");
    let m = find(&s, "m");
    assert_eq!((m.time, m.windows), (MINUTE + 30, 3));
    assert_eq!(
        measure(m),
        MeasureStats { count: 3, sum: 9.0, min: 2.0, max: 4.0, mean: 3.0, median: 3.0, perc95: 4.0, perc99: 4.0 }
    );
    assert_eq!(find(&s, "c").stats, Stats::Counter(9.0));
    assert_eq!(find(&s, "s").stats, Stats::Sample(4.0), "the newest window's last value");
}

#[test]
fn limits_overflow_and_reservoir() {
    let h = Harness::new(|s| {
        s.limits.max_buckets = 2;
        s.limits.max_values = 10;
    });
    let body: String = (0..1000).map(|v| frame(T0, "web.1", &format!("measure#m={v} count#c=1 sample#s=1"))).collect();
    assert_eq!(h.post("", &body).0, 200);
    assert_eq!(h.counter(|c| &c.overflow), 1000);
    assert_eq!(h.counter(|c| &c.values), 2000);
    let s = h.series_at("2013-07-22T00:07:01Z");
    let m = measure(find(&s, "m"));
    // Exact count, sum, min, max; percentiles from a sample of 10.
    assert_eq!((m.count, m.sum, m.min, m.max), (1000, 499_500.0, 0.0, 999.0));
    assert!(m.median <= 999.0 && m.perc99 >= m.median);
    assert_eq!(find(&s, "c").stats, Stats::Counter(1000.0));
}

#[test]
fn collect_emits_points_and_receiver_stats() {
    let mut h = Harness::new(|_| {});
    assert_eq!(h.post("", &frame(T0, "web.1", "count#x=2 source=a b=\"unterminated")).0, 200);
    assert_eq!(h.post("", &frame(T0, "web.1", "count#x=2 source=a")).0, 200);
    h.set_now("2013-07-22T00:07:01Z");
    let p = fixture::collect(&mut h.m, 0.0);
    let names: Vec<&str> = fixture::names(&p);
    assert_eq!(names, ["l2met.x.a", "l2met_receiver.buckets"]);
    assert_eq!(fixture::float(&p, "l2met.x.a"), 2.0);
    assert_eq!(fixture::int(&p, "l2met_receiver.buckets"), 0);
    fixture::assert_documented(include_str!("mod.rs"), &p[1..]);
    assert_eq!(h.post("", &frame("2013-07-22T00:07:00+00:00", "web.1", "count#y=1")).0, 200);
    let p = fixture::collect(&mut h.m, 2.0);
    fixture::assert_documented(include_str!("mod.rs"), &p);
    assert_eq!(fixture::int(&p, "l2met_receiver.buckets"), 1);
    assert_eq!(fixture::float(&p, "l2met_receiver.lines_per_sec"), 0.5);
    assert_eq!(fixture::float(&p, "l2met_receiver.values_per_sec"), 0.5);
    assert_eq!(fixture::float(&p, "l2met_receiver.requests_per_sec"), 0.5);
    assert_eq!(fixture::float(&p, "l2met_receiver.bad_lines_per_sec"), 0.0);
    assert_eq!(h.counter(|c| &c.bad_lines), 1);
}

#[test]
fn points_follow_the_stat_table() {
    let s = vec![
        Series {
            name: "db.latency".into(),
            units: "ms".into(),
            source: String::new(),
            kind: Kind::Measure,
            resolution: 60,
            time: 0,
            windows: 1,
            stats: Stats::Measure(measure_stats(1, 4.0, 4.0, 4.0, &mut [4.0])),
        },
        Series {
            name: "hits".into(),
            units: "ms".into(),
            source: "web.1".into(),
            kind: Kind::Counter,
            resolution: 60,
            time: 0,
            windows: 1,
            stats: Stats::Counter(3.0),
        },
    ];
    let p = points(&s);
    // The table's `<u>` stands for the line's units; check the names and types against it.
    let rows = fixture::stat_table(include_str!("mod.rs"));
    for x in &p {
        let row = rows.iter().find(|r| fixture::name_matches(&r.stat, &x.name.replace("db.latency", "db_latency")));
        let row = row.unwrap_or_else(|| panic!("{} matches no row", x.name));
        assert_eq!(row.kind_int, matches!(x.value, Value::Int(_)), "{}", x.name);
        assert_eq!(x.units, if row.units == "`<u>`" { "ms" } else { "" }, "{}", x.name);
    }
    assert_eq!(p.last().map(|p| p.name.as_str()), Some("l2met.hits.web.1"));
}

#[test]
fn config_keys_and_errors() {
    let conf = |t: &str| fixture::conf("l2met", t);
    let s = settings(&conf("{}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (s.listen, s.defaults.resolution, s.limits.deadline, s.flush_delay),
        (None, 60, 2, Duration::from_secs(1))
    );
    let s = settings(&conf(
        r#"{"listen": "127.0.0.1:8080", "tokens": "a, b", "files": ["logs/*.log"], "state_dir": "state",
            "resolution": 10, "prefix": "", "source_prefix": "eu", "flush_delay": "500ms", "deadline": 0}"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(s.tokens, ["a", "b"]);
    assert_eq!(s.files, ["conf.d/logs/*.log"]);
    assert_eq!(s.state_file, Some(PathBuf::from("conf.d/state/l2met-offsets.json")));
    assert_eq!((s.defaults.prefix, s.defaults.source_prefix.as_deref()), (None, Some("eu")));
    assert_eq!((s.flush_delay, s.limits.deadline), (Duration::from_millis(500), 0));
    for (text, key) in [
        ("{\n\"listen\": \"127.0.0.1:8080\"}", "tokens"),
        ("{\n\"listen\": \"nonsense\", \"tokens\": [\"a\"]}", "listen"),
        ("{\n\"resolution\": 0}", "resolution"),
        ("{\n\"flush_delay\": \"2m\"}", "flush_delay"),
        ("{\n\"max_values\": 0}", "max_values"),
        ("{\n\"files\": [\"[\"]}", "files"),
        ("{\n\"lisen\": 1}", "lisen"),
    ] {
        match settings(&conf(text)) {
            Err(BuildError::Config(e)) => assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(2)), "{text}"),
            Err(BuildError::Unavailable(m)) => panic!("{text}: {m}"),
            Ok(_) => panic!("{text} should fail"),
        }
    }
}

#[test]
fn a_port_in_use_is_reported_and_ports_are_freed_on_drop() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap();
    drop(other);
    let s = Settings { listen: Some(addr), tokens: vec!["t".into()], ..Settings::default() };
    let a = L2met::start(s.clone(), system_clock()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(request(addr, "POST", "/logs", Some(&basic("t")), "").0, 200);
    // A second instance with the same address (a reload) takes the socket over: the first
    // stops accepting at once, the second serves while the first still exists...
    let b = L2met::start(s.clone(), system_clock()).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..5 {
        assert_eq!(request(addr, "POST", "/logs", Some(&basic("t")), "").0, 200);
    }
    // Each request is served once, and the new instance serves (one may still have reached
    // the old one while the socket changed hands, under a loaded machine).
    let served_b = b.shared().store.counters.requests.load(Ordering::SeqCst);
    assert!((4..=5).contains(&served_b), "new instance served {served_b} of 5");
    drop(a);
    // ...and after it is gone.
    assert_eq!(request(addr, "POST", "/logs", Some(&basic("t")), "").0, 200);
    drop(b);
    // Both gone: the port is free again.
    let again = std::net::TcpListener::bind(addr).expect("port freed on drop");
    // Someone else holds it: reported as unavailable.
    match L2met::start(s, system_clock()) {
        Err(BuildError::Unavailable(m)) => assert!(m.starts_with(&format!("listen {addr}:")), "{m}"),
        _ => panic!("should fail"),
    }
    drop(again);
}

/// Polls until `f` gives something (the listeners run on their own thread).
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out")
}

#[test]
fn syslog_udp_and_tcp_rfc5424_and_rfc3164() {
    let h = Harness::new(|s| {
        s.listen = None;
        s.syslog_udp = Some("127.0.0.1:0".parse().unwrap());
        s.syslog_tcp = Some("127.0.0.1:0".parse().unwrap());
    });
    h.set_now("2013-07-22T00:06:30Z");
    let (_, udp, tcp) = h.m.local_addrs();
    let (udp, tcp) = (udp.expect("udp"), tcp.expect("tcp"));
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"<34>1 2013-07-22T00:06:26+00:00 host app web.1 - - measure#u5424=4ms source=s\n", udp).unwrap();
    u.send_to(b"<13>Jul 22 00:06:29 host app[router]: connect=2ms", udp).unwrap();
    let mut t = TcpStream::connect(tcp).unwrap();
    // Octet-counted RFC 5424, then newline-separated RFC 3164, split across writes.
    let m5424 = "<34>1 2013-07-22T00:06:26+00:00 host app web.1 - - count#t5424=2";
    t.write_all(format!("{} {m5424}", m5424.len()).as_bytes()).unwrap();
    t.write_all(b"<13>Jul 22 00:06:29 host app: count#t3164=3\n<13>Jul 22 00:06:29 host app: cou").unwrap();
    t.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    t.write_all(b"nt#t3164=4\n").unwrap();
    drop(t);
    let store = &h.m.shared().store;
    eventually(|| (store.counters.lines.load(Ordering::SeqCst) >= 5).then_some(()));
    let s = h.series_at("2013-07-22T00:07:01Z");
    let got: Vec<(&str, &str, &str, i64)> =
        s.iter().map(|s| (s.name.as_str(), s.source.as_str(), s.units.as_str(), s.time)).collect();
    assert_eq!(
        got,
        [
            ("router.connect", "", "ms", MINUTE),
            ("t3164", "", "", MINUTE),
            ("t5424", "", "", MINUTE),
            ("u5424", "s", "ms", MINUTE),
        ]
    );
    assert_eq!(find(&s, "t3164").stats, Stats::Counter(7.0));
    // A length over 64 KiB closes the connection; the listener goes on.
    let mut t = TcpStream::connect(tcp).unwrap();
    t.write_all(b"999999 <13>x\n").unwrap();
    let mut buf = [0u8; 1];
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(t.read(&mut buf).unwrap_or(0), 0);
    let mut t = TcpStream::connect(tcp).unwrap();
    t.write_all(b"<13>Jul 22 00:07:29 host app: count#again=1\n").unwrap();
    drop(t);
    eventually(|| (store.counters.lines.load(Ordering::SeqCst) >= 6).then_some(()));
}

/// Issue 11, row 10: idle syslog TCP connections (the issue: 256 of them refused every new
/// sender for as long as they stayed idle). Bound: `max_connections` (4 here) at once,
/// and a connection silent for `idle_timeout` (300 ms here) is closed.
#[test]
fn syslog_tcp_idle_connections_cannot_starve_new_senders() {
    let h = Harness::new(|s| {
        s.listen = None;
        s.syslog_tcp = Some("127.0.0.1:0".parse().unwrap());
        s.net_limits.max_connections = 4;
        s.net_limits.header_timeout = Duration::from_millis(300);
    });
    h.set_now("2013-07-22T00:06:30Z");
    let (_, _, tcp) = h.m.local_addrs();
    let tcp = tcp.expect("tcp");
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(tcp).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    // A fifth is closed at once while the four are open.
    let mut fifth = TcpStream::connect(tcp).unwrap();
    fifth.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut fifth, &mut b).unwrap_or(0), 0);
    // After the idle timeout the idle ones are closed, and a new sender is read.
    std::thread::sleep(Duration::from_millis(600));
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(std::io::Read::read(&mut c, &mut b).unwrap_or(0), 0, "an idle connection is closed");
    }
    let mut t = TcpStream::connect(tcp).unwrap();
    t.write_all(b"<13>Jul 22 00:06:29 host app: count#late=3\n").unwrap();
    drop(t);
    let store = &h.m.shared().store;
    eventually(|| (store.counters.lines.load(Ordering::SeqCst) >= 1).then_some(()));
}

#[test]
fn tcp_frames() {
    use net::{Frame, TcpFrames};
    let mut f = TcpFrames { buf: b"5 hello\n\nline one\n3 ab", pos: 0 };
    assert_eq!(f.next_frame(), Frame::Message(b"hello"));
    assert_eq!(f.next_frame(), Frame::Message(b"line one"));
    assert_eq!(f.next_frame(), Frame::Incomplete);
    assert_eq!(f.pos, 18);
    assert_eq!(TcpFrames { buf: b"12345678", pos: 0 }.next_frame(), Frame::Bad);
    assert_eq!(TcpFrames { buf: b"70000 x", pos: 0 }.next_frame(), Frame::Bad);
    assert_eq!(TcpFrames { buf: b"1x", pos: 0 }.next_frame(), Frame::Incomplete);
}

#[test]
fn tailing_files_rotation_truncation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state/l2met-offsets.json");
    std::fs::write(&log, "count#before=1\n").unwrap();
    let start = |h: &mut Option<Harness>| {
        *h = None;
        let (log_glob, state) = (dir.path().join("*.log"), state.clone());
        let n = Harness::new(move |s| {
            s.listen = None;
            s.files = vec![log_glob.to_string_lossy().into_owned()];
            s.state_file = Some(state);
        });
        n.m.sync_files();
        *h = Some(n);
    };
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let take = |h: &Option<Harness>| -> Vec<(String, f64)> {
        let h = h.as_ref().unwrap();
        h.m.sync_files();
        let s = h.series_at("2013-07-22T00:07:01Z");
        h.set_now("2013-07-22T00:06:30Z");
        s.iter()
            .map(|s| match s.stats {
                Stats::Counter(v) => (s.name.clone(), v),
                _ => panic!(),
            })
            .collect()
    };
    let mut h = None;
    start(&mut h);
    // A file found at start is read from its end; then as it grows, a partial line waits.
    append("count#a=1\ncount#a=2\ncount#b=");
    assert_eq!(take(&h), [("a".to_string(), 3.0)]);
    append("5\n");
    assert_eq!(take(&h), [("b".to_string(), 5.0)]);
    // Truncation: read again from the start.
    std::fs::write(&log, "count#c=1\n").unwrap();
    assert_eq!(take(&h), [("c".to_string(), 1.0)]);
    // Rotation: the old file is read to its end, the new one from its start.
    append("count#d=1\n");
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::write(&log, "count#e=1\n").unwrap();
    assert_eq!(take(&h), [("d".to_string(), 1.0), ("e".to_string(), 1.0)]);
    // Restart: the offset is remembered, lines written while stopped are read.
    append("count#f=1\n");
    assert_eq!(take(&h), [("f".to_string(), 1.0)]);
    drop(h.take());
    let saved = tail::State::load(&state).unwrap();
    assert_eq!(saved.files.len(), 1);
    append("count#g=1\n");
    start(&mut h);
    assert_eq!(take(&h), [("g".to_string(), 1.0)]);
    // A new file that matches the glob is read from its start.
    std::fs::write(dir.path().join("new.log"), "count#h=1\n").unwrap();
    assert_eq!(take(&h), [("h".to_string(), 1.0)]);
}

/// The fuzz target's checks on stable, bounded: the reference frames and syslog lines mutated
/// at random (bytes changed, inserted, removed, frames spliced), with a fixed seed.
#[test]
fn randomised_frames_never_panic() {
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/l2met_frames"))
        .expect("fuzz seeds")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
        .collect();
    assert!(seeds.len() >= 4);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    const BYTES: &[u8] = b" <>=\"\\#.-:0123456789\n\r\xff\xc3[]";
    let started = std::time::Instant::now();
    for i in 0..100_000 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let mut d = seeds[rnd(seeds.len())].clone();
        if i % 3 == 0 {
            d.extend_from_slice(&seeds[rnd(seeds.len())]);
        }
        for _ in 0..1 + rnd(6) {
            let at = rnd(d.len() + 1);
            match rnd(4) {
                0 if at < d.len() => d[at] = BYTES[rnd(BYTES.len())],
                1 => d.insert(at, BYTES[rnd(BYTES.len())]),
                2 if at < d.len() => {
                    d.remove(at);
                }
                _ if at < d.len() => d[at] = rnd(256) as u8,
                _ => {}
            }
        }
        fuzzing::frames(&d);
    }
}

/// A reload rebuilds the module while the old instance runs: the new one keeps the buckets,
/// the counters and the place in every tailed file, so nothing is lost or read twice.
#[test]
fn a_rebuilt_instance_takes_over_buckets_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "count#x=1\n").unwrap();
    let append =
        |text: &str| std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(text.as_bytes()).unwrap();
    let conf = |extra: &str| {
        let text = format!(r#"{{"files": ["{}/*.log"], "from_beginning": true{extra}}}"#, dir.path().display());
        PluginConf::from_text("l2met_reload_test", Path::new("conf.d/l2met_reload_test.conf"), &text)
    };
    let ctx = ModuleContext::default();
    let a = build(&ctx, &conf("")).unwrap_or_else(|e| panic!("{e}"));
    // The built module is an L2met behind `dyn Module`; reach its store through the registry.
    let store =
        STORES.lock().unwrap().iter().find(|(n, _)| n == "l2met_reload_test").and_then(|(_, w)| w.upgrade()).unwrap();
    let lines = || store.counters.lines.load(Ordering::SeqCst);
    eventually(|| (lines() == 1).then_some(()));
    let b = build(&ctx, &conf(r#", "max_values": 5"#)).unwrap_or_else(|e| panic!("{e}"));
    append("count#y=1\n");
    drop(a);
    eventually(|| (lines() == 2).then_some(()));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lines(), 2, "nothing read twice");
    assert_eq!(store.limits().max_values, 5, "the same store, with the new limits");
    let got: Vec<(String, Stats)> = summarize_all(&store).into_iter().map(|s| (s.name, s.stats)).collect();
    assert_eq!(got, [("x".to_string(), Stats::Counter(1.0)), ("y".to_string(), Stats::Counter(1.0))]);
    drop(b);
}

/// Everything in a store filled at the system's time (resolution 60 s), 90 s from now.
fn summarize_all(store: &Store) -> Vec<Series> {
    store::summarize(store.take_ready(system_clock()() + 90_000, 0))
}

#[test]
fn the_stock_conf_file_is_the_defaults() {
    let text = include_str!("../../conf.d/l2met.conf");
    let s = settings(&PluginConf::from_text("l2met", Path::new("conf.d/l2met.conf"), text))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = Settings::default();
    assert_eq!((s.listen, s.syslog_udp, s.syslog_tcp, &s.files, &s.state_file), (None, None, None, &d.files, &None));
    assert_eq!((s.defaults, s.flush_delay, s.from_beginning), (d.defaults, d.flush_delay, false));
    let (l, dl) = (s.limits, d.limits);
    assert_eq!((l.deadline, l.max_buckets, l.max_values), (dl.deadline, dl.max_buckets, dl.max_values));
}

/// Buckets are dropped (and counted) when the collection comes more than `deadline` windows
/// after they closed: their points would be stamped far from their time.
#[test]
fn closed_buckets_older_than_the_deadline_are_dropped_at_collection() {
    let h = Harness::new(|_| {});
    assert_eq!(h.post("", &frame(T0, "web.1", "measure#m=1 measure#m=2 count#c=5")).0, 200);
    // Closed at 00:07:00, flush delay 1 s, deadline 2 windows, 1 s for the tick: 00:09:02.
    h.set_now("2013-07-22T00:09:02Z");
    assert_eq!(h.m.ready_series().len(), 2);
    // At receive, the same window is too old by now: Delay 3 > 2.
    assert_eq!(h.post("", &frame(T0, "web.1", "count#late=1")).0, 200);
    assert_eq!(h.counter(|c| &c.dropped), 1);
    h.set_now("2013-07-22T00:06:30Z");
    assert_eq!(h.post("", &frame(T0, "web.1", "measure#m=1 measure#m=2 count#c=5")).0, 200);
    h.now.store(ms("2013-07-22T00:09:02Z") + 1, Ordering::SeqCst);
    assert!(h.m.ready_series().is_empty());
    assert_eq!(h.counter(|c| &c.dropped), 1 + 3);
    assert_eq!(h.m.shared().store.len(), 0);
}
