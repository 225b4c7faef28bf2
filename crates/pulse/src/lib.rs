//! `badger server`: a Pulse server (the successor of nanopack/pulse) in the same binary.
//!
//! Relays (the `pulse` emitter, or any program speaking the protocol) connect over TCP
//! ([`tcp`]); the server polls them and stores what they answer in the embedded store
//! ([`embedded`]) or InfluxDB ([`influx`]). The HTTP API ([`http`]) reads it back; alerts
//! ([`alerts`]) are evaluated on it. The server runs two tokio runtimes of its own: one
//! (2 workers) for the relay connections, polling and the store, one (1 worker) for the HTTP
//! API. The agent's HTTP listener and the l2met module have their own current-thread
//! runtimes (see `docs/ARCHITECTURE.md`, "Threads and async").

pub mod alerts;
pub mod config;
pub mod embedded;
pub mod fuzzing;
pub mod http;
pub mod influx;
pub mod live;
pub mod store;
pub mod tcp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use config::{ServerArgs, Settings};
use store::{Backend, Batch};

/// Exit status when the server cannot start.
pub const EXIT_START: i32 = 1;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs `badger server` until SIGTERM or SIGINT; returns the exit status.
pub fn main(args: &ServerArgs) -> i32 {
    if args.version {
        println!("badger {} (pulse server)", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("badger server: {e}");
            return 2;
        }
    };
    let log = badger_api::logging::LogConfig {
        level: settings.log_level,
        format: badger_api::logging::LogFormat::Text,
        file: None,
    };
    if let Err(e) = badger_api::logging::configure(&log, None) {
        eprintln!("badger server: cannot set up logging: {e}");
    }
    for n in &settings.notes {
        log::warn!("{n}");
    }
    let rt =
        // Blocking threads bounded (the store's open, the alerts' posts): TasksMax in the unit.
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .enable_all()
            .thread_name("pulse")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                log::error!("Pulse failed to start - cannot start the runtime: {e}");
                return EXIT_START;
            }
        };
    match rt.block_on(run(settings)) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            EXIT_START
        }
    }
}

/// Opens the configured backend.
pub fn open_backend(s: &Settings) -> Result<Arc<dyn Backend>, String> {
    if !s.influx_address.is_empty() {
        let db = influx::Influx::open(&s.influx_address, s.raw_retention, s.retention_weeks, s.aggregate_interval)?;
        log::info!("pulse: storing in InfluxDB at {}", s.influx_address);
        return Ok(Arc::new(db));
    }
    let opts = embedded::Options {
        dir: s.storage.clone(),
        raw_retention: s.raw_retention,
        // Saturating: a huge retention keeps everything rather than wrapping negative.
        agg_retention: Duration::from_secs((s.retention_weeks.max(1) as u64).saturating_mul(7 * 86_400)),
        agg_interval: s.aggregate_interval,
        max_series: s.max_series,
    };
    let store = embedded::Embedded::open(opts)
        .map_err(|e| format!("Pulse failed to start - opening the store in {}: {e}", s.storage.display()))?;
    log::info!("pulse: embedded store in {}", s.storage.display());
    Ok(Arc::new(store))
}

/// The writer thread: stores every batch, flushes every 200 ms, maintains every 10 s.
fn writer(
    backend: Arc<dyn Backend>,
    mut rx: mpsc::Receiver<Arc<Batch>>,
    handle: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    stored: Arc<AtomicU64>,
) {
    let mut last_flush = Instant::now();
    let mut last_maintain = Instant::now();
    // A full disk fails every write: one line a minute, with the count left out.
    let mut throttle = badger_api::throttle::LogThrottle::default();
    let mut failed = move |e: String| {
        if let Some(left) = throttle.allow() {
            log::error!("pulse store: {e} ({left} more errors since the last line)");
        }
    };
    loop {
        if stop.load(Ordering::Acquire) {
            while let Ok(batch) = rx.try_recv() {
                if let Err(e) = backend.write(&batch) {
                    failed(e);
                }
            }
            break;
        }
        let next = handle.block_on(async { tokio::time::timeout(Duration::from_millis(200), rx.recv()).await });
        match next {
            Ok(Some(batch)) => match backend.write(&batch) {
                Ok(()) => {
                    stored.fetch_add(batch.points.len() as u64, Ordering::Relaxed);
                }
                Err(e) => failed(e),
            },
            Ok(None) => break,
            Err(_) => {}
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            last_flush = Instant::now();
            if let Err(e) = backend.flush() {
                failed(e);
            }
        }
        if last_maintain.elapsed() >= Duration::from_secs(10) {
            last_maintain = Instant::now();
            backend.maintain(now_ms());
        }
    }
    backend.close();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            // SIGHUP must not kill the server; its settings take a restart.
            _ = hup.recv() => log::info!("pulse: SIGHUP ignored: restart the server to change its settings"),
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let s2 = settings.clone();
    let backend = tokio::task::spawn_blocking(move || open_backend(&s2)).await.map_err(|e| e.to_string())??;
    let (tx, rx) = mpsc::channel::<Arc<Batch>>(4096);
    let handle = tokio::runtime::Handle::current();
    let b = backend.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let stored = Arc::new(AtomicU64::new(0));
    let sd = stored.clone();
    let writer = std::thread::Builder::new()
        .name("pulse-store".into())
        .spawn(move || writer(b, rx, handle, st, sd))
        .map_err(|e| format!("Pulse failed to start - {e}"))?;
    let listener = tokio::net::TcpListener::bind(&settings.server_listen_address)
        .await
        .map_err(|e| format!("Pulse failed to start - listening on {}: {e}", settings.server_listen_address))?;
    log::info!("pulse: relays on {}", settings.server_listen_address);
    let registry = Arc::new(tcp::Registry::new(tcp::Limits {
        relay_token: settings.relay_token.clone(),
        max_relay_stats: settings.max_relay_stats,
        max_stats: settings.max_stats,
        max_relays: settings.max_relays,
        queue_bytes: settings.relay_queue_bytes,
    }));
    let mist = if settings.mist_address.is_empty() {
        None
    } else {
        let m = live::start_mist(settings.mist_address.clone(), settings.mist_token.clone())
            .await
            .map_err(|e| format!("Mist failed to start - {e}"))?;
        log::info!("pulse: publishing to mist at {}", settings.mist_address);
        Some(m)
    };
    let (live_tx, _) = tokio::sync::broadcast::channel::<Arc<Batch>>(1024);
    let ctx = tcp::Ctx {
        registry: registry.clone(),
        sink: tx.clone(),
        beat: settings.beat_interval,
        live: Some(live_tx.clone()),
        mist,
    };
    let relays = tokio::spawn(tcp::serve(listener, ctx));
    let poller = tokio::spawn(tcp::poller(registry.clone(), settings.poll_interval));
    let kapacitor = Some(settings.kapacitor_address.clone()).filter(|k| !k.is_empty());
    let alerts = Arc::new(
        alerts::Alerts::open(&settings.storage, kapacitor.clone())
            .map_err(|e| format!("Pulse failed to start - {e}"))?,
    );
    if kapacitor.is_some() {
        let a = alerts.clone();
        tokio::task::spawn_blocking(move || a.ping_kapacitor())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("Kapacitor failed to start - {e}"))?;
    }
    let evaluator = tokio::spawn(alerts::evaluator(alerts.clone(), backend.clone(), settings.alert_interval));
    let tz = jiff::tz::TimeZone::get(&settings.time_zone).map_err(|e| format!("Api failed to start - {e}"))?;
    let api = Arc::new(http::Api {
        backend: backend.clone(),
        token: settings.token.clone(),
        cors_allow: settings.cors_allow.clone(),
        poll: settings.poll_interval,
        tz,
        metrics: http::QueryMetrics::default(),
        alerts: Some(alerts.clone()),
        live: Some(live_tx.clone()),
        max_query_buckets: settings.max_query_buckets,
        query_timeout: settings.query_timeout,
    });
    let tls = if settings.insecure {
        None
    } else {
        Some(
            http::tls_config(settings.tls_cert.as_deref(), settings.tls_key.as_deref())
                .map_err(|e| format!("Api failed to start - {e}"))?,
        )
    };
    let http_listener = std::net::TcpListener::bind(&settings.http_listen_address)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|e| format!("Api failed to start - listening on {}: {e}", settings.http_listen_address))?;
    log::info!("pulse: API on {}://{}", if tls.is_some() { "https" } else { "http" }, settings.http_listen_address);
    // The API has a runtime (and an OS thread) of its own, so a burst of relay answers
    // right after a poll never queues the queries behind it.
    let api_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // Queries run on the blocking pool: at most 16 at once, the others wait their turn.
        .max_blocking_threads(16)
        .thread_name("pulse-api")
        .enable_all()
        .build()
        .map_err(|e| format!("Api failed to start - {e}"))?;
    let router = http::router(api.clone());
    let (max_api, api2) = (settings.max_api_connections, api.clone());
    api_rt.spawn(async move {
        match tokio::net::TcpListener::from_std(http_listener) {
            Ok(l) => http::serve(l, router, tls, max_api, api2).await,
            Err(e) => log::error!("Api failed to start - {e}"),
        }
    });
    let own = settings.self_metrics.then(|| {
        tokio::spawn(self_metrics(SelfMetrics {
            registry: registry.clone(),
            api: api.clone(),
            backend: backend.clone(),
            stored,
            sink: tx.clone(),
            live: live_tx,
            every: settings.poll_interval,
        }))
    });
    shutdown_signal().await;
    log::info!("pulse: stopping ({} relays connected)", registry.len());
    relays.abort();
    poller.abort();
    api_rt.shutdown_background();
    if let Some(own) = own {
        own.abort();
    }
    evaluator.abort();
    drop(tx);
    // The writer stores what is queued, writes its buffers and stops.
    stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    log::info!("pulse: stopped");
    Ok(())
}

struct SelfMetrics {
    registry: Arc<tcp::Registry>,
    api: Arc<http::Api>,
    backend: Arc<dyn Backend>,
    stored: Arc<AtomicU64>,
    sink: mpsc::Sender<Arc<Batch>>,
    live: tokio::sync::broadcast::Sender<Arc<Batch>>,
    every: Duration,
}

/// The server's own stats, stored like any relay's under `host=<this host>` every poll
/// interval: `pulse_relays` (connected now), `pulse_polls`, `pulse_points` (stored),
/// `pulse_queries` (API queries), `pulse_query_ms` and `pulse_query_max_ms` (their mean
/// and longest latency) over the interval, `pulse_limited` (bound hits over the interval:
/// relay names, ids and connections refused, polls skipped at the queue bound, series
/// refused and points dropped by the store, queries refused or cut by the API; each is
/// also logged at most once a minute).
async fn self_metrics(m: SelfMetrics) {
    let host = badger_api::host::hostname();
    let key = |name: &str| {
        Arc::new(store::SeriesKey::new(
            name,
            vec![("host".to_string(), host.clone()), ("service".to_string(), "pulse".to_string())],
        ))
    };
    let keys: Vec<Arc<store::SeriesKey>> = [
        "pulse_relays",
        "pulse_polls",
        "pulse_points",
        "pulse_queries",
        "pulse_query_ms",
        "pulse_query_max_ms",
        "pulse_limited",
    ]
    .iter()
    .map(|n| key(n))
    .collect();
    let mut tick = tokio::time::interval(m.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut polls, mut points, mut queries, mut micros, mut limited) = (0u64, 0u64, 0u64, 0u64, 0u64);
    loop {
        tick.tick().await;
        let p = m.registry.counters.polls.load(Ordering::Relaxed);
        let s = m.stored.load(Ordering::Relaxed);
        let q = m.api.metrics.count.load(Ordering::Relaxed);
        let us = m.api.metrics.micros.load(Ordering::Relaxed);
        let max = m.api.metrics.max_micros.swap(0, Ordering::Relaxed);
        let dq = q - queries;
        let mean_ms = if dq > 0 { (us - micros) as f64 / dq as f64 / 1000.0 } else { 0.0 };
        let l = m.registry.counters.limited() + m.backend.limit_hits() + m.api.metrics.limited.load(Ordering::Relaxed);
        let values = [
            m.registry.len() as f64,
            (p - polls) as f64,
            (s - points) as f64,
            dq as f64,
            mean_ms,
            max as f64 / 1000.0,
            l.saturating_sub(limited) as f64,
        ];
        (polls, points, queries, micros, limited) = (p, s, q, us, l);
        let batch = Arc::new(Batch { time_ms: now_ms(), points: keys.iter().cloned().zip(values).collect() });
        if m.live.receiver_count() > 0 {
            let _ = m.live.send(batch.clone());
        }
        if m.sink.send(batch).await.is_err() {
            return;
        }
    }
}
