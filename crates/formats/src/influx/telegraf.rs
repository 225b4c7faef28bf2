//! `naming: "telegraf"`: badger's stats under the measurement, field and tag names of
//! Telegraf's Linux inputs (`cpu`, `mem`, `swap`, `system`, `kernel`, `processes`, `diskio`,
//! `disk`, `net`, `procstat`), so dashboards built on Telegraf keep working. The table of
//! what maps to what is in the doc comment of the emitter ([`super`]).
//!
//! A stat without a Telegraf twin keeps its badger field name but goes to the Telegraf
//! measurement (and tag names) of its group, next to its relatives: `diskio,name=sda
//! read_sectors=…`. No Telegraf name is ever used for a different quantity. Measurements this
//! table does not know (plugins) pass unchanged.

use badger_api::point::Point;

/// How a point's tags change on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TagMap {
    /// `(from, to)`: the point's tag `from` is written as `to`.
    pub rename: Option<(&'static str, &'static str)>,
    /// A tag added to the point's own (`cpu=cpu-total` on machine-wide cpu stats).
    pub add: Option<(&'static str, &'static str)>,
    /// `(key, prefix)`: the prefix is cut from the value of the point's tag `key`
    /// (`device=/dev/sda1` is written `device=sda1`, as Telegraf's `disk` input does).
    pub strip: Option<(&'static str, &'static str)>,
}

impl TagMap {
    pub const NONE: TagMap = TagMap { rename: None, add: None, strip: None };

    /// The name a point tag key is written under.
    pub fn key<'a>(&self, key: &'a str) -> &'a str {
        match self.rename {
            Some((from, to)) if from == key => to,
            _ => key,
        }
    }

    /// The value a point tag is written with.
    pub fn value<'a>(&self, key: &str, value: &'a str) -> &'a str {
        match self.strip {
            Some((k, prefix)) if k == key => value.strip_prefix(prefix).unwrap_or(value),
            _ => value,
        }
    }
}

/// Where one point goes: measurement, field, tag changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub measurement: &'a str,
    pub field: &'a str,
    pub tags: TagMap,
}

/// The Telegraf name of a point.
pub fn map(p: &Point) -> Target<'_> {
    let (m, f): (&str, &str) = (&p.measurement, &p.field);
    let keep = |measurement: &'static str| Target { measurement, field: f, tags: TagMap::NONE };
    let to = |measurement: &'static str, field: &'static str| Target { measurement, field, tags: TagMap::NONE };
    match m {
        "cpu" => cpu(p, f),
        "load" => match f {
            "one" => to("system", "load1"),
            "five" => to("system", "load5"),
            "fifteen" => to("system", "load15"),
            _ => keep("system"),
        },
        "disk" => {
            let field = match f {
                "reads_merged" => "merged_reads",
                "writes_merged" => "merged_writes",
                "io_weighted_time" => "weighted_io_time",
                "io" => "iops_in_progress",
                "read_thruput" => "read_bytes",
                "write_thruput" => "write_bytes",
                _ => f,
            };
            Target { measurement: "diskio", field, tags: TagMap { rename: Some(("device", "name")), ..TagMap::NONE } }
        }
        "fs" => {
            Target { measurement: "disk", field: f, tags: TagMap { strip: Some(("device", "/dev/")), ..TagMap::NONE } }
        }
        // The disk module's node_exporter-only gauges (`readonly`, `device_error`), beside `fs`.
        "filesystem" => Target {
            measurement: "disk",
            field: f,
            tags: TagMap { rename: Some(("mountpoint", "path")), strip: Some(("device", "/dev/")), add: None },
        },
        "net" => {
            let field = match f {
                "rx_bytes" => "bytes_recv",
                "tx_bytes" => "bytes_sent",
                "rx_packets" => "packets_recv",
                "tx_packets" => "packets_sent",
                "rx_errs" => "err_in",
                "tx_errs" => "err_out",
                "rx_drop" => "drop_in",
                "tx_drop" => "drop_out",
                _ => f,
            };
            Target { measurement: "net", field, tags: TagMap::NONE }
        }
        "mem" => match f {
            "swap_used" => to("swap", "used"),
            "swap_used_percent" => to("swap", "used_percent"),
            _ => Target { measurement: "mem", field: mem_field(f), tags: TagMap::NONE },
        },
        "system" => match f {
            "boot_time" => to("kernel", "boot_time"),
            _ => keep("system"),
        },
        "proc" => {
            let tags = TagMap { rename: Some(("process", "process_name")), ..TagMap::NONE };
            let (measurement, field) = match f {
                "count" => ("procstat_lookup", "pid_count"),
                "mem_resident" => ("procstat", "memory_rss"),
                "thread_count" => ("procstat", "num_threads"),
                "voluntary_ctxt_per_sec" => ("procstat", "voluntary_context_switches"),
                "nonvoluntary_ctxt_per_sec" => ("procstat", "involuntary_context_switches"),
                _ => ("procstat", f),
            };
            Target { measurement, field, tags }
        }
        _ => Target { measurement: m, field: f, tags: TagMap::NONE },
    }
}

fn cpu<'a>(p: &'a Point, f: &'a str) -> Target<'a> {
    let to = |measurement: &'static str, field: &'static str| Target { measurement, field, tags: TagMap::NONE };
    match f {
        "procs_running" => return to("processes", "running"),
        "procs_blocked" => return to("processes", "blocked"),
        "procs_forked_per_sec" => return to("kernel", "processes_forked"),
        "ctxt_per_sec" => return to("kernel", "context_switches"),
        "cores" => return to("system", "n_cpus"),
        _ => {}
    }
    let field = match f {
        "user" => "usage_user",
        "nice" => "usage_nice",
        "system" => "usage_system",
        "idle" => "usage_idle",
        "iowait" => "usage_iowait",
        "irq" => "usage_irq",
        "softirq" => "usage_softirq",
        "steal" => "usage_steal",
        "guest" => "usage_guest",
        "guest_nice" => "usage_guest_nice",
        _ => f,
    };
    // Telegraf's cpu rows always carry `cpu`: a core (`cpu0`) or `cpu-total`.
    let add = if p.tags.iter().any(|(k, _)| k == "cpu") { None } else { Some(("cpu", "cpu-total")) };
    Target { measurement: "cpu", field, tags: TagMap { add, ..TagMap::NONE } }
}

/// `/proc/meminfo` keys (as the memory module names them) to Telegraf's `mem` fields.
fn mem_field(f: &str) -> &str {
    match f {
        "memtotal" => "total",
        "memfree" => "free",
        "memavailable" => "available",
        "buffers" => "buffered",
        "swapcached" => "swap_cached",
        "swaptotal" => "swap_total",
        "swapfree" => "swap_free",
        "writeback" => "write_back",
        "writebacktmp" => "write_back_tmp",
        "shmem" => "shared",
        "pagetables" => "page_tables",
        "commitlimit" => "commit_limit",
        "vmalloctotal" => "vmalloc_total",
        "vmallocused" => "vmalloc_used",
        "vmallocchunk" => "vmalloc_chunk",
        "hugepages_total" => "huge_pages_total",
        "hugepages_free" => "huge_pages_free",
        "hugepagesize" => "huge_page_size",
        "hightotal" => "high_total",
        "highfree" => "high_free",
        "lowtotal" => "low_total",
        "lowfree" => "low_free",
        // Same name in both: cached, active, inactive, active_anon, inactive_anon,
        // active_file, inactive_file, unevictable, dirty, mapped, slab, sreclaimable,
        // sunreclaim, committed_as, used, used_percent. Others keep their badger name.
        _ => f,
    }
}
