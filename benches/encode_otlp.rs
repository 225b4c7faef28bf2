//! Encoding speed of the `otlp` emitter's payloads (`ExportMetricsServiceRequest`,
//! protobuf), in points per second, under both namings: on one real tick (the cpu with
//! `per_core`, load, memory, disk, network and system modules on the `vm-6.18` fixture
//! tree, second collection: rates and counters) and on 1,000 such payloads.
//!
//! `cargo bench --bench encode_otlp`

use std::sync::Arc;

use badger_api::matcher::Matcher;
use badger_api::plugin::Batch;
use badger_api::point::{HostMeta, Payload};
use badger_formats::otlp::{Encoder, Naming};
use badger_test_support::fixture::{self, FixtureRoot};
use divan::counter::{BytesCount, ItemsCount};

fn main() {
    divan::main();
}

/// One tick of the fixture host: every point of the second collection.
fn host_payload() -> Payload {
    let root = FixtureRoot::new("vm-6.18");
    let mut mods: Vec<_> = [
        ("cpu", r#"{"per_core": true}"#),
        ("load", "{}"),
        ("memory", "{}"),
        ("disk", r#"{"filesystems": false}"#),
        ("network", "{}"),
        ("system", "{}"),
    ]
    .iter()
    .map(|(name, conf)| {
        let spec = badger_modules::REGISTRY.iter().find(|s| s.name == *name).expect("module");
        fixture::build(spec, &root.ctx(), conf)
    })
    .collect();
    for m in &mut mods {
        fixture::collect(m.as_mut(), 0.0);
    }
    root.advance();
    let mut points = Vec::new();
    for m in &mut mods {
        points.extend(fixture::collect(m.as_mut(), 1.0));
    }
    let meta = HostMeta { datacenter: "dc1".into(), hostname: "host-0001.example.com".into(), ..HostMeta::default() };
    Payload { meta: Arc::new(meta), timestamp: 1_795_263_131, points }
}

fn encode(bencher: divan::Bencher, n: usize, naming: Naming) {
    let one = host_payload();
    let payloads: Vec<Arc<Payload>> = (0..n).map(|_| Arc::new(one.clone())).collect();
    let blacklist = Matcher::default();
    let mut enc = Encoder::new(naming, "0123456789abcdef0123456789abcdef", "0.1.0", 1_795_000_000, 1_795_263_000);
    let mut out = Vec::with_capacity(16384 * n);
    let batch = Batch::new(&payloads, &blacklist);
    let bytes: usize = {
        for p in batch.all_payloads() {
            enc.encode(&p, &mut out);
        }
        out.len()
    };
    let points = n * one.points.len();
    bencher.counter(ItemsCount::new(points)).counter(BytesCount::new(bytes)).bench_local(|| {
        out.clear();
        let mut written = 0;
        for p in batch.all_payloads() {
            written += enc.encode(&p, &mut out);
        }
        written
    });
}

#[divan::bench]
fn otel_one_payload(bencher: divan::Bencher) {
    encode(bencher, 1, Naming::Otel);
}

#[divan::bench]
fn badger_one_payload(bencher: divan::Bencher) {
    encode(bencher, 1, Naming::Badger);
}

#[divan::bench(sample_count = 20)]
fn otel_1000_payloads(bencher: divan::Bencher) {
    encode(bencher, 1000, Naming::Otel);
}

#[divan::bench(sample_count = 20)]
fn badger_1000_payloads(bencher: divan::Bencher) {
    encode(bencher, 1000, Naming::Badger);
}
