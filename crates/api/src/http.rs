//! The plugin API of the agent's HTTP listener (`core.http_listen`).
//!
//! A module or emitter that serves HTTP (the `prometheus` emitter's `/metrics`, the
//! `prometheus_scrape` module's `/v1/apps/…`, the `pushgateway_receiver`'s `/metrics/job/…`)
//! registers its routes with [`HttpRoutes::add`] while it is built. The core starts one
//! listener for every registered route, swaps the routes in place on reload, and never knows
//! which plugin serves what. A plugin that needs a route while `core.http_listen` is not set
//! gets a config error that names `core.http_listen`.
//!
//! Handlers are [axum](https://docs.rs/axum) method routers on a small tokio runtime of its
//! own (one thread); they must not block it: blocking work goes to
//! `tokio::task::spawn_blocking`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use axum;

use crate::plugin::ConfigError;

/// One route: an axum path (`/metrics`, `/v1/apps/{*rest}`) and what serves it.
#[derive(Clone)]
pub struct Route {
    pub path: String,
    /// The plugin that registered it (for errors about clashing paths).
    pub plugin: String,
    pub handler: axum::routing::MethodRouter,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Route({} by {})", self.path, self.plugin)
    }
}

/// Where a plugin registers its routes while it is built. Cheap to clone; every build gets
/// a fresh one, and the core takes the routes afterwards with [`HttpRoutes::take`].
#[derive(Clone, Default, Debug)]
pub struct HttpRoutes {
    listen: Option<SocketAddr>,
    config_file: PathBuf,
    routes: Arc<Mutex<Vec<Route>>>,
}

impl HttpRoutes {
    /// Routes for a listener on `listen` (`None`: no listener is configured).
    pub fn new(listen: Option<SocketAddr>, config_file: &Path) -> HttpRoutes {
        HttpRoutes { listen, config_file: config_file.to_path_buf(), routes: Arc::default() }
    }

    /// The configured listen address (`core.http_listen`), if any.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Registers `path` for `plugin`. Fails with a config error naming `core.http_listen`
    /// when no listener is configured; `what` says what the route is for.
    pub fn add(
        &self,
        plugin: &str,
        path: &str,
        what: &str,
        handler: axum::routing::MethodRouter,
    ) -> Result<(), ConfigError> {
        if self.listen.is_none() {
            return Err(ConfigError::new(
                &self.config_file,
                None,
                Some("core.http_listen".into()),
                format!(
                    "\"{plugin}\" serves {what} on {path} over HTTP: set core.http_listen to the address to listen on, e.g. \"127.0.0.1:9273\""
                ),
            ));
        }
        let route = Route { path: path.to_string(), plugin: plugin.to_string(), handler };
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).push(route);
        Ok(())
    }

    /// The routes registered so far (and forgets them).
    pub fn take(&self) -> Vec<Route> {
        std::mem::take(&mut *self.routes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A plain-text response with a status code, as the handlers of the original servers wrote
/// them (`text/plain; charset=utf-8`).
pub fn text(status: u16, body: impl Into<String>) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    let mut r = axum::response::Response::new(axum::body::Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
