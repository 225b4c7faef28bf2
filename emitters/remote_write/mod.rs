//! `remote_write`: Prometheus remote write 1.0 to Prometheus (`--web.enable-remote-write-receiver`),
//! Mimir, Thanos Receive, VictoriaMetrics, Grafana Cloud, or any other receiver.
//!
//! Each payload becomes time series, one sample each at the payload's timestamp (in
//! milliseconds), named and labelled as the `prometheus` emitter names them, under the
//! `naming` chosen (see the `prometheus` emitter: `"node_exporter"` gives node_exporter's
//! families, raw counters included and rates left out; `"badger"` badger's stats). Labels are
//! sorted by name, `__name__` among them, as the protocol requires; a label with an empty
//! value is left out (Prometheus treats it as absent). A request is a protobuf
//! `WriteRequest` ([`proto`], encoded by hand: four small messages do not need a protobuf
//! library), compressed with snappy's block format (the `snap` crate, the Rust port of
//! Google's snappy, pure Rust and small), POSTed with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf` and `X-Prometheus-Remote-Write-Version: 0.1.0`.
//! No metadata (HELP, TYPE) is sent: remote write 1.0 makes it optional.
//!
//! The default naming is `"node_exporter"`: remote write feeds Prometheus-style stores, whose
//! dashboards and alerts are written for node_exporter's names and counters.
//!
//! **Delivery** is the [outbox](badger_outbox)'s: one record holds at most `max_series`
//! series of one payload (a payload with more makes several records); a request holds
//! records up to `max_batch_bytes` (before compression) and `max_series` series, so a
//! batch the outbox hands over may go as several requests, in order. 2xx: sent. 429 and 5xx,
//! timeouts and refused connections: kept and retried with backoff (the requests of a batch
//! that already went through are not sent again). Any other 4xx (400 for an out-of-order or
//! malformed sample, 401/403, 413): the records are dropped as undeliverable, counted in
//! `badger.emitter.rejected_points` and logged with the server's answer. When a batch went as
//! several requests and a later one is refused for good, the whole batch is counted as
//! rejected, the requests that went through included (the log line says how many records
//! were accepted first).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is sent |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |
//! | `timeout` | `"5s"` | how long one HTTP request may take, connecting, sending and receiving included |
//! | `url` | `"http://127.0.0.1:9090/api/v1/write"` | the receiver's write URL, `http://` or `https://`; no credentials |
//! | `naming` | `"node_exporter"` | `"node_exporter"`: node_exporter's names, counters, no rates; `"badger"`: badger's stats under the `prometheus` emitter's badger names |
//! | `prefix` | `""` | with badger naming: put before every name (e.g. `"badger_"`) |
//! | `max_series` | `500` | series in one request at most (1 to 100000) |
//! | *buffering* | | the outbox keys every network emitter shares (`buffer_bytes`, `when_full`, `retry_initial`, `retry_max`, `max_batch_bytes`, `send_budget`, `spool_dir`, `spool_max_bytes`): see the outbox's table |

pub mod proto;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use badger_api::plugin::{Batch, BuildError, ConfigError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_formats::prometheus::{check_prefix, samples, LabeledSample, Naming};
use badger_outbox::{Outbox, OutboxConfig, OutboxStats, SendError, Transport, OUTBOX_KEYS};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "remote_write",
    aliases: &[],
    summary: "Prometheus remote write 1.0 (protobuf + snappy), buffered, retried, optional disk spool",
    build,
    counters: true,
};

const DEFAULT_URL: &str = "http://127.0.0.1:9090/api/v1/write";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_SERIES: u32 = 500;
const MAX_MAX_SERIES: u32 = 100_000;
/// How much of an error answer is kept for the log.
const MAX_ERROR_TEXT: u64 = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    naming: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    max_series: Option<u32>,
}

/// What the config says, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub naming: Naming,
    pub prefix: String,
    pub max_series: usize,
    pub timeout: Duration,
    pub outbox: OutboxConfig,
}

impl Settings {
    pub fn from_conf(conf: &PluginConf) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse_except(OUTBOX_KEYS)?;
        let outbox = OutboxConfig::from_conf(conf)?;
        let timeout = conf.timeout_or(DEFAULT_TIMEOUT)?;
        let url = c.url.as_deref().unwrap_or(DEFAULT_URL).trim().to_string();
        let lower = url.to_ascii_lowercase();
        let rest = if let Some(r) = lower.strip_prefix("http://") {
            r
        } else if let Some(r) = lower.strip_prefix("https://") {
            r
        } else {
            return Err(conf.error("url", format!("\"{url}\" is not an http:// or https:// URL")));
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(conf.error("url", "must not hold credentials (they would show in logs)"));
        }
        if authority.is_empty() {
            return Err(conf.error("url", format!("\"{url}\" has no host")));
        }
        let naming = Naming::parse(conf, c.naming.as_deref().unwrap_or("node_exporter"))?;
        check_prefix(conf, &c.prefix)?;
        let max_series = c.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if !(1..=MAX_MAX_SERIES).contains(&max_series) {
            return Err(conf.error("max_series", format!("{max_series}: use 1 to {MAX_MAX_SERIES}")));
        }
        Ok(Settings { url, naming, prefix: c.prefix, max_series: max_series as usize, timeout, outbox })
    }
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let e = RemoteWrite::from_conf(conf)?;
    // The outbox's counters, shown by the `internal` module (`badger.emitter.*.<name>`).
    let stats: Arc<dyn badger_api::telemetry::Source> = e.stats();
    ctx.telemetry.publish(badger_api::telemetry::Group::Outbox, &conf.name, &stats);
    Ok(Box::new(e))
}

/// One outbox record: `u32 BE` number of series, then their `timeseries` encodings.
fn record(series: &[u8], count: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(4 + series.len());
    r.extend_from_slice(&(count as u32).to_be_bytes());
    r.extend_from_slice(series);
    r
}

fn record_series(r: &[u8]) -> (usize, &[u8]) {
    match (r.get(..4), r.get(4..)) {
        (Some(n), Some(body)) => (u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize, body),
        _ => (0, &[]),
    }
}

/// The `remote_write` emitter.
pub struct RemoteWrite {
    outbox: Outbox,
    transport: HttpTransport,
    naming: Naming,
    prefix: String,
    max_series: usize,
    samples: Vec<LabeledSample>,
    scratch: Vec<u8>,
}

impl RemoteWrite {
    pub fn from_conf(conf: &PluginConf) -> Result<RemoteWrite, BuildError> {
        let s = Settings::from_conf(conf)?;
        let outbox = Outbox::new(&conf.name, &s.outbox)?;
        let transport = HttpTransport::new(&s);
        Ok(RemoteWrite {
            outbox,
            transport,
            naming: s.naming,
            prefix: s.prefix,
            max_series: s.max_series,
            samples: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The outbox's counters (sent, dropped, rejected, queued …).
    pub fn stats(&self) -> Arc<OutboxStats> {
        self.outbox.stats()
    }

    /// Records waiting to be sent.
    pub fn queued(&self) -> u64 {
        self.outbox.len()
    }
}

/// Appends a sample's time series: `__name__` and the labels, sorted by name; a label with
/// an empty value is left out (to Prometheus it is no label at all).
pub fn encode_sample(out: &mut Vec<u8>, s: &LabeledSample, timestamp_ms: i64) {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len() + 1);
    labels.push(("__name__", s.sample.as_str()));
    labels.extend(s.labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.as_str(), v.as_str())));
    labels.sort_by(|a, b| a.0.cmp(b.0));
    labels.dedup_by(|a, b| a.0 == b.0);
    proto::write_series(out, &labels, s.value, timestamp_ms);
}

impl Emitter for RemoteWrite {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        for p in batch.payloads() {
            self.samples.clear();
            samples(self.naming, &self.prefix, &p, &mut self.samples);
            let ts = p.timestamp().saturating_mul(1000);
            for chunk in self.samples.chunks(self.max_series) {
                self.scratch.clear();
                for s in chunk {
                    encode_sample(&mut self.scratch, s, ts);
                }
                self.outbox.push(record(&self.scratch, chunk.len()), chunk.len() as u64);
            }
        }
        self.outbox.pump(&mut self.transport);
        Ok(())
    }

    fn idle(&mut self) {
        self.outbox.pump(&mut self.transport);
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        self.transport.deadline = Some(deadline);
        self.outbox.close(&mut self.transport, deadline);
        self.transport.deadline = None;
        Ok(())
    }
}

/// Sends records over HTTP, `max_series` series per request at most.
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    max_series: usize,
    timeout: Duration,
    deadline: Option<Instant>,
    /// Checksums of the leading records of the last batch that went through before a
    /// later request of the same batch failed: the outbox offers the same batch again, and
    /// those are not sent twice (a receiver answers 400 to a sample older than the newest).
    done: Vec<u32>,
    body: Vec<u8>,
    compressed: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl HttpTransport {
    pub fn new(s: &Settings) -> HttpTransport {
        let agent = crate::http_client::agent(s.timeout, None);
        HttpTransport {
            agent,
            url: s.url.clone(),
            max_series: s.max_series,
            timeout: s.timeout,
            deadline: None,
            done: Vec::new(),
            body: Vec::new(),
            compressed: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }

    /// POSTs `self.body` (a WriteRequest), snappy-compressed.
    fn post(&mut self) -> Result<(), SendError> {
        let timeout = match self.deadline {
            None => self.timeout,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(SendError::Retry("the shutdown deadline has passed".into()));
                }
                left.min(self.timeout)
            }
        };
        self.compressed.resize(snap::raw::max_compress_len(self.body.len()), 0);
        let n = self
            .encoder
            .compress(&self.body, &mut self.compressed)
            .map_err(|e| SendError::Retry(format!("snappy compression: {e}")))?;
        let req = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type("application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        match req.send(&self.compressed[..n]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let mut text = Vec::new();
                // A failure here only shortens the error text.
                let _ = resp.body_mut().as_reader().take(MAX_ERROR_TEXT).read_to_end(&mut text);
                let text = String::from_utf8_lossy(&text).trim().replace('\n', " ");
                let msg = format!("HTTP {status} from {}: {text}", self.url);
                if status == 429 || status >= 500 || (300..400).contains(&status) {
                    Err(SendError::Retry(msg))
                } else {
                    Err(SendError::Reject(msg))
                }
            }
            Err(e) => Err(SendError::Retry(format!("POST {}: {e}", self.url))),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let sums: Vec<u32> = records.iter().map(|r| crc32fast::hash(r)).collect();
        // Skip what went through in an earlier try of the same batch.
        let skip =
            if sums.len() >= self.done.len() && sums[..self.done.len()] == self.done[..] { self.done.len() } else { 0 };
        self.done.truncate(skip);
        let mut i = skip;
        while i < records.len() {
            self.body.clear();
            let (mut series, start) = (0usize, i);
            while i < records.len() {
                let (n, body) = record_series(records[i]);
                if i > start && series + n > self.max_series {
                    break;
                }
                series += n;
                self.body.extend_from_slice(body);
                i += 1;
            }
            match self.post() {
                Ok(()) => self.done.extend_from_slice(&sums[start..i]),
                Err(SendError::Reject(m)) if start > skip => {
                    // Earlier requests of this batch went through: the rejected ones are
                    // dropped with the batch, but say how many series that was.
                    self.done.clear();
                    return Err(SendError::Reject(format!("{m} (after {} records were accepted)", start - skip)));
                }
                Err(e @ SendError::Reject(_)) => {
                    self.done.clear();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.done.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_conf(&PluginConf::from_text("remote_write", Path::new("conf.d/remote_write.conf"), text))
    }

    #[test]
    fn defaults_and_the_shipped_conf() {
        let s = settings("{}").unwrap();
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.naming, Naming::NodeExporter);
        assert_eq!(s.max_series, 500);
        assert_eq!(s.timeout, Duration::from_secs(5));
        let file = badger_test_support::fixture::workspace_root().join("conf.d/remote_write.conf");
        let text = std::fs::read_to_string(&file).unwrap();
        let shipped = Settings::from_conf(&PluginConf::from_text("remote_write", &file, &text)).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{s:?}"));
        for key in ["interval", "blacklist", "timeout", "url", "naming", "prefix", "max_series"]
            .into_iter()
            .chain(OUTBOX_KEYS.iter().copied())
        {
            assert!(text.contains(key), "conf.d/remote_write.conf lacks {key}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (r#"{"url": "http://u:secret@h/api/v1/write"}"#, "url"),
            (r#"{"url": "h:9090"}"#, "url"),
            (r#"{"url": "http:///x"}"#, "url"),
            (r#"{"naming": "graphite"}"#, "naming"),
            (r#"{"prefix": "1x"}"#, "prefix"),
            (r#"{"max_series": 0}"#, "max_series"),
            (r#"{"max_series": 100001}"#, "max_series"),
            (r#"{"timeout": 0}"#, "timeout"),
            (r#"{"user": "u"}"#, "user"),
        ] {
            match settings(text) {
                Err(e) => {
                    assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
                    assert!(!e.to_string().contains("secret"), "{e}");
                }
                Ok(s) => panic!("{text}: expected an error, got {s:?}"),
            }
        }
    }

    #[test]
    fn labels_are_sorted_with_the_name() {
        let s = LabeledSample {
            family: "node_load1".into(),
            sample: "node_load1".into(),
            kind: badger_formats::prometheus::Kind::Gauge,
            help: "".into(),
            labels: vec![("hostname".into(), "h1".into()), ("cluster".into(), "c".into()), ("zone".into(), "".into())],
            value: 0.5,
        };
        let mut got = Vec::new();
        encode_sample(&mut got, &s, 2000);
        let mut want = Vec::new();
        proto::write_series(&mut want, &[("__name__", "node_load1"), ("cluster", "c"), ("hostname", "h1")], 0.5, 2000);
        assert_eq!(got, want);
    }
}
