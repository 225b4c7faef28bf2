//! The HTTP API, as the original's: `/ping`, `/keys`, `/tags`, `/latest/{stat}`,
//! `/hourly/{stat}`, `/daily/{stat}` (= `/daily_peaks/{stat}`), `/alerts`, plus `/live`.
//!
//! * Auth: the `X-AUTH-TOKEN` header, or the `X-AUTH-TOKEN` query parameter, compared in
//!   constant time; 401 with an empty body otherwise (every route, unknown ones too).
//!   `OPTIONS` on any path skips auth and answers `{"msg":"Success"}` with CORS headers.
//! * CORS headers on the stat and alert routes (not on `/ping`, `/keys`, `/tags`).
//! * JSON bodies end with a newline; numbers as Go prints them (`1`, not `1.0`).
//! * Fixed: `verb`, `start`, `stop` and `backfill` are validated (400 with a JSON error),
//!   tag filters are matched as values (the InfluxDB backend escapes them), output is
//!   sorted, daily labels use the configured time zone, backend errors are 500s.
//! * Bounds: every query that reads the store runs on tokio's blocking pool (never on the
//!   API's one worker, so `/ping` and the other routes keep being answered) and is answered
//!   503 `{"error":"query timed out"}` past `--query-timeout` (10 s); a `/hourly` or
//!   `/daily` range of more than `--max-query-buckets` (10,000) buckets is a 400. Both
//!   are counted (`pulse_limited`) and logged at most once a minute.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::store::{Backend, Filters, Latest, LatestQuery, RangeQuery, Verb};

/// What the handlers share.
pub struct Api {
    pub backend: Arc<dyn Backend>,
    pub token: String,
    pub cors_allow: String,
    pub poll: Duration,
    pub tz: jiff::tz::TimeZone,
    pub metrics: QueryMetrics,
    pub alerts: Option<Arc<super::alerts::Alerts>>,
    pub live: Option<tokio::sync::broadcast::Sender<Arc<super::store::Batch>>>,
    /// `--max-query-buckets`.
    pub max_query_buckets: u64,
    /// `--query-timeout`.
    pub query_timeout: Duration,
}

/// Query latency counters (self-metrics).
#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub count: AtomicU64,
    pub micros: AtomicU64,
    pub max_micros: AtomicU64,
    /// Queries refused (too many buckets) or timed out.
    pub limited: AtomicU64,
    pub throttle: std::sync::Mutex<badger_api::throttle::LogThrottle>,
}

impl QueryMetrics {
    fn limit(&self, what: std::fmt::Arguments) {
        self.limited.fetch_add(1, Ordering::Relaxed);
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = t.allow() {
            log::warn!("pulse API: {what} ({left} more since the last line)");
        }
    }
}

impl QueryMetrics {
    fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(us, Ordering::Relaxed);
        self.max_micros.fetch_max(us, Ordering::Relaxed);
    }
}

/// A float as Go's encoding/json prints it: whole numbers without `.0`.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    format!("{v}")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON response: body plus the trailing newline.
pub fn json(status: StatusCode, body: String) -> Response {
    let mut r = (status, body + "\n").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn error(status: StatusCode, msg: &str) -> Response {
    json(status, format!("{{\"error\":{}}}", json_str(msg)))
}

fn not_found_json() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// Go's mux answer for an unknown route.
async fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn cors(api: &Api, h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&api.cors_allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("X-AUTH-TOKEN, X-CSRF-Token"));
}

/// Adds the CORS headers (the stat and alert routes).
pub async fn with_cors(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    cors(&api, r.headers_mut());
    r
}

/// Compares a token in constant time (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == "X-AUTH-TOKEN").then(|| percent_decode(v))
    })
}

/// Decodes `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// OPTIONS (no auth), then the token check.
async fn gate(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        let mut r = json(StatusCode::OK, "{\"msg\":\"Success\"}".into());
        cors(&api, r.headers_mut());
        return r;
    }
    if !api.token.is_empty() {
        let given = match req.headers().get("X-AUTH-TOKEN").map(|v| v.as_bytes().to_vec()) {
            Some(v) if !v.is_empty() => v,
            _ => req.uri().query().and_then(query_token).unwrap_or_default().into_bytes(),
        };
        if !constant_time_eq(&given, api.token.as_bytes()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    next.run(req).await
}

async fn ping() -> Response {
    let mut r = "pong".into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn run_query<T: Send + 'static>(
    api: &Arc<Api>,
    f: impl FnOnce(&dyn Backend) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let started = Instant::now();
    // Always off the API's worker: a long query must not starve /ping or the next request.
    let a = api.clone();
    let task = tokio::task::spawn_blocking(move || f(a.backend.as_ref()));
    let r = match tokio::time::timeout(api.query_timeout, task).await {
        Ok(r) => r,
        Err(_) => {
            api.metrics.limit(format_args!("a query ran past {:?} (--query-timeout)", api.query_timeout));
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "query timed out"));
        }
    };
    api.metrics.record(started.elapsed());
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

fn string_list(v: Vec<String>) -> Response {
    if v.is_empty() {
        return json(StatusCode::OK, "null".into());
    }
    json(StatusCode::OK, serde_json::to_string(&v).unwrap_or_else(|_| "null".into()))
}

async fn keys(State(api): State<Arc<Api>>) -> Response {
    match run_query(&api, |b| b.keys()).await {
        Ok(v) => string_list(v),
        Err(r) => r,
    }
}

async fn tags(State(api): State<Arc<Api>>) -> Response {
    match run_query(&api, |b| b.tags()).await {
        Ok(v) => string_list(v),
        Err(r) => r,
    }
}

/// The parameters of the stat routes.
pub struct Params {
    pub verb: Option<String>,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub backfill: Option<String>,
    pub filters: Filters,
}

/// Splits the query into the known parameters and the tag filters.
pub fn params(pairs: Vec<(String, String)>) -> Params {
    let mut p = Params { verb: None, start: None, stop: None, backfill: None, filters: Filters::default() };
    for (k, v) in pairs {
        match k.as_str() {
            "verb" => p.verb = Some(v),
            "start" => p.start = Some(v),
            "stop" => p.stop = Some(v),
            "backfill" => p.backfill = Some(v),
            "x-auth-token" | "X-AUTH-TOKEN" | ":stat" => {}
            _ => p.filters.0.entry(k).or_default().push(v),
        }
    }
    p
}

/// An InfluxQL duration literal (`2d`, `90m`, `0s`) in milliseconds.
pub fn duration_ms(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let ms = match unit {
        "ns" => return Some(n / 1_000_000),
        "u" | "µ" => return Some(n / 1_000),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

/// A 400 answer's message.
pub struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, &self.0)
    }
}

pub fn verb_of(v: Option<&str>, allow_none: bool) -> Result<Option<Verb>, BadRequest> {
    match v {
        None | Some("") => Ok(Some(Verb::Mean)),
        Some(x) if allow_none && x.eq_ignore_ascii_case("none") => Ok(None),
        Some(x) => Verb::parse(x).map(Some).ok_or_else(|| {
            let all: Vec<&str> = Verb::ALL.iter().map(|v| v.name()).collect();
            BadRequest(format!("bad verb {x:?}: use one of {}", all.join(", ")))
        }),
    }
}

pub fn span_of(v: Option<&str>, default: &str, name: &str) -> Result<i64, BadRequest> {
    let s = v.filter(|s| !s.is_empty()).unwrap_or(default);
    duration_ms(s).ok_or_else(|| BadRequest(format!("bad {name} {s:?}: use a duration such as 1d, 12h, 30m or 0s")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn latest(
    State(api): State<Arc<Api>>,
    Path(stat): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let p = params(pairs);
    let verb = match verb_of(p.verb.as_deref(), true) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let q = LatestQuery { stat, filters: p.filters, verb, poll: api.poll };
    match run_query(&api, move |b| b.latest(&q, now_ms())).await {
        Ok(Latest::NotFound) => not_found_json(),
        Ok(Latest::One { time_ms, value }) => {
            json(StatusCode::OK, format!("{{\"time\":{time_ms},\"value\":{}}}", num(value)))
        }
        Ok(Latest::Rows(rows)) => {
            let items: Vec<String> = rows
                .iter()
                .map(|r| {
                    let mut m: BTreeMap<String, String> = BTreeMap::new();
                    for (k, v) in &r.extra {
                        m.insert(k.clone(), json_str(v));
                    }
                    m.insert("time".into(), r.time_ms.to_string());
                    m.insert("value".into(), num(r.value));
                    let fields: Vec<String> = m.iter().map(|(k, v)| format!("{}:{v}", json_str(k))).collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            json(StatusCode::OK, format!("[{}]", items.join(",")))
        }
        Err(r) => r,
    }
}

/// The `(from, to)` milliseconds of a stat query `start` to `stop` ago, or `Err(buckets)`
/// when it would span more than `max` buckets.
pub fn query_range(start_ms: i64, stop_ms: i64, bucket: Duration, max: u64, now_ms: i64) -> Result<(i64, i64), i128> {
    let buckets = (start_ms as i128 - stop_ms as i128) / (bucket.as_millis().max(1) as i128);
    if buckets > max as i128 {
        return Err(buckets);
    }
    Ok((now_ms.saturating_sub(start_ms), now_ms.saturating_sub(stop_ms)))
}

fn range_query(
    api: &Api,
    p: &Params,
    stat: String,
    default_start: &str,
    bucket: Duration,
) -> Result<RangeQuery, BadRequest> {
    let verb = verb_of(p.verb.as_deref(), false)?.unwrap_or(Verb::Mean);
    let start = span_of(p.start.as_deref(), default_start, "start")?;
    let stop = span_of(p.stop.as_deref(), "0s", "stop")?;
    let (from_ms, to_ms) = match query_range(start, stop, bucket, api.max_query_buckets, now_ms()) {
        Ok(r) => r,
        Err(buckets) => {
            api.metrics.limit(format_args!("a query of {buckets} buckets refused (--max-query-buckets)"));
            return Err(BadRequest(format!(
                "start {:?} to stop {:?} spans {buckets} buckets; at most {} (--max-query-buckets)",
                p.start.as_deref().unwrap_or(default_start),
                p.stop.as_deref().unwrap_or("0s"),
                api.max_query_buckets
            )));
        }
    };
    Ok(RangeQuery {
        stat,
        filters: p.filters.clone(),
        verb,
        from_ms,
        to_ms,
        bucket,
        fill: p.backfill.as_deref().map(|b| b.parse::<f64>().ok().filter(|v| v.is_finite()).unwrap_or(0.0)),
    })
}

async fn hourly(
    State(api): State<Arc<Api>>,
    Path(stat): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let p = params(pairs);
    let q = match range_query(&api, &p, stat, "1d", Duration::from_secs(3600)) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    match run_query(&api, move |b| b.range(&q)).await {
        Ok(v) if v.is_empty() => not_found_json(),
        Ok(v) => {
            let items: Vec<String> = v.iter().map(|(t, x)| format!("{{\"time\":{t},\"value\":{}}}", num(*x))).collect();
            json(StatusCode::OK, format!("[{}]", items.join(",")))
        }
        Err(r) => r,
    }
}

/// Maps 15-minute buckets to `HH:MM` labels in `tz` and averages the values per label.
pub fn daily_labels(buckets: &[(i64, f64)], tz: &jiff::tz::TimeZone, backfill: Option<f64>) -> Vec<(String, f64)> {
    let mut by_label: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for &(t, v) in buckets {
        let Ok(ts) = jiff::Timestamp::from_millisecond(t) else { continue };
        let z = ts.to_zoned(tz.clone());
        let label = format!("{:02}:{:02}", z.hour(), z.minute() / 15 * 15);
        let e = by_label.entry(label).or_insert((0.0, 0));
        // A running mean, as the original.
        e.1 += 1;
        e.0 += (v - e.0) / e.1 as f64;
    }
    if let Some(fill) = backfill {
        for h in 0..24 {
            for m in [0, 15, 30, 45] {
                by_label.entry(format!("{h:02}:{m:02}")).or_insert((fill, 0));
            }
        }
    }
    by_label.into_iter().map(|(k, (v, _))| (k, v)).collect()
}

async fn daily(
    State(api): State<Arc<Api>>,
    Path(stat): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let p = params(pairs);
    let mut q = match range_query(&api, &p, stat, "7d", Duration::from_secs(900)) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    let backfill = q.fill.take();
    match run_query(&api, move |b| b.range(&q)).await {
        Ok(v) if v.is_empty() => not_found_json(),
        Ok(v) => {
            let items: Vec<String> = daily_labels(&v, &api.tz, backfill)
                .iter()
                .map(|(l, x)| format!("{{\"time\":{},\"value\":{}}}", json_str(l), num(*x)))
                .collect();
            json(StatusCode::OK, format!("[{}]", items.join(",")))
        }
        Err(r) => r,
    }
}

/// The router: every route behind the gate (OPTIONS, auth).
pub fn router(api: Arc<Api>) -> Router {
    let stats = Router::new()
        .route("/latest/{stat}", get(latest))
        .route("/hourly/{stat}", get(hourly))
        .route("/daily/{stat}", get(daily))
        .route("/daily_peaks/{stat}", get(daily))
        .route("/live", get(super::live::live))
        .layer(middleware::from_fn_with_state(api.clone(), with_cors));
    let mut r =
        Router::new().route("/ping", get(ping)).route("/keys", get(keys)).route("/tags", get(tags)).merge(stats);
    r = r.merge(super::alerts::routes(api.clone()));
    r.fallback(not_found).layer(middleware::from_fn_with_state(api.clone(), gate)).with_state(api)
}

/// TLS settings: a certificate from files, or a generated self-signed one.
pub fn tls_config(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (chain, key) = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("reading {}: {e}", c.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("reading {}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| format!("reading {}: {e}", k.display()))?;
            (chain, key)
        }
        _ => {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "nanobox.io".to_string()])
                .map_err(|e| format!("generating a certificate: {e}"))?;
            let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                .map_err(|e| format!("generating a certificate: {e}"))?;
            (vec![ck.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate: {e}"))?;
    Ok(Arc::new(cfg))
}

/// Serves the router on `listener`, over TLS when `tls` is given: at most
/// `max_connections` at once (the others wait in the backlog; counted as `pulse_limited`),
/// backing off from 10 ms to 1 s on accept errors; a connection must send its headers
/// within 30 s (an idle keep-alive one is closed after that too).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    api: Arc<Api>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                api.metrics.limit(format_args!(
                    "{max_connections} API connections open (--max-api-connections); new ones wait"
                ));
                match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                api.metrics.limit(format_args!("accepting an API connection: {e}; retrying in {backoff:?}"));
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => match tokio::time::timeout(Duration::from_secs(10), a.accept(stream)).await {
                    Ok(Ok(tls)) => serve_conn(tls, router, peer).await,
                    Ok(Err(e)) => log::debug!("pulse api: TLS handshake with {peer}: {e}"),
                    Err(_) => log::debug!("pulse api: TLS handshake with {peer} timed out"),
                },
                None => serve_conn(stream, router, peer).await,
            }
        });
    }
}

async fn serve_conn<S>(io: S, router: Router, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move { router.oneshot(req.map(Body::new)).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        log::debug!("pulse api: connection from {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_go_prints_them() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(-1.0), "-1");
        assert_eq!(num(f64::NAN), "null");
    }

    #[test]
    fn durations_and_tokens() {
        assert_eq!(duration_ms("2d"), Some(172_800_000));
        assert_eq!(duration_ms("0s"), Some(0));
        assert_eq!(duration_ms("1d; DROP"), None);
        assert_eq!(duration_ms("d"), None);
        assert_eq!(query_token("a=1&X-AUTH-TOKEN=s%20x"), Some("s x".into()));
        assert_eq!(query_token("x-auth-token=s"), None);
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn daily_labels_fill_and_sort() {
        let utc = jiff::tz::TimeZone::UTC;
        // 00:00 and 00:15 on two days: averaged per label.
        let day = 86_400_000;
        let l = daily_labels(&[(0, 1.0), (day, 3.0), (15 * 60_000, 2.0)], &utc, Some(9.0));
        assert_eq!(l.len(), 96);
        assert_eq!(l[0], ("00:00".into(), 2.0));
        assert_eq!(l[1], ("00:15".into(), 2.0));
        assert_eq!(l[95], ("23:45".into(), 9.0));
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(daily_labels(&[(0, 1.0)], &paris, None)[0].0, "01:00");
    }
}
