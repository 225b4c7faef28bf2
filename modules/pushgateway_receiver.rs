//! `pushgateway_receiver`: a push gateway (`POST`/`PUT /metrics/job/<job>`) whose samples become points.
//!
//! It serves `POST`/`PUT /metrics/job/<job>[/<label>/<value>…]` on the agent's HTTP
//! listener (needs `core.http_listen`); the accepted samples become points at the next
//! collection.
//!
//! A push is handled by the rules of InfluxDB's telemetry push gateway: `GET` and `HEAD` are
//! answered 303 See Other to `redirect`; methods other than `POST`/`PUT` 405 with
//! `Allow: GET, HEAD, PUT, POST` and `Method Not Allowed`; the `Content-Type` must be
//! `text/plain` with no `version` or `version=0.0.4`, else 400 `unknown format metrics
//! format` (the protobuf format is not taken: 415); a body larger than `max_bytes` is
//! answered 413 (the original cut it silently); a body that does not parse is 400 with the
//! parser's message; a sample that carries a timestamp makes the whole push 400 `pushed
//! metrics must not have timestamp`; every accepted sample is stamped with the receive time
//! (milliseconds) and the push is answered 202 Accepted with an empty body.
//!
//! Like the Pushgateway, the labels of the path (`job` and the grouping labels; a value
//! that holds `/` is sent as `<label>@base64/<base64url>`) replace any the samples set, and
//! each group's receive time is reported as `push_time_seconds`. A sample is reported once,
//! at the first collection after its push; two pushes of a series before it give two points.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `<sample>.<label values>` | | float | gauge | a pushed sample: measurement = its name, field = its family's type (`counter`, `gauge`, `histogram`, `summary`, or `value`), tags = its labels, then `job` and the grouping labels |
//! | `push_time_seconds.<job>.<grouping values>` | s | float | gauge | when the group was last pushed (epoch seconds, millisecond precision); tags `job` and the grouping labels |
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_bytes` | `1024000` | largest body taken (the original's limit); a larger one is answered 413 |
//! | `max_pending` | `100000` | samples held until the next collection at most; a push that does not fit is answered 500 and dropped |
//! | `redirect` | `"https://www.influxdata.com/telemetry"` | where `GET` and `HEAD` are redirected (303), as the original; `null` answers them 405 |

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;
use serde::Deserialize;

use badger_api::http::text;
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_formats::prometheus::{self, Family, Format};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "pushgateway_receiver",
    aliases: &[],
    summary: "a push gateway on the HTTP listener: pushed samples become points",
    build,
};

/// The original's body limit.
pub const DEFAULT_MAX_BYTES: usize = 1_024_000;
const DEFAULT_REDIRECT: &str = "https://www.influxdata.com/telemetry";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
    #[serde(default = "default_max_pending")]
    max_pending: usize,
    #[serde(default = "default_redirect")]
    redirect: Option<String>,
}

fn default_max_bytes() -> usize {
    DEFAULT_MAX_BYTES
}
fn default_max_pending() -> usize {
    100_000
}
fn default_redirect() -> Option<String> {
    Some(DEFAULT_REDIRECT.into())
}

/// Where accepted pushes go: the families (every sample stamped with the receive time)
/// and the labels of the path.
pub trait Store: Send + Sync {
    fn write(&self, families: Vec<Family>, grouping: Vec<(String, String)>, at_ms: i64) -> Result<(), String>;
}

/// What a push is, by its `Content-Type` (`expfmt.ResponseFormat`'s reading).
#[derive(Debug, PartialEq, Eq)]
pub enum PushFormat {
    Text,
    Protobuf,
    Unknown,
}

pub fn push_format(content_type: Option<&str>) -> PushFormat {
    let Some(ct) = content_type else { return PushFormat::Unknown };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut params = Vec::new();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else { return PushFormat::Unknown };
        params.push((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()));
    }
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match media.as_str() {
        "application/vnd.google.protobuf"
            if param("proto").is_none_or(|p| p == "io.prometheus.client.MetricFamily")
                && param("encoding").is_none_or(|e| e == "delimited") =>
        {
            PushFormat::Protobuf
        }
        "text/plain" if param("version").is_none_or(|v| v == "0.0.4") => PushFormat::Text,
        _ => PushFormat::Unknown,
    }
}

/// The labels of a path after `/metrics/job/`: `job`, then `label/value` pairs.
pub fn grouping(rest: &str) -> Result<Vec<(String, String)>, String> {
    let segments: Vec<&str> = rest.split('/').collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut name = "job".to_string();
    while let Some(raw) = segments.get(i) {
        let (key, b64) = match name.strip_suffix("@base64") {
            Some(k) => (k.to_string(), true),
            None => (name.clone(), false),
        };
        let value = if b64 {
            base64url_decode(raw).ok_or_else(|| format!("invalid base64 value for {key}"))?
        } else {
            raw.to_string()
        };
        if key == "job" && value.is_empty() {
            return Err("job name is required".into());
        }
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with("__");
        if !valid {
            return Err(format!("invalid label name \"{key}\""));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("label \"{key}\" given twice"));
        }
        out.push((key, value));
        i += 1;
        match segments.get(i) {
            Some(n) => name = n.to_string(),
            None => break,
        }
        i += 1;
        if i >= segments.len() {
            return Err(format!("no value for label \"{name}\""));
        }
    }
    if out.is_empty() {
        return Err("job name is required".into());
    }
    Ok(out)
}

fn base64url_decode(s: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Handles one request (the route's whole logic, apart from reading the body).
pub fn handle(
    method: &Method,
    content_type: Option<&str>,
    rest: &str,
    body: Result<&[u8], usize>,
    now_ms: i64,
    redirect: Option<&str>,
    store: &dyn Store,
) -> Response {
    if *method == Method::GET || *method == Method::HEAD {
        if let Some(url) = redirect {
            let mut r = text(303, format!("<a href=\"{url}\">See Other</a>.\n\n"));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            if let Ok(v) = HeaderValue::from_str(url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
    }
    if *method != Method::POST && *method != Method::PUT {
        let mut r = text(405, "Method Not Allowed\n");
        let allow = if redirect.is_some() { "GET, HEAD, PUT, POST" } else { "PUT, POST" };
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    match push_format(content_type) {
        PushFormat::Text => {}
        PushFormat::Protobuf => {
            return text(
                415,
                "the protobuf format is not accepted here: push the text format (text/plain; version=0.0.4)\n",
            )
        }
        PushFormat::Unknown => return text(400, "unknown format metrics format\n"),
    }
    let groups = match grouping(rest) {
        Ok(g) => g,
        Err(e) => return text(400, format!("{e}\n")),
    };
    let body = match body {
        Ok(b) => b,
        Err(limit) => return text(413, format!("the pushed body is larger than {limit} bytes\n")),
    };
    let mut families = match prometheus::parse_bytes(body, Format::Text) {
        Ok(f) => f,
        Err(e) => return text(400, format!("{e}\n")),
    };
    if families.iter().any(|f| f.samples.iter().any(|s| s.timestamp_ms.is_some())) {
        return text(400, "pushed metrics must not have timestamp\n");
    }
    for f in &mut families {
        for s in &mut f.samples {
            s.timestamp_ms = Some(now_ms);
        }
    }
    match store.write(families, groups, now_ms) {
        Ok(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = axum::http::StatusCode::ACCEPTED;
            r
        }
        Err(e) => text(500, format!("{e}\n")),
    }
}

struct Push {
    families: Vec<Family>,
    grouping: Vec<(String, String)>,
    at_ms: i64,
}

/// Pushes waiting for the next collection.
struct Pending {
    max: usize,
    held: Mutex<(usize, Vec<Push>)>,
}

impl Store for Pending {
    fn write(&self, families: Vec<Family>, grouping: Vec<(String, String)>, at_ms: i64) -> Result<(), String> {
        let n: usize = families.iter().map(|f| f.samples.len()).sum();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 + n > self.max {
            return Err(format!(
                "the receiver holds {} samples until the next collection and takes at most {} (max_pending)",
                held.0, self.max
            ));
        }
        held.0 += n;
        held.1.push(Push { families, grouping, at_ms });
        Ok(())
    }
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    if c.max_bytes == 0 {
        return Err(conf.error("max_bytes", "must be at least 1").into());
    }
    if c.max_pending == 0 {
        return Err(conf.error("max_pending", "must be at least 1").into());
    }
    if let Some(r) = &c.redirect {
        if HeaderValue::from_str(r).is_err() || r.is_empty() {
            return Err(conf.error("redirect", "not a URL").into());
        }
    }
    let pending = Arc::new(Pending { max: c.max_pending, held: Mutex::new((0, Vec::new())) });
    let store = pending.clone();
    let (max_bytes, redirect) = (c.max_bytes, c.redirect);
    let handler =
        axum::routing::any(move |method: Method, headers: HeaderMap, Path(rest): Path<String>, body: Body| {
            let store = store.clone();
            let redirect = redirect.clone();
            async move {
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let needs_body =
                    (method == Method::POST || method == Method::PUT) && push_format(ct) == PushFormat::Text;
                let bytes = if needs_body {
                    axum::body::to_bytes(body, max_bytes).await.map_err(|_| max_bytes)
                } else {
                    Ok(Default::default())
                };
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                handle(
                    &method,
                    ct,
                    &rest,
                    bytes.as_deref().map_err(|&l| l),
                    now_ms,
                    redirect.as_deref(),
                    store.as_ref(),
                )
            }
        });
    ctx.http.add(&conf.name, "/metrics/job/{*rest}", "the push gateway", handler)?;
    Ok(Box::new(Receiver { pending }))
}

struct Receiver {
    pending: Arc<Pending>,
}

impl Module for Receiver {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let pushes = {
            let mut held = self.pending.held.lock().unwrap_or_else(|e| e.into_inner());
            held.0 = 0;
            std::mem::take(&mut held.1)
        };
        for push in pushes {
            for f in push.families {
                for s in f.samples {
                    let mut labels = s.labels;
                    prometheus::set_labels(&mut labels, &push.grouping);
                    out.push(prometheus::sample_point(f.kind, &s.name, labels, s.value));
                }
            }
            let mut name = String::from("push_time_seconds");
            for (_, v) in &push.grouping {
                name.push('.');
                name.push_str(v);
            }
            out.push(Point {
                name,
                value: Value::Float(push.at_ms as f64 / 1000.0),
                units: Cow::Borrowed("s"),
                measurement: Cow::Borrowed("push_time_seconds"),
                field: Cow::Borrowed("gauge"),
                tags: push.grouping.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                kind: Default::default(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(push_format(Some("text/plain; version=0.0.4")), PushFormat::Text);
        assert_eq!(push_format(Some("text/plain")), PushFormat::Text);
        assert_eq!(push_format(Some("Text/Plain; charset=utf-8")), PushFormat::Text);
        assert_eq!(push_format(Some("text/plain; version=0.0.3")), PushFormat::Unknown);
        assert_eq!(push_format(Some("application/json")), PushFormat::Unknown);
        assert_eq!(push_format(None), PushFormat::Unknown);
        assert_eq!(
            push_format(Some(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"
            )),
            PushFormat::Unknown
        );
        assert_eq!(
            push_format(Some(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            )),
            PushFormat::Protobuf
        );
    }

    #[test]
    fn grouping_paths() {
        let g = |s: &str| grouping(s).map(|v| v.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>());
        assert_eq!(g("j"), Ok(vec!["job=j".into()]));
        assert_eq!(
            g("j/instance/h1/path@base64/L3Zhci90bXA="),
            Ok(vec!["job=j".into(), "instance=h1".into(), "path=/var/tmp".into()])
        );
        assert!(g("j/instance").is_err());
        assert!(g("").is_err());
        assert!(g("j/1x/v").is_err());
        assert!(g("j/job/x").is_err());
    }
}
