//! Serving HTTP with bounds: the one accept loop behind every HTTP listener of the agent
//! (`core.http_listen`, the l2met drain). hyper's HTTP/1 connection builder (already in
//! the binary through axum, so no new crate) with its timer gives the header timeout; the
//! rest is a semaphore and tokio timeouts.
//!
//! Bounds, each with a default here, a config key where the listener is configured, a
//! counter ([`ListenerStats`], shown by the `internal` module as `badger.listener.*`) and
//! a log line at most once a minute:
//!
//! * **connections** at once ([`ListenerLimits::max_connections`], 256): past it the next
//!   connection waits in the kernel's backlog (`full`); an accept error (out of
//!   descriptors) backs off from 10 ms to 1 s (`accept_errors`).
//! * **header time** ([`ListenerLimits::header_timeout`], 10 s): the request line and
//!   headers must arrive within it, and an idle keep-alive connection is closed after it
//!   (`header_timeouts`).
//! * **request time** ([`ListenerLimits::request_timeout`], 30 s): reading the body and
//!   answering; past it the answer is a 408 and the connection is closed
//!   (`request_timeouts`).
//! * **header bytes** ([`ListenerLimits::max_header_bytes`], 64 KiB): hyper's read buffer;
//!   bigger headers close the connection with a 431 (`header_too_large`).
//!
//! Bodies are bounded by each route (axum's body limit, the drain's `MAX_BODY`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::point::Value;
use crate::telemetry::Source;
use crate::throttle::LogThrottle;

/// The bounds of one listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
        }
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub full: AtomicU64,
    pub accept_errors: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub header_too_large: AtomicU64,
    throttle: Mutex<LogThrottle>,
}

impl ListenerStats {
    /// Counts a bound hit in `c` and logs `what` at most once a minute.
    pub fn hit(&self, c: &AtomicU64, name: &str, what: std::fmt::Arguments) {
        c.fetch_add(1, Ordering::Relaxed);
        if let Some(left) = self.throttle.lock().unwrap_or_else(|e| e.into_inner()).allow() {
            log::warn!("{name}: {what} ({left} more bound hits since the last line)");
        }
    }
}

impl Source for ListenerStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        let v = |c: &AtomicU64| Value::Int(c.load(Ordering::Relaxed).min(i64::MAX as u64) as i64);
        f("connections", v(&self.connections));
        f("open", v(&self.open));
        f("full", v(&self.full));
        f("accept_errors", v(&self.accept_errors));
        f("header_timeouts", v(&self.header_timeouts));
        f("request_timeouts", v(&self.request_timeouts));
        f("header_too_large", v(&self.header_too_large));
    }
}

/// Serves `router` on `listener` until `stop` resolves; then stops accepting, asks every
/// connection to finish its request in progress, and returns once they all have.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
    name: &'static str,
    stop: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (closing_tx, closing) = watch::channel(false);
    let mut backoff = Duration::from_millis(10);
    let accept = async {
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    stats.hit(&stats.full, name, format_args!("{max} connections open; new ones wait"));
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
                    stats.hit(&stats.accept_errors, name, format_args!("accepting: {e}; retrying in {backoff:?}"));
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            stats.connections.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_add(1, Ordering::Relaxed);
            let (router, limits, stats, closing) = (router.clone(), limits.clone(), stats.clone(), closing.clone());
            tokio::spawn(async move {
                connection(stream, peer, router, &limits, &stats, name, closing).await;
                stats.open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = stop => {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection gives its slot back when it is done.
    let _ = slots.acquire_many(max as u32).await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: &ListenerLimits,
    stats: &Arc<ListenerStats>,
    name: &'static str,
    mut closing: watch::Receiver<bool>,
) {
    let request_timeout = limits.request_timeout;
    let st = stats.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        let st = st.clone();
        async move {
            match tokio::time::timeout(request_timeout, router.oneshot(req.map(Body::new))).await {
                Ok(r) => r,
                Err(_) => {
                    st.hit(
                        &st.request_timeouts,
                        name,
                        format_args!("a request from {peer} took more than {request_timeout:?}; answered 408"),
                    );
                    let mut r = (StatusCode::REQUEST_TIMEOUT, "request timeout\n").into_response();
                    r.headers_mut().insert(axum::http::header::CONNECTION, "close".parse().expect("header value"));
                    Ok::<Response, std::convert::Infallible>(r)
                }
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { drop(closing.wait_for(|c| *c).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            stats.hit(
                &stats.header_timeouts,
                name,
                format_args!("{peer} sent no complete request header within {:?}; closed", limits.header_timeout),
            );
        } else if e.is_parse_too_large() {
            stats.hit(&stats.header_too_large, name, format_args!("{peer} sent headers past the limit; closed"));
        } else {
            log::debug!("{name}: connection from {peer}: {e}");
        }
    }
}
