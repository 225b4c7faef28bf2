//! `naming: "otel"`: badger's host stats under the names, units and attributes of the
//! OpenTelemetry Collector's `hostmetrics` receiver (the host-metrics semantic
//! conventions). The table is in the `otlp` emitter's docs; [`map`] is that table.

use badger_api::point::{Kind, Point, Value};

/// What a mapped point becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Gauge,
    /// A cumulative sum; `monotonic` for counters, not for up-down quantities (memory in use).
    Sum {
        monotonic: bool,
    },
}

/// One data point under its OpenTelemetry name.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub name: &'static str,
    pub unit: &'static str,
    pub shape: Shape,
    /// Attributes in the receiver's order.
    pub attrs: Vec<(&'static str, String)>,
    pub value: Value,
}

const SUM: Shape = Shape::Sum { monotonic: true };
const UPDOWN: Shape = Shape::Sum { monotonic: false };

fn tag<'a>(p: &'a Point, key: &str) -> Option<&'a str> {
    p.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn m(name: &'static str, unit: &'static str, shape: Shape, attrs: Vec<(&'static str, String)>, value: Value) -> Mapped {
    Mapped { name, unit, shape, attrs, value }
}

/// The `state` of `system.cpu.time` for a node_exporter `mode`.
fn cpu_state(mode: &str) -> Option<&'static str> {
    Some(match mode {
        "user" => "user",
        "nice" => "nice",
        "system" => "system",
        "idle" => "idle",
        "iowait" => "wait",
        "irq" => "interrupt",
        "softirq" => "softirq",
        "steal" => "steal",
        _ => return None,
    })
}

/// A point of the `disk` or `network` counters with a device and a direction.
fn dev_dir(p: &Point, direction: &str) -> Vec<(&'static str, String)> {
    vec![("device", tag(p, "device").unwrap_or_default().to_string()), ("direction", direction.to_string())]
}

/// The OpenTelemetry name of one point, or `None` when it has no twin in `hostmetrics`
/// (it then goes out under its badger name). Memory and filesystem usage are not here:
/// they need several points at once (see [`Memory`] and [`Filesystems`]).
pub fn map(p: &Point) -> Option<Mapped> {
    let field = p.field.as_ref();
    let v = p.value;
    match (p.kind, p.measurement.as_ref()) {
        (Kind::Counter, "cpu") if field == "seconds_total" => {
            let cpu = tag(p, "cpu")?;
            let state = cpu_state(tag(p, "mode")?)?;
            Some(m("system.cpu.time", "s", SUM, vec![("cpu", format!("cpu{cpu}")), ("state", state.into())], v))
        }
        (Kind::Counter, "") if p.name == "cpu.forks_total" => {
            Some(m("system.processes.created", "{processes}", SUM, vec![], v))
        }
        (Kind::Counter, "disk") => {
            let (name, unit, dir) = match field {
                "read_bytes_total" => ("system.disk.io", "By", Some("read")),
                "written_bytes_total" => ("system.disk.io", "By", Some("write")),
                "reads_completed_total" => ("system.disk.operations", "{operations}", Some("read")),
                "writes_completed_total" => ("system.disk.operations", "{operations}", Some("write")),
                "read_time_seconds_total" => ("system.disk.operation_time", "s", Some("read")),
                "write_time_seconds_total" => ("system.disk.operation_time", "s", Some("write")),
                "reads_merged_total" => ("system.disk.merged", "{operations}", Some("read")),
                "writes_merged_total" => ("system.disk.merged", "{operations}", Some("write")),
                "io_time_seconds_total" => ("system.disk.io_time", "s", None),
                "io_time_weighted_seconds_total" => ("system.disk.weighted_io_time", "s", None),
                _ => return None,
            };
            let attrs = match dir {
                Some(d) => dev_dir(p, d),
                None => vec![("device", tag(p, "device")?.to_string())],
            };
            Some(m(name, unit, SUM, attrs, v))
        }
        (Kind::Counter, "network") => {
            let (name, unit, dir) = match field {
                "receive_bytes_total" => ("system.network.io", "By", "receive"),
                "transmit_bytes_total" => ("system.network.io", "By", "transmit"),
                "receive_packets_total" => ("system.network.packets", "{packets}", "receive"),
                "transmit_packets_total" => ("system.network.packets", "{packets}", "transmit"),
                "receive_errs_total" => ("system.network.errors", "{errors}", "receive"),
                "transmit_errs_total" => ("system.network.errors", "{errors}", "transmit"),
                "receive_drop_total" => ("system.network.dropped", "{packets}", "receive"),
                "transmit_drop_total" => ("system.network.dropped", "{packets}", "transmit"),
                _ => return None,
            };
            Some(m(name, unit, SUM, dev_dir(p, dir), v))
        }
        (Kind::Gauge, "load") => {
            let name = match field {
                "one" => "system.cpu.load_average.1m",
                "five" => "system.cpu.load_average.5m",
                "fifteen" => "system.cpu.load_average.15m",
                _ => return None,
            };
            Some(m(name, "{thread}", Shape::Gauge, vec![], v))
        }
        (Kind::Gauge, "cpu") if p.tags.is_empty() => match field {
            "procs_running" => {
                Some(m("system.processes.count", "{processes}", UPDOWN, vec![("status", "running".into())], v))
            }
            "procs_blocked" => {
                Some(m("system.processes.count", "{processes}", UPDOWN, vec![("status", "blocked".into())], v))
            }
            "cores" => Some(m("system.cpu.logical.count", "{cpu}", UPDOWN, vec![], v)),
            "speed" => Some(m("system.cpu.frequency", "Hz", Shape::Gauge, vec![], Value::Float(v.as_f64() * 1e6))),
            _ => None,
        },
        (Kind::Gauge, "disk") if field == "io" => Some(m(
            "system.disk.pending_operations",
            "{operations}",
            UPDOWN,
            vec![("device", tag(p, "device")?.to_string())],
            v,
        )),
        (Kind::Gauge, "system") if field == "uptime" => {
            Some(m("system.uptime", "s", Shape::Gauge, vec![], Value::Float(v.as_f64())))
        }
        _ => None,
    }
}

/// The `/proc/meminfo` values that `system.memory.*` and `system.paging.*` are made of,
/// gathered from one payload's `mem.*` points (bytes), with the points they came from: when
/// a value needed is missing (a blacklist took it), those points go out under their badger
/// names instead ([`Memory::leftover`]).
#[derive(Debug, Default, Clone)]
pub struct Memory<'a> {
    total: Option<i64>,
    free: Option<i64>,
    buffers: Option<i64>,
    cached: Option<i64>,
    sreclaimable: Option<i64>,
    sunreclaim: Option<i64>,
    swap_total: Option<i64>,
    swap_free: Option<i64>,
    swap_cached: Option<i64>,
    mem_points: Vec<&'a Point>,
    swap_points: Vec<&'a Point>,
}

impl<'a> Memory<'a> {
    /// Takes the point when it is one of the values; true if it was.
    pub fn take(&mut self, p: &'a Point) -> bool {
        if p.kind != Kind::Gauge || p.measurement != "mem" || !p.tags.is_empty() {
            return false;
        }
        let Value::Int(v) = p.value else { return false };
        let (slot, swap) = match p.field.as_ref() {
            "memtotal" => (&mut self.total, false),
            "memfree" => (&mut self.free, false),
            "buffers" => (&mut self.buffers, false),
            "cached" => (&mut self.cached, false),
            "sreclaimable" => (&mut self.sreclaimable, false),
            "sunreclaim" => (&mut self.sunreclaim, false),
            // SwapTotal has no twin of its own: it goes out under its badger name too.
            "swaptotal" => {
                self.swap_total = Some(v);
                return false;
            }
            "swapfree" => (&mut self.swap_free, true),
            "swapcached" => (&mut self.swap_cached, true),
            _ => return false,
        };
        *slot = Some(v);
        if swap {
            self.swap_points.push(p);
        } else {
            self.mem_points.push(p);
        }
        true
    }

    fn mem_complete(&self) -> bool {
        self.total.is_some() && self.free.is_some() && self.buffers.is_some() && self.cached.is_some()
    }

    fn swap_complete(&self) -> bool {
        self.swap_total.is_some() && self.swap_free.is_some()
    }

    /// The points taken that [`Memory::points`] cannot stand for (a value it needs is missing).
    pub fn leftover(&self) -> impl Iterator<Item = &'a Point> + '_ {
        let mem: &[&'a Point] = if self.mem_complete() { &[] } else { &self.mem_points };
        let swap: &[&'a Point] = if self.swap_complete() { &[] } else { &self.swap_points };
        mem.iter().chain(swap).copied()
    }

    /// `system.memory.limit` (MemTotal), `system.memory.usage` and `.utilization` by `state`, and `system.paging.usage` and
    /// `.utilization` by `state`, as the receiver computes them (gopsutil): `cached` is
    /// Cached + SReclaimable, `used` is MemTotal − MemFree − Buffers − cached, so used, free,
    /// buffered and cached add up to MemTotal (the slab states overlap them).
    pub fn points(&self) -> Vec<Mapped> {
        let mut out = Vec::new();
        if let (Some(total), Some(free), Some(buffers), Some(cached)) =
            (self.total, self.free, self.buffers, self.cached)
        {
            out.push(m("system.memory.limit", "By", UPDOWN, vec![], Value::Int(total)));
            let cached = cached + self.sreclaimable.unwrap_or(0);
            let used = total - free - buffers - cached;
            let mut states = vec![("used", used), ("free", free), ("buffered", buffers), ("cached", cached)];
            if let (Some(r), Some(u)) = (self.sreclaimable, self.sunreclaim) {
                states.extend([("slab_reclaimable", r), ("slab_unreclaimable", u)]);
            }
            for &(state, v) in &states {
                out.push(m("system.memory.usage", "By", UPDOWN, vec![("state", state.into())], Value::Int(v)));
            }
            if total > 0 {
                for &(state, v) in &states {
                    let share = Value::Float(v as f64 / total as f64);
                    out.push(m("system.memory.utilization", "1", Shape::Gauge, vec![("state", state.into())], share));
                }
            }
        }
        if let (Some(total), Some(free)) = (self.swap_total, self.swap_free) {
            let cached = self.swap_cached.unwrap_or(0);
            let states = [("used", total - free - cached), ("free", free), ("cached", cached)];
            for &(state, v) in &states {
                out.push(m("system.paging.usage", "By", UPDOWN, vec![("state", state.into())], Value::Int(v)));
            }
            if total > 0 {
                for &(state, v) in &states {
                    let share = Value::Float(v as f64 / total as f64);
                    out.push(m("system.paging.utilization", "1", Shape::Gauge, vec![("state", state.into())], share));
                }
            }
        }
        out
    }
}

/// One mount's `fs.*` values, for `system.filesystem.*`.
#[derive(Debug, Default, Clone)]
struct Mount {
    path: String,
    device: String,
    fstype: String,
    total: Option<i64>,
    used: Option<i64>,
    free: Option<i64>,
    inodes_used: Option<i64>,
    inodes_free: Option<i64>,
    used_percent: Option<f64>,
}

/// The `fs.*` points of one payload, by mount, in order.
#[derive(Debug, Default, Clone)]
pub struct Filesystems {
    mounts: Vec<Mount>,
}

impl Filesystems {
    /// Takes the point when it is an `fs.*` value the conventions use; true if it was.
    pub fn take(&mut self, p: &Point) -> bool {
        if p.kind != Kind::Gauge || p.measurement != "fs" {
            return false;
        }
        let Some(path) = tag(p, "path") else { return false };
        let field = p.field.as_ref();
        if !matches!(field, "total" | "used" | "free" | "inodes_used" | "inodes_free" | "used_percent") {
            return false;
        }
        let i = match self.mounts.iter().rposition(|m| m.path == path) {
            Some(i) => i,
            None => {
                self.mounts.push(Mount {
                    path: path.to_string(),
                    device: tag(p, "device").unwrap_or_default().to_string(),
                    fstype: tag(p, "fstype").unwrap_or_default().to_string(),
                    ..Mount::default()
                });
                self.mounts.len() - 1
            }
        };
        let mount = &mut self.mounts[i];
        match (field, p.value) {
            ("total", Value::Int(v)) => mount.total = Some(v),
            ("used", Value::Int(v)) => mount.used = Some(v),
            ("free", Value::Int(v)) => mount.free = Some(v),
            ("inodes_used", Value::Int(v)) => mount.inodes_used = Some(v),
            ("inodes_free", Value::Int(v)) => mount.inodes_free = Some(v),
            ("used_percent", v) => mount.used_percent = Some(v.as_f64()),
            _ => return false,
        }
        // `total` also goes out under its badger name: the conventions have no total.
        field != "total"
    }

    /// `system.filesystem.usage` (`used`, `free`, `reserved` = total − used − free: the
    /// blocks only root may use), `system.filesystem.inodes.usage` (`used`, `free`) and
    /// `system.filesystem.utilization` (used / (used + free), as `df`), with `device`,
    /// `mountpoint`, `type` and `state`.
    pub fn points(&self) -> Vec<Mapped> {
        let mut out = Vec::new();
        for mt in &self.mounts {
            let attrs = |state: Option<&str>| {
                let mut a =
                    vec![("device", mt.device.clone()), ("mountpoint", mt.path.clone()), ("type", mt.fstype.clone())];
                if let Some(s) = state {
                    a.push(("state", s.to_string()));
                }
                a
            };
            let reserved = match (mt.total, mt.used, mt.free) {
                (Some(t), Some(u), Some(f)) => Some(t - u - f),
                _ => None,
            };
            for (state, v) in [("used", mt.used), ("free", mt.free), ("reserved", reserved)] {
                if let Some(v) = v {
                    out.push(m("system.filesystem.usage", "By", UPDOWN, attrs(Some(state)), Value::Int(v)));
                }
            }
            for (state, v) in [("used", mt.inodes_used), ("free", mt.inodes_free)] {
                if let Some(v) = v {
                    out.push(m(
                        "system.filesystem.inodes.usage",
                        "{inodes}",
                        UPDOWN,
                        attrs(Some(state)),
                        Value::Int(v),
                    ));
                }
            }
            if let Some(pct) = mt.used_percent {
                out.push(m("system.filesystem.utilization", "1", Shape::Gauge, attrs(None), Value::Float(pct / 100.0)));
            }
        }
        out
    }
}
