//! Scraping: one GET per target or instance, many at once (at most `concurrency`), each
//! bounded by `scrape_timeout`; gzip, the text format 0.0.4 and OpenMetrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use badger_formats::prometheus::{self, Family, Format};

/// What the `/v1` API asks for: OpenMetrics first (promfetcher's Accept for /v1).
pub const ACCEPT_V1: &str = "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// What the `/v2` API asks for: the text format 0.0.4.
pub const ACCEPT_V2: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest body read from a target (after gzip).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Where one target or instance is scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `host:port`, the `instance` label.
    pub authority: String,
    /// The path it was configured with (`http://h:p/path`), which wins over every other.
    pub path: Option<String>,
}

impl Instance {
    /// `host:port` or `http://host:port[/path]`.
    pub fn parse(s: &str) -> Result<Instance, String> {
        let s = s.trim();
        if s.starts_with("https://") {
            return Err(format!("\"{s}\": https is not built into this badger; use http://"));
        }
        let (authority, path) = match s.strip_prefix("http://") {
            Some(rest) => match rest.find('/') {
                Some(i) => (&rest[..i], Some(rest[i..].to_string())),
                None => (rest, None),
            },
            None if s.contains("://") => return Err(format!("\"{s}\": only http:// URLs or host:port")),
            None => (s, None),
        };
        let port_ok =
            authority.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok || authority.contains(['/', ' ', '?', '#', '@']) {
            return Err(format!("\"{s}\": expected host:port or http://host:port/path"));
        }
        Ok(Instance { authority: authority.to_string(), path })
    }

    pub fn url(&self, default_path: &str) -> String {
        format!("http://{}{}", self.authority, self.path.as_deref().unwrap_or(default_path))
    }
}

/// Why a scrape failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// The target answered 4xx: the endpoint does not exist there.
    NotFound(u16),
    /// Anything else: down, timeout, 5xx, a bad body. The text is the `error` label.
    Failed(String),
}

/// Headers of a scrape besides Accept-Encoding (ureq asks for gzip and decodes it).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub accept: &'a str,
    /// Copied from the client of `/v1/apps/…` (the one header promfetcher forwards).
    pub authorization: Option<&'a str>,
    pub timeout: Duration,
}

/// An HTTP client for scrapes (no error on 4xx/5xx: they are looked at).
pub fn agent(timeout: Duration) -> ureq::Agent {
    badger_api::http_client::agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("badger/", env!("CARGO_PKG_VERSION"))),
    )
}

/// Scrapes one URL and parses what it serves (OpenMetrics families made 0.0.4-sayable).
pub fn fetch(agent: &ureq::Agent, url: &str, req: &Request<'_>) -> Result<Vec<Family>, FetchError> {
    let mut r = agent
        .get(url)
        .header("Accept", req.accept)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{:.6}", req.timeout.as_secs_f64()))
        .header("X-Promfetcher-Scrapping", "true")
        .header("X-Forwarded-Proto", "http");
    if let Some(auth) = req.authorization {
        r = r.header("Authorization", auth);
    }
    let mut resp = r.call().map_err(|e| match e {
        ureq::Error::Timeout(_) => FetchError::Failed(format!("Get \"{url}\": timed out after {:?}", req.timeout)),
        e => FetchError::Failed(format!("Get \"{url}\": {e}")),
    })?;
    let status = resp.status();
    if status.is_client_error() {
        return Err(FetchError::NotFound(status.as_u16()));
    }
    if status.as_u16() != 200 {
        return Err(FetchError::Failed(format!(
            "server returned HTTP status {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let format = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(Format::from_content_type)
        .unwrap_or(Format::Text);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| FetchError::Failed(format!("reading the body of {url}: {e}")))?;
    let families = prometheus::parse_bytes(&body, format).map_err(|e| FetchError::Failed(e.to_string()))?;
    Ok(prometheus::to_text(families))
}

/// Runs `job(i)` for every `i < n` on at most `concurrency` threads; results in order.
pub fn run_all<T: Send>(n: usize, concurrency: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return mine;
                        }
                        mine.push((i, job(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances() {
        assert_eq!(Instance::parse("127.0.0.1:9100"), Ok(Instance { authority: "127.0.0.1:9100".into(), path: None }));
        assert_eq!(
            Instance::parse("http://[::1]:9100/x/metrics"),
            Ok(Instance { authority: "[::1]:9100".into(), path: Some("/x/metrics".into()) })
        );
        assert_eq!(Instance::parse("http://h:1").unwrap().url("/metrics"), "http://h:1/metrics");
        for bad in ["h", "h:0", "https://h:1", "ftp://h:1", ":80", "h:1 x"] {
            assert!(Instance::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_all_keeps_order_and_limits_threads() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = run_all(12, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, (0..12).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(run_all(0, 5, |i| i).is_empty());
    }
}
