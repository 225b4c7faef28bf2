//! l2met parse + aggregate throughput, in log lines per second on one core: a realistic mix
//! of Heroku-style lines (router lines, app lines with measurements, counters and samples,
//! dyno load/memory samples, lines without metrics, an L10 line now and then) read from
//! logplex bodies or as syslog lines, into the shared buckets.
//!
//! `cargo bench --bench l2met`

use badger_modules::l2met::store::{Ingest, Limits, Options, Store};
use divan::counter::ItemsCount;
use divan::Bencher;

fn main() {
    divan::main();
}

/// Lines per body (logplex sends batches of up to a few hundred; log-shuttle more).
const LINES: usize = 10_000;
const NOW_MS: i64 = 1_374_451_590_000;

/// A small deterministic generator, so every run parses the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// (procid, message) of one line of the mix.
fn line(r: &mut Lcg) -> (String, String) {
    let dyno = format!("web.{}", 1 + r.next(8));
    let paths = ["/", "/api/v1/items", "/api/v1/items/123", "/login", "/assets/app.js", "/search?q=badger"];
    let path = paths[r.next(paths.len() as u64) as usize];
    match r.next(100) {
        0..=39 => (
            "router".into(),
            format!(
                "at=info method=GET path=\"{path}\" host=app.example.com request_id=9c1e6f3a-{:04x}-4d2b-a1f0-{:012x} fwd=\"203.0.113.{}\" dyno={dyno} connect={}ms service={}ms status={} bytes={} protocol=https",
                r.next(65536),
                r.next(1 << 40),
                r.next(255),
                r.next(5),
                1 + r.next(400),
                [200, 200, 200, 304, 404, 500][r.next(6) as usize],
                100 + r.next(50_000),
            ),
        ),
        40..=69 => (
            dyno.clone(),
            format!(
                "source={dyno} at=info measure#db.query={}.{}ms measure#cache.lookup=0.{}ms count#requests=1 count#errors={} sample#queue.depth={}",
                r.next(80),
                r.next(10),
                r.next(999),
                r.next(2),
                r.next(30),
            ),
        ),
        70..=74 => (
            dyno.clone(),
            format!(
                "source={dyno} dyno=heroku.2808254.d97d0ea7 sample#load_avg_1m=0.{:02} sample#load_avg_5m=0.{:02} sample#memory_total={}.{}MB sample#memory_rss={}.{}MB sample#memory_swap=0.00MB sample#memory_pgpgin=5{}pages",
                r.next(100),
                r.next(100),
                100 + r.next(400),
                r.next(100),
                90 + r.next(300),
                r.next(100),
                r.next(99999),
            ),
        ),
        75..=98 => (
            dyno.clone(),
            format!(
                "at=info msg=\"user signed in\" user_id={} account={} elapsed={}ms ip=198.51.100.{} ua=\"Mozilla/5.0 (X11; Linux x86_64)\"",
                r.next(100_000),
                r.next(1000),
                r.next(900),
                r.next(255)
            ),
        ),
        _ => (
            "logplex".into(),
            format!("Error L10 (output buffer overflow): {} messages dropped since 2013-07-22T00:06:00+00:00.", r.next(500)),
        ),
    }
}

fn timestamp(r: &mut Lcg) -> String {
    format!("2013-07-22T00:06:{:02}.{:06}+00:00", r.next(60), r.next(1_000_000))
}

/// One logplex body of [`LINES`] frames.
fn logplex_body() -> Vec<u8> {
    let mut r = Lcg(42);
    let mut out = String::new();
    for _ in 0..LINES {
        let (procid, msg) = line(&mut r);
        let app = if procid == "logplex" { "heroku" } else { "app" };
        let body = format!("<190>1 {} host {app} {procid} - {msg}", timestamp(&mut r));
        out.push_str(&format!("{} {body}", body.len()));
    }
    out.into_bytes()
}

/// The same lines as RFC 5424 syslog messages, one per line.
fn syslog_lines() -> Vec<Vec<u8>> {
    let mut r = Lcg(42);
    (0..LINES)
        .map(|_| {
            let (procid, msg) = line(&mut r);
            format!("<190>1 {} host app {procid} - - {msg}", timestamp(&mut r)).into_bytes()
        })
        .collect()
}

fn opts() -> Options {
    Options { resolution: 60, prefix: None, source_prefix: None }
}

/// A logplex body into a fresh store (the first body of a minute: every bucket is new).
#[divan::bench]
fn logplex_fresh_store(b: Bencher) {
    let body = logplex_body();
    let opts = opts();
    b.counter(ItemsCount::new(LINES)).with_inputs(|| Store::new(Limits::default())).bench_local_refs(|store| {
        let mut ingest = Ingest::new();
        ingest.logplex(store, &body, &opts, NOW_MS)
    });
}

/// Bodies into a store that already holds the minute's buckets (the steady state).
#[divan::bench]
fn logplex_steady(b: Bencher) {
    let body = logplex_body();
    let opts = opts();
    let store = Store::new(Limits::default());
    let mut ingest = Ingest::new();
    for _ in 0..3 {
        ingest.logplex(&store, &body, &opts, NOW_MS);
    }
    b.counter(ItemsCount::new(LINES)).bench_local(|| ingest.logplex(&store, &body, &opts, NOW_MS));
}

/// Syslog messages one by one (the UDP listener and the file tailer).
#[divan::bench]
fn syslog_steady(b: Bencher) {
    let lines = syslog_lines();
    let opts = opts();
    let store = Store::new(Limits::default());
    let mut ingest = Ingest::new();
    b.counter(ItemsCount::new(LINES)).bench_local(|| {
        for l in &lines {
            ingest.syslog(&store, l, &opts, NOW_MS);
        }
        ingest.flush(&store);
    });
}
