//! `system`: mostly static facts about the machine: processors, CPU speed and cache, number of
//! disks, uptime and boot time.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `cpu.cores` | | int | gauge | processors listed in `/proc/cpuinfo` (read at start) |
//! | `cpu.speed` | MHz | float | gauge | current clock of the first processor: `cpu MHz` of `/proc/cpuinfo` (read at start where it cannot change: see below), else `/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq` ÷ 1000; absent if neither exists |
//! | `cpu.cache_size` | KB | int | gauge | `cache size` of the first processor (read at start); absent if cpuinfo has none (most non-x86) |
//! | `disk.count` | | int | gauge | whole disks of every kind: entries of `/sys/block` except `loop*`, `ram*`, `zram*`, `fd*`, `sr*` (without sysfs: such names in `/proc/partitions` that are not partitions) |
//! | `system.uptime` | s | float | gauge | seconds since boot (`/proc/uptime`) |
//! | `system.boot_time` | s | int | gauge | boot time, epoch seconds (`btime` of `/proc/stat`, read at start) |
//!
//! Fields of `/proc/cpuinfo` are looked up by key, never by line number, so the module works
//! on every architecture. `cpu.speed` reads only the first processor's block of cpuinfo, and
//! only once, at start, on x86 without the `aperfmperf` flag and without a cpufreq driver
//! (most virtual machines): there the kernel prints the clock it calibrated at boot, which
//! never changes.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::path::PathBuf;
use std::time::Instant;

use procfs_core::{CpuInfo, FromBufRead};
use serde::Deserialize;

use super::disk::{is_partition_name, DEFAULT_DEVICE_EXCLUDES};
use badger_api::matcher::Matcher;
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::{is_kernel_fs, read_to_string, ProcFile};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "system",
    aliases: &[],
    summary: "processors, CPU speed and cache, disk count, uptime, boot time",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let unavailable = |e: CollectError| BuildError::Unavailable(e.0);

    let cpuinfo_path = ctx.roots.proc_path("cpuinfo");
    let cpuinfo = read_to_string(&cpuinfo_path).map_err(unavailable)?;
    let info = CpuInfo::from_buf_read(cpuinfo.as_bytes())
        .map_err(|e| BuildError::Unavailable(format!("{}: {e}", cpuinfo_path.display())))?;
    let has_processor = info.get_field(0, "processor").is_some();
    let cores = has_processor.then(|| info.num_cores() as i64);
    let cache_kb = info.get_field(0, "cache size").and_then(parse_cache_size);
    let freq = ctx.roots.sys_path("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq");
    let mhz = info.get_field(0, "cpu MHz");
    let speed = if let Some(v) = mhz.filter(|_| !freq.exists() && is_boot_constant(info.get_field(0, "flags"))) {
        v.parse().map_or(Speed::None, Speed::Fixed)
    } else if mhz.is_some() {
        Speed::CpuInfo(ProcFile::new(cpuinfo_path))
    } else if freq.exists() {
        Speed::Sysfs(ProcFile::new(freq))
    } else {
        Speed::None
    };

    let stat = read_to_string(&ctx.roots.proc_path("stat")).map_err(unavailable)?;
    let mut parsed = super::cpu::ProcStat::default();
    super::cpu::parse(&stat, &mut parsed);

    let mut uptime = ProcFile::new(ctx.roots.proc_path("uptime"));
    uptime.probe().map_err(BuildError::Unavailable)?;

    Ok(Box::new(System {
        cores,
        cache_kb,
        speed,
        sys_block: BlockDir { path: ctx.roots.sys_path("block"), dir: None },
        partitions: ctx.roots.proc_path("partitions"),
        exclude: Matcher::from_static(DEFAULT_DEVICE_EXCLUDES),
        uptime,
        boot_time: parsed.btime,
    }))
}

/// `1024 KB` → 1024.
pub fn parse_cache_size(value: &str) -> Option<i64> {
    value.split_ascii_whitespace().next()?.parse().ok()
}

/// The value of `key` in the first processor block of `/proc/cpuinfo` text.
pub fn first_block_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    for line in text.lines() {
        if line.trim().is_empty() {
            // The end of the first block (blank lines before it are skipped by `lines`).
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim() == key {
                return Some(v.trim());
            }
        }
    }
    None
}

/// The first field of `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Whole disks in `/proc/partitions` (the fallback of `disk.count`).
pub fn count_partitions_disks(text: &str, exclude: &Matcher) -> i64 {
    text.lines()
        .filter_map(|l| {
            let f: [&str; 4] = {
                let mut it = l.split_ascii_whitespace();
                [it.next()?, it.next()?, it.next()?, it.next()?]
            };
            // Skip the header: the major number must be numeric.
            f[0].parse::<u32>().ok()?;
            Some(f[3])
        })
        .filter(|name| !exclude.matches(name) && !is_partition_name(name))
        .count() as i64
}

/// Whether cpuinfo's `cpu MHz` is a constant, given the first processor's `flags` and no
/// cpufreq driver: x86 prints the APERF/MPERF-measured clock when the CPU has them
/// (`aperfmperf`), else the cpufreq driver's current clock, else `cpu_khz`, the clock
/// calibrated at boot. Without the flag and the driver (most virtual machines) it never
/// changes, so reading it again every tick (the kernel formats the whole processor block,
/// flags and all) would only cost CPU.
fn is_boot_constant(flags: Option<&str>) -> bool {
    flags.is_some_and(|f| !f.split_ascii_whitespace().any(|flag| flag == "aperfmperf"))
}

enum Speed {
    /// `cpu MHz` of cpuinfo, read at start: x86 without `aperfmperf` or cpufreq.
    Fixed(f64),
    /// The first processor block of cpuinfo (read up to its `cpu MHz` line).
    CpuInfo(ProcFile),
    /// `scaling_cur_freq`, kHz.
    Sysfs(ProcFile),
    None,
}

/// Whether `buf` holds the end of the first processor block or a whole `cpu MHz` line.
fn first_block_is_read(buf: &[u8]) -> bool {
    const KEY: &[u8] = b"\ncpu MHz";
    if buf.windows(2).any(|w| w == b"\n\n") {
        return true;
    }
    match buf.windows(KEY.len()).position(|w| w == KEY) {
        Some(at) => buf[at + KEY.len()..].contains(&b'\n'),
        None => false,
    }
}

impl Speed {
    fn mhz(&mut self) -> Option<f64> {
        match self {
            Speed::Fixed(mhz) => Some(*mhz),
            // Only the first processor's block, and of it only up to the `cpu MHz` line.
            Speed::CpuInfo(file) => match file.read_prefix(64 * 1024, first_block_is_read) {
                Ok(text) => first_block_value(text, "cpu MHz")?.parse().ok(),
                Err(e) => {
                    log::debug!("{e}");
                    None
                }
            },
            Speed::Sysfs(file) => match file.read() {
                Ok(text) => text.trim().parse::<f64>().ok().map(|khz| khz / 1000.0),
                Err(e) => {
                    log::debug!("{e}");
                    None
                }
            },
            Speed::None => None,
        }
    }
}

struct System {
    cores: Option<i64>,
    cache_kb: Option<i64>,
    speed: Speed,
    sys_block: BlockDir,
    partitions: PathBuf,
    exclude: Matcher,
    uptime: ProcFile,
    boot_time: Option<u64>,
}

/// `/sys/block`, kept open from one collection to the next when it is on sysfs: each count
/// rewinds it and reads the entries again (sysfs lists the devices as they are at each
/// read), which saves the open, fstat and close that listing it afresh costs every tick.
struct BlockDir {
    path: PathBuf,
    dir: Option<rustix::fs::Dir>,
}

impl BlockDir {
    /// Entries whose names `exclude` does not match; `None` when the directory cannot be read.
    fn count(&mut self, exclude: &Matcher) -> Option<i64> {
        use rustix::fs::{Mode, OFlags};
        let (mut dir, keep) = match self.dir.take() {
            Some(dir) => (dir, true),
            None => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let fd = rustix::fs::open(&self.path, flags, Mode::empty()).ok()?;
                let keep = is_kernel_fs(&fd);
                (rustix::fs::Dir::new(fd).ok()?, keep)
            }
        };
        dir.rewind();
        let mut n = 0;
        while let Some(entry) = dir.read() {
            let entry = entry.ok()?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." && std::str::from_utf8(name).is_ok_and(|n| !exclude.matches(n)) {
                n += 1;
            }
        }
        if keep {
            self.dir = Some(dir);
        }
        Some(n)
    }
}

impl System {
    fn disk_count(&mut self) -> Option<i64> {
        match self.sys_block.count(&self.exclude) {
            Some(n) => Some(n),
            None => match std::fs::read_to_string(&self.partitions) {
                Ok(text) => Some(count_partitions_disks(&text, &self.exclude)),
                Err(e) => {
                    log::debug!("no disk count: {}: {e}", self.partitions.display());
                    None
                }
            },
        }
    }
}

impl Module for System {
    fn shares_thread(&self) -> bool {
        // Reads only kernel text files.
        true
    }

    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        if let Some(v) = self.cores {
            out.push(Point::simple("cpu", "cores", "", Value::Int(v)));
        }
        if let Some(v) = self.speed.mhz() {
            out.push(Point::simple("cpu", "speed", "MHz", Value::Float(v)));
        }
        if let Some(v) = self.cache_kb {
            out.push(Point::simple("cpu", "cache_size", "KB", Value::Int(v)));
        }
        if let Some(v) = self.disk_count() {
            out.push(Point::simple("disk", "count", "", Value::Int(v)));
        }
        let text = self.uptime.read()?;
        let uptime = parse_uptime(text)
            .ok_or_else(|| CollectError(format!("{}: unexpected format", self.uptime.path().display())))?;
        out.push(Point::simple("system", "uptime", "s", Value::Float(uptime)));
        if let Some(v) = self.boot_time {
            out.push(Point::simple("system", "boot_time", "s", Value::from(v)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("system.rs");

    #[test]
    fn parsers() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2596.122\ncache size\t: 1024 KB\n\n\
                    processor\t: 1\ncpu MHz\t\t: 1.0\n";
        assert_eq!(first_block_value(text, "cpu MHz"), Some("2596.122"));
        assert_eq!(first_block_value(text, "bogomips"), None);
        assert_eq!(parse_cache_size("1024 KB"), Some(1024));
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_uptime("606.37 1147.57\n"), Some(606.37));
        assert_eq!(parse_uptime(""), None);
        let parts = "major minor  #blocks  name\n\n 8 0 1 sda\n 8 1 1 sda1\n 7 0 1 loop0\n 259 0 1 nvme0n1\n";
        let ex = Matcher::from_static(DEFAULT_DEVICE_EXCLUDES);
        assert_eq!(count_partitions_disks(parts, &ex), 2);
    }

    /// (tree, cores, speed t0, speed t1, cache, disk.count)
    fn expected(tree: &str) -> (i64, Option<f64>, Option<f64>, Option<i64>, i64) {
        let mhz = |snap| {
            fixture::read(tree, snap, "proc/cpuinfo")
                .lines()
                .find(|l| l.starts_with("cpu MHz"))
                .map(|l| l.split(':').nth(1).unwrap().trim().parse().unwrap())
        };
        match tree {
            "vm-6.18" | "vm-6.18-many" => (2, mhz("t0"), mhz("t1"), Some(1024), 1),
            "linux-4.19-synth" => (4, Some(2500.0), Some(1700.0), None, 5),
            _ => unreachable!(),
        }
    }

    fn first(text: &str) -> &str {
        text.split_whitespace().next().unwrap()
    }

    #[test]
    fn on_every_tree() {
        for tree in fixture::TREES {
            let (cores, speed0, speed1, cache, disks) = expected(tree);
            assert!(speed0.is_some());
            let root = FixtureRoot::new(tree);
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            for (snap, at, speed) in [("t0", 0.0, speed0), ("t1", 1.0, speed1)] {
                if snap == "t1" {
                    root.advance();
                }
                let p = fixture::collect(m.as_mut(), at);
                fixture::assert_documented(SOURCE, &p);
                let uptime: f64 = first(&fixture::read(tree, snap, "proc/uptime")).parse().unwrap();
                let stat = fixture::read(tree, "t0", "proc/stat");
                let btime: i64 = stat.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().parse().unwrap();
                let mut want = vec![("cpu.cores", Value::Int(cores)), ("cpu.speed", Value::Float(speed.unwrap()))];
                if let Some(c) = cache {
                    want.push(("cpu.cache_size", Value::Int(c)));
                }
                want.extend([
                    ("disk.count", Value::Int(disks)),
                    ("system.uptime", Value::Float(uptime)),
                    ("system.boot_time", Value::Int(btime)),
                ]);
                let got: Vec<(&str, Value)> = p.iter().map(|p| (p.name.as_str(), p.value)).collect();
                assert_eq!(got, want, "{tree} {snap}");
            }
        }
    }

    #[test]
    fn disk_count_from_partitions_without_sysfs() {
        for tree in fixture::TREES {
            let root = FixtureRoot::new(tree);
            root.remove("sys/block");
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            let p = fixture::collect(m.as_mut(), 0.0);
            assert_eq!(fixture::int(&p, "disk.count"), expected(tree).4, "{tree}");
            root.remove("proc/partitions");
            let p = fixture::collect(m.as_mut(), 1.0);
            assert_eq!(fixture::value(&p, "disk.count"), None);
        }
    }

    #[test]
    fn speed_is_absent_without_a_source() {
        let root = FixtureRoot::new("linux-4.19-synth");
        root.remove("sys/devices");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p), ["cpu.cores", "disk.count", "system.uptime", "system.boot_time"]);
    }

    #[test]
    fn speed_reads_only_the_first_block_by_key() {
        let root = with_aperfmperf("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        // The key moved and the second processor differs: still the first one's value.
        root.write(
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: X\nflags\t\t: a aperfmperf\ncpu MHz\t\t: 1234.5\n\n\
             processor\t: 1\ncpu MHz\t\t: 999.0\n\n",
        );
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::float(&p, "cpu.speed"), 1234.5);
        assert_eq!(fixture::int(&p, "cpu.cores"), 2);
    }

    /// A fixture tree whose processors have the `aperfmperf` flag (a measured clock).
    fn with_aperfmperf(tree: &str) -> FixtureRoot {
        let root = FixtureRoot::new(tree);
        let text = root.text("proc/cpuinfo").replace("\nflags\t\t: ", "\nflags\t\t: aperfmperf ");
        root.write("proc/cpuinfo", &text);
        root
    }

    /// x86 without `aperfmperf` (and without cpufreq) prints the clock calibrated at boot:
    /// read once, at start. With the flag, it is read on every collection.
    #[test]
    fn speed_is_read_once_where_the_kernel_prints_a_constant() {
        assert!(is_boot_constant(Some("fpu tsc constant_tsc hypervisor")));
        assert!(!is_boot_constant(Some("fpu tsc aperfmperf")));
        assert!(!is_boot_constant(None), "no flags: not x86, or not known");
        for (root, after) in [(FixtureRoot::new("vm-6.18"), 2596.122), (with_aperfmperf("vm-6.18"), 1000.5)] {
            let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
            assert_eq!(fixture::float(&fixture::collect(m.as_mut(), 0.0), "cpu.speed"), 2596.122);
            let text = root.text("proc/cpuinfo").replace("2596.122", "1000.5");
            root.write("proc/cpuinfo", &text);
            assert_eq!(fixture::float(&fixture::collect(m.as_mut(), 1.0), "cpu.speed"), after);
        }
    }

    #[test]
    fn the_first_block_read_stops_at_the_speed_line() {
        assert!(!first_block_is_read(b"processor\t: 0\ncpu MHz\t\t: 12"));
        assert!(first_block_is_read(b"processor\t: 0\ncpu MHz\t\t: 1234.5\nflags"));
        assert!(first_block_is_read(b"processor\t: 0\nflags\t: a\n\nprocessor"));
        assert!(!first_block_is_read(b"processor\t: 0\nflags\t: a\n"));
        // A line longer than one 512-byte read still ends the block where it should.
        let root = with_aperfmperf("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let flags = "f ".repeat(600) + "aperfmperf";
        root.write("proc/cpuinfo", &format!("processor\t: 0\nflags\t\t: {flags}\ncpu MHz\t\t: 2000.25\n\n"));
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::float(&p, "cpu.speed"), 2000.25);
    }

    #[test]
    fn config_and_missing_files() {
        let root = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &root.ctx(), "{\n\n\"cores\": 4}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("cores"), Some(3))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
        for file in ["proc/uptime", "proc/stat", "proc/cpuinfo"] {
            let root = FixtureRoot::new("vm-6.18");
            root.remove(file);
            match fixture::build_error(&SPEC, &root.ctx(), "{}") {
                BuildError::Unavailable(m) => assert!(m.contains(file), "{m}"),
                BuildError::Config(e) => panic!("{e}"),
            }
        }
    }
}
