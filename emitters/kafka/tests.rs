//! The emitter against librdkafka's in-process mock cluster: produce, consume back, compare.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;
use badger_api::matcher::Matcher;
use badger_api::plugin::Batch;
use badger_api::point::{HostMeta, Payload, Point, Value};

type Mock = MockCluster<'static, DefaultProducerContext>;

fn mock(topic: &str) -> Mock {
    let m = MockCluster::new(1).expect("mock cluster");
    m.create_topic(topic, 1, 1).expect("topic");
    m
}

fn conf_named(name: &str, text: &str) -> PluginConf {
    PluginConf::from_text(name, Path::new("/nonexistent/conf.d/kafka.conf"), text)
}

fn conf(text: &str) -> PluginConf {
    conf_named("kafka", text)
}

fn kafka(text: &str) -> Kafka {
    match Kafka::new(&conf(text)) {
        Ok(k) => k,
        Err(e) => panic!("build: {e}"),
    }
}

fn config_error(text: &str) -> ConfigError {
    match Kafka::new(&conf(text)) {
        Err(BuildError::Config(e)) => e,
        Err(BuildError::Unavailable(m)) => panic!("unavailable, not a config error: {m}"),
        Ok(_) => panic!("accepted: {text}"),
    }
}

fn meta(host: &str) -> Arc<HostMeta> {
    Arc::new(HostMeta {
        datacenter: "dc1".into(),
        cluster: "c1".into(),
        hostname: host.into(),
        ipv4: "10.0.0.1".into(),
        ..HostMeta::default()
    })
}

fn payload(host: &str, ts: i64) -> Arc<Payload> {
    Arc::new(Payload {
        meta: meta(host),
        timestamp: ts,
        points: vec![
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "total_entities", "", Value::Int(100)),
        ],
    })
}

fn emit(e: &mut dyn Emitter, payloads: &[Arc<Payload>]) {
    let none = Matcher::default();
    e.emit(&Batch::new(payloads, &none)).expect("emit");
}

struct Msg {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: Option<i64>,
}

/// Reads `n` messages from partition 0 of `topic`, from the beginning (fails after 15 s).
fn consume(bootstrap: &str, topic: &str, n: usize) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "badger-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(15);
    while got.len() < n {
        assert!(Instant::now() < until, "only {} of {n} messages arrived", got.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(Msg {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    got
}

fn text(m: &Msg) -> &str {
    std::str::from_utf8(&m.value).expect("utf-8 message")
}

fn stat(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Calls `idle` until the outbox is empty (fails after `within`).
fn drain(k: &mut Kafka, within: Duration) {
    let until = Instant::now() + within;
    while k.queued() > 0 {
        assert!(Instant::now() < until, "{} messages still queued", k.queued());
        k.idle();
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_messages_are_the_original_payload_keyed_by_hostname() {
    let m = mock("badger");
    let mut k = kafka(&format!(r#"{{"brokers": "{}"}}"#, m.bootstrap_servers()));
    assert_eq!(k.settings().topic, "badger");
    emit(&mut k, &[payload("h1", 1_700_000_000), payload("h1", 1_700_000_001)]);
    assert_eq!(k.queued(), 0, "both delivered in the emit");
    let got = consume(&m.bootstrap_servers(), "badger", 2);
    assert_eq!(got[0].key.as_deref(), Some(&b"h1"[..]));
    assert_eq!(got[0].timestamp, Some(1_700_000_000_000));
    assert_eq!(
        text(&got[0]),
        r#"{"cluster":"c1","datacenter":"dc1","hostname":"h1","ipv4":"10.0.0.1","ipv6":"","points":[{"load.one":{"units":"","value":0.5}},{"load.total_entities":{"units":"","value":100}}],"region":"","timestamp":1700000000,"zone":""}"#
    );
    assert!(text(&got[1]).contains(r#""timestamp":1700000001"#));
    let s = k.outbox_stats();
    assert_eq!((stat(&s.sent_records), stat(&s.sent_points)), (2, 4));
    assert_eq!(stat(&k.kafka_stats().delivered), 2);
}

#[test]
fn influx_and_graphite_messages_are_exact() {
    let m = mock("lines");
    let b = m.bootstrap_servers();
    let mut influx = kafka(&format!(r#"{{"brokers": "{b}", "topic": "lines", "format": "influx"}}"#));
    emit(&mut influx, &[payload("h1", 1_700_000_000)]);
    let mut graphite =
        kafka(&format!(r#"{{"brokers": ["{b}"], "topic": "lines", "format": "graphite", "prefix": "stats."}}"#));
    emit(&mut graphite, &[payload("h2", 1_700_000_000)]);
    let got = consume(&b, "lines", 2);
    assert_eq!(got[0].key.as_deref(), Some(&b"h1"[..]));
    assert_eq!(text(&got[0]), "load,cluster=c1,datacenter=dc1,host=h1 one=0.5,total_entities=100i 1700000000\n");
    assert_eq!(got[1].key.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        text(&got[1]),
        "stats.dc1.c1.h2.load.one 0.5 1700000000\nstats.dc1.c1.h2.load.total_entities 100 1700000000\n"
    );
}

#[test]
fn every_compression_and_acks_setting_delivers() {
    let m = mock("z");
    let b = m.bootstrap_servers();
    let settings = [
        r#""compression": "none""#,
        r#""compression": "gzip", "acks": 1"#,
        r#""compression": "snappy", "acks": "0""#,
        r#""compression": "lz4", "acks": -1"#,
        r#""compression": "zstd", "acks": "all""#,
        r#""codec": "speedy""#,
        r#""codec": "gzip""#,
    ];
    for (i, s) in settings.iter().enumerate() {
        let mut k = kafka(&format!(r#"{{"brokers": "{b}", "topic": "z", {s}}}"#));
        emit(&mut k, &[payload("h", i as i64)]);
        assert_eq!(k.queued(), 0, "{s}");
        assert_eq!(stat(&k.outbox_stats().sent_records), 1, "{s}");
    }
    let got = consume(&b, "z", settings.len());
    for (i, g) in got.iter().enumerate() {
        assert!(text(g).contains(&format!(r#""timestamp":{i},"#)), "{}: {}", settings[i], text(g));
    }
    assert_eq!(
        kafka(&format!(r#"{{"brokers": "{b}", "codec": "speedy"}}"#)).settings().compression,
        Compression::Snappy
    );
}

#[test]
fn the_original_kafka082_conf_works_unchanged() {
    let m = mock("stat-badger-3");
    // The original's conf.d/kafka082_emitter.conf, with its comments, pointed at the mock.
    let text = format!(
        r#"{{
    "interval": 0,
    "blacklist": [],
    "brokers": "{}",
    "topic": "stat-badger-3",
    "codec": "gzip" // none, gzip, speedy
}}"#,
        m.bootstrap_servers()
    );
    let spec =
        crate::REGISTRY.iter().find(|s| s.aliases.contains(&"kafka082_emitter")).expect("the alias is registered");
    assert_eq!(spec.name, "kafka");
    let c = conf_named("kafka082_emitter", &text);
    let mut e = match (spec.build)(&EmitterContext::default(), &c) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    emit(e.as_mut(), &[payload("oldhost", 1_700_000_000)]);
    let got = consume(&m.bootstrap_servers(), "stat-badger-3", 1);
    assert_eq!(got[0].key.as_deref(), Some(&b"oldhost"[..]));
    let v: serde_json::Value = serde_json::from_slice(&got[0].value).expect("JSON");
    assert_eq!(v["hostname"], "oldhost");
    assert_eq!(v["points"][0]["load.one"]["value"], 0.5);
}

#[test]
fn a_broker_outage_keeps_messages_and_delivers_them_in_order_once_it_is_back() {
    let m = mock("badger");
    let b = m.bootstrap_servers();
    let mut k =
        kafka(&format!(r#"{{"brokers": "{b}", "timeout": "500ms", "retry_initial": "100ms", "retry_max": "200ms"}}"#));
    emit(&mut k, &[payload("h", 1)]);
    assert_eq!(k.queued(), 0);

    m.broker_down(-1).expect("down");
    emit(&mut k, &[payload("h", 2)]);
    emit(&mut k, &[payload("h", 3)]);
    assert_eq!(k.queued(), 2, "kept while the broker is down");
    let s = k.outbox_stats();
    assert!(stat(&s.retries) >= 1, "the failure is counted");
    assert!(stat(&k.kafka_stats().failed) >= 1);
    assert_eq!(stat(&s.dropped_records), 0);

    m.broker_up(-1).expect("up");
    drain(&mut k, Duration::from_secs(20));
    let got = consume(&b, "badger", 3);
    let mut ts: Vec<i64> = got.iter().map(|g| g.timestamp.unwrap_or(0) / 1000).collect();
    // At least once: a message may come twice, but the first copies are in order.
    ts.dedup();
    assert_eq!(&ts[..3], [1, 2, 3]);
    assert_eq!(stat(&s.sent_records), 3);
}

#[test]
fn a_closed_port_counts_failures_and_loses_nothing_silently() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut k = kafka(&format!(r#"{{"brokers": "127.0.0.1:{port}", "timeout": "300ms"}}"#));
    emit(&mut k, &[payload("h", 1), payload("h", 2)]);
    assert_eq!(k.queued(), 2);
    let (s, ks) = (k.outbox_stats(), k.kafka_stats());
    assert_eq!(stat(&s.retries), 1);
    assert_eq!(stat(&ks.failed), 2, "both messages of the batch counted as failed");
    // Without a spool, what is left at shutdown is counted as lost (and logged).
    k.flush(Instant::now() + Duration::from_millis(300)).expect("flush");
    assert_eq!((stat(&s.dropped_records), stat(&s.dropped_points)), (2, 4));
}

#[test]
fn the_spool_keeps_an_outage_across_a_restart() {
    let m = mock("badger");
    let b = m.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(r#"{{"brokers": "{b}", "timeout": "300ms", "spool_dir": "{}"}}"#, dir.path().display());
    m.broker_down(-1).expect("down");
    {
        let mut k = kafka(&text);
        emit(&mut k, &[payload("h", 10), payload("h", 11)]);
        k.flush(Instant::now() + Duration::from_millis(500)).expect("flush");
        assert_eq!(stat(&k.outbox_stats().dropped_records), 0, "spooled, not lost");
    }
    m.broker_up(-1).expect("up");
    let mut k = kafka(&text);
    assert_eq!(k.queued(), 2, "the spool's messages are waiting");
    drain(&mut k, Duration::from_secs(20));
    let got = consume(&b, "badger", 2);
    assert_eq!(got.iter().map(|g| g.timestamp).collect::<Vec<_>>(), [Some(10_000), Some(11_000)]);
}

#[test]
fn a_message_kafka_refuses_is_dropped_and_counted_and_the_next_one_goes() {
    let m = mock("badger");
    let b = m.bootstrap_servers();
    let mut k = kafka(&format!(r#"{{"brokers": "{b}", "properties": {{"message.max.bytes": 1000}}}}"#));
    let big = Arc::new(Payload {
        meta: meta("h"),
        timestamp: 1,
        points: (0..100)
            .map(|i| Point::device("disk", "reads", "", "device", &format!("sd{i}"), Value::Int(i)))
            .collect(),
    });
    emit(&mut k, &[big]);
    let s = k.outbox_stats();
    assert_eq!((stat(&s.rejected_records), stat(&s.rejected_points)), (1, 100));
    assert_eq!(stat(&s.retries), 0, "refused for good, not retried");
    emit(&mut k, &[payload("h", 2)]);
    assert_eq!(stat(&s.sent_records), 1);
    let got = consume(&b, "badger", 1);
    assert_eq!(got[0].timestamp, Some(2000));
}

#[test]
fn blacklisted_payloads_send_nothing() {
    let m = mock("badger");
    let mut k = kafka(&format!(r#"{{"brokers": "{}"}}"#, m.bootstrap_servers()));
    let all = Matcher::from_static(&["load.*"]);
    k.emit(&Batch::new(&[payload("h", 1)], &all)).expect("emit");
    assert_eq!(stat(&k.outbox_stats().sent_records), 0);
}

#[test]
fn settings_defaults_and_forms() {
    let k = kafka("{}");
    let s = k.settings();
    assert_eq!(s.brokers, "127.0.0.1:9092");
    assert_eq!(
        (s.topic.as_str(), s.format, s.compression, s.acks),
        ("badger", Format::Json, Compression::None, Acks::All)
    );
    assert_eq!(s.timeout, Duration::from_secs(10));
    let s = Settings::from_conf(&conf(
        r#"{"brokers": ["a:1", " b:2 "], "timeout": "1.5s", "format": "graphite", "prefix": ".x y.",
            "properties": {"linger.ms": 50, "enable.idempotence": true, "client.id": "me"}}"#,
    ))
    .expect("settings");
    assert_eq!(s.brokers, "a:1,b:2");
    assert_eq!(s.timeout, Duration::from_millis(1500));
    assert_eq!(s.prefix, "x_y");
    assert_eq!(
        s.properties,
        [
            ("client.id".into(), "me".into()),
            ("enable.idempotence".into(), "true".into()),
            ("linger.ms".into(), "50".into())
        ]
    );
    assert_eq!(Settings::from_conf(&conf(r#"{"brokers": "a:1, b:2", "timeout": 3}"#)).expect("ok").brokers, "a:1,b:2");
}

#[test]
fn config_errors_name_the_key() {
    let key = |text: &str| {
        let e = config_error(text);
        (e.key.unwrap_or_default(), e.message)
    };
    let (k, m) = key(r#"{"compression": "brotli"}"#);
    assert_eq!(k, "compression");
    assert!(m.contains("unknown compression \"brotli\""), "{m}");
    assert_eq!(key(r#"{"codec": "rar"}"#).0, "codec");
    assert_eq!(key(r#"{"acks": 2}"#).0, "acks");
    assert_eq!(key(r#"{"format": "xml"}"#).0, "format");
    assert_eq!(key(r#"{"topic": "a b"}"#).0, "topic");
    assert_eq!(key(r#"{"topic": ""}"#).0, "topic");
    assert_eq!(key(r#"{"brokers": ""}"#).0, "brokers");
    assert_eq!(key(r#"{"brokers": "a:1,,b:2"}"#).0, "brokers");
    assert_eq!(key(r#"{"brokers": 9092}"#).0, "brokers");
    assert_eq!(key(r#"{"prefix": "p"}"#).0, "prefix");
    assert_eq!(key(r#"{"timeout": "10m"}"#).0, "timeout");
    assert_eq!(key(r#"{"timeout": 0}"#).0, "timeout");
    assert_eq!(key(r#"{"hosts": "x"}"#).0, "hosts");
    let (k, m) = key(r#"{"properties": {"bootstrap.servers": "x:1"}}"#);
    assert_eq!(k, "properties");
    assert!(m.contains("\"brokers\""), "{m}");
    assert_eq!(key(r#"{"properties": {"delivery.report.only.error": true}}"#).0, "properties");
    assert_eq!(key(r#"{"properties": {"x": [1]}}"#).0, "properties.x");
    let (k, m) = key("{\n\"properties\": {\"no.such.property\": 1}}");
    assert_eq!(k, "properties");
    assert!(m.contains("no.such.property"), "{m}");
    assert_eq!(config_error("{\n\"properties\": {\"no.such.property\": 1}}").line, Some(2));
    assert_eq!(key(r#"{"properties": {"linger.ms": "soon"}}"#).0, "properties");
    assert_eq!(key(r#"{"buffer_bytes": 10}"#).0, "buffer_bytes");
}

#[test]
fn the_shipped_conf_file_holds_the_defaults() {
    let path = badger_test_support::fixture::workspace_root().join("conf.d/kafka.conf");
    let text = std::fs::read_to_string(&path).expect("conf.d/kafka.conf");
    let shipped = PluginConf::from_text("kafka", &path, &text);
    let empty = conf("{}");
    assert_eq!(Settings::from_conf(&shipped).expect("settings"), Settings::from_conf(&empty).expect("defaults"));
    assert_eq!(OutboxConfig::from_conf(&shipped).expect("outbox"), OutboxConfig::default());
    let keys: serde_json::Value = serde_json::from_str(&shipped.text).expect("JSON");
    let doc = include_str!("mod.rs");
    for key in keys.as_object().expect("an object").keys().filter(|k| !OUTBOX_KEYS.contains(&k.as_str())) {
        assert!(doc.contains(&format!("//! | `{key}` |")), "{key} is in the doc table");
    }
    for key in OUTBOX_KEYS {
        assert!(keys.get(key).is_some(), "{key} is in conf.d/kafka.conf");
    }
}
