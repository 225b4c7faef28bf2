//! Encoding speed of the payload formats, in points per second: InfluxDB line protocol
//! (badger and telegraf naming) and the JSON of `stdout`/`stdout_pretty`, on a realistic
//! payload (110 points: what cpu, system, load, disk, network, memory and one process_stats
//! entry give on a 2-core host with one disk and one NIC) and on 1,000 such payloads (a
//! batch as big as 1,000 hosts' worth of one tick).
//!
//! `cargo bench --bench encode`

use std::sync::Arc;

use badger_api::matcher::Matcher;
use badger_api::plugin::Batch;
use badger_api::point::{HostMeta, Payload, Point, Value};
use badger_formats::influx::{encode_payload, Naming};
use badger_formats::json::write_payload;
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

const MEMINFO: [&str; 50] = [
    "memtotal",
    "memfree",
    "memavailable",
    "buffers",
    "cached",
    "swapcached",
    "active",
    "inactive",
    "active_anon",
    "inactive_anon",
    "active_file",
    "inactive_file",
    "unevictable",
    "mlocked",
    "swaptotal",
    "swapfree",
    "zswap",
    "zswapped",
    "dirty",
    "writeback",
    "anonpages",
    "mapped",
    "shmem",
    "kreclaimable",
    "slab",
    "sreclaimable",
    "sunreclaim",
    "kernelstack",
    "pagetables",
    "secpagetables",
    "nfs_unstable",
    "bounce",
    "writebacktmp",
    "commitlimit",
    "committed_as",
    "vmalloctotal",
    "vmallocused",
    "vmallocchunk",
    "percpu",
    "hardwarecorrupted",
    "anonhugepages",
    "shmemhugepages",
    "filehugepages",
    "hugepages_total",
    "hugepages_free",
    "hugepages_rsvd",
    "hugepagesize",
    "hugetlb",
    "directmap4k",
    "directmap2m",
];

/// One tick of a real host: 110 points.
fn host_payload(host: usize, timestamp: i64) -> Payload {
    let f = |i: usize| Value::Float(i as f64 * 1.37 + 0.25);
    let mut points = Vec::with_capacity(110);
    for (i, s) in ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"]
        .into_iter()
        .enumerate()
    {
        points.push(Point::simple("cpu", s, "percent", f(i)));
    }
    points.push(Point::simple("cpu", "procs_forked_per_sec", "", f(3)));
    points.push(Point::simple("cpu", "procs_running", "", Value::Int(2)));
    points.push(Point::simple("cpu", "procs_blocked", "", Value::Int(0)));
    points.push(Point::simple("cpu", "ctxt_per_sec", "", f(474)));
    points.push(Point::simple("cpu", "ctxt_per_sec_per_core", "", Value::Int(237)));
    points.push(Point::simple("cpu", "cores", "", Value::Int(2)));
    points.push(Point::simple("cpu", "speed", "MHz", Value::Float(2894.562)));
    points.push(Point::simple("cpu", "cache_size", "KB", Value::Int(512)));
    points.push(Point::simple("disk", "count", "", Value::Int(1)));
    points.push(Point::simple("load", "one", "", Value::Float(0.08)));
    points.push(Point::simple("load", "five", "", Value::Float(0.04)));
    points.push(Point::simple("load", "fifteen", "", Value::Float(0.01)));
    points.push(Point::simple("load", "runnable_entities", "", Value::Int(1)));
    points.push(Point::simple("load", "total_entities", "", Value::Int(180)));
    for (i, s) in [
        "reads",
        "reads_merged",
        "read_sectors",
        "read_time",
        "writes",
        "writes_merged",
        "write_sectors",
        "write_time",
        "io_time",
        "io_weighted_time",
        "read_thruput",
        "write_thruput",
    ]
    .into_iter()
    .enumerate()
    {
        points.push(Point::device("disk", s, "", "device", "vda", f(i)));
    }
    points.push(Point::device("disk", "io", "", "device", "vda", Value::Int(0)));
    for (i, s) in [
        "rx_bytes",
        "rx_packets",
        "rx_errs",
        "rx_drop",
        "rx_fifo",
        "rx_frame",
        "rx_compressed",
        "rx_multicast",
        "tx_bytes",
        "tx_packets",
        "tx_errs",
        "tx_drop",
        "tx_fifo",
        "tx_colls",
        "tx_carrier",
        "tx_compressed",
        "rx_bits",
        "tx_bits",
    ]
    .into_iter()
    .enumerate()
    {
        points.push(Point::device("net", s, "", "interface", "eth0", f(i * 1000)));
    }
    for (i, s) in MEMINFO.into_iter().enumerate() {
        points.push(Point::simple("mem", s, "B", Value::Int(1_073_741_824 + i as i64 * 4096)));
    }
    for (i, s) in ["count", "cpu", "mem_resident", "thread_count", "voluntary_ctxt_per_sec"].into_iter().enumerate() {
        let v = if s == "cpu" || s.ends_with("per_sec") { f(i) } else { Value::Int(i as i64 * 7) };
        points.push(Point::device("proc", s, "", "process", "sshd", v));
    }
    let meta = HostMeta {
        datacenter: "dc1".into(),
        cluster: "web".into(),
        hostname: format!("host-{host:04}.example.com"),
        ipv4: "10.0.0.1".into(),
        ..HostMeta::default()
    };
    Payload { meta: Arc::new(meta), timestamp, points }
}

fn payloads(n: usize) -> Vec<Arc<Payload>> {
    (0..n).map(|i| Arc::new(host_payload(i, 1_795_263_131))).collect()
}

fn points(p: &[Arc<Payload>]) -> usize {
    p.iter().map(|p| p.points.len()).sum()
}

fn line_protocol(bencher: divan::Bencher, n: usize, naming: Naming) {
    let payloads = payloads(n);
    let blacklist = Matcher::default();
    let mut out = String::with_capacity(8192 * n);
    bencher.counter(ItemsCount::new(points(&payloads))).bench_local(|| {
        out.clear();
        let batch = Batch::new(&payloads, &blacklist);
        let mut written = 0;
        for p in batch.payloads() {
            written += encode_payload(&mut out, &p, naming);
        }
        written
    });
}

fn json(bencher: divan::Bencher, n: usize) {
    let payloads = payloads(n);
    let blacklist = Matcher::default();
    let mut out = String::with_capacity(16384 * n);
    bencher.counter(ItemsCount::new(points(&payloads))).bench_local(|| {
        out.clear();
        let batch = Batch::new(&payloads, &blacklist);
        for p in batch.payloads() {
            write_payload(&mut out, &p, false);
            out.push('\n');
        }
        out.len()
    });
}

/// One host's payload (110 points) as line protocol, badger names.
#[divan::bench]
fn line_protocol_one_payload(bencher: divan::Bencher) {
    line_protocol(bencher, 1, Naming::Badger);
}

/// The same with `naming: "telegraf"`.
#[divan::bench]
fn line_protocol_one_payload_telegraf(bencher: divan::Bencher) {
    line_protocol(bencher, 1, Naming::Telegraf);
}

/// One host's payload as compact JSON (`stdout`).
#[divan::bench]
fn json_one_payload(bencher: divan::Bencher) {
    json(bencher, 1);
}

/// 1,000 payloads (110,000 points) as line protocol.
#[divan::bench(sample_count = 20)]
fn line_protocol_1000_payloads(bencher: divan::Bencher) {
    line_protocol(bencher, 1000, Naming::Badger);
}

/// 1,000 payloads as compact JSON.
#[divan::bench(sample_count = 20)]
fn json_1000_payloads(bencher: divan::Bencher) {
    json(bencher, 1000);
}
