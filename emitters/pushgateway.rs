//! `pushgateway`: pushes every current point to a Prometheus Pushgateway on its interval.
//!
//! It pushes the exposition of the `prometheus` emitter (same names, labels and types,
//! every current series), once per `interval`.
//!
//! The push goes to `<url>/metrics/job/<job>[/instance/<instance>][/<label>/<value>…]`
//! (a value that holds `/` or is empty is sent base64url-encoded, as `<label>@base64/…`), with
//! `Content-Type: text/plain; version=0.0.4; charset=utf-8`. The rules are those of
//! InfluxDB's telemetry pusher: when there is nothing to push (no series) no request is
//! made; only a 2xx answer (the Pushgateway's 200, the original's 202) counts as success,
//! anything else is an error `unable to POST metrics; received status <status>: <body>`;
//! a push that takes longer than `timeout` fails. A failed push is not retried early: the
//! next interval pushes the then current values (a Pushgateway keeps the last push anyway).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | `"http://127.0.0.1:9091"` | the Pushgateway: `http://`, host and port, optionally a path prefix (https is not built in) |
//! | `job` | `"badger"` | the `job` of the grouping key |
//! | `instance` | the host name | the `instance` of the grouping key; `""` leaves it out |
//! | `grouping` | `{}` | more labels of the grouping key, e.g. `{"cluster": "web"}` |
//! | `method` | `"POST"` | `"POST"` replaces the pushed families in the group, `"PUT"` replaces the whole group |
//! | `timeout` | `"10s"` | longest push (a number of seconds or a string like `"500ms"`; at most `"60s"`) |
//! | `prefix` | `""` | put before every name of a badger stat, as in the `prometheus` emitter |
//! | `expire_after` | `"2m"` | a series not updated for this long is no longer pushed |
//! | `interval` | `0`; `10` in the shipped `conf.d/pushgateway.conf` | seconds between pushes; every payload since the last push is applied first |
//! | `blacklist` | `[]` | stats left out of this emitter's pushes (names or globs) |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use badger_api::duration::de_duration;
use badger_api::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_api::point::Value;
use badger_api::telemetry::{Group, Source};
use badger_formats::prometheus::TEXT_CONTENT_TYPE;
use badger_formats::prometheus::{self as expose, check_expire, check_prefix, Exposition};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "pushgateway",
    aliases: &[],
    summary: "pushes every current point to a Prometheus Pushgateway (text format 0.0.4)",
    build,
    counters: true,
};

const MAX_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_url")]
    url: String,
    #[serde(default = "default_job")]
    job: String,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    grouping: BTreeMap<String, String>,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_expire", deserialize_with = "de_duration")]
    expire_after: Duration,
}

#[derive(Deserialize)]
struct TimeoutConf {
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    timeout: Duration,
}

fn default_url() -> String {
    "http://127.0.0.1:9091".into()
}
fn default_job() -> String {
    "badger".into()
}
fn default_method() -> String {
    "POST".into()
}
fn default_expire() -> Duration {
    Duration::from_secs(120)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A path segment of the grouping key: `name/value`, or `name@base64/<base64url>` for a
/// value that holds `/` or is empty (the Pushgateway's own rule).
fn grouping_segment(out: &mut String, name: &str, value: &str) {
    out.push('/');
    if value.is_empty() || value.contains('/') {
        out.push_str(name);
        out.push_str("@base64/");
        out.push_str(&base64url(value.as_bytes()));
    } else {
        out.push_str(name);
        out.push('/');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// Counters of the pushes (read by the `internal` module as this emitter's outbox-like stats).
#[derive(Default)]
pub struct PushStats {
    pub sent_batches: AtomicU64,
    pub sent_points: AtomicU64,
    pub retries: AtomicU64,
    pub last_send_micros: AtomicU64,
}

impl Source for PushStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        let v = |c: &AtomicU64| Value::Int(i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        f("sent_batches", v(&self.sent_batches));
        f("sent_points", v(&self.sent_points));
        f("retries", v(&self.retries));
        f("write_micros", v(&self.last_send_micros));
    }
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let c: Config = conf.parse()?;
    let TimeoutConf { timeout } = conf.parse_shared()?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(conf.error("timeout", format!("{timeout:?}: must be more than 0 and at most 60s")).into());
    }
    let base = c.url.trim().trim_end_matches('/');
    let scheme_ok =
        base.strip_prefix("http://").or_else(|| base.strip_prefix("https://")).is_some_and(|r| !r.is_empty());
    if !scheme_ok {
        return Err(conf.error("url", format!("\"{}\": an http:// or https:// URL", c.url)).into());
    }
    if base.starts_with("https://") {
        return Err(conf
            .error("url", "https is not built into this badger: use http:// (or a local TLS proxy)")
            .into());
    }
    if c.job.is_empty() {
        return Err(conf.error("job", "must not be empty").into());
    }
    let method = c.method.to_ascii_uppercase();
    if method != "POST" && method != "PUT" {
        return Err(conf.error("method", format!("\"{}\": use \"POST\" or \"PUT\"", c.method)).into());
    }
    check_prefix(conf, &c.prefix)?;
    let expire = check_expire(conf, c.expire_after)?;
    for k in c.grouping.keys() {
        if expose::label_name(k) != *k || k == "job" || k == "instance" {
            return Err(conf.error("grouping", format!("\"{k}\": not a label name for the grouping key")).into());
        }
    }
    let mut target = format!("{base}/metrics");
    grouping_segment(&mut target, "job", &c.job);
    let instance = c.instance.unwrap_or_else(|| ctx.meta.hostname.clone());
    if !instance.is_empty() {
        grouping_segment(&mut target, "instance", &instance);
    }
    for (k, v) in &c.grouping {
        grouping_segment(&mut target, k, v);
    }
    let agent = badger_api::http_client::agent(
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false),
    );
    let stats = Arc::new(PushStats::default());
    let source: Arc<dyn Source> = stats.clone();
    ctx.telemetry.publish(Group::Outbox, &conf.name, &source);
    Ok(Box::new(Pushgateway { target, method, agent, exposition: Exposition::new(&c.prefix, expire), stats }))
}

/// The emitter: keeps the exposition and pushes it.
pub struct Pushgateway {
    target: String,
    method: String,
    agent: ureq::Agent,
    exposition: Exposition,
    stats: Arc<PushStats>,
}

impl Pushgateway {
    /// The URL pushes go to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Pushes the current series; nothing to push makes no request.
    pub fn push(&mut self) -> Result<(), EmitError> {
        self.exposition.expire(expose::epoch_now());
        if self.exposition.is_empty() {
            return Ok(());
        }
        let body = self.exposition.render();
        let started = Instant::now();
        let req = if self.method == "PUT" { self.agent.put(&self.target) } else { self.agent.post(&self.target) };
        let result = req.header("Content-Type", TEXT_CONTENT_TYPE).send(body.as_bytes());
        self.stats.last_send_micros.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let err = match result {
            Ok(resp) if resp.status().is_success() => {
                self.stats.sent_batches.fetch_add(1, Ordering::Relaxed);
                self.stats.sent_points.fetch_add(self.exposition.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            Ok(mut resp) => {
                let status = resp.status();
                let text = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                format!(
                    "unable to {} metrics; received status {}: {}",
                    self.method,
                    status.canonical_reason().unwrap_or(status.as_str()),
                    text.trim_end()
                )
            }
            Err(ureq::Error::Timeout(_)) => format!("pushing to {}: timed out", self.target),
            Err(e) => format!("pushing to {}: {e}", self.target),
        };
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        Err(EmitError(err))
    }
}

impl Emitter for Pushgateway {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        for p in batch.payloads() {
            self.exposition.update(&p);
        }
        self.push()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use badger_api::point::HostMeta;

    fn build_conf(text: &str) -> Result<Box<dyn Emitter>, BuildError> {
        let ctx = EmitterContext {
            meta: Arc::new(HostMeta { hostname: "h1".into(), ..HostMeta::default() }),
            ..EmitterContext::default()
        };
        build(&ctx, &PluginConf::from_text("pushgateway", Path::new("conf.d/pushgateway.conf"), text))
    }

    #[test]
    fn grouping_key_paths() {
        let mut s = String::new();
        grouping_segment(&mut s, "job", "badger");
        grouping_segment(&mut s, "instance", "a b");
        grouping_segment(&mut s, "path", "/var/tmp");
        grouping_segment(&mut s, "empty", "");
        assert_eq!(s, "/job/badger/instance/a%20b/path@base64/L3Zhci90bXA=/empty@base64/=");
        assert_eq!(base64url(b"ab?"), "YWI_");
        assert_eq!(base64url(b"a"), "YQ==");
    }

    #[test]
    fn config_keys_are_checked() {
        assert!(build_conf("{}").is_ok());
        for (text, key) in [
            (r#"{"url": "ftp://x"}"#, "url"),
            (r#"{"job": ""}"#, "job"),
            (r#"{"method": "GET"}"#, "method"),
            (r#"{"timeout": "2m"}"#, "timeout"),
            (r#"{"grouping": {"job": "x"}}"#, "grouping"),
            (r#"{"prefix": "a-b"}"#, "prefix"),
            (r#"{"nope": 1}"#, "nope"),
        ] {
            match build_conf(text) {
                Err(BuildError::Config(e)) => assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}"),
                _ => panic!("{text}: expected a config error"),
            }
        }
    }
}
