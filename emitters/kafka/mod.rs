//! `kafka`: each payload as one message on a Kafka topic: JSON, InfluxDB line protocol or Graphite plaintext.
//!
//! librdkafka is built in (no system library needed). `kafka082_emitter` is the same emitter
//! under the original's name: its conf.d file (`brokers`, `topic`, `codec`, `interval`,
//! `blacklist`) works unchanged.
//!
//! Every message has the payload's hostname as its key (so one host's messages stay in one
//! partition, in order) and the tick time as its timestamp. The message value is in one of
//! three formats (`format`), shown here for a payload of `load.one` = 0.5 and
//! `load.total_entities` = 100 from host `h1` in datacenter `dc1`, cluster `c1`, at
//! 1700000000:
//!
//! * `json` (the default; the original's payload, keys sorted, compact):
//!   ```text
//!   {"cluster":"c1","datacenter":"dc1","hostname":"h1","ipv4":"10.0.0.1","ipv6":"","points":[{"load.one":{"units":"","value":0.5}},{"load.total_entities":{"units":"","value":100}}],"region":"","timestamp":1700000000,"zone":""}
//!   ```
//! * `influx` (InfluxDB line protocol, **timestamps in seconds**: a consumer must write
//!   with precision `s`; host metadata that is not empty becomes tags, `hostname` as
//!   `host`; points of one measurement and tags share a line; ints carry `i`):
//!   ```text
//!   load,cluster=c1,datacenter=dc1,host=h1 one=0.5,total_entities=100i 1700000000
//!   ```
//! * `graphite` (plaintext protocol; path = `[prefix.]datacenter.region.zone.cluster.hostname.<stat>`
//!   with empty parts left out and every character outside `[A-Za-z0-9_.-]` replaced by `_`):
//!   ```text
//!   dc1.c1.h1.load.one 0.5 1700000000
//!   dc1.c1.h1.load.total_entities 100 1700000000
//!   ```
//!
//! Every line of `influx` and `graphite` ends with a newline.
//!
//! # Delivery
//! Messages go through the emitter's [outbox](badger_outbox): a bounded buffer (and an
//! optional disk spool) that keeps them, in order, while Kafka cannot take them. One send
//! produces a batch of messages and waits, at most `timeout` (less when librdkafka reports
//! every broker down meanwhile), for librdkafka's delivery report of each: all delivered, and
//! the batch is done; any failed or missing, and whatever librdkafka still holds of the batch
//! is purged and the whole batch is sent again after the outbox's backoff. Delivery is therefore **at least once**: a message the broker
//! had written but not yet acknowledged when the send failed or timed out is written again.
//! A message Kafka will never take (larger than `message.max.bytes`, an invalid record) is
//! dropped and counted as rejected. Failures are counted and logged, at most one line a
//! minute of each kind; librdkafka's own complaints (e.g. "1/1 brokers are down") likewise.
//! librdkafka itself holds at most one batch (`queue.buffering.max.kbytes` is set from
//! `max_batch_bytes`; `message.timeout.ms` from `timeout`), so memory stays bounded by
//! `buffer_bytes`; it sends one request at a time per broker
//! (`max.in.flight.requests.per.connection` = 1), so its own retries keep the order.
//!
//! The topic is not created: create it first, unless the brokers create topics on first use.
//! TLS and SASL are not built in.
//!
//! # Config keys
//! | key | default | meaning |
//! |---|---|---|
//! | `brokers` | `"127.0.0.1:9092"` | bootstrap brokers, `host:port`: a comma-separated string (`"k1:9092,k2:9092"`) or an array of strings |
//! | `topic` | `"badger"` | topic the messages go to (letters, digits, `.`, `_`, `-`; at most 249) |
//! | `format` | `"json"` | message format: `"json"`, `"influx"` or `"graphite"` (see above) |
//! | `prefix` | `""` | `graphite` only: the first part of every path |
//! | `compression` | `"none"` | `"none"`, `"gzip"`, `"snappy"`, `"lz4"` or `"zstd"`; `codec` is read the same (the original's key; its `"speedy"` means snappy) |
//! | `acks` | `"all"` | acknowledgements a message needs: `"all"` (or `-1`: every in-sync replica), `1` (the leader), `0` (none: a message the broker loses goes unnoticed) |
//! | `timeout` | `10` | seconds (or `"500ms"`, `"1m"`) one send waits for its delivery reports (less once librdkafka finds every broker down); also librdkafka's `message.timeout.ms`; at most 300. A send under way at shutdown is not cut short, while badger waits 4.5 s at most |
//! | `properties` | `{}` | more librdkafka producer properties, e.g. `{"linger.ms": 50, "enable.idempotence": true, "message.max.bytes": 2000000}`; values are strings, numbers or booleans; the properties of the keys above cannot be set here |
//! | `interval` | `0` | seconds between sends; every payload since the last send is sent |
//! | `blacklist` | `[]` | stats left out of this emitter's messages (names or globs) |
//! | *buffering* | | the outbox keys every network emitter shares (`buffer_bytes`, `when_full`, `retry_initial`, `retry_max`, `max_batch_bytes`, `send_budget`, `spool_dir`, `spool_max_bytes`): see the buffering table below |

mod encode;
mod libm;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::ClientContext;
use serde::Deserialize;

pub use encode::{Format, Record};

use badger_api::duration::Seconds;
use badger_api::plugin::{Batch, BuildError, ConfigError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_api::throttle::LogThrottle;
use badger_outbox::{Outbox, OutboxConfig, OutboxStats, SendError, Transport, OUTBOX_KEYS};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "kafka",
    aliases: &["kafka082_emitter"],
    summary: "one message per payload on a Kafka topic: JSON, InfluxDB line protocol or Graphite plaintext",
    build,
    counters: false,
};

const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_TOPIC: &str = "badger";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// While waiting for delivery reports: the first pause between looks, and the longest.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);
/// Events (reports, logs, errors) taken from librdkafka's queue in one go at most.
const SERVE_MAX: usize = 256;

/// librdkafka properties that a key of this emitter sets: (property, key).
const OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("compression.codec", "compression"),
    ("compression.type", "compression"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
];

/// librdkafka properties that would break delivery tracking.
const FORBIDDEN_PROPERTIES: &[(&str, &str)] = &[
    ("delivery.report.only.error", "delivery is confirmed by the success reports"),
    ("transactional.id", "transactions are not supported"),
];

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let k = Kafka::new(conf)?;
    let stats: Arc<dyn badger_api::telemetry::Source> = k.outbox_stats();
    ctx.telemetry.publish(badger_api::telemetry::Group::Outbox, &conf.name, &stats);
    Ok(Box::new(k))
}

// ---- config ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    brokers: Option<Brokers>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default, alias = "codec")]
    compression: Compression,
    #[serde(default)]
    acks: Acks,
    #[serde(default)]
    format: FormatKey,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    properties: BTreeMap<String, PropertyValue>,
}

/// The keys read apart from [`Config`]: `timeout` is one of the core's common keys, hidden from
/// the plugin's own struct.
#[derive(Deserialize, Default)]
struct Shared {
    #[serde(default)]
    timeout: Option<Seconds>,
}

/// `"a:1,b:2"` or `["a:1", "b:2"]`.
struct Brokers(Vec<String>);

impl<'de> Deserialize<'de> for Brokers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(Brokers(s.split(',').map(|b| b.trim().to_string()).collect())),
            Ok(Raw::Many(v)) => Ok(Brokers(v.into_iter().map(|b| b.trim().to_string()).collect())),
            Err(_) => Err(serde::de::Error::custom(
                "expected a comma-separated string like \"k1:9092,k2:9092\" or an array of strings",
            )),
        }
    }
}

/// Compression of message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's name (`compression.codec`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl TryFrom<String> for Compression {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            // The original's name for snappy.
            "snappy" | "speedy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(format!("unknown compression \"{s}\": use \"none\", \"gzip\", \"snappy\", \"lz4\" or \"zstd\"")),
        }
    }
}

/// Acknowledgements a message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Acks {
    /// Every in-sync replica (`-1`).
    #[default]
    All,
    Leader,
    None,
}

impl Acks {
    /// librdkafka's value (`acks`).
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

impl TryFrom<serde_json::Value> for Acks {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let text = match &v {
            serde_json::Value::String(s) => s.trim().to_ascii_lowercase(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match text.as_str() {
            "all" | "-1" => Ok(Acks::All),
            "1" => Ok(Acks::Leader),
            "0" => Ok(Acks::None),
            _ => Err(format!("acks {v} is not one of \"all\" (or -1), 1, 0")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatKey {
    #[default]
    Json,
    Influx,
    Graphite,
}

/// A librdkafka property value: a string, a number or a boolean.
struct PropertyValue(String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(PropertyValue(s)),
            serde_json::Value::Number(n) => Ok(PropertyValue(n.to_string())),
            serde_json::Value::Bool(b) => Ok(PropertyValue(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not a property value: use a string, a number or a boolean"
            ))),
        }
    }
}

/// The emitter's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    pub format: Format,
    pub prefix: String,
    pub compression: Compression,
    pub acks: Acks,
    pub timeout: Duration,
    /// Extra librdkafka properties, in key order.
    pub properties: Vec<(String, String)>,
}

impl Settings {
    /// Reads and checks the emitter's own keys; every error names its key.
    pub fn from_conf(conf: &PluginConf) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse_except(OUTBOX_KEYS)?;
        let shared: Shared = conf.parse_shared()?;

        let brokers = match c.brokers {
            None => DEFAULT_BROKERS.to_string(),
            Some(Brokers(list)) => {
                if list.is_empty() || list.iter().any(String::is_empty) {
                    return Err(conf.error("brokers", "empty broker: list them as \"host:port,host:port\""));
                }
                if let Some(bad) = list.iter().find(|b| b.contains(char::is_whitespace)) {
                    return Err(conf.error("brokers", format!("\"{bad}\" is not a broker address (host:port)")));
                }
                list.join(",")
            }
        };

        let topic = c.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_string());
        if topic.is_empty()
            || topic.len() > 249
            || topic == "."
            || topic == ".."
            || !topic.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        {
            return Err(conf.error(
                "topic",
                format!("\"{topic}\" is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'"),
            ));
        }

        let format = match c.format {
            FormatKey::Json => Format::Json,
            FormatKey::Influx => Format::Influx,
            FormatKey::Graphite => Format::Graphite,
        };
        if !c.prefix.is_empty() && format != Format::Graphite {
            return Err(conf.error("prefix", "only used with \"format\": \"graphite\""));
        }
        let prefix = badger_formats::graphite::clean_prefix(&c.prefix);

        let timeout = shared.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT);
        if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
            return Err(conf.error("timeout", format!("{timeout:?}: must be at least 1ms and at most 300s")));
        }

        let mut properties = Vec::with_capacity(c.properties.len());
        for (k, PropertyValue(v)) in c.properties {
            if let Some((_, key)) = OWN_PROPERTIES.iter().find(|(p, _)| *p == k) {
                return Err(conf.error("properties", format!("\"{k}\" is set with the \"{key}\" key")));
            }
            if let Some((_, why)) = FORBIDDEN_PROPERTIES.iter().find(|(p, _)| *p == k) {
                return Err(conf.error("properties", format!("\"{k}\" cannot be set: {why}")));
            }
            properties.push((k, v));
        }

        Ok(Settings { brokers, topic, format, prefix, compression: c.compression, acks: c.acks, timeout, properties })
    }

    /// The librdkafka producer config: ours first, then `properties` (which may override
    /// `client.id`, `max.in.flight.requests.per.connection`, `message.timeout.ms` and
    /// `queue.buffering.max.kbytes`).
    fn client_config(&self, max_batch_bytes: u64) -> ClientConfig {
        let mut cc = ClientConfig::new();
        let timeout_ms = self.timeout.as_millis().clamp(1, i32::MAX as u128);
        // Room for one batch (a bigger message goes alone, up to message.max.bytes ≈ 1 MB).
        let queue_kib = max_batch_bytes.max(1 << 20).saturating_mul(2) / 1024;
        cc.set("bootstrap.servers", &self.brokers)
            .set("client.id", "badger")
            .set("compression.codec", self.compression.as_str())
            .set("acks", self.acks.as_str())
            // One request at a time per broker: librdkafka's own retries keep the order.
            .set("max.in.flight.requests.per.connection", "1")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("queue.buffering.max.kbytes", queue_kib.min(i32::MAX as u64).to_string());
        for (k, v) in &self.properties {
            cc.set(k, v);
        }
        cc
    }
}

// ---- the emitter ----------------------------------------------------------------------------

/// Counters of the Kafka side, next to the outbox's [`OutboxStats`].
#[derive(Debug, Default)]
pub struct KafkaStats {
    /// Messages with a successful delivery report.
    pub delivered: AtomicU64,
    /// Messages whose delivery failed or had no report in time (their batch is sent again).
    pub failed: AtomicU64,
    /// Messages Kafka will never take (too large, invalid), dropped.
    pub rejected: AtomicU64,
    /// Error reports librdkafka made on its own (e.g. "all brokers are down"; rdkafka 0.39
    /// hands each to the context twice, so each counts twice).
    pub client_errors: AtomicU64,
}

/// The `kafka` emitter.
pub struct Kafka {
    settings: Settings,
    buf: String,
    outbox: Outbox,
    transport: KafkaTransport,
}

impl Kafka {
    /// Builds the emitter: checks the config, opens the outbox (and its spool) and creates
    /// the producer. Nothing is sent yet; the brokers need not be up.
    pub fn new(conf: &PluginConf) -> Result<Kafka, BuildError> {
        let settings = Settings::from_conf(conf)?;
        let outbox_cfg = OutboxConfig::from_conf(conf)?;
        let stats = Arc::new(KafkaStats::default());
        let ctx = DeliveryContext::new(&conf.name, stats.clone());
        let cc = settings.client_config(outbox_cfg.max_batch_bytes);
        let producer = BaseProducer::from_config_and_context(&cc, ctx)
            .map_err(|e| BuildError::Config(producer_error(conf, &settings, e)))?;
        let outbox = Outbox::new(&conf.name, &outbox_cfg)?;
        let transport = KafkaTransport {
            producer,
            topic: settings.topic.clone(),
            timeout: settings.timeout,
            deadline: None,
            next_seq: 0,
            stats,
            reject_log: LogThrottle::default(),
        };
        Ok(Kafka { settings, buf: String::new(), outbox, transport })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn outbox_stats(&self) -> Arc<OutboxStats> {
        self.outbox.stats()
    }

    pub fn kafka_stats(&self) -> Arc<KafkaStats> {
        self.transport.stats.clone()
    }

    /// Messages waiting in the outbox.
    pub fn queued(&self) -> u64 {
        self.outbox.len()
    }
}

/// Turns a producer creation error into a config error naming the key behind it.
fn producer_error(conf: &PluginConf, s: &Settings, e: KafkaError) -> ConfigError {
    match e {
        KafkaError::ClientConfig(_, desc, prop, value) => {
            let key = if s.properties.iter().any(|(k, _)| *k == prop) {
                "properties"
            } else {
                match prop.as_str() {
                    "bootstrap.servers" => "brokers",
                    "compression.codec" => "compression",
                    "acks" => "acks",
                    "message.timeout.ms" => "timeout",
                    _ => "properties",
                }
            };
            conf.error(key, format!("librdkafka refuses {prop} = \"{value}\": {desc}"))
        }
        KafkaError::ClientCreation(msg) => {
            let key = if s.properties.is_empty() { None } else { Some("properties".to_string()) };
            let line = key.as_deref().and_then(|k| conf.line_of(k));
            ConfigError::new(&conf.file, line, key, format!("librdkafka cannot create the producer: {msg}"))
        }
        other => ConfigError::new(&conf.file, None, None, format!("cannot create the Kafka producer: {other}")),
    }
}

impl Emitter for Kafka {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        self.transport.serve();
        for p in batch.payloads() {
            self.buf.clear();
            encode::write_message(&mut self.buf, self.settings.format, &self.settings.prefix, &p);
            if self.buf.is_empty() {
                continue;
            }
            let record = Record {
                timestamp_ms: p.timestamp().saturating_mul(1000),
                key: p.meta().hostname.as_bytes(),
                value: self.buf.as_bytes(),
            };
            self.outbox.push(record.encode(), p.points().count() as u64);
        }
        self.transport.deadline = None;
        // The outbox logs and counts failures and drops itself.
        self.outbox.pump(&mut self.transport);
        Ok(())
    }

    fn idle(&mut self) {
        self.transport.serve();
        self.transport.deadline = None;
        self.outbox.pump(&mut self.transport);
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        self.transport.serve();
        self.transport.deadline = Some(deadline);
        self.outbox.close(&mut self.transport, deadline);
        Ok(())
    }
}

// ---- the transport --------------------------------------------------------------------------

/// Produces through a [`BaseProducer`] polled on the emitter's own thread: librdkafka's
/// queue of reports, logs and errors is served while a send waits and on every `emit`,
/// `idle` and `flush` (rdkafka's `ThreadedProducer` would add a thread that wakes ten times
/// a second and spins through the last millisecond of each wait).
struct KafkaTransport {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    timeout: Duration,
    /// At shutdown: no send waits past this.
    deadline: Option<Instant>,
    /// The delivery opaque of the next message; reports of earlier sends are told apart by it.
    next_seq: usize,
    stats: Arc<KafkaStats>,
    reject_log: LogThrottle,
}

impl Transport for KafkaTransport {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let started = Instant::now();
        let mut until = started + self.timeout;
        if let Some(d) = self.deadline {
            until = until.min(d);
        }
        let ctx = self.producer.context().clone();
        let first = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(records.len());
        ctx.begin(first, records.len());
        for (i, data) in records.iter().enumerate() {
            let seq = first.wrapping_add(i);
            let Some(rec) = Record::decode(data) else {
                ctx.settle(seq, Outcome::Failed { why: "not a record this badger wrote".into(), permanent: true });
                continue;
            };
            let mut msg = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, seq)
                .payload(rec.value)
                .timestamp(rec.timestamp_ms);
            if !rec.key.is_empty() {
                msg = msg.key(rec.key);
            }
            if let Err((e, _)) = self.producer.send(msg) {
                ctx.settle(seq, Outcome::failed(&e));
            }
        }
        let complete = self.wait(&ctx, until);
        // Counted before a purge, whose reports of this batch are then ignored.
        let tally = ctx.finish();
        if !complete {
            // Take back what librdkafka still holds of this batch: it is sent again as a
            // whole, so nothing of it may go out later on its own.
            self.producer.purge(PurgeConfig::default().queue().inflight());
        }
        add(&self.stats.delivered, tally.delivered);
        add(&self.stats.failed, tally.failed + tally.missing);
        let n = records.len() as u64;
        if tally.delivered == n {
            return Ok(());
        }
        let waited = started.elapsed().as_secs_f64();
        if tally.failed > 0 || tally.missing > 0 {
            let mut msg = format!("topic \"{}\": ", self.topic);
            if tally.missing > 0 {
                let why = if ctx.brokers_down() { "all brokers are down" } else { "no delivery report" };
                msg.push_str(&format!("{} of {n} messages not delivered ({why}) after {waited:.1}s", tally.missing));
                if tally.failed > 0 {
                    msg.push_str(&format!(", {} failed: {}", tally.failed, tally.first_failure));
                }
            } else {
                msg.push_str(&format!("{} of {n} messages failed: {}", tally.failed, tally.first_failure));
            }
            if let Some(last) = ctx.last_complaint_since(started) {
                msg.push_str(&format!(" (librdkafka: {last})"));
            }
            return Err(SendError::Retry(msg));
        }
        // Only messages Kafka will never take failed.
        let msg =
            format!("topic \"{}\": {} of {n} messages refused: {}", self.topic, tally.rejected, tally.first_rejection);
        if tally.delivered == 0 {
            return Err(SendError::Reject(msg));
        }
        add(&self.stats.rejected, tally.rejected);
        if let Some(more) = self.reject_log.allow_at(Instant::now()) {
            log::error!(
                "emitter \"{}\": {msg}; they are dropped ({more} more such lines left out since the last one)",
                ctx.name
            );
        }
        Ok(())
    }
}

impl KafkaTransport {
    /// Takes what librdkafka has queued (delivery reports, logs, errors) without waiting.
    fn serve(&self) {
        let ctx = self.producer.context();
        for _ in 0..SERVE_MAX {
            // One event per call; an empty queue returns at once and calls back nothing.
            let before = ctx.callbacks.load(Ordering::Relaxed);
            self.producer.poll(Duration::ZERO);
            if ctx.callbacks.load(Ordering::Relaxed) == before {
                break;
            }
        }
    }

    /// Waits until every message of the send has an outcome (true), or until `until` or
    /// librdkafka reports every broker down (false); looks more and more seldom, 20 ms apart
    /// at most.
    fn wait(&self, ctx: &DeliveryContext, until: Instant) -> bool {
        let mut pause = POLL_FIRST;
        loop {
            self.serve();
            match ctx.state() {
                (0, _) => return true,
                (_, true) => return false,
                _ => {}
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep(pause.min(until - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What became of one message.
#[derive(Debug, Clone)]
enum Outcome {
    Delivered,
    Failed { why: String, permanent: bool },
}

impl Outcome {
    fn failed(e: &KafkaError) -> Outcome {
        let permanent = matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::BadMessage
            )
        );
        let why = match e.rdkafka_error_code() {
            Some(code) => code.to_string(),
            None => e.to_string(),
        };
        Outcome::Failed { why, permanent }
    }
}

/// The outcomes of the send under way.
#[derive(Default)]
struct Pending {
    first: usize,
    outcomes: Vec<Option<Outcome>>,
    missing: usize,
    /// librdkafka said all brokers are down while this send waited: no point waiting on.
    brokers_down: bool,
}

#[derive(Default)]
struct Tally {
    delivered: u64,
    /// Failed, worth another try.
    failed: u64,
    /// Failed for good.
    rejected: u64,
    /// No report in time.
    missing: u64,
    first_failure: String,
    first_rejection: String,
}

#[derive(Default)]
struct Complaints {
    limit: LogThrottle,
    last: Option<(Instant, String)>,
}

/// The producer's context: collects delivery reports for the send that waits on them, and
/// rate-limits librdkafka's logs and errors. (Its callbacks run on the emitter's thread,
/// in `poll`; librdkafka requires it to be `Sync` all the same.)
struct DeliveryContext {
    name: String,
    /// Calls librdkafka made to this context (to tell when its queue is served).
    callbacks: AtomicU64,
    pending: Mutex<Pending>,
    complaints: Mutex<Complaints>,
    stats: Arc<KafkaStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DeliveryContext {
    fn new(name: &str, stats: Arc<KafkaStats>) -> DeliveryContext {
        DeliveryContext {
            name: name.to_string(),
            callbacks: AtomicU64::new(0),
            pending: Mutex::default(),
            complaints: Mutex::default(),
            stats,
        }
    }

    /// Starts waiting for `n` messages numbered from `first`.
    fn begin(&self, first: usize, n: usize) {
        let mut p = lock(&self.pending);
        p.first = first;
        p.outcomes.clear();
        p.outcomes.resize(n, None);
        p.missing = n;
        p.brokers_down = false;
    }

    /// Records a message's outcome; reports of earlier sends are ignored.
    fn settle(&self, seq: usize, outcome: Outcome) {
        let mut p = lock(&self.pending);
        let i = seq.wrapping_sub(p.first);
        if let Some(slot @ None) = p.outcomes.get_mut(i) {
            *slot = Some(outcome);
            p.missing -= 1;
        }
    }

    /// Messages of the send still without an outcome, and whether all brokers are down.
    fn state(&self) -> (usize, bool) {
        let p = lock(&self.pending);
        (p.missing, p.brokers_down)
    }

    /// Ends the send: counts the outcomes and forgets them.
    fn finish(&self) -> Tally {
        let mut p = lock(&self.pending);
        let mut t = Tally::default();
        for o in p.outcomes.drain(..) {
            match o {
                None => t.missing += 1,
                Some(Outcome::Delivered) => t.delivered += 1,
                Some(Outcome::Failed { why, permanent: false }) => {
                    if t.failed == 0 {
                        t.first_failure = why;
                    }
                    t.failed += 1;
                }
                Some(Outcome::Failed { why, permanent: true }) => {
                    if t.rejected == 0 {
                        t.first_rejection = why;
                    }
                    t.rejected += 1;
                }
            }
        }
        p.missing = 0;
        t
    }

    /// True when librdkafka said all brokers are down during the last send.
    fn brokers_down(&self) -> bool {
        lock(&self.pending).brokers_down
    }

    fn complain(&self, what: fmt::Arguments<'_>) {
        let now = Instant::now();
        let text = what.to_string();
        let mut c = lock(&self.complaints);
        if let Some(more) = c.limit.allow_at(now) {
            log::warn!(
                "emitter \"{}\": librdkafka: {text} ({more} more librdkafka complaints since the last line)",
                self.name
            );
        }
        c.last = Some((now, text));
    }

    /// librdkafka's last complaint, when it came after `since`.
    fn last_complaint_since(&self, since: Instant) -> Option<String> {
        let c = lock(&self.complaints);
        c.last.as_ref().filter(|(t, _)| *t >= since).map(|(_, s)| s.clone())
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        add(&self.callbacks, 1);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self.complain(format_args!("{fac}: {log_message}")),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                log::debug!("emitter \"{}\": librdkafka: {fac}: {log_message}", self.name)
            }
            RDKafkaLogLevel::Debug => log::trace!("emitter \"{}\": librdkafka: {fac}: {log_message}", self.name),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        add(&self.callbacks, 1);
        add(&self.stats.client_errors, 1);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            let mut p = lock(&self.pending);
            if p.missing > 0 {
                p.brokers_down = true;
            }
        }
        match error.rdkafka_error_code() {
            Some(code) => self.complain(format_args!("{reason} ({code:?})")),
            None => self.complain(format_args!("{reason} ({error})")),
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        add(&self.callbacks, 1);
        let outcome = match result {
            Ok(_) => Outcome::Delivered,
            Err((e, _)) => Outcome::failed(e),
        };
        self.settle(seq, outcome);
    }
}
