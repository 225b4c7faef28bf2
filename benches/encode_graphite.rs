//! Encoding for Graphite, in points per second: plaintext lines and pickle frames, for one
//! payload of 110 points (a tick of the host modules: cpu, system, disk, network, memory,
//! load and a filesystem) and for a batch of 1,000 such payloads (an emitter catching up).
//!
//! `cargo bench --bench encode_graphite`

use std::sync::Arc;

use badger_api::matcher::Matcher;
use badger_api::plugin::Batch;
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_emitters::graphite::{Encoder, Protocol};
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

const PROTOCOLS: [&str; 2] = ["plaintext", "pickle"];

fn protocol(name: &str) -> Protocol {
    if name == "pickle" {
        Protocol::Pickle
    } else {
        Protocol::Tcp
    }
}

/// 110 points shaped like a real tick: floats and ints, simple and per-device names.
fn tick(ts: i64) -> Payload {
    let mut points = Vec::with_capacity(110);
    for f in ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"] {
        points.push(Point::simple("cpu", f, "percent", Value::Float(12.345678901234567)));
    }
    for f in ["ctxt", "btime", "processes", "procs_running", "procs_blocked"] {
        points.push(Point::simple("cpu", f, "", Value::Int(1_795_263_131)));
    }
    for f in ["cpu.cores", "cpu.mhz", "cache_size", "disk.count"] {
        points.push(Point::simple("system", f, "", Value::Int(8)));
    }
    for i in 0..13 {
        points.push(Point::device(
            "disk",
            ["reads", "writes", "io", "read_time"][i % 4],
            "",
            "device",
            "nvme0n1",
            Value::Int(987_654 + i as i64),
        ));
    }
    for i in 0..18 {
        let v = if i % 3 == 0 { Value::Float(1234.5 + i as f64) } else { Value::Int(123_456_789) };
        points.push(Point::device("net", ["rx_bytes", "tx_bytes", "rx_bits"][i % 3], "B", "interface", "eth0", v));
    }
    for i in 0..54 {
        points.push(Point::simple(
            "mem",
            ["memtotal", "memfree", "buffers", "cached", "active_anon", "dirty"][i % 6],
            "B",
            Value::Int(16_000_000_000 + i as i64),
        ));
    }
    for f in ["one", "five", "fifteen"] {
        points.push(Point::simple("load", f, "", Value::Float(0.42)));
    }
    points.push(Point::simple("load", "runnable_entities", "", Value::Int(2)));
    points.push(Point::simple("load", "total_entities", "", Value::Int(812)));
    points
        .push(Point::device("fs", "used", "B", "mount", "/var/lib", Value::Int(52_428_800)).with_tag("fstype", "ext4"));
    let meta = Arc::new(HostMeta {
        datacenter: "dc1".into(),
        region: "".into(),
        zone: "".into(),
        cluster: "web".into(),
        hostname: "web-17".into(),
        ipv4: "10.0.0.17".into(),
        ipv6: String::new(),
    });
    Payload { meta, timestamp: ts, points }
}

fn encode_all(enc: &mut Encoder, payloads: &[Arc<Payload>], out: &mut Vec<u8>) -> u64 {
    let blacklist = Matcher::default();
    let batch = Batch::new(payloads, &blacklist);
    let mut n = 0;
    for p in batch.payloads() {
        out.clear();
        n += enc.encode(&p, out).points;
    }
    n
}

/// One tick's payload (110 points) into one record.
#[divan::bench(args = PROTOCOLS)]
fn one_payload(bencher: divan::Bencher, name: &str) {
    let payloads = [Arc::new(tick(1_795_263_131))];
    assert_eq!(payloads[0].points.len(), 110);
    let mut enc = Encoder::new(protocol(name), "", false, 1400);
    let mut out = Vec::with_capacity(16 * 1024);
    bencher.counter(ItemsCount::new(110usize)).bench_local(|| encode_all(&mut enc, &payloads, &mut out));
}

/// 1,000 payloads (110,000 points), one record each.
#[divan::bench(args = PROTOCOLS, sample_count = 20)]
fn batch_of_1000(bencher: divan::Bencher, name: &str) {
    let payloads: Vec<Arc<Payload>> = (0..1000).map(|i| Arc::new(tick(1_795_263_131 + i))).collect();
    let mut enc = Encoder::new(protocol(name), "", false, 1400);
    let mut out = Vec::with_capacity(16 * 1024);
    bencher.counter(ItemsCount::new(110_000usize)).bench_local(|| encode_all(&mut enc, &payloads, &mut out));
}

/// Tags mode (plaintext): the point's tags and the metadata as `;key=value`.
#[divan::bench]
fn one_payload_tagged(bencher: divan::Bencher) {
    let payloads = [Arc::new(tick(1_795_263_131))];
    let mut enc = Encoder::new(Protocol::Tcp, "", true, 1400);
    let mut out = Vec::with_capacity(16 * 1024);
    bencher.counter(ItemsCount::new(110usize)).bench_local(|| encode_all(&mut enc, &payloads, &mut out));
}
