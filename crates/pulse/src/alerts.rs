//! Alerts: the original's `/alerts` API (POST, PUT, GET, DELETE, the same JSON), evaluated
//! by the server itself every 30 s: the mean of `metric` over the last `duration` for the
//! alert's tags, compared with `threshold` by `operator` (`eq ne lt le gt ge`, anything
//! else `>`). On a change of state it POSTs a Kapacitor-style alert body to `post`.
//! Alerts are kept in `alerts.json` in the data directory. With `kapacitor-address` each
//! alert is also pushed to Kapacitor as the original's batch task (and removed with it).
//!
//! Fixed: a PUT with the id of an existing alert updates it; `threshold` may be a string
//! or a number (it must be a number); GET of an unknown id is a 404.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::http::{error, json, with_cors, Api, BadRequest};
use super::store::{Backend, Filters};

/// An alert, with the original's fields in the original's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub metric: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub level: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default, deserialize_with = "string_or_number")]
    pub threshold: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub post: String,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        _ => Err(de::Error::custom("threshold must be a string or a number")),
    }
}

impl Alert {
    /// The comparison as InfluxQL/TICKscript writes it.
    pub fn op(&self) -> &'static str {
        match self.operator.as_str() {
            "eq" => "==",
            "ne" => "!=",
            "lt" => "<",
            "le" => "<=",
            "ge" => ">=",
            _ => ">",
        }
    }

    fn compare(&self, v: f64, t: f64) -> bool {
        match self.op() {
            "==" => v == t,
            "!=" => v != t,
            "<" => v < t,
            "<=" => v <= t,
            ">=" => v >= t,
            _ => v > t,
        }
    }

    /// `[v1|v2] metric` (tag values in key order).
    pub fn alert_id(&self) -> String {
        let vals: Vec<&str> = self.tags.values().map(String::as_str).collect();
        format!("[{}] {}", vals.join("|"), self.metric)
    }

    /// The original's TICKscript for this alert.
    pub fn tick_script(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
        let m = &self.metric;
        let wh: Vec<String> =
            self.tags.iter().map(|(k, v)| format!("\"{}\" = '{}'", k.replace('"', "\\\""), q(v))).collect();
        format!(
            "batch\n\t|query('''\n\t\tSELECT mean({m}) AS mean_{m}\n\t\tFROM \"statistics\".\"one_day\".\"{m}\"\n\t\tWHERE {}\n\t''')\n\t\t.period({})\n\t\t.every(30s)\n\n\t|alert()\n\n\t\t.id('{}')\n\t\t.message('{{{{ .ID }}}} is {{{{ .Level }}}} value:{{{{ index .Fields \"mean_{m}\" }}}}')\n\t\t.{}(lambda: \"mean_{m}\" {} {})\n\t\t.post('{}')\n\t\t.stateChangesOnly()\n\t\t.log('/tmp/alerts.log')\n",
            wh.join(" AND "),
            self.duration,
            q(&self.alert_id()),
            self.level,
            self.op(),
            self.threshold,
            q(&self.post),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Triggered,
}

struct Entry {
    alert: Alert,
    state: Status,
    since_ms: i64,
}

/// The alerts of the server.
pub struct Alerts {
    list: Mutex<BTreeMap<String, Entry>>,
    path: PathBuf,
    kapacitor: Option<String>,
    agent: ureq::Agent,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Loads `alerts.json` leniently: an alert that does not parse is skipped (logged); a file
/// that is not a JSON list at all is set aside as `alerts.json.bad` (logged) and the server
/// starts with no alerts rather than not at all.
fn load_lenient(path: &std::path::Path, text: &str) -> Vec<Alert> {
    let items: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let bad = path.with_extension("json.bad");
            log::error!("pulse: {}: {e}; set aside as {} and starting with no alerts", path.display(), bad.display());
            let _ = std::fs::rename(path, &bad);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        match serde_json::from_value::<Alert>(v) {
            Ok(a) => out.push(a),
            Err(e) => log::warn!("pulse: {}: alert #{i} skipped: {e}", path.display()),
        }
    }
    out
}

impl Alerts {
    /// Loads `alerts.json` from `dir` (none if missing).
    pub fn open(dir: &std::path::Path, kapacitor: Option<String>) -> Result<Alerts, String> {
        super::embedded::create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("alerts.json");
        let list: Vec<Alert> = match std::fs::read_to_string(&path) {
            Ok(text) => load_lenient(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let now = now_ms();
        let list =
            list.into_iter().map(|a| (a.id.clone(), Entry { alert: a, state: Status::Ok, since_ms: now })).collect();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .user_agent("PulseClient")
            .build()
            .into();
        Ok(Alerts { list: Mutex::new(list), path, kapacitor, agent })
    }

    fn save(&self, list: &BTreeMap<String, Entry>) -> Result<(), String> {
        let all: Vec<&Alert> = list.values().map(|e| &e.alert).collect();
        let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        // Written, synced, renamed, the directory synced: a crash leaves the old file or
        // the new one, never a torn one.
        let r = (|| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map_err(|e| format!("saving {}: {e}", self.path.display()))
    }

    /// Pings Kapacitor (at startup, as the original).
    pub fn ping_kapacitor(&self) -> Result<(), String> {
        let Some(k) = &self.kapacitor else { return Ok(()) };
        let r = self.agent.get(&format!("{k}/kapacitor/v1/ping")).call().map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("ping answered {}", r.status()))
        }
    }

    fn kapacitor_call(&self, method: &str, path: &str, body: Option<String>) -> Result<(), String> {
        let Some(k) = &self.kapacitor else { return Ok(()) };
        let url = format!("{k}/kapacitor/v1/{path}");
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json")
            .body(body.unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let mut r = self.agent.run(req).map_err(|e| e.to_string())?;
        if r.status().is_success() {
            return Ok(());
        }
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Err(format!("{} {}", r.status(), text.trim()))
    }

    fn push_task(&self, a: &Alert, exists: bool) -> Result<(), String> {
        let task = serde_json::json!({
            "id": a.id,
            "type": "batch",
            "dbrps": [{"db": "statistics", "rp": "one_day"}],
            "script": a.tick_script(),
            "status": "enabled",
        });
        if exists {
            self.kapacitor_call("PATCH", &format!("tasks/{}", a.id), Some(task.to_string()))
        } else {
            self.kapacitor_call("POST", "tasks", Some(task.to_string()))
        }
    }

    /// Checks every alert once; returns the bodies posted (for logs and tests).
    pub fn evaluate(&self, backend: &dyn Backend) -> usize {
        let now = now_ms();
        let alerts: Vec<Alert> = lock(&self.list).values().map(|e| e.alert.clone()).collect();
        let mut posted = 0;
        for a in alerts {
            let Some(window) = super::http::duration_ms(&a.duration) else { continue };
            let Ok(threshold) = a.threshold.trim().parse::<f64>() else { continue };
            let filters = Filters(a.tags.iter().map(|(k, v)| (k.clone(), vec![v.clone()])).collect());
            let mean = match backend.window_mean(&a.metric, &filters, now - window, now) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("pulse alerts: {}: {e}", a.id);
                    continue;
                }
            };
            let state = if a.compare(mean, threshold) { Status::Triggered } else { Status::Ok };
            let since = {
                let mut list = lock(&self.list);
                let Some(e) = list.get_mut(&a.id) else { continue };
                if e.state == state {
                    continue;
                }
                let since = e.since_ms;
                e.state = state;
                e.since_ms = now;
                since
            };
            let level = match (state, a.level.as_str()) {
                (Status::Ok, _) => "OK",
                (_, "warn") | (_, "warning") => "WARNING",
                (_, "info") => "INFO",
                _ => "CRITICAL",
            };
            let id = a.alert_id();
            let field = format!("mean_{}", a.metric);
            let body = serde_json::json!({
                "id": id,
                "message": format!("{id} is {level} value:{mean}"),
                "details": format!("{id} is {level} value:{mean}"),
                "time": rfc3339(now),
                "duration": if state == Status::Ok { (now - since) * 1_000_000 } else { 0 },
                "level": level,
                "data": {"series": [{
                    "name": a.metric,
                    "tags": a.tags,
                    "columns": ["time", field],
                    "values": [[rfc3339(now), mean]],
                }]},
            });
            log::info!("pulse alerts: {id} is {level} (mean {mean} over {})", a.duration);
            match self.agent.post(&a.post).header("Content-Type", "application/json").send(body.to_string()) {
                Ok(r) if r.status().is_success() => posted += 1,
                Ok(r) => log::warn!("pulse alerts: posting to {}: {}", a.post, r.status()),
                Err(e) => log::warn!("pulse alerts: posting to {}: {e}", a.post),
            }
        }
        posted
    }
}

/// Checks the alerts every `every` until the runtime stops.
pub async fn evaluator(alerts: Arc<Alerts>, backend: Arc<dyn Backend>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (a, b) = (alerts.clone(), backend.clone());
        let _ = tokio::task::spawn_blocking(move || a.evaluate(b.as_ref())).await;
    }
}

fn parse_body(body: &[u8]) -> Result<Alert, BadRequest> {
    let mut a: Alert =
        serde_json::from_slice(body).map_err(|_| BadRequest("Bad JSON syntax received in body".into()))?;
    if a.metric.is_empty() || a.post.is_empty() {
        return Err(BadRequest("Missing value in payload".into()));
    }
    if a.level.is_empty() {
        a.level = "crit".into();
    }
    if a.duration.is_empty() {
        a.duration = "5m".into();
    }
    if !matches!(a.level.as_str(), "crit" | "warn" | "info") {
        return Err(BadRequest("level must be crit, warn or info".into()));
    }
    if super::http::duration_ms(&a.duration).is_none_or(|d| d <= 0) {
        return Err(BadRequest("duration must be a duration such as 30s or 5m".into()));
    }
    if !a.threshold.trim().parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(BadRequest("threshold must be a number".into()));
    }
    let bad = |s: &str| s.is_empty() || s.contains(['\n', '\'', '"', '`']);
    if bad(&a.metric) || a.metric.contains(['-', ':', ',', ' ']) || a.tags.keys().any(|k| bad(k)) {
        return Err(BadRequest("metric and tag keys must be plain names".into()));
    }
    Ok(a)
}

fn alert_json(a: &Alert) -> Response {
    json(StatusCode::OK, serde_json::to_string(a).unwrap_or_default())
}

async fn create_or_update(api: Arc<Api>, body: Bytes, update: bool) -> Response {
    let Some(alerts) = api.alerts.clone() else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let mut a = match parse_body(&body) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let exists = update && !a.id.is_empty() && lock(&alerts.list).contains_key(&a.id);
    if !exists {
        a.id = uuid::Uuid::new_v4().to_string();
    }
    let al = alerts.clone();
    let task = a.clone();
    let pushed = tokio::task::spawn_blocking(move || al.push_task(&task, exists)).await;
    match pushed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("Failed to create task - {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let mut list = lock(&alerts.list);
    list.insert(a.id.clone(), Entry { alert: a.clone(), state: Status::Ok, since_ms: now_ms() });
    if let Err(e) = alerts.save(&list) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e);
    }
    alert_json(&a)
}

async fn post_alert(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    create_or_update(api, body, false).await
}

async fn put_alert(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    create_or_update(api, body, true).await
}

async fn list_alerts(State(api): State<Arc<Api>>) -> Response {
    let Some(alerts) = &api.alerts else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let all: Vec<Alert> = lock(&alerts.list).values().map(|e| e.alert.clone()).collect();
    json(StatusCode::OK, serde_json::to_string(&all).unwrap_or_default())
}

async fn get_alert(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let Some(alerts) = &api.alerts else { return error(StatusCode::NOT_FOUND, "Not Found") };
    match lock(&alerts.list).get(&id) {
        Some(e) => alert_json(&e.alert),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn delete_alert(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let Some(alerts) = api.alerts.clone() else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if !lock(&alerts.list).contains_key(&id) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let al = alerts.clone();
    let tid = id.clone();
    match tokio::task::spawn_blocking(move || al.kapacitor_call("DELETE", &format!("tasks/{tid}"), None)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("Failed to delete task - {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let mut list = lock(&alerts.list);
    list.remove(&id);
    if let Err(e) = alerts.save(&list) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e);
    }
    json(StatusCode::OK, "{\"msg\":\"Success\"}".into()).into_response()
}

/// The `/alerts` routes, with CORS.
pub fn routes(api: Arc<Api>) -> Router<Arc<Api>> {
    Router::new()
        .route("/alerts", get(list_alerts).post(post_alert).put(put_alert))
        .route("/alerts/{id}", get(get_alert).delete(delete_alert))
        .layer(middleware::from_fn_with_state(api, with_cors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_originals_task_script() {
        let a = Alert {
            id: "x".into(),
            tags: [("host".to_string(), "abcd".to_string())].into(),
            metric: "cpu_used".into(),
            level: "crit".into(),
            operator: String::new(),
            threshold: "80".into(),
            duration: "5m".into(),
            post: "http://h/a".into(),
        };
        let s = a.tick_script();
        for part in [
            "FROM \"statistics\".\"one_day\".\"cpu_used\"",
            "WHERE \"host\" = 'abcd'",
            ".period(5m)",
            ".every(30s)",
            ".id('[abcd] cpu_used')",
            ".crit(lambda: \"mean_cpu_used\" > 80)",
            ".message('{{ .ID }} is {{ .Level }} value:{{ index .Fields \"mean_cpu_used\" }}')",
            ".post('http://h/a')",
        ] {
            assert!(s.contains(part), "{part} not in\n{s}");
        }
        let echo = serde_json::to_string(&a).unwrap();
        assert_eq!(
            echo,
            r#"{"id":"x","tags":{"host":"abcd"},"metric":"cpu_used","level":"crit","operator":"","threshold":"80","duration":"5m","post":"http://h/a"}"#
        );
        let n: Alert = serde_json::from_str(r#"{"metric":"m","threshold":80.5,"post":"p"}"#).unwrap();
        assert_eq!(n.threshold, "80.5");
    }

    #[test]
    fn alerts_json_loads_leniently_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, r#"[{"id":"a","metric":"m","threshold":"1","post":"p"}, {"id":5,"metric":[]}]"#).unwrap();
        let a = Alerts::open(dir.path(), None).unwrap();
        assert_eq!(lock(&a.list).len(), 1, "the bad alert is skipped, the good one kept");
        a.save(&lock(&a.list)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(a);
        // A torn file: the server still starts, the file is set aside.
        std::fs::write(&path, r#"[{"id":"a","metr"#).unwrap();
        let a = Alerts::open(dir.path(), None).unwrap();
        assert!(lock(&a.list).is_empty());
        assert!(dir.path().join("alerts.json.bad").exists());
    }
}
