//! One full collection of the six host modules (cpu, load, disk, network, memory, system)
//! on the live /proc and /sys, as the agent does every second. Target: ≤ 150 µs.
//!
//! `cargo bench --bench collect`

use std::path::Path;
use std::time::Instant;

use badger_api::plugin::{Module, ModuleContext, PluginConf};

fn main() {
    divan::main();
}

const SIX: [&str; 6] = ["cpu", "load", "disk", "network", "memory", "system"];

fn build(name: &str) -> Box<dyn Module> {
    let spec = badger_modules::REGISTRY.iter().find(|s| s.name == name).expect("module in registry");
    let conf = PluginConf::from_text(name, Path::new("bench.conf"), "{}");
    match (spec.build)(&ModuleContext::default(), &conf) {
        Ok(m) => m,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// All six modules, one after the other, warmed up so rates are computed too.
#[divan::bench]
fn six_modules(bencher: divan::Bencher) {
    let mut modules: Vec<Box<dyn Module>> = SIX.iter().map(|n| build(n)).collect();
    let mut out = Vec::with_capacity(256);
    for m in &mut modules {
        let _ = m.collect(Instant::now(), &mut out);
    }
    bencher.bench_local(|| {
        out.clear();
        let now = Instant::now();
        for m in &mut modules {
            let _ = m.collect(now, &mut out);
        }
        out.len()
    });
}

/// Each module alone.
#[divan::bench(args = SIX)]
fn one_module(bencher: divan::Bencher, name: &str) {
    let mut m = build(name);
    let mut out = Vec::with_capacity(128);
    let _ = m.collect(Instant::now(), &mut out);
    bencher.bench_local(|| {
        out.clear();
        let _ = m.collect(Instant::now(), &mut out);
        out.len()
    });
}
