//! `internal`: badger's own metrics (ticks, modules, emitter queues and deliveries, CPU, memory).
//!
//! Every module's collections, every emitter's queue and deliveries, the ticks, and the
//! process's CPU time and memory (from `/proc/self`).
//!
//! Counters (`counter`) count since badger started (a module or emitter rebuilt on reload
//! starts again from 0); a module or emitter that is no longer configured is no longer
//! reported. The `badger.emitter.*` stats of the outbox (`queued_bytes` … `write_micros`)
//! exist for the emitters that buffer their deliveries (graphite, kafka, and pushgateway's
//! pushes); the others have only the queue stats.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `badger.ticks` | | int | counter | ticks run |
//! | `badger.ticks_skipped` | | int | counter | ticks skipped because badger was stalled (never run in a burst) |
//! | `badger.payloads` | | int | counter | payloads sent to the emitters |
//! | `badger.points` | | int | counter | points in those payloads |
//! | `badger.module.runs.<module>` | | int | counter | collections of the module, tag `module` |
//! | `badger.module.points.<module>` | | int | counter | points it gathered (after its blacklist) |
//! | `badger.module.errors.<module>` | | int | counter | collections that failed or panicked |
//! | `badger.module.timeouts.<module>` | | int | counter | ticks that went out without it (it did not answer in its `timeout`) |
//! | `badger.module.skipped.<module>` | | int | counter | ticks it was skipped because it was still stuck |
//! | `badger.module.collect_micros.<module>` | us | int | gauge | how long its last collection took |
//! | `badger.emitter.batches.<emitter>` | | int | counter | batches handed to the emitter, tag `emitter` |
//! | `badger.emitter.payloads.<emitter>` | | int | counter | payloads in those batches |
//! | `badger.emitter.errors.<emitter>` | | int | counter | batches the emitter failed on (or panicked) |
//! | `badger.emitter.dropped.<emitter>` | | int | counter | payloads dropped because its queue was full (or it had stopped) |
//! | `badger.emitter.queued_bytes.<emitter>` | B | int | gauge | bytes of records waiting in its outbox's memory |
//! | `badger.emitter.queued_records.<emitter>` | | int | gauge | records waiting, in memory or in the spool |
//! | `badger.emitter.spooled_bytes.<emitter>` | B | int | gauge | bytes of unsent records in the spool |
//! | `badger.emitter.sent_batches.<emitter>` | | int | counter | successful sends (requests, writes) |
//! | `badger.emitter.sent_points.<emitter>` | | int | counter | points delivered |
//! | `badger.emitter.retries.<emitter>` | | int | counter | failed sends (each retried later) |
//! | `badger.emitter.dropped_points.<emitter>` | | int | counter | points dropped by the outbox: buffer or spool full, unsent at shutdown without a spool |
//! | `badger.emitter.rejected_points.<emitter>` | | int | counter | points the server refused for good |
//! | `badger.emitter.spool_errors.<emitter>` | | int | counter | spool troubles (corrupt files, failed writes) |
//! | `badger.emitter.refused_series.<emitter>` | | int | counter | new series the `prometheus` emitter refused at its `max_bytes` |
//! | `badger.emitter.write_micros.<emitter>` | us | int | gauge | how long the last send took |
//! | `badger.listener.connections.<listener>` | | int | counter | connections accepted by a listener (`http`: `core.http_listen`; `l2met_drain`, `l2met_syslog`), tag `listener` |
//! | `badger.listener.open.<listener>` | | int | gauge | connections open now |
//! | `badger.listener.full.<listener>` | | int | counter | times every connection slot was taken (the next one waited in the backlog) |
//! | `badger.listener.accept_errors.<listener>` | | int | counter | failed accepts (each backs off, 10 ms to 1 s) |
//! | `badger.listener.header_timeouts.<listener>` | | int | counter | connections closed for not sending a complete header (or staying idle) within the header timeout |
//! | `badger.listener.request_timeouts.<listener>` | | int | counter | requests answered 408 past the request timeout (body read and answer) |
//! | `badger.listener.header_too_large.<listener>` | | int | counter | connections closed for headers past the byte limit |
//! | `badger.cpu_seconds` | s | float | counter | CPU time badger used, user + system (`/proc/self/stat`) |
//! | `badger.rss` | B | int | gauge | badger's resident memory (`VmRSS` of `/proc/self/status`) |
//! | `badger.threads` | | int | gauge | badger's threads (`Threads` of `/proc/self/status`) |
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`); the stock
//! `conf.d/internal.conf` sets `interval: 10`.

use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use crate::process_stats::{parse_stat, status_value};
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;
use badger_api::telemetry::{Group, Telemetry};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "internal",
    aliases: &[],
    summary: "badger's own metrics: ticks, modules, emitter queues and deliveries, CPU and memory",
    build,
};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(Internal {
        telemetry: ctx.telemetry.clone(),
        stat: ProcFile::new(PathBuf::from("/proc/self/stat")),
        status: ProcFile::new(PathBuf::from("/proc/self/status")),
    }))
}

struct Internal {
    telemetry: Telemetry,
    stat: ProcFile,
    status: ProcFile,
}

/// Units of the fields that have some.
fn units(field: &str) -> &'static str {
    match field {
        "collect_micros" | "write_micros" => "us",
        "queued_bytes" | "spooled_bytes" => "B",
        _ => "",
    }
}

impl Module for Internal {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        for r in self.telemetry.read() {
            let u = units(r.field);
            out.push(match r.group {
                Group::Tick => Point::simple("badger", r.field, u, r.value),
                Group::Module => Point::device("badger.module", r.field, u, "module", &r.name, r.value),
                Group::Emitter | Group::Outbox => {
                    Point::device("badger.emitter", r.field, u, "emitter", &r.name, r.value)
                }
                Group::Listener => Point::device("badger.listener", r.field, u, "listener", &r.name, r.value),
            });
        }
        if let Some((ticks, _)) = parse_stat(self.stat.read()?) {
            out.push(Point::simple("badger", "cpu_seconds", "s", Value::Float(ticks as f64 / USER_HZ)));
        }
        let status = self.status.read()?;
        if let Some(kb) = status_value(status, "VmRSS") {
            out.push(Point::simple("badger", "rss", "B", Value::from(kb.saturating_mul(1024))));
        }
        if let Some(n) = status_value(status, "Threads") {
            out.push(Point::simple("badger", "threads", "", Value::from(n)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use badger_api::telemetry::Source;

    struct Stats(AtomicU64);
    impl Source for Stats {
        fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
            f("runs", Value::Int(self.0.load(Ordering::Relaxed) as i64));
            f("collect_micros", Value::Int(42));
        }
    }

    #[test]
    fn reports_the_registry_and_the_process() {
        let telemetry = Telemetry::default();
        let stats: Arc<dyn Source> = Arc::new(Stats(AtomicU64::new(7)));
        telemetry.publish(Group::Module, "cpu", &stats);
        let ctx = ModuleContext { telemetry, ..ModuleContext::default() };
        let conf = PluginConf::from_text("internal", std::path::Path::new("conf.d/internal.conf"), "{}");
        let mut m = (SPEC.build)(&ctx, &conf).ok().unwrap();
        let mut out = Vec::new();
        m.collect(Instant::now(), &mut out).unwrap();
        let find = |n: &str| out.iter().find(|p| p.name == n).unwrap_or_else(|| panic!("{n}: {out:#?}"));
        assert_eq!(find("badger.module.runs.cpu").value, Value::Int(7));
        let micros = find("badger.module.collect_micros.cpu");
        assert_eq!((micros.units.as_ref(), micros.tags[0].0.as_ref()), ("us", "module"));
        assert!(matches!(find("badger.rss").value, Value::Int(b) if b > 1_000_000));
        assert!(matches!(find("badger.cpu_seconds").value, Value::Float(s) if s >= 0.0));
        assert!(matches!(find("badger.threads").value, Value::Int(n) if n >= 1));
        badger_test_support::fixture::assert_documented(include_str!("internal.rs"), &out);
        drop(stats);
        out.clear();
        m.collect(Instant::now(), &mut out).unwrap();
        assert!(!out.iter().any(|p| p.name.starts_with("badger.module.")));
    }
}
