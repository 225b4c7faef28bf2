//! The agent's one HTTP listener (`core.http_listen`): every route the plugins registered
//! (see [`badger_api::http`]), served by axum on a current-thread tokio runtime on its own
//! thread, so async never reaches the tick, the modules or the emitters.
//!
//! On reload the routes are swapped in place (the socket stays open); a changed address
//! restarts the listener. At shutdown it stops accepting at once and lets the requests in
//! progress finish until the shutdown deadline.
//!
//! Every connection is bounded by [`badger_api::listener`]: connections at once, header
//! time (idle keep-alive connections included), request time, header bytes
//! (`core.http_limits`, see docs/operating.md, "Limits"); the counters are published as
//! the `internal` module's `badger.listener.*.http`.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::Request;
use axum::Router;
use crossbeam_channel::{bounded, Receiver};
use tower::ServiceExt;

use badger_api::http::Route;
use badger_api::listener::{ListenerLimits, ListenerStats};
use badger_api::telemetry::{Group, Source, Telemetry};

/// Joins the routes of every plugin into one router. Two plugins that claim the same path
/// (or paths axum cannot tell apart) are an error that names both.
pub fn build_router(routes: &[Route]) -> Result<Router, String> {
    for (i, r) in routes.iter().enumerate() {
        if !r.path.starts_with('/') {
            return Err(format!("\"{}\" registered the path \"{}\", which does not start with /", r.plugin, r.path));
        }
        if let Some(other) = routes[..i].iter().find(|o| o.path == r.path) {
            return Err(format!("\"{}\" and \"{}\" both serve {}", other.plugin, r.plugin, r.path));
        }
    }
    catch_unwind(AssertUnwindSafe(|| {
        routes.iter().fold(Router::new(), |router, r| router.route(&r.path, r.handler.clone()))
    }))
    .map_err(|_| {
        let paths: Vec<String> = routes.iter().map(|r| format!("{} ({})", r.path, r.plugin)).collect();
        format!("these HTTP routes clash: {}", paths.join(", "))
    })
}

/// The running listener.
pub struct HttpServer {
    addr: SocketAddr,
    limits: ListenerLimits,
    /// Published in the telemetry while the listener runs.
    _stats: Arc<dyn Source>,
    local: SocketAddr,
    router: Arc<RwLock<Router>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Receiver<()>,
}

impl HttpServer {
    /// Binds `addr` and serves `router` on a new thread, with the default limits.
    pub fn start(addr: SocketAddr, router: Router) -> std::io::Result<HttpServer> {
        HttpServer::start_with(addr, router, ListenerLimits::default(), None)
    }

    /// Binds `addr` and serves `router` on a new thread within `limits`, publishing the
    /// listener's counters in `telemetry` (as `http`).
    pub fn start_with(
        addr: SocketAddr,
        router: Router,
        limits: ListenerLimits,
        telemetry: Option<&Telemetry>,
    ) -> std::io::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let shared = Arc::new(RwLock::new(router));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = bounded::<()>(1);
        let serving = shared.clone();
        let stats = Arc::new(ListenerStats::default());
        let published: Arc<dyn Source> = stats.clone();
        if let Some(t) = telemetry {
            t.publish(Group::Listener, "http", &published);
        }
        let lim = limits.clone();
        std::thread::Builder::new().name("http".into()).spawn(move || {
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = Router::new().fallback(move |req: Request| dispatch(serving.clone(), req));
                let stop = async move {
                    let _ = stop_rx.await;
                };
                badger_api::listener::serve(listener, app, lim, stats, "http", stop).await;
                Ok::<(), std::io::Error>(())
            });
            if let Err(e) = result {
                log::error!("http listener on {local}: {e}");
            }
            let _ = done_tx.send(());
            // Requests still running at this point are cut off with the runtime.
        })?;
        log::info!("http: listening on {local}");
        Ok(HttpServer { addr, limits, _stats: published, local, router: shared, stop: Some(stop_tx), done })
    }

    /// The configured address (`core.http_listen`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The limits it serves with (`core.http_limits`).
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// The bound address (differs from `addr` with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves `router` from the next request on.
    pub fn set_router(&self, router: Router) {
        *self.router.write().unwrap_or_else(|e| e.into_inner()) = router;
    }

    /// Stops accepting, lets requests in progress finish until `deadline`. False if some
    /// were still running then.
    pub fn stop(mut self, deadline: Instant) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ok = self.done.recv_deadline(deadline).is_ok();
        if !ok {
            log::warn!("http: requests on {} were still running at the shutdown deadline", self.local);
        }
        ok
    }
}

async fn dispatch(router: Arc<RwLock<Router>>, req: Request) -> axum::response::Response {
    let current = router.read().unwrap_or_else(|e| e.into_inner()).clone();
    match current.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, plugin: &str) -> Route {
        Route { path: path.into(), plugin: plugin.into(), handler: axum::routing::get(|| async { "" }) }
    }

    #[test]
    fn clashing_routes_are_errors_that_name_both_plugins() {
        assert!(build_router(&[route("/metrics", "prometheus"), route("/metrics/job/{*rest}", "receiver")]).is_ok());
        let e = build_router(&[route("/metrics", "a"), route("/metrics", "b")]).unwrap_err();
        assert_eq!(e, "\"a\" and \"b\" both serve /metrics");
        assert!(build_router(&[route("metrics", "a")]).unwrap_err().contains("does not start with /"));
        // Paths axum itself refuses are reported, not a crash.
        let e = build_router(&[route("/x/{*a}", "a"), route("/x/{*b}", "b")]).unwrap_err();
        assert!(e.contains("clash"), "{e}");
    }
}
