//! `otlp`: OpenTelemetry metrics over OTLP/HTTP (protobuf), to an OpenTelemetry Collector
//! or any backend that takes OTLP.
//!
//! Every payload is one `ExportMetricsServiceRequest` (one resource, the host; one scope,
//! `badger`), sent as `POST {endpoint}/v1/metrics` with `Content-Type:
//! application/x-protobuf`, gzipped (`Content-Encoding: gzip`) unless `gzip` is false, with
//! the `headers` given (e.g. a token; their values never appear in a log line). Payloads
//! are buffered, retried and optionally spooled to disk by the [outbox](badger_outbox);
//! several go in one request (their messages one after the other, which protobuf reads as
//! one request). gRPC is not offered: it would bring an HTTP/2 stack (hyper's h2, and
//! tonic or a hand-made framing) for what OTLP/HTTP already does.
//!
//! **What goes out.** Every point, counters included. With `naming: "otel"` (the default)
//! the host stats that the Collector's `hostmetrics` receiver also reports go out under its
//! names, units and attributes (table below); every other point (other badger stats, l2met,
//! scraped Prometheus samples, plugins' points) under its badger name: `measurement.field`
//! (`disk.reads`), its tags as attributes, a gauge, or for a raw counter a cumulative
//! monotonic sum. With `naming: "badger"` every point goes out that way. Units are UCUM
//! (`B` → `By`, `percent` → `%`). Sums are cumulative; the start time of the host counters
//! (`cpu`, `disk`, `network`) is the boot time (`btime` of `/proc/stat`, read when the
//! emitter starts), of other counters the emitter's start. A point's time is the tick's.
//!
//! **Resource attributes**: `host.name`, `host.id` (`/etc/machine-id`, when readable),
//! `os.type` (`linux`), `service.name` (`badger`), `service.version`, `cloud.region` (the
//! `region` metadata) and `cloud.availability_zone` (`zone`), `badger.datacenter` and
//! `badger.cluster` (no convention has them); empty metadata is left out.
//!
//! **What an answer means** (the OTLP/HTTP rules): 2xx sent; a 2xx whose
//! `ExportMetricsServiceResponse` has a `partial_success` counts its
//! `rejected_data_points` (`partial_rejected_points` of the `internal` module, logged once a
//! minute with the collector's message); 429, 502, 503 and 504 keep the data and retry,
//! after the `Retry-After` the server gave (in seconds, at most `retry_max`) or the
//! outbox's backoff; every other 4xx and 5xx is rejected for good: dropped, counted
//! (`rejected_points`) and logged with the collector's message. Timeouts and refused
//! connections keep the data and retry.
//!
//! TLS (`https://`): rustls; certificates are verified against the host's trust store, or
//! against the PEM certificates of `ca_file` alone when it is set.
//!
//! The protobuf messages are prost messages written from the OTLP `.proto` files (see
//! `badger_formats::otlp::proto`): prost is the Rust protobuf runtime the OpenTelemetry
//! crates themselves use; the `opentelemetry-proto` crate would add the OpenTelemetry SDK
//! for conversions badger does not need. The emitter (prost included) adds 94.6 KiB to the
//! stripped release binary: 11,186,248 → 11,283,080 bytes, measured with `cargo build
//! --release -p badger` just before and just after the emitter was added.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between sends; every payload since the last send is sent |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |
//! | `timeout` | `"10s"` | how long one HTTP request may take, connecting, sending and receiving included |
//! | `endpoint` | `"http://127.0.0.1:4318"` | the collector's OTLP/HTTP base URL (`http://` or `https://`, host, port, optionally a path prefix); metrics go to `{endpoint}/v1/metrics` |
//! | `headers` | `{}` | HTTP headers sent with every request, e.g. `{"Authorization": "Bearer …"}` (values never logged) |
//! | `gzip` | `true` | gzip request bodies |
//! | `ca_file` | none | PEM file of the certificates to trust for `https://` instead of the system's (relative to the config file's directory) |
//! | `naming` | `"otel"` | `"otel"`: the host-metrics semantic conventions where they have the stat (table below), badger names for the rest; `"badger"`: badger names for everything |
//! | *buffering* | | the outbox keys every network emitter shares (`buffer_bytes`, `when_full`, `retry_initial`, `retry_max`, `max_batch_bytes`, `send_budget`, `spool_dir`, `spool_max_bytes`): see the outbox's key table |
//!
//! # `naming: "otel"`
//!
//! | badger point | OpenTelemetry metric (attributes) | type, unit |
//! |---|---|---|
//! | `cpu.seconds_total.<n>.<mode>` (counter) | `system.cpu.time` (`cpu` = `cpu<n>`, `state`: `user`, `nice`, `system`, `idle`, `wait` ← iowait, `interrupt` ← irq, `softirq`, `steal`) | cumulative monotonic sum, `s` |
//! | `load.one`, `load.five`, `load.fifteen` | `system.cpu.load_average.1m`, `.5m`, `.15m` | gauge, `{thread}` |
//! | `cpu.cores` | `system.cpu.logical.count` | non-monotonic sum, `{cpu}` |
//! | `cpu.speed` | `system.cpu.frequency` (MHz × 10⁶) | gauge, `Hz` |
//! | `mem.memtotal` | `system.memory.limit` | non-monotonic sum, `By` |
//! | `mem.memfree`, `buffers`, `cached`, `sreclaimable`, `sunreclaim` | `system.memory.usage` (`state`: `used` = MemTotal − MemFree − Buffers − cached, `free`, `buffered`, `cached` = Cached + SReclaimable, `slab_reclaimable`, `slab_unreclaimable`) | non-monotonic sum, `By` |
//! | the same | `system.memory.utilization` (`state`: each state / MemTotal) | gauge, `1` |
//! | `mem.swaptotal`, `swapfree`, `swapcached` | `system.paging.usage` (`state`: `used` = total − free − cached, `free`, `cached`) and `system.paging.utilization` (`state`) (and `mem.swaptotal` too) | non-monotonic sum, `By`; gauge, `1` |
//!
//! The `mem.*` points these are made of go out under their badger names instead when a
//! value needed (MemTotal, MemFree, Buffers, Cached; SwapTotal, SwapFree) is missing, e.g.
//! blacklisted.
//! | `disk.read_bytes_total`, `written_bytes_total` (counters) | `system.disk.io` (`device`, `direction`: `read`, `write`) | cumulative monotonic sum, `By` |
//! | `disk.reads_completed_total`, `writes_completed_total` | `system.disk.operations` (`device`, `direction`) | sum, `{operations}` |
//! | `disk.read_time_seconds_total`, `write_time_seconds_total` | `system.disk.operation_time` (`device`, `direction`) | sum, `s` |
//! | `disk.reads_merged_total`, `writes_merged_total` | `system.disk.merged` (`device`, `direction`) | sum, `{operations}` |
//! | `disk.io_time_seconds_total` | `system.disk.io_time` (`device`) | sum, `s` |
//! | `disk.io_time_weighted_seconds_total` | `system.disk.weighted_io_time` (`device`) | sum, `s` |
//! | `disk.io` | `system.disk.pending_operations` (`device`) | non-monotonic sum, `{operations}` |
//! | `fs.used`, `fs.free`, `fs.total` | `system.filesystem.usage` (`device`, `mountpoint`, `type`, `state`: `used`, `free`, `reserved` = total − used − free) (and `fs.total` too) | non-monotonic sum, `By` |
//! | `fs.inodes_used`, `fs.inodes_free` | `system.filesystem.inodes.usage` (`device`, `mountpoint`, `type`, `state`) | non-monotonic sum, `{inodes}` |
//! | `fs.used_percent` | `system.filesystem.utilization` (`device`, `mountpoint`, `type`): used / (used + free), as `df` | gauge, `1` |
//! | `network.receive_bytes_total`, `transmit_bytes_total` (counters) | `system.network.io` (`device`, `direction`: `receive`, `transmit`) | cumulative monotonic sum, `By` |
//! | `network.*_packets_total` | `system.network.packets` (`device`, `direction`) | sum, `{packets}` |
//! | `network.*_errs_total` | `system.network.errors` (`device`, `direction`) | sum, `{errors}` |
//! | `network.*_drop_total` | `system.network.dropped` (`device`, `direction`) | sum, `{packets}` |
//! | `cpu.procs_running`, `cpu.procs_blocked` | `system.processes.count` (`status`: `running`, `blocked`) | non-monotonic sum, `{processes}` |
//! | `cpu.forks_total` (counter) | `system.processes.created` | cumulative monotonic sum, `{processes}` |
//! | `system.uptime` | `system.uptime` | gauge, `s` (double) |
//!
//! **Differences from `hostmetrics`.** `system.filesystem.*` has no `mode` attribute
//! (badger does not read the mount options); `system.paging.usage` has no `device` (badger
//! reads the swap totals of `/proc/meminfo`, not `/proc/swaps`); `system.filesystem.utilization`
//! is used / (used + free), not used / total; `system.network.connections`,
//! `system.paging.operations`, `system.paging.faults`, `system.disk.io` of partitions
//! (badger reports whole disks by default) and `system.cpu.utilization` are not sent (badger
//! has no such stats, or has them as percent shares over the last interval, which go out
//! under their badger names: `cpu.user`, …). Metrics carry no description. badger's rates
//! (`disk.reads`, `net.rx_bytes`, …) and the counters without a twin
//! (`cpu.guest_seconds_total`, `cpu.intr_total`, `cpu.context_switches_total`, the disk
//! discard and flush counters, the other `network.*_total`) go out under their badger
//! names beside the sums.

pub mod http;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use self::http::{HttpTransport, Target};
use badger_api::config::ConfigError;
use badger_api::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_api::point::Value;
use badger_api::telemetry::{Group, Source};
use badger_formats::otlp::Encoder;
pub use badger_formats::otlp::Naming;
use badger_outbox::{Outbox, OutboxConfig, OutboxStats, OUTBOX_KEYS};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "otlp",
    aliases: &[],
    summary: "OpenTelemetry OTLP/HTTP metrics (protobuf), host-metrics names, buffered, retried",
    build,
    counters: true,
};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a `ca_file` may hold.
const MAX_CA_FILE: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    gzip: Option<bool>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    naming: Naming,
}

/// What the config of an `otlp` emitter says, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub naming: Naming,
    pub outbox: OutboxConfig,
}

impl Settings {
    pub fn from_conf(conf: &PluginConf) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse_except(OUTBOX_KEYS)?;
        let outbox = OutboxConfig::from_conf(conf)?;
        let timeout = conf.timeout_or(DEFAULT_TIMEOUT)?;
        let endpoint = endpoint(c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), conf)?;
        let mut headers = Vec::new();
        for (k, v) in c.headers {
            let bad_name =
                k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if bad_name {
                return Err(conf.error("headers", format!("\"{k}\" is not an HTTP header name")));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(conf.error("headers", format!("the value of \"{k}\" holds a line break")));
            }
            if k.eq_ignore_ascii_case("content-type") || k.eq_ignore_ascii_case("content-encoding") {
                return Err(conf.error("headers", format!("\"{k}\" is set by the emitter")));
            }
            headers.push((k, v));
        }
        let ca = match &c.ca_file {
            None => None,
            Some(f) => Some(read_ca(&conf.file, f).map_err(|m| conf.error("ca_file", m))?),
        };
        Ok(Settings {
            target: Target {
                url: format!("{endpoint}/v1/metrics"),
                headers,
                gzip: c.gzip.unwrap_or(true),
                timeout,
                ca,
            },
            naming: c.naming,
            outbox,
        })
    }
}

/// The endpoint, checked: `http(s)://host[:port][/prefix]`, no credentials, no query.
fn endpoint(url: &str, conf: &PluginConf) -> Result<String, ConfigError> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let scheme = if lower.starts_with("http://") {
        7
    } else if lower.starts_with("https://") {
        8
    } else {
        return Err(conf.error("endpoint", format!("\"{url}\" is not an http:// or https:// URL")));
    };
    let rest = url.get(scheme..).unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(conf.error("endpoint", "must not hold credentials (they would show in logs): use headers"));
    }
    if authority.is_empty() {
        return Err(conf.error("endpoint", format!("\"{url}\" has no host")));
    }
    if rest.contains(['?', '#']) {
        return Err(conf.error("endpoint", "must not have a query string"));
    }
    let base = url.trim_end_matches('/');
    // The full metrics URL given as the endpoint: take its base.
    Ok(base.strip_suffix("/v1/metrics").unwrap_or(base).to_string())
}

/// The certificates of a PEM file (relative to the config file's directory).
fn read_ca(conf_file: &Path, name: &str) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    use std::io::Read;
    let path = conf_file.parent().unwrap_or(Path::new(".")).join(name);
    let mut pem = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(format!("{}: more than {MAX_CA_FILE} bytes", path.display()));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The host's boot time, epoch seconds (`btime` of `/proc/stat`), or `None`.
fn boot_time() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// `/etc/machine-id`, or empty.
fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let e = Otlp::from_conf(conf)?;
    let stats: Arc<dyn Source> = e.stats();
    ctx.telemetry.publish(Group::Outbox, &conf.name, &stats);
    Ok(Box::new(e))
}

/// The outbox's counters and `partial_rejected_points`, as the `internal` module shows them.
pub struct OtlpStats {
    pub outbox: Arc<OutboxStats>,
    pub partial_rejected: Arc<AtomicU64>,
}

impl Source for OtlpStats {
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
        self.outbox.visit(f);
        let n = self.partial_rejected.load(Ordering::Relaxed);
        f("partial_rejected_points", Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
}

/// The `otlp` emitter.
pub struct Otlp {
    outbox: Outbox,
    transport: HttpTransport,
    encoder: Encoder,
    scratch: Vec<u8>,
    stats: Arc<OtlpStats>,
    started: bool,
}

impl Otlp {
    pub fn from_conf(conf: &PluginConf) -> Result<Otlp, BuildError> {
        let s = Settings::from_conf(conf)?;
        let transport = HttpTransport::new(&conf.name, &s.target);
        let outbox = Outbox::new(&conf.name, &s.outbox)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let encoder = Encoder::new(s.naming, &machine_id(), env!("CARGO_PKG_VERSION"), boot_time().unwrap_or(now), now);
        let stats =
            Arc::new(OtlpStats { outbox: outbox.stats(), partial_rejected: transport.partial_rejected.clone() });
        Ok(Otlp { outbox, transport, encoder, scratch: Vec::new(), stats, started: false })
    }

    pub fn stats(&self) -> Arc<OtlpStats> {
        self.stats.clone()
    }

    fn on_start(&mut self) {
        if !std::mem::replace(&mut self.started, true) {
            log::debug!("emitter \"{}\": sending OTLP to {}", self.outbox.name(), self.transport.url());
        }
    }

    fn pump(&mut self) {
        self.outbox.pump(&mut self.transport);
        if let Some(wait) = self.transport.take_retry_after() {
            self.outbox.retry_after(wait);
        }
    }
}

impl Emitter for Otlp {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        self.on_start();
        for p in batch.all_payloads() {
            self.scratch.clear();
            let points = self.encoder.encode(&p, &mut self.scratch);
            if points > 0 {
                self.outbox.push(self.scratch.clone(), points);
            }
        }
        self.pump();
        Ok(())
    }

    fn idle(&mut self) {
        self.on_start();
        self.pump();
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        self.on_start();
        self.transport.set_deadline(Some(deadline));
        self.outbox.close(&mut self.transport, deadline);
        self.transport.set_deadline(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_conf(&PluginConf::from_text("otlp", Path::new("conf.d/otlp.conf"), text))
    }

    fn err(text: &str) -> ConfigError {
        match settings(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_and_the_shipped_conf() {
        let s = settings("{}").unwrap();
        assert_eq!(s.target.url, "http://127.0.0.1:4318/v1/metrics");
        assert!(s.target.gzip && s.target.headers.is_empty() && s.target.ca.is_none());
        assert_eq!(s.target.timeout, Duration::from_secs(10));
        assert_eq!(s.naming, Naming::Otel);
        assert_eq!(s.outbox, OutboxConfig::default());
        let file = badger_test_support::fixture::workspace_root().join("conf.d/otlp.conf");
        let text = std::fs::read_to_string(&file).unwrap();
        let shipped = Settings::from_conf(&PluginConf::from_text("otlp", &file, &text)).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{s:?}"));
        for key in ["interval", "blacklist", "timeout", "endpoint", "headers", "gzip", "ca_file", "naming"]
            .into_iter()
            .chain(OUTBOX_KEYS.iter().copied())
        {
            assert!(text.contains(key), "conf.d/otlp.conf lacks {key}");
        }
    }

    #[test]
    fn every_key() {
        let s = settings(
            r#"{"endpoint": "https://otel.example:4318/prefix/", "headers": {"Authorization": "Bearer s3cret"},
                "gzip": false, "naming": "badger", "timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(s.target.url, "https://otel.example:4318/prefix/v1/metrics");
        assert_eq!(s.target.headers, [("Authorization".to_string(), "Bearer s3cret".to_string())]);
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(!s.target.gzip);
        assert_eq!(s.naming, Naming::Badger);
        assert_eq!(s.target.timeout, Duration::from_secs(2));
        let s = settings(r#"{"endpoint": "http://h:1/v1/metrics"}"#).unwrap();
        assert_eq!(s.target.url, "http://h:1/v1/metrics");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, key) in [
            (r#"{"endpoint": "ftp://x"}"#, "endpoint"),
            (r#"{"endpoint": "http://u:p@x"}"#, "endpoint"),
            (r#"{"endpoint": "http://x/?a=1"}"#, "endpoint"),
            (r#"{"headers": {"bad name": "x"}}"#, "headers"),
            (r#"{"headers": {"X-A": "a\nb"}}"#, "headers"),
            (r#"{"headers": {"Content-Type": "text/plain"}}"#, "headers"),
            (r#"{"naming": "telegraf"}"#, "naming"),
            (r#"{"ca_file": "/nonexistent/ca.pem"}"#, "ca_file"),
            (r#"{"timeout": 0}"#, "timeout"),
            (r#"{"endpont": "http://x"}"#, "endpont"),
        ] {
            assert_eq!(err(text).key.as_deref(), Some(key), "{text}");
        }
    }

    #[test]
    fn ca_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen_free_cert();
        std::fs::write(dir.path().join("ca.pem"), ck).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "nothing\n").unwrap();
        let conf = |f: &str| {
            Settings::from_conf(&PluginConf::from_text(
                "otlp",
                &dir.path().join("otlp.conf"),
                &format!(r#"{{"ca_file": "{f}"}}"#),
            ))
        };
        assert_eq!(conf("ca.pem").unwrap().target.ca.map(|c| c.len()), Some(1));
        assert!(conf("empty.pem").unwrap_err().to_string().contains("no PEM certificate"));
    }

    /// A self-signed certificate (PEM) made once with openssl, for the parser only.
    fn rcgen_free_cert() -> &'static str {
        "-----BEGIN CERTIFICATE-----\n\
MIIBfTCCASOgAwIBAgIUW7wH0ctrDMGNvWbh0UBCnhH0KkEwCgYIKoZIzj0EAwIw\n\
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw\n\
MDAwMFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
AQcDQgAEq9U0oSk0b1dR2n5Ww3yv5k2Jb1c3a8bQ2xWJk1C3eW4wT0v9Gg2lF3f8\n\
a7Yb4m1bWbq3lq0Qyq0m7o0bQ2xWJqNTMFEwHQYDVR0OBBYEFJ0kz1cQ6rj0xJ0k\n\
z1cQ6rj0xJ0kMB8GA1UdIwQYMBaAFJ0kz1cQ6rj0xJ0kz1cQ6rj0xJ0kMA8GA1Ud\n\
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAJ0kz1cQ6rj0xJ0kz1cQ6rj0\n\
xJ0kz1cQ6rj0xJ0kAiB0xJ0kz1cQ6rj0xJ0kz1cQ6rj0xJ0kz1cQ6rj0xJ0kz1c=\n\
-----END CERTIFICATE-----\n"
    }
}
