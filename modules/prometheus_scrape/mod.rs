//! `prometheus_scrape`: scrapes Prometheus endpoints and apps' instances into points; serves `/v1/apps/{app}/metrics`.
//!
//! It scrapes `targets` and the instances of `apps`, turns their samples into points, and
//! serves the merged exposition of an app's instances on the agent's HTTP listener, as
//! promfetcher did for Cloud Foundry apps.
//!
//! **Scraping.** Every collection starts a round that scrapes every target and every
//! instance of every app, at most `concurrency` at once, each bounded by `scrape_timeout`
//! (rounds never overlap). The collection waits up to 300 ms for the round; a round that
//! takes longer reports at the next collection. A scrape asks for gzip and for OpenMetrics
//! or the text format 0.0.4 (promfetcher's `/v1` Accept header), and parses either.
//!
//! **Labels**, as promfetcher set them: a sample keeps its own labels, except those badger
//! sets, which are removed; then come the configured `labels` (of the app, or of the module
//! for `targets`) in their order, then for an app instance `index` and `instance_id` (both
//! its position in `instances`, from 0), and last `instance` (`host:port`).
//!
//! **Failures.** A target or instance that is down, times out, answers anything but 200,
//! or serves a body that does not parse becomes one `scrape_error` point with the reason in
//! the `error` tag; the others are scraped as usual.
//!
//! **`GET /v1/apps/{app}/metrics`** (needs `core.http_listen`; also `/v2/…`,
//! `/vN/apps/metrics?app=…`, `?route_url=…` and `…/only-app-metrics`) scrapes the app's
//! instances at once and answers 200 with their merged exposition in the text format 0.0.4
//! (`Content-Type: text/plain; version=0.0.4`): each family once, with the HELP and TYPE of
//! the first instance that had it, and the samples of every instance with the labels above.
//! `{app}` is the app's `name` (e.g. `org/space/app`), its `id`, or one of its `routes`
//! (case and a trailing `/` or `?…` do not matter). `metric_path` sets the path scraped
//! (unless the app has a `path`). The client's `Authorization` header is passed on, and no
//! other. Answers: no app given → 400 `400 Bad Request: You must set app id or path`; an
//! unknown app → 404 `404 Cannot found app with id or path <app>`; an instance that answers
//! 4xx → 406 `406 Cannot found endpoint '<path>' for app with id or path '<name> (status code
//! <N>)', please create one`; a failed instance → a `promfetcher_scrape_error` counter sample
//! with its labels and `error`, and 200 with the others.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `<sample>.<label values>` | | float | gauge | a scraped sample: measurement = the sample's name (`http_requests_total`), field = its family's type (`counter`, `gauge`, `histogram`, `summary`, or `value`), tags = its labels as above |
//! | `prometheus.scrape_error.<instance>` | | int | gauge | 1 for a target or instance that could not be scraped; tags as its samples would have, then `error` (the reason) |
//! | `prometheus.fetch_success_total.<label values>` | | int | counter | successful scrapes of an app (tags: the app's `labels`) or a target (tags: `labels`, `instance`), since start, including those of `/v1/apps/…` |
//! | `prometheus.fetch_failed_total.<label values>` | | int | counter | failed scrapes of an app instance (tags: the app's `labels`, `index`, `instance_id`) or a target (`labels`, `instance`), since start |
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `targets` | `[]` | URLs to scrape: `http://host:port/path` (the path defaults to `/metrics`) or `host:port` |
//! | `labels` | `{}` | labels set on every sample of `targets`, in order, e.g. `{"env": "prod"}` |
//! | `apps` | `[]` | apps: objects with `name` (required), `id`, `routes` (array), `labels` (object), `instances` (required: `host:port` or `http://host:port/path`, in index order) and `path` (default `/metrics`) |
//! | `concurrency` | `5` | scrapes at once, per round and per `/v1/apps` request (1 to 64) |
//! | `scrape_timeout` | `"30s"` | longest scrape of one target (a number of seconds or a string like `"10s"`) |
//! | `serve_apps` | `true` | serve `/v1/apps/…` and `/v2/apps/…` (needs `core.http_listen` when there are `apps`) |

pub mod fetch;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use fetch::{FetchError, Instance};

use badger_api::duration::de_duration;
use badger_api::http::text;
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_formats::prometheus::{self, Family, Kind, Sample};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "prometheus_scrape",
    aliases: &[],
    summary: "scrapes Prometheus endpoints and apps' instances; serves /v1/apps/{app}/metrics",
    build,
};

/// How long a collection waits for its scrape round.
const COLLECT_WAIT: Duration = Duration::from_millis(300);
const MAX_CONCURRENCY: usize = 64;

/// Labels in their configured order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !k.starts_with("__");
                    if !valid {
                        return Err(de::Error::custom(format!(
                            "\"{k}\" is not a label name ([A-Za-z_][A-Za-z0-9_]*, not __…)"
                        )));
                    }
                    if out.iter().any(|(o, _)| *o == k) {
                        return Err(de::Error::custom(format!("label \"{k}\" given twice")));
                    }
                    out.push((k, v));
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    apps: Vec<AppConf>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_scrape_timeout", deserialize_with = "de_duration")]
    scrape_timeout: Duration,
    #[serde(default = "default_true")]
    serve_apps: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConf {
    name: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    labels: Labels,
    instances: Vec<String>,
    #[serde(default)]
    path: Option<String>,
}

fn default_concurrency() -> usize {
    5
}
fn default_scrape_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}

/// A configured app.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub id: Option<String>,
    /// Route keys (see [`route_key`]).
    pub routes: Vec<String>,
    pub labels: Labels,
    pub instances: Vec<Instance>,
    pub path: Option<String>,
}

impl App {
    /// The labels badger sets on a sample of instance `index`.
    fn set_labels(&self, index: usize) -> Vec<(String, String)> {
        let mut l = self.labels.0.clone();
        l.push(("index".into(), index.to_string()));
        l.push(("instance_id".into(), index.to_string()));
        l.push(("instance".into(), self.instances[index].authority.clone()));
        l
    }
}

/// A route as promfetcher keyed it: lowercased, without what follows `?`, without a trailing `/`.
pub fn route_key(s: &str) -> String {
    let s = s.split('?').next().unwrap_or("");
    s.trim_end_matches('/').to_lowercase()
}

/// `/`-led path.
fn with_slash(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Counters of successful and failed scrapes, by label set.
#[derive(Default)]
struct Counters {
    success: BTreeMap<Vec<(String, String)>, u64>,
    failed: BTreeMap<Vec<(String, String)>, u64>,
}

/// What the module and its HTTP handler share.
struct Inner {
    targets: Vec<Instance>,
    labels: Labels,
    apps: Vec<App>,
    concurrency: usize,
    timeout: Duration,
    agent: ureq::Agent,
    counters: Mutex<Counters>,
}

impl Inner {
    fn count(&self, ok: bool, key: Vec<(String, String)>) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *if ok { &mut c.success } else { &mut c.failed }.entry(key).or_insert(0) += 1;
    }

    /// Looks an app up by name, id or route.
    fn find(&self, x: &str) -> Option<&App> {
        let key = route_key(x);
        self.apps
            .iter()
            .find(|a| a.name == x)
            .or_else(|| self.apps.iter().find(|a| a.id.as_deref() == Some(x)))
            .or_else(|| self.apps.iter().find(|a| a.routes.contains(&key)))
    }

    /// Scrapes every target and app instance once: their points, and scrape errors.
    fn round(&self) -> Vec<Point> {
        struct Job<'a> {
            instance: &'a Instance,
            path: String,
            set: Vec<(String, String)>,
            /// The success counter's key, and the failure counter's.
            ok_key: Vec<(String, String)>,
            fail_key: Vec<(String, String)>,
        }
        let mut jobs = Vec::new();
        for t in &self.targets {
            let mut set = self.labels.0.clone();
            set.push(("instance".into(), t.authority.clone()));
            jobs.push(Job { instance: t, path: "/metrics".into(), ok_key: set.clone(), fail_key: set.clone(), set });
        }
        for app in &self.apps {
            let path = app.path.clone().unwrap_or_else(|| "/metrics".into());
            for (i, inst) in app.instances.iter().enumerate() {
                let set = app.set_labels(i);
                let fail_key = set[..set.len() - 1].to_vec();
                jobs.push(Job { instance: inst, path: path.clone(), set, ok_key: app.labels.0.clone(), fail_key });
            }
        }
        let req = fetch::Request { accept: fetch::ACCEPT_V1, authorization: None, timeout: self.timeout };
        let results = fetch::run_all(jobs.len(), self.concurrency, |i| {
            fetch::fetch(&self.agent, &jobs[i].instance.url(&jobs[i].path), &req)
        });
        let mut points = Vec::new();
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(families) => {
                    self.count(true, job.ok_key);
                    for f in families {
                        for s in f.samples {
                            let mut labels = s.labels;
                            prometheus::set_labels(&mut labels, &job.set);
                            points.push(prometheus::sample_point(f.kind, &s.name, labels, s.value));
                        }
                    }
                }
                Err(e) => {
                    self.count(false, job.fail_key);
                    let why = match e {
                        FetchError::NotFound(code) => format!("server returned HTTP status {code}"),
                        FetchError::Failed(m) => m,
                    };
                    let mut tags: Vec<(Cow<'static, str>, String)> =
                        job.set.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect();
                    tags.push((Cow::Borrowed("error"), why));
                    points.push(Point {
                        name: format!("prometheus.scrape_error.{}", job.instance.authority),
                        value: Value::Int(1),
                        units: Cow::Borrowed(""),
                        measurement: Cow::Borrowed("prometheus"),
                        field: Cow::Borrowed("scrape_error"),
                        tags,
                        kind: Default::default(),
                    });
                }
            }
        }
        points
    }

    fn counter_points(&self, out: &mut Vec<Point>) {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        for (field, map) in [("fetch_success_total", &c.success), ("fetch_failed_total", &c.failed)] {
            for (labels, n) in map {
                let mut name = format!("prometheus.{field}");
                for (_, v) in labels {
                    name.push('.');
                    name.push_str(v);
                }
                out.push(Point {
                    name,
                    value: Value::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
                    units: Cow::Borrowed(""),
                    measurement: Cow::Borrowed("prometheus"),
                    field: Cow::Borrowed(field),
                    tags: labels.iter().map(|(k, v)| (Cow::Owned(k.clone()), v.clone())).collect(),
                    kind: Default::default(),
                });
            }
        }
    }
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    if c.concurrency == 0 || c.concurrency > MAX_CONCURRENCY {
        return Err(conf.error("concurrency", format!("{}: must be 1 to {MAX_CONCURRENCY}", c.concurrency)).into());
    }
    if c.scrape_timeout.is_zero() || c.scrape_timeout > Duration::from_secs(300) {
        return Err(conf.error("scrape_timeout", "must be more than 0 and at most 300s").into());
    }
    let targets = c
        .targets
        .iter()
        .map(|t| Instance::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| conf.error("targets", m))?;
    let mut apps = Vec::new();
    for a in c.apps {
        if a.name.trim().is_empty() {
            return Err(conf.error("apps", "an app's \"name\" must not be empty").into());
        }
        if a.instances.is_empty() {
            return Err(conf.error("apps", format!("app \"{}\" has no \"instances\"", a.name)).into());
        }
        if apps.iter().any(|o: &App| o.name == a.name) {
            return Err(conf.error("apps", format!("app \"{}\" is configured twice", a.name)).into());
        }
        let instances = a
            .instances
            .iter()
            .map(|i| Instance::parse(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| conf.error("instances", m))?;
        apps.push(App {
            name: a.name,
            id: a.id.filter(|s| !s.is_empty()),
            routes: a.routes.iter().map(|r| route_key(r)).filter(|r| !r.is_empty()).collect(),
            labels: a.labels,
            instances,
            path: a.path.map(|p| with_slash(&p)),
        });
    }
    let inner = Arc::new(Inner {
        targets,
        labels: c.labels,
        apps,
        concurrency: c.concurrency,
        timeout: c.scrape_timeout,
        agent: fetch::agent(c.scrape_timeout),
        counters: Mutex::default(),
    });
    if c.serve_apps && !inner.apps.is_empty() {
        for version in [1u8, 2] {
            let shared = inner.clone();
            let handler = axum::routing::get(
                move |Path(rest): Path<String>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap| {
                    let shared = shared.clone();
                    async move {
                        tokio::task::spawn_blocking(move || app_metrics(&shared, version, &rest, &q, &headers))
                            .await
                            .unwrap_or_else(|e| text(500, format!("500 Internal Server Error: {e}\n")))
                    }
                },
            );
            ctx.http.add(&conf.name, &format!("/v{version}/apps/{{*rest}}"), "the apps' merged metrics", handler)?;
        }
    }
    Ok(Box::new(Prometheus { inner, pending: None }))
}

/// `GET /vN/apps/…`: see the module doc.
fn app_metrics(inner: &Inner, version: u8, rest: &str, q: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    let x = match rest.strip_suffix("/metrics").or_else(|| rest.strip_suffix("/only-app-metrics")) {
        Some(x) if !x.is_empty() => x.to_string(),
        _ if rest == "metrics" || rest == "only-app-metrics" => {
            match q.get("app").filter(|s| !s.is_empty()).or_else(|| q.get("route_url").filter(|s| !s.is_empty())) {
                Some(x) => x.clone(),
                None => return text(400, "400 Bad Request: You must set app id or path"),
            }
        }
        _ => return text(404, "404 page not found\n"),
    };
    let Some(app) = inner.find(&x) else {
        return text(404, format!("404 Cannot found app with id or path {x}\n"));
    };
    let path = app
        .path
        .clone()
        .or_else(|| q.get("metric_path").filter(|p| !p.is_empty()).map(|p| with_slash(p)))
        .unwrap_or_else(|| "/metrics".into());
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let req = fetch::Request {
        accept: if version == 1 { fetch::ACCEPT_V1 } else { fetch::ACCEPT_V2 },
        authorization: auth,
        timeout: inner.timeout,
    };
    let results = fetch::run_all(app.instances.len(), inner.concurrency, |i| {
        fetch::fetch(&inner.agent, &app.instances[i].url(&path), &req)
    });
    if let Some(code) = results.iter().find_map(|r| match r {
        Err(FetchError::NotFound(code)) => Some(*code),
        _ => None,
    }) {
        return text(
            406,
            format!(
                "406 Cannot found endpoint '{path}' for app with id or path '{} (status code {code})', please create one\n",
                app.name
            ),
        );
    }
    let mut merged: Vec<Family> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut errors = Family {
        name: "promfetcher_scrape_error".into(),
        help: Some("Promfetcher scrap error on your instance".into()),
        unit: None,
        kind: Kind::Counter,
        samples: Vec::new(),
    };
    for (i, result) in results.into_iter().enumerate() {
        let set = app.set_labels(i);
        match result {
            Ok(families) => {
                inner.count(true, app.labels.0.clone());
                for f in families {
                    let at = match by_name.get(&f.name) {
                        Some(&at) => at,
                        None => {
                            by_name.insert(f.name.clone(), merged.len());
                            merged.push(Family { samples: Vec::new(), ..f.clone() });
                            merged.len() - 1
                        }
                    };
                    for mut s in f.samples {
                        prometheus::set_labels(&mut s.labels, &set);
                        merged[at].samples.push(s);
                    }
                }
            }
            Err(e) => {
                inner.count(false, set[..set.len() - 1].to_vec());
                let why = match e {
                    FetchError::Failed(m) => m,
                    FetchError::NotFound(code) => format!("server returned HTTP status {code}"),
                };
                let mut labels = set;
                labels.push(("error".into(), why));
                errors.samples.push(Sample { name: errors.name.clone(), labels, value: 1.0, timestamp_ms: None });
            }
        }
    }
    if !errors.samples.is_empty() {
        merged.push(errors);
    }
    let mut body = String::new();
    for f in &merged {
        prometheus::write_family(&mut body, f);
        body.push('\n');
    }
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

struct Prometheus {
    inner: Arc<Inner>,
    /// The scrape round under way.
    pending: Option<Receiver<Vec<Point>>>,
}

impl Module for Prometheus {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        if self.pending.is_none() && (!self.inner.targets.is_empty() || !self.inner.apps.is_empty()) {
            let (tx, rx) = bounded(1);
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name("prometheus-scrape".into())
                .spawn(move || {
                    let _ = tx.send(inner.round());
                })
                .map_err(|e| CollectError(format!("cannot start a scrape thread: {e}")))?;
            self.pending = Some(rx);
        }
        let mut result = Ok(());
        if let Some(rx) = &self.pending {
            match rx.recv_timeout(COLLECT_WAIT) {
                Ok(points) => {
                    out.extend(points);
                    self.pending = None;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.pending = None;
                    result = Err(CollectError("the scrape round failed".into()));
                }
            }
        }
        self.inner.counter_points(out);
        result
    }
}
