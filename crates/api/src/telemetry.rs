//! badger's own counters, shared between the core (ticks, modules, emitter queues), the
//! emitters' outboxes and the `internal` module that reports them.
//!
//! A [`Source`] is anything that can list its current values (the core's `ModuleStats`,
//! an outbox's `OutboxStats` …). It is published under a group and a name
//! ([`Telemetry::publish`]) and held weakly: when the module or emitter it belongs to is
//! dropped (stopped on reload), its entry goes away by itself. The registry is handed to
//! modules in `ModuleContext` and to emitters in `EmitterContext`.

use std::sync::{Arc, Mutex, Weak};

use crate::point::Value;

/// Something with counters and gauges to report.
pub trait Source: Send + Sync {
    /// Calls `f(field, value)` for every value, e.g. `("runs", Int(12))`.
    fn visit(&self, f: &mut dyn FnMut(&'static str, Value));
}

/// Which part of badger a source belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The scheduler (one source, no name).
    Tick,
    /// A module, by its configured name.
    Module,
    /// An emitter's queue in the core, by the emitter's configured name.
    Emitter,
    /// An emitter's outbox (buffered delivery), by the emitter's configured name.
    Outbox,
    /// A network listener's bounds (`badger_api::listener`, the l2met syslog listener),
    /// by the listener's name (`http`, `l2met_drain`, …).
    Listener,
}

struct Entry {
    group: Group,
    name: String,
    /// Publication order: a later entry with the same group and name replaces an earlier one.
    seq: u64,
    source: Weak<dyn Source>,
}

/// The shared registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Arc<Mutex<(u64, Vec<Entry>)>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

/// One value read from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub group: Group,
    /// The module's or emitter's name (empty for [`Group::Tick`]).
    pub name: String,
    pub field: &'static str,
    pub value: Value,
}

impl Telemetry {
    /// Publishes `source` as `group`/`name`; it is read until the last `Arc` of it is dropped.
    pub fn publish(&self, group: Group, name: &str, source: &Arc<dyn Source>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let seq = g.0;
        g.1.retain(|e| e.source.strong_count() > 0);
        g.1.push(Entry { group, name: name.to_string(), seq, source: Arc::downgrade(source) });
    }

    /// Every live value, ordered by group and name; of two live sources with the same
    /// group and name (an emitter rebuilt on reload while its old instance still flushes)
    /// only the newer one is read.
    pub fn read(&self) -> Vec<Reading> {
        let mut live: Vec<(Group, String, u64, Arc<dyn Source>)> = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.1.retain(|e| e.source.strong_count() > 0);
            g.1.iter().filter_map(|e| Some((e.group, e.name.clone(), e.seq, e.source.upgrade()?))).collect()
        };
        live.sort_by(|a, b| (a.0, &a.1, std::cmp::Reverse(a.2)).cmp(&(b.0, &b.1, std::cmp::Reverse(b.2))));
        live.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
        let mut out = Vec::new();
        for (group, name, _, source) in live {
            source.visit(&mut |field, value| out.push(Reading { group, name: name.clone(), field, value }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(i64);
    impl Source for Fixed {
        fn visit(&self, f: &mut dyn FnMut(&'static str, Value)) {
            f("n", Value::Int(self.0));
        }
    }

    #[test]
    fn entries_live_as_long_as_their_source_and_the_newest_wins() {
        let t = Telemetry::default();
        let a: Arc<dyn Source> = Arc::new(Fixed(1));
        let b: Arc<dyn Source> = Arc::new(Fixed(2));
        let c: Arc<dyn Source> = Arc::new(Fixed(3));
        t.publish(Group::Module, "cpu", &a);
        t.publish(Group::Module, "load", &b);
        t.publish(Group::Module, "cpu", &c);
        let r: Vec<(String, Value)> = t.read().into_iter().map(|r| (r.name, r.value)).collect();
        assert_eq!(r, [("cpu".to_string(), Value::Int(3)), ("load".to_string(), Value::Int(2))]);
        drop(c);
        drop(b);
        let r: Vec<(String, Value)> = t.read().into_iter().map(|r| (r.name, r.value)).collect();
        assert_eq!(r, [("cpu".to_string(), Value::Int(1))]);
    }
}
