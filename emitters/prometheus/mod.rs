//! `prometheus`: serves every current point at `GET /metrics` for Prometheus (text format 0.0.4).
//!
//! The exposition is served on the agent's HTTP listener, so it needs `core.http_listen`.
//!
//! **Series.** The emitter keeps the latest value of every series it was sent; a series
//! that no payload has updated for `expire_after` disappears (a vanished disk, a stopped
//! process). A scrape gets them all, sorted by name, each family with `# HELP` and `# TYPE`.
//!
//! **Names** follow Prometheus' rules. A badger stat is named `[prefix]<measurement>_<field>`
//! (`cpu.user` → `cpu_user`, `disk.reads.sda` → `disk_reads{device="sda"}`), every
//! character outside `[A-Za-z0-9_]` becomes `_` (`:` too: it is reserved for recording
//! rules), the abbreviation `sec` is spelled `second` (`cpu_ctxt_per_second`), and the stat's
//! units become a base-unit suffix with the value converted: `B` → `_bytes`, `KB` → `_bytes`
//! (× 1024), `ms` → `_seconds` (÷ 1000), `s` → `_seconds`, `MHz` → `_hertz` (× 10⁶),
//! `percent` → `_percent` (`fs.used./` → `fs_used_bytes{mount="/"}`). Stats in bits (`b`:
//! `net.rx_bits`, `net.tx_bits`) are left out: they repeat the `_bytes` stats × 8. badger's
//! stats are gauges (`# TYPE … gauge`); a name that ends in `_total`, `_count`, `_sum` or
//! `_bucket` is `untyped`, since Prometheus keeps those suffixes for counters, histograms
//! and summaries. Samples that came from Prometheus (the
//! `prometheus` module, `pushgateway_receiver`) keep their own names and types.
//!
//! **Labels** are the point's tags (names made valid: `[A-Za-z0-9_]`, not starting with a
//! digit or `__`), then the host metadata, `datacenter`, `region`, `zone`, `cluster`,
//! `hostname`, `ipv4`, `ipv6`, leaving out empty ones and any a tag already set.
//!
//! **node_exporter naming** (`naming: "node_exporter"`): the families node_exporter 1.x
//! exposes, under its exact names, TYPEs and labels, so dashboards and alerts written for
//! node_exporter keep working: the raw cumulative counters the modules read
//! (`node_cpu_seconds_total{cpu,mode}`, `node_disk_read_bytes_total{device}`,
//! `node_network_receive_bytes_total{device}`, …), the points of the node_exporter-family
//! modules (`node_` + measurement + `_` + field), and badger's gauges through a table:
//! `node_memory_<MeminfoKey>_bytes`, `node_load1/5/15`, `node_filesystem_size_bytes`,
//! `_free_bytes`, `_avail_bytes`, `_files`, `_files_free{device,fstype,mountpoint}`,
//! `node_disk_io_now`, `node_procs_running`, `node_procs_blocked`, `node_boot_time_seconds`,
//! `node_time_seconds` (the collection's time). Stat Badger's rates, percentages and derived
//! figures (`cpu.user`, `mem.used`, `disk.reads`, …) are not exposed, nor the `proc.*` and
//! `badger.*` stats: node_exporter has no such families (a second `prometheus` emitter with
//! badger naming on another `path` serves them). Samples from Prometheus keep their names.
//! `prefix` applies to badger naming only. The host metadata labels follow the point's
//! labels as above. HELP texts are badger's own. The whole mapping:
//! `crates/formats/src/prometheus/node.rs`; what is missing next to node_exporter:
//! docs/migrating.md, "From node_exporter".
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `naming` | `"badger"` | `"badger"`: badger's stats under badger's names (above); `"node_exporter"`: node_exporter's families, counters included, no rates |
//! | `path` | `"/metrics"` | the path served on `core.http_listen` (`/` followed by letters, digits, `/`, `_`, `-`, `.`) |
//! | `prefix` | `""` | put before every name of a badger stat, e.g. `"badger_"` (samples from Prometheus keep theirs) |
//! | `expire_after` | `"2m"` | a series not updated for this long is no longer served; keep it above the longest module interval |
//! | `max_bytes` | `67108864` | bytes of series held at most (names, labels, help texts; about the size of a scrape); past it new series are refused (`badger.emitter.refused_series`, logged once a minute) while the others keep updating |
//! | `interval` | `0` | seconds between updates of the served values; every payload since the last update is applied |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |

use badger_formats::prometheus as expose;
use badger_formats::prometheus::{check_expire, check_prefix, Naming};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde::Deserialize;

pub use expose::Exposition;

use badger_api::duration::de_duration;
use badger_api::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_formats::prometheus::TEXT_CONTENT_TYPE;

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "prometheus",
    aliases: &[],
    summary: "serves every current point on /metrics for Prometheus (text format 0.0.4)",
    build,
    counters: true,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_expire", deserialize_with = "de_duration")]
    expire_after: Duration,
    #[serde(default = "default_naming")]
    naming: String,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
}

fn default_naming() -> String {
    "badger".into()
}

fn default_max_bytes() -> usize {
    64 << 20
}

/// The emitter's bound hits, shown by the `internal` module.
#[derive(Default)]
struct Refused(std::sync::atomic::AtomicU64);

impl badger_api::telemetry::Source for Refused {
    fn visit(&self, f: &mut dyn FnMut(&'static str, badger_api::point::Value)) {
        let n = self.0.load(std::sync::atomic::Ordering::Relaxed);
        f("refused_series", badger_api::point::Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
}

fn default_path() -> String {
    "/metrics".into()
}

fn default_expire() -> Duration {
    Duration::from_secs(120)
}

/// What the handler serves: the exposition and its rendering, made when first asked for
/// after a change.
struct Shared {
    exposition: Exposition,
    rendered: Option<Bytes>,
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let c: Config = conf.parse()?;
    let path_ok = c.path.starts_with('/')
        && c.path.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '/' | '_' | '-' | '.'))
        && !c.path.contains("//");
    if !path_ok {
        return Err(conf.error("path", format!("\"{}\": a path such as \"/metrics\"", c.path)).into());
    }
    check_prefix(conf, &c.prefix)?;
    let expire = check_expire(conf, c.expire_after)?;
    let naming = Naming::parse(conf, &c.naming)?;
    if c.max_bytes < 4096 {
        return Err(conf.error("max_bytes", "must be at least 4096").into());
    }
    let exposition = Exposition::new(&c.prefix, expire).with_naming(naming).with_max_bytes(c.max_bytes);
    let shared = Arc::new(Mutex::new(Shared { exposition, rendered: None }));
    let refused = Arc::new(Refused::default());
    let published: Arc<dyn badger_api::telemetry::Source> = refused.clone();
    // Under Outbox (this emitter has none): Emitter is the core's queue stats of the same name.
    ctx.telemetry.publish(badger_api::telemetry::Group::Outbox, &conf.name, &published);
    let serve = shared.clone();
    let handler = axum::routing::get(move || {
        let serve = serve.clone();
        async move { scrape(&serve) }
    });
    ctx.http.add(&conf.name, &c.path, "the Prometheus exposition", handler)?;
    Ok(Box::new(PrometheusEmitter {
        shared,
        refused,
        _published: published,
        throttle: badger_api::throttle::LogThrottle::default(),
        name: conf.name.clone(),
    }))
}

fn scrape(shared: &Mutex<Shared>) -> Response {
    let body = {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        let before = s.exposition.len();
        s.exposition.expire(expose::epoch_now());
        if s.exposition.len() != before {
            s.rendered = None;
        }
        match &s.rendered {
            Some(b) => b.clone(),
            None => {
                let b = Bytes::from(s.exposition.render());
                s.rendered = Some(b.clone());
                b
            }
        }
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
    r
}

/// Keeps the exposition the `/metrics` handler serves.
pub struct PrometheusEmitter {
    shared: Arc<Mutex<Shared>>,
    refused: Arc<Refused>,
    _published: Arc<dyn badger_api::telemetry::Source>,
    throttle: badger_api::throttle::LogThrottle,
    name: String,
}

impl Emitter for PrometheusEmitter {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for p in batch.payloads() {
            s.exposition.update(&p);
        }
        s.exposition.expire(expose::epoch_now());
        s.rendered = None;
        let refused = s.exposition.refused;
        drop(s);
        let before = self.refused.0.swap(refused, std::sync::atomic::Ordering::Relaxed);
        if refused > before {
            if let Some(left) = self.throttle.allow() {
                log::warn!(
                    "emitter \"{}\": {} new series refused: the exposition holds its max_bytes ({left} more such since the last line)",
                    self.name,
                    refused - before
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use badger_api::matcher::Matcher;
    use badger_api::point::{HostMeta, Payload, Point, Value};
    use badger_formats::prometheus::{label_name, metric_name, name_point};

    fn conf(text: &str) -> PluginConf {
        PluginConf::from_text("prometheus", Path::new("conf.d/prometheus.conf"), text)
    }

    #[test]
    fn names_follow_prometheus_rules() {
        let n = |p: Point| name_point("", &p).map(|n| (n.family, n.kind, n.value));
        use badger_formats::prometheus::Kind;
        assert_eq!(
            n(Point::simple("cpu", "user", "percent", Value::Float(1.5))),
            Some(("cpu_user_percent".into(), Kind::Gauge, 1.5))
        );
        assert_eq!(
            n(Point::simple("cpu", "ctxt_per_sec", "", Value::Float(2.0))),
            Some(("cpu_ctxt_per_second".into(), Kind::Gauge, 2.0))
        );
        assert_eq!(
            n(Point::device("disk", "read_time", "ms", "device", "sda", Value::Float(250.0))),
            Some(("disk_read_time_seconds".into(), Kind::Gauge, 0.25))
        );
        assert_eq!(
            n(Point::device("fs", "total", "B", "mount", "/", Value::Int(10))),
            Some(("fs_total_bytes".into(), Kind::Gauge, 10.0))
        );
        assert_eq!(
            n(Point::simple("mem", "hugepages_total", "", Value::Int(0))),
            Some(("mem_hugepages_total".into(), Kind::Untyped, 0.0))
        );
        assert_eq!(n(Point::simple("net", "rx_bits", "b", Value::Float(8.0))), None);
        assert_eq!(
            n(Point::simple("system", "cpu.speed", "MHz", Value::Float(2.5))),
            Some(("system_cpu_speed_hertz".into(), Kind::Gauge, 2.5e6))
        );
        let sample = badger_formats::prometheus::sample_point(Kind::Histogram, "rpc_seconds_bucket", vec![], 3.0);
        assert_eq!(n(sample), Some(("rpc_seconds".into(), Kind::Histogram, 3.0)));
        assert_eq!(metric_name("a.b:c-d/é"), "a_b_c_d__");
        assert_eq!(metric_name("9x"), "_9x");
        assert_eq!(label_name("__reserved"), "_reserved");
        assert_eq!(label_name("1a"), "_1a");
        assert_eq!(label_name("ok_name"), "ok_name");
    }

    #[test]
    /// Issue 11, row 12 (the issue: 35k new names per push for 40 s, RSS 0.9 → 3.1 GB, a
    /// 433 MB `/metrics`): the exposition is bounded in bytes, refuses new series past it,
    /// keeps updating the others, and gives the room back when series expire.
    fn exposition_is_bounded_in_bytes() {
        let mut e = Exposition::new("", 60).with_max_bytes(64 * 1024);
        let meta = Arc::new(HostMeta::default());
        let bl = Matcher::default();
        let feed = |e: &mut Exposition, ts: i64, from: usize, n: usize| {
            let name = |i: usize| format!("n{i}");
            let points = (from..from + n).map(|i| Point::device("push", "name", "", "id", &name(i), Value::Float(1.0)));
            let ps = [Arc::new(Payload { meta: meta.clone(), timestamp: ts, points: points.collect() })];
            let b = Batch::new(&ps, &bl);
            for v in b.payloads() {
                e.update(&v);
            }
        };
        feed(&mut e, 100, 0, 35_000);
        let held = e.len();
        assert!(held > 100 && held < 1000, "{held} series held");
        assert!(e.bytes() <= 64 * 1024);
        assert_eq!(e.refused, 35_000 - held as u64);
        assert!(e.render().len() <= 64 * 1024, "the rendering stays under the bound too");
        // Held series still update; past expiry the room comes back for new names.
        feed(&mut e, 130, 0, 1);
        e.expire(161);
        assert_eq!(e.len(), 1);
        feed(&mut e, 170, 50_000, 35_000);
        // (The new names are a character longer: a few less fit.)
        assert!(e.len() >= held * 9 / 10 && e.bytes() <= 64 * 1024, "{} series", e.len());
    }

    #[test]
    fn exposition_holds_the_latest_values_and_expires_them() {
        let meta = Arc::new(HostMeta { datacenter: "dc1".into(), hostname: "h1".into(), ..HostMeta::default() });
        let payload = |ts: i64, v: f64, with_disk: bool| {
            let mut points = vec![Point::simple("load", "one", "", Value::Float(v))];
            if with_disk {
                points.push(Point::device("disk", "reads", "", "device", "sda", Value::Float(1.0)));
            }
            Arc::new(Payload { meta: meta.clone(), timestamp: ts, points })
        };
        let mut e = Exposition::new("", 60);
        let bl = Matcher::default();
        for p in [payload(100, 1.0, true), payload(130, 2.0, false)] {
            let ps = [p];
            let b = Batch::new(&ps, &bl);
            for v in b.payloads() {
                e.update(&v);
            }
        }
        e.expire(150);
        assert_eq!(
            e.render(),
            "# HELP disk_reads badger stat disk.reads\n# TYPE disk_reads gauge\n\
             disk_reads{device=\"sda\",datacenter=\"dc1\",hostname=\"h1\"} 1\n\
             # HELP load_one badger stat load.one\n# TYPE load_one gauge\n\
             load_one{datacenter=\"dc1\",hostname=\"h1\"} 2\n"
        );
        e.expire(170);
        assert!(!e.render().contains("disk_reads"));
    }

    #[test]
    fn config_needs_the_listener_and_checks_keys() {
        let ctx = EmitterContext::default();
        match build(&ctx, &conf("{}")) {
            Err(BuildError::Config(e)) => {
                assert_eq!(e.key.as_deref(), Some("core.http_listen"));
                assert!(e.message.contains("\"prometheus\" serves"), "{e}");
            }
            _ => panic!("expected a config error"),
        }
        let ctx = EmitterContext {
            http: badger_api::http::HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json")),
            ..EmitterContext::default()
        };
        assert!(build(&ctx, &conf("{}")).is_ok());
        assert_eq!(ctx.http.take().iter().map(|r| r.path.clone()).collect::<Vec<_>>(), ["/metrics"]);
        for (text, key) in [
            (r#"{"path": "metrics"}"#, "path"),
            (r#"{"path": "/a b"}"#, "path"),
            (r#"{"prefix": "9a"}"#, "prefix"),
            (r#"{"expire_after": "10ms"}"#, "expire_after"),
            (r#"{"expire_after": "soon"}"#, "expire_after"),
            (r#"{"port": 1}"#, "port"),
            (r#"{"naming": "node"}"#, "naming"),
        ] {
            match build(&ctx, &conf(text)) {
                Err(BuildError::Config(e)) => assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}"),
                _ => panic!("{text}: expected a config error"),
            }
        }
    }
}
