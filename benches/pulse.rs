//! Load benchmark of `badger server` on the embedded store: simulated relays (50 stats
//! each, polled every second) against the release binary; prints the sustained points
//! stored per second, the server's RSS, and the p50/p99 latency of `/latest` (one stat of
//! one host, under the load) and `/hourly` over 7 days of aggregates of one stat.
//!
//! `cargo bench --bench pulse` (env `PULSE_BENCH_RELAYS`, default 4000;
//! `PULSE_BENCH_SECS`, default 30; `PULSE_BENCH_QUERIES`, default 2000). Everything runs on
//! loopback and stops by itself.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_pulse::embedded::{Embedded, Options};
use badger_pulse::store::{Backend, SeriesKey};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const STATS: usize = 50;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// One simulated relay: identify, add 50 stats, answer every `get` with a fixed line.
async fn relay(addr: String, id: usize, gots: Arc<AtomicU64>) {
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else { return };
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut adds = format!("id relay{id}\n");
    let mut got = String::from("got ");
    for i in 0..STATS {
        adds.push_str(&format!("add s{i}:service:bench,zone:z{}\n", id % 4));
        if i > 0 {
            got.push(',');
        }
        got.push_str(&format!("s{i}-s{i}:{:.4}", (id * STATS + i) as f64 / 1000.0));
    }
    got.push('\n');
    if w.write_all(adds.as_bytes()).await.is_err() {
        return;
    }
    let mut line = String::new();
    let mut last_ping = Instant::now();
    loop {
        line.clear();
        match tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {
                if line.starts_with("get ") {
                    if w.write_all(got.as_bytes()).await.is_err() {
                        return;
                    }
                    gots.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {}
        }
        if last_ping.elapsed() > Duration::from_secs(20) {
            last_ping = Instant::now();
            if w.write_all(b"ping\n").await.is_err() {
                return;
            }
        }
    }
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    match agent.get(url).header("X-AUTH-TOKEN", "secret").call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), *v.last().unwrap())
}

fn main() {
    let relays = env("PULSE_BENCH_RELAYS", 4000) as usize;
    let secs = env("PULSE_BENCH_SECS", 30);
    let queries = env("PULSE_BENCH_QUERIES", 2000) as usize;
    let dir = tempfile::tempdir().unwrap();

    // 7 days of 15-minute aggregates of one stat, one host.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    {
        let store = Embedded::open(Options {
            dir: dir.path().to_path_buf(),
            raw_retention: Duration::from_secs(8 * 3600),
            agg_retention: Duration::from_secs(7 * 86_400),
            agg_interval: Duration::from_secs(900),
            max_series: badger_pulse::embedded::MAX_SERIES,
        })
        .unwrap();
        let q = 900_000;
        let start = (now - 7 * 86_400_000).div_euclid(q) * q + q;
        let buckets: Vec<(i64, f64)> = (0..672).map(|i| (start + i * q, (i % 96) as f64)).collect();
        let key = SeriesKey::new("history", vec![("host".into(), "seed".into())]);
        store.seed_aggregates(&key, &buckets).unwrap();
        store.close();
    }

    let tcp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_badger"))
        .args(["server", "-S", &tcp, "-H", &http, "-p", "1", "-b", "30", "-l", "warn", "--storage"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("badger server (build it: cargo bench builds the release binary)");
    let pid = server.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&tcp).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rss0, _) = rss_kb(pid);

    // The relays, on a one-thread runtime (the server gets the rest of the machine).
    let gots = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let g = gots.clone();
    let addr = tcp.clone();
    rt.spawn(async move {
        for id in 0..relays {
            tokio::spawn(relay(addr.clone(), id, g.clone()));
            if id % 200 == 199 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let base = format!("http://{http}");
    // Warm up: every relay connected and polled.
    let warm = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(&agent, &format!("{base}/latest/pulse_relays?service=pulse"));
        let n = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["value"].as_f64()).unwrap_or(0.0);
        if n as usize >= relays || Instant::now() > warm {
            eprintln!("relays connected: {n}");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));

    // Measure: points stored per second (the server's own pulse_points, every second),
    // and the query latencies, under the load.
    let cpu0 = cpu_secs(pid);
    let gots0 = gots.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut latest = Vec::new();
    let mut hourly = Vec::new();
    let mut next_sample = Instant::now();
    let mut q = 0usize;
    while t0.elapsed() < Duration::from_secs(secs) {
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let (_, body) = get(&agent, &format!("{base}/latest/pulse_points?service=pulse&verb=none"));
            if let Some(v) = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["value"].as_f64()) {
                samples.push(v);
            }
        }
        if q < queries {
            let host = q % relays;
            let t = Instant::now();
            let (st, body) = get(&agent, &format!("{base}/latest/s7?host=relay{host}"));
            latest.push(t.elapsed());
            assert!(st == 200 || st == 404, "{st} {body}");
            let t = Instant::now();
            let (st, body) = get(&agent, &format!("{base}/hourly/history?start=7d"));
            hourly.push(t.elapsed());
            assert_eq!(st, 200, "{body}");
            q += 1;
            std::thread::sleep(Duration::from_millis(5));
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    let offered = (gots.load(Ordering::Relaxed) - gots0) as f64 * STATS as f64 / wall;
    let (rss, hwm) = rss_kb(pid);
    let hours = {
        let (_, body) = get(&agent, &format!("{base}/hourly/history?start=7d"));
        serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v.as_array().map(Vec::len)).unwrap_or(0)
    };
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = server.wait();
    let mut err = String::new();
    if let Some(mut e) = server.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    rt.shutdown_timeout(Duration::from_secs(1));

    samples.sort_by(|a, b| a.total_cmp(b));
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    let median = samples.get(samples.len() / 2).copied().unwrap_or(0.0);
    let (l50, l99, lmax) = percentiles(latest);
    let (h50, h99, hmax) = percentiles(hourly);
    println!("relays: {relays} x {STATS} stats, polled every 1 s, {wall:.0} s measured");
    println!("points answered by the relays: {offered:.0}/s");
    println!("points stored (server's pulse_points): mean {mean:.0}/s, median {median:.0}/s");
    println!("server CPU: {:.2} cores", cpu / wall);
    println!("server RSS: {} MB now, peak {} MB (idle at start {} MB)", rss / 1024, hwm / 1024, rss0 / 1024);
    println!("/latest/s7?host=…: p50 {l50:?}, p99 {l99:?}, max {lmax:?} ({queries} queries under load)");
    println!("/hourly/history?start=7d ({hours} hours of 7 days): p50 {h50:?}, p99 {h99:?}, max {hmax:?}");
    if !err.trim().is_empty() {
        println!("server log:\n{}", err.lines().take(20).collect::<Vec<_>>().join("\n"));
    }
}
