//! `disk`: block device I/O from `/proc/diskstats`, and filesystem usage of the mounts in
//! `/proc/mounts` (statvfs, as `df` shows it).
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `disk.reads.<d>` | | float | rate | reads completed per second |
//! | `disk.reads_merged.<d>` | | float | rate | adjacent reads merged per second |
//! | `disk.read_sectors.<d>` | | float | rate | 512-byte sectors read per second |
//! | `disk.read_time.<d>` | ms | float | rate | milliseconds spent reading, per second |
//! | `disk.writes.<d>` | | float | rate | writes completed per second |
//! | `disk.writes_merged.<d>` | | float | rate | adjacent writes merged per second |
//! | `disk.write_sectors.<d>` | | float | rate | 512-byte sectors written per second |
//! | `disk.write_time.<d>` | ms | float | rate | milliseconds spent writing, per second |
//! | `disk.io.<d>` | | int | gauge | I/Os in flight now |
//! | `disk.io_time.<d>` | ms | float | rate | milliseconds the device was busy, per second |
//! | `disk.io_weighted_time.<d>` | ms | float | rate | busy milliseconds × I/Os in flight, per second |
//! | `disk.read_thruput.<d>` | B | float | rate | bytes read per second (`read_sectors` × 512) |
//! | `disk.write_thruput.<d>` | B | float | rate | bytes written per second (`write_sectors` × 512) |
//! | `disk.reads_completed_total.<d>` | | int | counter | reads completed since boot |
//! | `disk.reads_merged_total.<d>` | | int | counter | adjacent reads merged since boot |
//! | `disk.read_bytes_total.<d>` | B | int | counter | bytes read since boot (sectors × 512) |
//! | `disk.read_time_seconds_total.<d>` | s | float | counter | seconds spent reading since boot |
//! | `disk.writes_completed_total.<d>` | | int | counter | writes completed since boot |
//! | `disk.writes_merged_total.<d>` | | int | counter | adjacent writes merged since boot |
//! | `disk.written_bytes_total.<d>` | B | int | counter | bytes written since boot (sectors × 512) |
//! | `disk.write_time_seconds_total.<d>` | s | float | counter | seconds spent writing since boot |
//! | `disk.io_time_seconds_total.<d>` | s | float | counter | seconds the device was busy since boot |
//! | `disk.io_time_weighted_seconds_total.<d>` | s | float | counter | busy seconds × I/Os in flight since boot |
//! | `disk.discards_completed_total.<d>` | | int | counter | discards completed since boot (kernel 4.18+) |
//! | `disk.discards_merged_total.<d>` | | int | counter | adjacent discards merged since boot (4.18+) |
//! | `disk.discarded_sectors_total.<d>` | | int | counter | 512-byte sectors discarded since boot (4.18+) |
//! | `disk.discard_time_seconds_total.<d>` | s | float | counter | seconds spent discarding since boot (4.18+) |
//! | `disk.flush_requests_total.<d>` | | int | counter | flush requests completed since boot (5.5+) |
//! | `disk.flush_requests_time_seconds_total.<d>` | s | float | counter | seconds spent flushing since boot (5.5+) |
//! | `fs.total.<mount>` | B | int | gauge | size of the filesystem (`f_blocks` × `f_frsize`) |
//! | `fs.used.<mount>` | B | int | gauge | bytes in use (`f_blocks` − `f_bfree`) |
//! | `fs.free.<mount>` | B | int | gauge | bytes available to unprivileged users (`f_bavail`) |
//! | `fs.used_percent.<mount>` | percent | float | gauge | used / (used + free) × 100, as `df` |
//! | `fs.inodes_total.<mount>` | | int | gauge | inodes (`f_files`) |
//! | `fs.inodes_used.<mount>` | | int | gauge | inodes in use (`f_files` − `f_ffree`) |
//! | `fs.inodes_free.<mount>` | | int | gauge | free inodes (`f_ffree`) |
//! | `fs.inodes_used_percent.<mount>` | percent | float | gauge | inodes_used / inodes_total × 100 |
//! | `disk.info.<d>` | | int | gauge | always 1; tags `device`, `major`, `minor` (from `/proc/diskstats`) and `path`, `wwn`, `model`, `serial`, `revision` (udev's `ID_PATH`, `ID_WWN`, `ID_MODEL`, `ID_SERIAL_SHORT` else `SCSI_IDENT_SERIAL`, `ID_REVISION`; empty without udev data) |
//! | `filesystem.readonly.<mount>` | | int | gauge | 1 when the mount options hold `ro`, else 0 |
//! | `filesystem.device_error.<mount>` | | int | gauge | 1 when statvfs of the mount failed (its `fs.*` are then absent), else 0 |
//!
//! `disk.*` points carry the tag `device`; `fs.*` points carry `path` (the mount point),
//! `device` (the mount source) and `fstype`. Devices come in `/proc/diskstats` order and mounts
//! in `/proc/mounts` order; a mount point listed twice is reported once, as its last
//! (uppermost) mount. Rates are absent on the first collection of a device and when a counter
//! went backwards; `disk.io` is present from the first. `fs.used_percent` is absent when
//! used + free is 0, `fs.inodes_used_percent` when the filesystem has no inodes (btrfs).
//! A mount whose statvfs fails has no `fs.*` points in that collection, only
//! `filesystem.device_error` 1 and `filesystem.readonly`.
//!
//! `disk.info` (after a device's counters) and `filesystem.*` (after a mount's `fs.*`) are
//! node_exporter's `node_disk_info` and `node_filesystem_readonly`/`_device_error`: the
//! `filesystem.*` points carry node_exporter's tags `mountpoint`, `device`, `fstype`. The udev
//! properties come from `/run/udev/data/b<major>:<minor>` under `host_root` (its `E:KEY=value`
//! lines, at most 64 KiB read), read when a device is first seen and again once a minute (not
//! on every collection, as node_exporter does: they change only when udev first processes the
//! device); a host without udev (a container, this project's build VM) gives empty tags.
//!
//! The module shares the core's module thread (`Module::shares_thread`) when every
//! filesystem it watches at start is local; one network or FUSE filesystem (`nfs`, `cifs`,
//! `ceph`, `fuse.*`, … `REMOTE_FS_TYPES`), whose statvfs can wait on a server, gives it a
//! thread of its own.
//!
//! The `*_total` counters (kind `counter`: raw cumulative values, hidden from the emitters
//! that print Stat Badger's stats, read by exposition formats such as OTLP and Prometheus;
//! built only when an emitter that reads them is configured: otlp, prometheus, pushgateway,
//! remote_write)
//! follow node_exporter's `node_disk_*` names and units; they are present on every collection
//! of a selected device, the first included, after its rates. The discard counters need the
//! 18-field lines of kernel 4.18+, the flush counters the 20-field lines of 5.5+; an older
//! kernel's lines give none.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `disks_to_check` | all whole disks | devices to report (names or globs, array or comma string), used as given, partitions allowed. When empty: every entry of `/sys/block` except `loop*`, `ram*`, `zram*`, `fd*`, `sr*` (without sysfs: every name that is not a partition such as `sda1`, `nvme0n1p1`, `mmcblk0p1`) |
//! | `filesystems` | `true` | report `fs.*` for mounted filesystems |
//! | `mount_points` | all | mount points to report (names or globs) |
//! | `fs_types_exclude` | virtual filesystems | filesystem types not reported: `tmpfs`, `devtmpfs`, `proc`, `sysfs`, `overlay`, `squashfs`, `cgroup`, `cgroup2`, … (see `VIRTUAL_FS_TYPES`); `[]` reports every type |

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procfs_core::DiskStat;
use serde::Deserialize;

use badger_api::matcher::{Matcher, NameList};
use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::procfile::ProcFile;
use badger_api::rate::Rate;

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "disk",
    aliases: &[],
    summary: "block device I/O (/proc/diskstats) and filesystem usage (statvfs)",
    build,
};

/// Device names that are never whole disks worth reporting by default.
pub const DEFAULT_DEVICE_EXCLUDES: &[&str] = &["loop*", "ram*", "zram*", "fd*", "sr*"];

/// Filesystem types left out by default: kernel, memory and container-layer filesystems.
pub const VIRTUAL_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    disks_to_check: NameList,
    #[serde(default = "yes")]
    filesystems: bool,
    #[serde(default)]
    mount_points: NameList,
    #[serde(default)]
    fs_types_exclude: Option<NameList>,
}

/// What statvfs says about one filesystem (the fields `df` uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// `f_frsize`: the unit of the block counts.
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// How the module asks for a filesystem's usage; tests inject their own.
pub type StatvfsFn = fn(&Path) -> io::Result<FsUsage>;

/// The real statvfs(3).
pub fn statvfs(path: &Path) -> io::Result<FsUsage> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FsUsage {
        block_size: s.f_frsize,
        blocks: s.f_blocks,
        blocks_free: s.f_bfree,
        blocks_avail: s.f_bavail,
        inodes: s.f_files,
        inodes_free: s.f_ffree,
    })
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    Ok(Box::new(Disk::new(ctx, conf, statvfs)?))
}

fn matcher(conf: &PluginConf, key: &str, list: &NameList) -> Result<Matcher, BuildError> {
    Matcher::new(list).map_err(|m| BuildError::Config(conf.error(key, m)))
}

/// Is `name` a partition by its name alone (`sda1`, `vdb2`, `nvme0n1p1`, `mmcblk0p1`, `loop8p1`)?
/// Used when `/sys/block` cannot be read.
pub fn is_partition_name(name: &str) -> bool {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == name.len() {
        return false;
    }
    // `<disk ending in a digit>p<N>`: nvme0n1p1, mmcblk0p1, loop8p1, nbd0p1, md0p1.
    if let Some(disk) = trimmed.strip_suffix('p') {
        if disk.ends_with(|c: char| c.is_ascii_digit()) {
            return true;
        }
    }
    // `<sd|vd|xvd|hd><letters><N>`: sda1, vdb2, xvda1, hdc3.
    ["sd", "vd", "xvd", "hd"].iter().any(|prefix| {
        trimmed
            .strip_prefix(prefix)
            .is_some_and(|letters| !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase()))
    })
}

/// How whole disks are told from partitions and other block devices.
#[derive(Debug, Clone)]
pub enum WholeDisks {
    /// Entries of `<sys>/block` are whole disks (partitions live below them).
    Sysfs(PathBuf),
    /// No sysfs: whatever [`is_partition_name`] does not call a partition.
    Names,
}

impl WholeDisks {
    /// Uses `<sys>/block` when it can be listed.
    pub fn detect(sys_block: PathBuf) -> WholeDisks {
        match std::fs::read_dir(&sys_block) {
            Ok(_) => WholeDisks::Sysfs(sys_block),
            Err(e) => {
                log::debug!("{}: {e}; telling partitions by name", sys_block.display());
                WholeDisks::Names
            }
        }
    }

    pub fn is_whole(&self, name: &str) -> bool {
        match self {
            // The kernel names `cciss/c0d0` `cciss!c0d0` in sysfs.
            WholeDisks::Sysfs(dir) => dir.join(name.replace('/', "!")).exists(),
            WholeDisks::Names => !is_partition_name(name),
        }
    }
}

/// Which devices are reported.
#[derive(Debug)]
enum DeviceSelection {
    Listed(Matcher),
    Default { exclude: Matcher, whole: WholeDisks },
}

impl DeviceSelection {
    fn selects(&self, name: &str) -> bool {
        match self {
            DeviceSelection::Listed(m) => m.matches(name),
            DeviceSelection::Default { exclude, whole } => !exclude.matches(name) && whole.is_whole(name),
        }
    }
}

/// The counters of a diskstats line that become rates, with their stat names and units,
/// in the order they are emitted (`io` goes between `write_time` and `io_time`).
const RATES: [(&str, &str); 10] = [
    ("reads", ""),
    ("reads_merged", ""),
    ("read_sectors", ""),
    ("read_time", "ms"),
    ("writes", ""),
    ("writes_merged", ""),
    ("write_sectors", ""),
    ("write_time", "ms"),
    ("io_time", "ms"),
    ("io_weighted_time", "ms"),
];

fn counters(d: &DiskStat) -> [u64; 10] {
    [
        d.reads,
        d.merged,
        d.sectors_read,
        d.time_reading,
        d.writes,
        d.writes_merged,
        d.sectors_written,
        d.time_writing,
        d.time_in_progress,
        d.weighted_time_in_progress,
    ]
}

/// Parses `/proc/diskstats` (14, 18 or 20 fields a line); malformed lines are skipped.
pub fn parse(text: &str) -> impl Iterator<Item = DiskStat> + '_ {
    text.lines().filter_map(|line| match DiskStat::from_line(line) {
        Ok(d) => Some(d),
        Err(e) => {
            if !line.trim().is_empty() {
                log::debug!("diskstats: skipping {line:?}: {e}");
            }
            None
        }
    })
}

/// Undoes the octal escapes of `/proc/mounts` (`\040` space, `\011` tab, `\012` newline,
/// `\134` backslash).
pub fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(oct) = bytes.get(i + 1..i + 4) {
                if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                    let v = oct.iter().fold(0u32, |a, b| a * 8 + u32::from(b - b'0'));
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// One line of `/proc/mounts`, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub path: String,
    pub fstype: String,
    /// The options (fourth field) hold `ro`.
    pub readonly: bool,
}

/// Parses `/proc/mounts`; a mount point listed more than once keeps only its last line.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(source), Some(path), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let readonly = f.next().is_some_and(|o| o.split(',').any(|o| o == "ro"));
        let path = unescape(path);
        mounts.retain(|m| m.path != path);
        mounts.push(Mount {
            source: unescape(source).into_owned(),
            path: path.into_owned(),
            fstype: fstype.to_string(),
            readonly,
        });
    }
    mounts
}

/// The `fs.*` values of one filesystem, in stat order; `None` for an absent stat.
pub fn fs_values(u: &FsUsage) -> [(&'static str, &'static str, Option<Value>); 8] {
    let bytes = |blocks: u64| Value::from(blocks.saturating_mul(u.block_size));
    let used = u.blocks.saturating_sub(u.blocks_free);
    let avail = u.blocks_avail;
    let used_percent = used.checked_add(avail).filter(|&t| t > 0).map(|t| Value::Float(used as f64 / t as f64 * 100.0));
    let inodes_used = u.inodes.saturating_sub(u.inodes_free);
    let inodes_used_percent = (u.inodes > 0).then(|| Value::Float(inodes_used as f64 / u.inodes as f64 * 100.0));
    [
        ("total", "B", Some(bytes(u.blocks))),
        ("used", "B", Some(bytes(used))),
        ("free", "B", Some(bytes(avail))),
        ("used_percent", "percent", used_percent),
        ("inodes_total", "", Some(Value::from(u.inodes))),
        ("inodes_used", "", Some(Value::from(inodes_used))),
        ("inodes_free", "", Some(Value::from(u.inodes_free))),
        ("inodes_used_percent", "percent", inodes_used_percent),
    ]
}

/// Rate state of one device seen in the last collection.
#[derive(Debug, Default)]
struct DeviceState {
    selected: bool,
    seen: bool,
    rates: [Rate; 10],
    /// Its `disk.info` point and when its udev data was read.
    info: Option<(Instant, Point)>,
}

/// How long a device's udev data is kept before it is read again.
const UDEV_REFRESH: Duration = Duration::from_secs(60);

/// Filesystem types whose statvfs can wait on a server or a user-space daemon: a disk module
/// that watches one of them runs on a thread of its own (`Module::shares_thread`).
const REMOTE_FS_TYPES: &[&str] = &[
    "9p",
    "afs",
    "beegfs",
    "ceph",
    "cifs",
    "davfs",
    "gfs2",
    "glusterfs",
    "gpfs",
    "lustre",
    "ncpfs",
    "nfs",
    "nfs4",
    "ocfs2",
    "smb3",
    "smbfs",
    "sshfs",
    "vboxsf",
    "virtiofs",
];

/// Whether statvfs of a filesystem of this type only asks the local kernel.
pub fn is_local_fs(fstype: &str) -> bool {
    !fstype.starts_with("fuse") && !REMOTE_FS_TYPES.contains(&fstype)
}

/// The filesystem part: which mounts, and the last parse of `/proc/mounts`.
struct Filesystems {
    file: ProcFile,
    host: PathBuf,
    mount_points: Matcher,
    exclude_types: Matcher,
    statvfs: StatvfsFn,
    /// The text `mounts` was parsed from; unchanged text is not parsed again.
    last_text: String,
    mounts: Vec<Mount>,
    loaded: bool,
}

impl Filesystems {
    fn refresh(&mut self) -> Result<(), CollectError> {
        // The kernel says when the mount table changed: no need to read it every tick.
        if self.loaded && !self.file.may_have_changed() {
            return Ok(());
        }
        let text = self.file.read()?;
        self.loaded = true;
        if text == self.last_text {
            return Ok(());
        }
        self.last_text.clear();
        self.last_text.push_str(text);
        let (points, types) = (&self.mount_points, &self.exclude_types);
        self.mounts = parse_mounts(&self.last_text)
            .into_iter()
            .filter(|m| !types.matches(&m.fstype))
            .filter(|m| points.is_empty() || points.matches(&m.path))
            .collect();
        Ok(())
    }

    fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), CollectError> {
        self.refresh()?;
        for m in &self.mounts {
            let path = self.host.join(m.path.trim_start_matches('/'));
            let usage = match (self.statvfs)(&path) {
                Ok(u) => Some(u),
                Err(e) => {
                    log::debug!("statvfs {}: {e}; only filesystem.device_error for this mount", path.display());
                    None
                }
            };
            for (field, units, value) in usage.as_ref().map(fs_values).into_iter().flatten() {
                if let Some(v) = value {
                    out.push(
                        Point::device("fs", field, units, "path", &m.path, v)
                            .with_tag("device", m.source.as_str())
                            .with_tag("fstype", m.fstype.as_str()),
                    );
                }
            }
            let node = |field, v: bool| {
                Point::device("filesystem", field, "", "mountpoint", &m.path, Value::Int(i64::from(v)))
                    .with_tag("device", m.source.as_str())
                    .with_tag("fstype", m.fstype.as_str())
            };
            out.push(node("readonly", m.readonly));
            out.push(node("device_error", usage.is_none()));
        }
        Ok(())
    }
}

fn push_rate(out: &mut Vec<Point>, field: &'static str, units: &'static str, device: &str, v: Option<f64>) {
    if let Some(v) = v {
        out.push(Point::device("disk", field, units, "device", device, Value::Float(v)));
    }
}

/// The node_exporter-style counters of one device line, in node_exporter's order.
fn push_counters(out: &mut Vec<Point>, d: &DiskStat) {
    let name = d.name.as_str();
    let int = |field, units, v: u64| Point::device("disk", field, units, "device", name, Value::from(v)).counter();
    let secs =
        |field, ms: u64| Point::device("disk", field, "s", "device", name, Value::Float(ms as f64 / 1000.0)).counter();
    out.extend([
        int("reads_completed_total", "", d.reads),
        int("reads_merged_total", "", d.merged),
        int("read_bytes_total", "B", d.sectors_read.saturating_mul(512)),
        secs("read_time_seconds_total", d.time_reading),
        int("writes_completed_total", "", d.writes),
        int("writes_merged_total", "", d.writes_merged),
        int("written_bytes_total", "B", d.sectors_written.saturating_mul(512)),
        secs("write_time_seconds_total", d.time_writing),
        secs("io_time_seconds_total", d.time_in_progress),
        secs("io_time_weighted_seconds_total", d.weighted_time_in_progress),
    ]);
    if let (Some(n), Some(m), Some(s), Some(t)) =
        (d.discards, d.discards_merged, d.sectors_discarded, d.time_discarding)
    {
        out.extend([
            int("discards_completed_total", "", n),
            int("discards_merged_total", "", m),
            int("discarded_sectors_total", "", s),
            secs("discard_time_seconds_total", t),
        ]);
    }
    if let (Some(n), Some(t)) = (d.flushes, d.time_flushing) {
        out.extend([int("flush_requests_total", "", n), secs("flush_requests_time_seconds_total", t)]);
    }
}

/// The most read of one udev data file.
const MAX_UDEV_FILE: u64 = 64 * 1024;

/// node_exporter's `node_disk_info` labels after `minor`, from udev's `E:KEY=value` lines.
pub fn udev_labels(text: &str) -> [(&'static str, String); 5] {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("E:")?.split_once('='))
            .find(|(k, _)| *k == key)
            .map_or(String::new(), |(_, v)| v.to_string())
    };
    let serial = Some(get("ID_SERIAL_SHORT")).filter(|s| !s.is_empty()).unwrap_or_else(|| get("SCSI_IDENT_SERIAL"));
    [
        ("path", get("ID_PATH")),
        ("wwn", get("ID_WWN")),
        ("model", get("ID_MODEL")),
        ("serial", serial),
        ("revision", get("ID_REVISION")),
    ]
}

fn udev_text(dir: &Path, d: &DiskStat) -> String {
    use std::io::Read;
    let mut text = String::new();
    let path = dir.join(format!("b{}:{}", d.major, d.minor));
    if let Ok(f) = std::fs::File::open(path) {
        if f.take(MAX_UDEV_FILE).read_to_string(&mut text).is_err() {
            text.clear();
        }
    }
    text
}

fn info_point(d: &DiskStat, udev: &Path) -> Point {
    let mut p = Point::device("disk", "info", "", "device", &d.name, Value::Int(1))
        .with_tag("major", d.major.to_string())
        .with_tag("minor", d.minor.to_string());
    for (k, v) in udev_labels(&udev_text(udev, d)) {
        p = p.with_tag(k, v);
    }
    p
}

struct Disk {
    /// udev's database, `/run/udev/data` under `host_root`.
    udev: PathBuf,
    diskstats: ProcFile,
    selection: DeviceSelection,
    devices: HashMap<String, DeviceState>,
    filesystems: Option<Filesystems>,
    /// Whether an emitter reads the counters (`ModuleContext::gauges_only`).
    counters: bool,
    /// Whether it may share the core's thread: every filesystem it watched when it was built
    /// is local (`is_local_fs`).
    local: bool,
}

impl Disk {
    fn new(ctx: &ModuleContext, conf: &PluginConf, statvfs: StatvfsFn) -> Result<Disk, BuildError> {
        let c: Config = conf.parse()?;
        let selection = if c.disks_to_check.is_empty() {
            DeviceSelection::Default {
                exclude: Matcher::from_static(DEFAULT_DEVICE_EXCLUDES),
                whole: WholeDisks::detect(ctx.roots.sys_path("block")),
            }
        } else {
            DeviceSelection::Listed(matcher(conf, "disks_to_check", &c.disks_to_check)?)
        };
        let mount_points = matcher(conf, "mount_points", &c.mount_points)?;
        let exclude_types = match &c.fs_types_exclude {
            Some(list) => matcher(conf, "fs_types_exclude", list)?,
            None => Matcher::from_static(VIRTUAL_FS_TYPES),
        };
        let mut diskstats = ProcFile::new(ctx.roots.proc_path("diskstats"));
        diskstats.probe().map_err(BuildError::Unavailable)?;
        let mut filesystems = if c.filesystems {
            let mut file = ProcFile::new(ctx.roots.proc_path("mounts"));
            file.probe().map_err(BuildError::Unavailable)?;
            Some(Filesystems {
                file,
                host: ctx.roots.host.clone(),
                mount_points,
                exclude_types,
                statvfs,
                last_text: String::new(),
                mounts: Vec::new(),
                loaded: false,
            })
        } else {
            None
        };
        let local = match &mut filesystems {
            Some(fs) => {
                fs.refresh().map_err(|e| BuildError::Unavailable(e.0))?;
                fs.mounts.iter().all(|m| is_local_fs(&m.fstype))
            }
            None => true,
        };
        let udev = ctx.roots.host.join("run/udev/data");
        let counters = !ctx.gauges_only;
        Ok(Disk { udev, diskstats, selection, devices: HashMap::new(), filesystems, counters, local })
    }
}

impl Module for Disk {
    /// On the shared thread while every filesystem it watches is local: statvfs of a local
    /// filesystem reads the kernel's counters. A network or FUSE filesystem can make it wait
    /// on a server, so then it has a thread of its own. (If a remote mount appears later and
    /// hangs, the core gives every shared module a thread of its own at the next tick.)
    fn shares_thread(&self) -> bool {
        self.local
    }

    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let Disk { udev, diskstats, selection, devices, filesystems, counters: with_counters, .. } = self;
        let text = diskstats.read()?;
        for d in parse(text) {
            let state = match devices.get_mut(&d.name) {
                Some(s) => s,
                None => {
                    let selected = selection.selects(&d.name);
                    devices.entry(d.name.clone()).or_insert(DeviceState { selected, ..DeviceState::default() })
                }
            };
            if state.seen {
                // The same name twice in one read: keep the first line's rates.
                continue;
            }
            state.seen = true;
            if !state.selected {
                continue;
            }
            let mut rates = [None; 10];
            for ((r, rate), v) in rates.iter_mut().zip(&mut state.rates).zip(counters(&d)) {
                *r = rate.update(v, now);
            }
            let name = d.name.as_str();
            for (&(field, units), &r) in RATES.iter().zip(&rates).take(8) {
                push_rate(out, field, units, name, r);
            }
            out.push(Point::device("disk", "io", "", "device", name, Value::from(d.in_progress)));
            for (&(field, units), &r) in RATES.iter().zip(&rates).skip(8) {
                push_rate(out, field, units, name, r);
            }
            push_rate(out, "read_thruput", "B", name, rates[2].map(|s| s * 512.0));
            push_rate(out, "write_thruput", "B", name, rates[6].map(|s| s * 512.0));
            if *with_counters {
                push_counters(out, &d);
            }
            let info = match state.info.take() {
                Some((read, p)) if now.saturating_duration_since(read) < UDEV_REFRESH => (read, p),
                _ => (now, info_point(&d, udev)),
            };
            out.push(state.info.insert(info).1.clone());
        }
        devices.retain(|_, s| std::mem::take(&mut s.seen));
        if let Some(fs) = filesystems {
            fs.collect(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;
    use badger_test_support::fixture::{self, FixtureRoot};

    const SOURCE: &str = include_str!("disk.rs");

    /// Default selection of every fixture tree.
    const DEFAULTS: &[(&str, &[&str])] = &[
        ("vm-6.18", &["vda"]),
        ("vm-6.18-many", &["vda"]),
        ("linux-4.19-synth", &["sda", "sdb", "nvme0n1", "dm-0", "md0"]),
    ];

    /// A fixture's diskstats, parsed independently: name → the numbers after the name.
    fn stats(tree: &str, snap: &str) -> Vec<(String, Vec<u64>)> {
        fixture::read(tree, snap, "proc/diskstats")
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2].to_string(), f[3..].iter().map(|x| x.parse().unwrap()).collect())
            })
            .collect()
    }

    fn fields_of(tree: &str, snap: &str, dev: &str) -> Vec<u64> {
        stats(tree, snap).into_iter().find(|(n, _)| n == dev).unwrap().1
    }

    fn fake_statvfs(path: &Path) -> io::Result<FsUsage> {
        if path.ends_with("boot") {
            return Err(io::Error::from_raw_os_error(13));
        }
        if path.ends_with("data") {
            return Ok(FsUsage::default());
        }
        if path.ends_with("backup disk") {
            return Ok(FsUsage {
                block_size: 512,
                blocks: 2000,
                blocks_free: 500,
                blocks_avail: 500,
                inodes: 0,
                inodes_free: 0,
            });
        }
        Ok(FsUsage {
            block_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_avail: 250,
            inodes: 100,
            inodes_free: 40,
        })
    }

    fn disk(root: &FixtureRoot, text: &str) -> Disk {
        match Disk::new(&root.ctx(), &fixture::conf("disk", text), fake_statvfs) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// The node_exporter-only gauges (`disk.info`, `filesystem.*`), tested on their own.
    fn node_only(p: &Point) -> bool {
        p.measurement == "filesystem" || (p.measurement == "disk" && p.field == "info")
    }

    /// The points Stat Badger printed (the counters and the node_exporter-only gauges left out).
    fn gauges(p: Vec<Point>) -> Vec<Point> {
        p.into_iter().filter(|p| p.kind == Kind::Gauge && !node_only(p)).collect()
    }

    /// The devices that have a `disk.io` point, in order.
    fn devices(points: &[Point]) -> Vec<String> {
        points.iter().filter_map(|p| p.name.strip_prefix("disk.io.")).map(String::from).collect()
    }

    fn mounts(points: &[Point]) -> Vec<String> {
        points.iter().filter_map(|p| p.name.strip_prefix("fs.total.")).map(String::from).collect()
    }

    #[test]
    fn parses_diskstats_of_every_age() {
        let text = "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n\
                    8 1 sda1 1 2 3 4 5 6 7 8 0 10 11 12 13 14 15\n\
                    259 0 nvme0n1 1 2 3 4 5 6 7 8 2 10 11 12 13 14 15 16 17\n\
                    8 16 sdb 1 2 3\n\
                    garbage\n\n";
        let d: Vec<DiskStat> = parse(text).collect();
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["sda", "sda1", "nvme0n1"]);
        assert_eq!(counters(&d[0]), [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(d[0].in_progress, 9);
        assert_eq!(counters(&d[2]), [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(d[2].in_progress, 2);
    }

    #[test]
    fn partition_names() {
        for p in ["sda1", "sdab12", "vdb2", "xvda1", "hdc3", "nvme0n1p1", "mmcblk0p2", "loop8p1"] {
            assert!(is_partition_name(p), "{p}");
        }
        for d in ["sda", "vda", "nvme0n1", "mmcblk0", "md0", "dm-0", "loop0", "zram0", "nbd1", "sr0", "xvda"] {
            assert!(!is_partition_name(d), "{d}");
        }
    }

    #[test]
    fn parses_mounts() {
        let text = "/dev/sda1 /boot ext4 rw 0 0\n\
                    /dev/sdb /mnt/my\\040disk\\011x vfat rw 0 0\n\
                    short line\n\
                    /dev/md0 /boot xfs ro,relatime 0 0\n\
                    a\\134b /odd\\0 ext4 rw,errors=remount-ro 0 0\n";
        assert_eq!(
            parse_mounts(text),
            [
                Mount {
                    source: "/dev/sdb".into(),
                    path: "/mnt/my disk\tx".into(),
                    fstype: "vfat".into(),
                    readonly: false
                },
                Mount { source: "/dev/md0".into(), path: "/boot".into(), fstype: "xfs".into(), readonly: true },
                Mount { source: "a\\b".into(), path: "/odd\\0".into(), fstype: "ext4".into(), readonly: false },
            ]
        );
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("\\777\\"), "\\777\\");
    }

    #[test]
    fn fs_values_as_df() {
        let v = fs_values(&FsUsage {
            block_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_avail: 250,
            inodes: 100,
            inodes_free: 40,
        });
        assert_eq!(
            v,
            [
                ("total", "B", Some(Value::Int(4_096_000))),
                ("used", "B", Some(Value::Int(2_867_200))),
                ("free", "B", Some(Value::Int(1_024_000))),
                ("used_percent", "percent", Some(Value::Float(700.0 / 950.0 * 100.0))),
                ("inodes_total", "", Some(Value::Int(100))),
                ("inodes_used", "", Some(Value::Int(60))),
                ("inodes_free", "", Some(Value::Int(40))),
                ("inodes_used_percent", "percent", Some(Value::Float(60.0))),
            ]
        );
        let empty = fs_values(&FsUsage::default());
        assert_eq!(empty[3].2, None);
        assert_eq!(empty[7].2, None);
        assert_eq!(empty[0].2, Some(Value::Int(0)));
    }

    #[test]
    fn default_selection_per_tree() {
        for &(tree, want) in DEFAULTS {
            let root = FixtureRoot::new(tree);
            let mut m = disk(&root, r#"{"filesystems": false}"#);
            let p = gauges(fixture::collect(&mut m, 0.0));
            assert_eq!(devices(&p), want, "{tree}");
            // Only the in-flight gauge on the first collection.
            assert_eq!(p.len(), want.len(), "{tree}");
            for (dev, point) in want.iter().zip(&p) {
                let in_flight = fields_of(tree, "t0", dev)[8];
                assert_eq!(point.value, Value::Int(in_flight as i64));
                assert_eq!(point.tags, [("device".into(), dev.to_string())]);
            }
        }
    }

    #[test]
    fn default_selection_without_sysfs_uses_names() {
        for &(tree, want) in DEFAULTS {
            let root = FixtureRoot::new(tree);
            root.remove("sys/block");
            let mut m = disk(&root, r#"{"filesystems": false}"#);
            let p = fixture::collect(&mut m, 0.0);
            assert_eq!(devices(&p), want, "{tree}");
        }
    }

    #[test]
    fn second_collection_equals_fixture_deltas() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("vm-6.18", "{}", &["vda"]),
            (
                "vm-6.18-many",
                r#"{"disks_to_check": "loop*"}"#,
                &[
                    "loop0", "loop1", "loop2", "loop3", "loop4", "loop5", "loop6", "loop7", "loop8", "loop8p1",
                    "loop8p2", "loop9", "loop10", "loop11",
                ],
            ),
            ("linux-4.19-synth", "{}", DEFAULTS[2].1),
        ];
        for &(tree, conf, want) in cases {
            let root = FixtureRoot::new(tree);
            let mut m = disk(&root, conf);
            fixture::collect(&mut m, 0.0);
            root.advance();
            let all = fixture::collect(&mut m, 1.0);
            fixture::assert_documented(SOURCE, &all);
            let p = gauges(all);
            assert_eq!(devices(&p), want, "{tree}");
            let disk_points: Vec<&Point> = p.iter().filter(|p| p.measurement == "disk").collect();
            assert_eq!(disk_points.len(), 13 * want.len(), "{tree}");
            for (i, dev) in want.iter().enumerate() {
                let (a, b) = (fields_of(tree, "t0", dev), fields_of(tree, "t1", dev));
                let d = |i: usize| (b[i] - a[i]) as f64;
                let names = [
                    "reads",
                    "reads_merged",
                    "read_sectors",
                    "read_time",
                    "writes",
                    "writes_merged",
                    "write_sectors",
                    "write_time",
                    "io",
                    "io_time",
                    "io_weighted_time",
                    "read_thruput",
                    "write_thruput",
                ];
                let want_values = [
                    Value::Float(d(0)),
                    Value::Float(d(1)),
                    Value::Float(d(2)),
                    Value::Float(d(3)),
                    Value::Float(d(4)),
                    Value::Float(d(5)),
                    Value::Float(d(6)),
                    Value::Float(d(7)),
                    Value::Int(b[8] as i64),
                    Value::Float(d(9)),
                    Value::Float(d(10)),
                    Value::Float(d(2) * 512.0),
                    Value::Float(d(6) * 512.0),
                ];
                let units = ["", "", "", "ms", "", "", "", "ms", "", "ms", "ms", "B", "B"];
                for (j, ((name, value), units)) in names.iter().zip(want_values).zip(units).enumerate() {
                    let got = disk_points[13 * i + j];
                    assert_eq!(got.name, format!("disk.{name}.{dev}"));
                    assert_eq!((got.value, got.units.as_ref()), (value, units), "{}", got.name);
                }
            }
        }
        // The captured traffic is really in the deltas.
        let root = FixtureRoot::new("vm-6.18");
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        fixture::collect(&mut m, 0.0);
        root.advance();
        let p = fixture::collect(&mut m, 1.0);
        assert!(fixture::float(&p, "disk.write_thruput.vda") > 0.0);
    }

    #[test]
    fn counters_equal_the_fixture_on_every_collection() {
        // vm-6.18 has 20-field lines (discards and flushes); linux-4.19-synth has older ones.
        for &(tree, want) in DEFAULTS {
            let root = FixtureRoot::new(tree);
            let mut m = disk(&root, r#"{"filesystems": false}"#);
            for (snap, secs) in [("t0", 0.0), ("t1", 1.0)] {
                if snap == "t1" {
                    root.advance();
                }
                let p: Vec<Point> =
                    fixture::collect(&mut m, secs).into_iter().filter(|p| p.kind == Kind::Counter).collect();
                fixture::assert_documented(SOURCE, &p);
                let mut expected = Vec::new();
                for dev in want.iter() {
                    let f = fields_of(tree, snap, dev);
                    let int = |name: &str, units: &str, v: u64| {
                        (format!("disk.{name}.{dev}"), units.to_string(), Value::Int(v as i64))
                    };
                    let secs = |name: &str, v: u64| {
                        (format!("disk.{name}.{dev}"), "s".to_string(), Value::Float(v as f64 / 1000.0))
                    };
                    expected.extend([
                        int("reads_completed_total", "", f[0]),
                        int("reads_merged_total", "", f[1]),
                        int("read_bytes_total", "B", f[2] * 512),
                        secs("read_time_seconds_total", f[3]),
                        int("writes_completed_total", "", f[4]),
                        int("writes_merged_total", "", f[5]),
                        int("written_bytes_total", "B", f[6] * 512),
                        secs("write_time_seconds_total", f[7]),
                        secs("io_time_seconds_total", f[9]),
                        secs("io_time_weighted_seconds_total", f[10]),
                    ]);
                    if f.len() >= 15 {
                        expected.extend([
                            int("discards_completed_total", "", f[11]),
                            int("discards_merged_total", "", f[12]),
                            int("discarded_sectors_total", "", f[13]),
                            secs("discard_time_seconds_total", f[14]),
                        ]);
                    }
                    if f.len() >= 17 {
                        expected.extend([
                            int("flush_requests_total", "", f[15]),
                            secs("flush_requests_time_seconds_total", f[16]),
                        ]);
                    }
                }
                let got: Vec<(String, String, Value)> =
                    p.iter().map(|p| (p.name.clone(), p.units.to_string(), p.value)).collect();
                assert_eq!(got, expected, "{tree} {snap}");
                assert!(p.iter().all(|p| p.measurement == "disk" && p.tags.len() == 1 && p.tags[0].0 == "device"));
            }
        }
    }

    #[test]
    fn listed_devices_are_used_as_given() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("linux-4.19-synth", r#"{"disks_to_check": " sda , nvme0n1p1,,"}"#, &["sda", "nvme0n1p1"]),
            ("linux-4.19-synth", r#"{"disks_to_check": ["sd*", "sr0"]}"#, &["sda", "sda1", "sdb", "sr0"]),
            ("vm-6.18", r#"{"disks_to_check": "zram0, vd?"}"#, &["vda", "zram0"]),
            ("vm-6.18-many", r#"{"disks_to_check": "loop8*"}"#, &["loop8", "loop8p1", "loop8p2"]),
            ("vm-6.18", r#"{"disks_to_check": "sdz"}"#, &[]),
        ];
        for &(tree, conf, want) in cases {
            let root = FixtureRoot::new(tree);
            let mut m = disk(&root, &conf.replace('}', r#", "filesystems": false}"#));
            assert_eq!(devices(&fixture::collect(&mut m, 0.0)), want, "{conf}");
        }
    }

    #[test]
    fn counter_reset_drops_only_that_rate() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        fixture::collect(&mut m, 0.0);
        root.advance();
        let t1 = root.text("proc/diskstats");
        let vda = t1.lines().find(|l| l.contains(" vda ")).unwrap();
        let mut f: Vec<String> = vda.split_whitespace().map(String::from).collect();
        f[3] = "5".into(); // reads
        root.write("proc/diskstats", &t1.replace(vda, &f.join(" ")));
        let p = gauges(fixture::collect(&mut m, 1.0));
        assert_eq!(fixture::value(&p, "disk.reads.vda"), None);
        assert!(fixture::value(&p, "disk.read_sectors.vda").is_some());
        assert!(fixture::value(&p, "disk.read_thruput.vda").is_some());
        assert!(fixture::value(&p, "disk.io.vda").is_some());
        assert_eq!(p.len(), 12);
    }

    #[test]
    fn device_that_vanishes_and_returns() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        fixture::collect(&mut m, 0.0);
        root.advance();
        let t1 = root.text("proc/diskstats");
        let without: String = t1.lines().filter(|l| !l.contains(" sdb ")).map(|l| format!("{l}\n")).collect();
        root.write("proc/diskstats", &without);
        root.remove("sys/block/sdb");
        let p = gauges(fixture::collect(&mut m, 1.0));
        assert_eq!(devices(&p), ["sda", "nvme0n1", "dm-0", "md0"]);
        assert_eq!(p.len(), 4 * 13);
        // Back (as a new disk): the gauge at once, rates from the next collection.
        root.write("proc/diskstats", &t1);
        root.write("sys/block/sdb/.keep", "");
        let p = gauges(fixture::collect(&mut m, 2.0));
        assert_eq!(devices(&p), DEFAULTS[2].1);
        assert!(fixture::value(&p, "disk.reads.sdb").is_none());
        assert_eq!(fixture::int(&p, "disk.io.sdb"), 0);
        let p = gauges(fixture::collect(&mut m, 3.0));
        assert_eq!(fixture::float(&p, "disk.reads.sdb"), 0.0);
        assert_eq!(p.len(), 5 * 13);
    }

    #[test]
    fn a_new_device_is_picked_up() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        fixture::collect(&mut m, 0.0);
        let t0 = root.text("proc/diskstats");
        root.write("proc/diskstats", &format!("{t0} 259       0 nvme0n1 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"));
        root.write("sys/block/nvme0n1/.keep", "");
        let p = fixture::collect(&mut m, 1.0);
        assert_eq!(devices(&p), ["vda", "nvme0n1"]);
    }

    /// `disk.info` of each selected device, with and without a udev data file.
    #[test]
    fn disk_info_from_diskstats_and_udev() {
        let root = FixtureRoot::new("vm-6.18");
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        let p = fixture::collect(&mut m, 0.0);
        fixture::assert_documented(SOURCE, &p);
        let info: Vec<&Point> = p.iter().filter(|p| p.field == "info").collect();
        assert_eq!(info.len(), 1);
        let tags = |p: &Point| p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        // `254 0 vda` in the captured diskstats; no udev on the capture machine.
        assert_eq!((info[0].name.as_str(), info[0].value), ("disk.info.vda", Value::Int(1)));
        assert_eq!(tags(info[0]), "device=vda major=254 minor=0 path= wwn= model= serial= revision=");
        assert_eq!(info[0].kind, Kind::Gauge);
        root.write(
            "host/run/udev/data/b254:0",
            "S:disk/by-path/virtio-pci-0000:00:02.0\nE:ID_PATH=virtio-pci-0000:00:02.0\nE:ID_MODEL=QEMU_DISK\n\
             E:SCSI_IDENT_SERIAL=S123\nE:ID_REVISION=2.5+\nE:ID_WWN=0x5000c500a1b2c3d4\n",
        );
        // Read once a minute, not on every collection.
        let p = fixture::collect(&mut m, 1.0);
        assert_eq!(tags(fixture::find(&p, "disk.info.vda").unwrap()), tags(info[0]));
        let p = fixture::collect(&mut m, 61.0);
        let info = fixture::find(&p, "disk.info.vda").unwrap();
        assert_eq!(
            tags(info),
            "device=vda major=254 minor=0 path=virtio-pci-0000:00:02.0 wwn=0x5000c500a1b2c3d4 model=QEMU_DISK \
             serial=S123 revision=2.5+"
        );
        assert_eq!(udev_labels("E:ID_SERIAL_SHORT=A1\nE:SCSI_IDENT_SERIAL=B2\n")[3], ("serial", "A1".to_string()));
    }

    /// `filesystem.readonly` from the mount options, `filesystem.device_error` from statvfs.
    #[test]
    fn filesystem_readonly_and_device_error() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let text = root
            .text("proc/mounts")
            .replace("/dev/sdb /mnt/backup\\040disk vfat rw,", "/dev/sdb /mnt/backup\\040disk vfat ro,");
        root.write("proc/mounts", &text);
        let mut m = disk(&root, "{}");
        let p = fixture::collect(&mut m, 0.0);
        fixture::assert_documented(SOURCE, &p);
        let got: Vec<(&str, Value)> =
            p.iter().filter(|p| p.measurement == "filesystem").map(|p| (p.name.as_str(), p.value)).collect();
        assert_eq!(
            got,
            [
                ("filesystem.readonly./", Value::Int(0)),
                ("filesystem.device_error./", Value::Int(0)),
                // statvfs of /boot fails in this test: no fs.* for it, device_error 1.
                ("filesystem.readonly./boot", Value::Int(0)),
                ("filesystem.device_error./boot", Value::Int(1)),
                ("filesystem.readonly./data", Value::Int(0)),
                ("filesystem.device_error./data", Value::Int(0)),
                ("filesystem.readonly./mnt/backup disk", Value::Int(1)),
                ("filesystem.device_error./mnt/backup disk", Value::Int(0)),
            ]
        );
        let boot = fixture::find(&p, "filesystem.device_error./boot").unwrap();
        let tags: Vec<(&str, &str)> = boot.tags.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        assert_eq!(tags, [("mountpoint", "/boot"), ("device", "/dev/sda1"), ("fstype", "ext4")]);
        assert!(!p.iter().any(|p| p.name == "fs.total./boot"));
    }

    #[test]
    fn filesystems_per_tree() {
        let cases: &[(&str, &[&str])] = &[
            ("vm-6.18", &["/"]),
            ("vm-6.18-many", &["/", "/tmp/badger data"]),
            // /boot's statvfs fails (skipped); /data is listed twice, the last is nvme0n1p1.
            ("linux-4.19-synth", &["/", "/data", "/mnt/backup disk"]),
        ];
        for &(tree, want) in cases {
            let root = FixtureRoot::new(tree);
            let mut m = disk(&root, "{}");
            let p = fixture::collect(&mut m, 0.0);
            fixture::assert_documented(SOURCE, &p);
            assert_eq!(mounts(&p), want, "{tree}");
            let root_fs: Vec<_> = p.iter().filter(|p| p.name.ends_with("./") && !node_only(p)).collect();
            assert_eq!(
                root_fs.iter().map(|p| (p.name.as_str(), p.value)).collect::<Vec<_>>(),
                [
                    ("fs.total./", Value::Int(4_096_000)),
                    ("fs.used./", Value::Int(2_867_200)),
                    ("fs.free./", Value::Int(1_024_000)),
                    ("fs.used_percent./", Value::Float(700.0 / 950.0 * 100.0)),
                    ("fs.inodes_total./", Value::Int(100)),
                    ("fs.inodes_used./", Value::Int(60)),
                    ("fs.inodes_free./", Value::Int(40)),
                    ("fs.inodes_used_percent./", Value::Float(60.0)),
                ]
            );
        }
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = disk(&root, "{}");
        let p = fixture::collect(&mut m, 0.0);
        let data = fixture::find(&p, "fs.total./data").unwrap();
        assert_eq!(
            data.tags,
            [
                ("path".into(), "/data".to_string()),
                ("device".into(), "/dev/nvme0n1p1".to_string()),
                ("fstype".into(), "xfs".to_string()),
            ]
        );
        // /data: all zero, so no percentages; the vfat has no inodes.
        assert!(fixture::value(&p, "fs.used_percent./data").is_none());
        assert!(fixture::value(&p, "fs.inodes_used_percent./data").is_none());
        assert_eq!(fixture::float(&p, "fs.used_percent./mnt/backup disk"), 75.0);
        assert!(fixture::value(&p, "fs.inodes_used_percent./mnt/backup disk").is_none());
        assert_eq!(fixture::int(&p, "fs.inodes_total./mnt/backup disk"), 0);
        let many = p.iter().filter(|p| p.measurement == "fs").count();
        assert_eq!(many, 8 + 6 + 7);
    }

    #[test]
    fn filesystem_selection() {
        let root = FixtureRoot::new("linux-4.19-synth");
        let mut m = disk(&root, r#"{"mount_points": "/data, /mnt/*", "disks_to_check": "sda"}"#);
        assert_eq!(mounts(&fixture::collect(&mut m, 0.0)), ["/data", "/mnt/backup disk"]);
        let mut m = disk(&root, r#"{"fs_types_exclude": []}"#);
        assert_eq!(
            mounts(&fixture::collect(&mut m, 0.0)),
            [
                "/sys",
                "/proc",
                "/dev",
                "/dev/pts",
                "/run",
                "/",
                "/sys/kernel/security",
                "/sys/fs/cgroup/unified",
                "/data",
                "/mnt/backup disk",
                "/var/lib/docker/overlay2/3c0b1f5e/merged",
                "/run/docker/netns/1a2b3c",
            ]
        );
        let mut m = disk(&root, r#"{"fs_types_exclude": "ext*, tmpfs"}"#);
        assert_eq!(mounts(&fixture::collect(&mut m, 0.0))[..4], ["/sys", "/proc", "/dev", "/dev/pts"]);
        let mut m = disk(&root, r#"{"filesystems": false}"#);
        assert!(fixture::collect(&mut m, 0.0).iter().all(|p| p.measurement == "disk"));
        // Mounts change between collections.
        let mut m = disk(&root, "{}");
        fixture::collect(&mut m, 0.0);
        root.write("proc/mounts", "/dev/sdc /srv ext4 rw 0 0\n");
        assert_eq!(mounts(&fixture::collect(&mut m, 1.0)), ["/srv"]);
    }

    /// Local filesystems only: the shared thread. A network or FUSE mount among the watched
    /// ones (not among the excluded): a thread of its own.
    #[test]
    fn shares_the_thread_while_every_watched_filesystem_is_local() {
        for (local, remote) in [("ext4", "nfs4"), ("xfs", "cifs"), ("btrfs", "fuse.sshfs"), ("vfat", "ceph")] {
            assert!(is_local_fs(local) && !is_local_fs(remote), "{local} {remote}");
        }
        let root = FixtureRoot::new("vm-6.18");
        assert!(disk(&root, "{}").shares_thread());
        let mounts = root.text("proc/mounts") + "srv:/export /mnt/nfs nfs4 rw 0 0\n";
        root.write("proc/mounts", &mounts);
        assert!(!disk(&root, "{}").shares_thread());
        assert!(disk(&root, r#"{"filesystems": false}"#).shares_thread());
        assert!(disk(&root, r#"{"fs_types_exclude": ["nfs4"]}"#).shares_thread());
        assert!(disk(&root, r#"{"mount_points": ["/"]}"#).shares_thread());
    }

    #[test]
    fn real_statvfs_on_the_live_root() {
        let ctx = ModuleContext::default();
        let mut m = fixture::build(&SPEC, &ctx, r#"{"mount_points": "/", "disks_to_check": "none"}"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        let total = fixture::int(&p, "fs.total./");
        let used = fixture::int(&p, "fs.used./");
        let free = fixture::int(&p, "fs.free./");
        assert!(total > 0 && used > 0 && free > 0 && used + free <= total);
    }

    #[test]
    fn config_errors_name_the_key() {
        let root = FixtureRoot::new("vm-6.18");
        let ctx = root.ctx();
        let cases = [
            ("{\n\"disk_to_check\": \"sda\"}", "disk_to_check", 2),
            ("{\"interval\": 1,\n\n\"filesystems\": \"no\"}", "filesystems", 3),
            ("{\n\"disks_to_check\": 7}", "disks_to_check", 2),
            ("{\n\"disks_to_check\": \"sd[a\"}", "disks_to_check", 2),
            ("{\n\"mount_points\": [\"/[x\"]}", "mount_points", 2),
            ("{\n\n\"fs_types_exclude\": \"[\"}", "fs_types_exclude", 3),
        ];
        for (text, key, line) in cases {
            match fixture::build_error(&SPEC, &ctx, text) {
                BuildError::Config(e) => {
                    assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{text}")
                }
                BuildError::Unavailable(m) => panic!("{m}"),
            }
        }
    }

    #[test]
    fn missing_files_are_unavailable() {
        let root = FixtureRoot::new("vm-6.18");
        root.remove("proc/mounts");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("proc/mounts"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
        fixture::build(&SPEC, &root.ctx(), r#"{"filesystems": false}"#);
        root.remove("proc/diskstats");
        match fixture::build_error(&SPEC, &root.ctx(), r#"{"filesystems": false}"#) {
            BuildError::Unavailable(m) => assert!(m.contains("proc/diskstats"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
    }
}
