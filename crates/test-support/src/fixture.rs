//! Test-only helpers for running modules on the fixture trees in `tests/fixtures/`.
//!
//! A fixture tree is `tests/fixtures/<name>/{t0,t1}/{proc,sys}`: two captures of the same
//! machine about a second apart. [`FixtureRoot::new`] copies `t0` into a temporary directory
//! and points [`HostRoots`] at it; [`FixtureRoot::advance`] replaces the copy with `t1`, so a
//! test collects at `t0`, advances, and collects again one (synthetic) second later.
//! The helpers also check a module's emitted points against the stat table in its `//!` docs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use badger_api::plugin::{HostRoots, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

/// The fixture trees, for tests that run on every one.
pub const TREES: &[&str] = &["vm-6.18", "vm-6.18-many", "linux-4.19-synth"];

/// The workspace's root directory (where `tests/fixtures` and `conf.d` are).
pub fn workspace_root() -> &'static Path {
    // This crate is `crates/test-support` in the workspace.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `tests/fixtures/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// The text of one file of a fixture tree as captured, e.g. `read("vm-6.18", "t1", "proc/stat")`.
pub fn read(name: &str, snapshot: &str, rel: &str) -> String {
    let path = fixture_dir(name).join(snapshot).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One fixed instant all tests count from (the first collection).
pub fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// `t0() + secs`.
pub fn at(secs: f64) -> Instant {
    t0() + Duration::from_secs_f64(secs)
}

/// A fixture tree copied into a temporary directory.
pub struct FixtureRoot {
    name: String,
    dir: tempfile::TempDir,
}

impl FixtureRoot {
    /// Copies `tests/fixtures/<name>/t0` into a new temporary directory.
    pub fn new(name: &str) -> FixtureRoot {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = FixtureRoot { name: name.to_string(), dir };
        root.load("t0");
        root
    }

    /// Replaces the tree with `t1` (files only in `t0` disappear, as a vanished process does).
    pub fn advance(&self) {
        self.load("t1");
    }

    fn load(&self, snapshot: &str) {
        for sub in ["proc", "sys"] {
            let dst = self.dir.path().join(sub);
            if dst.exists() {
                fs::remove_dir_all(&dst).expect("clear fixture copy");
            }
            let src = fixture_dir(&self.name).join(snapshot).join(sub);
            if src.exists() {
                copy_tree(&src, &dst);
            } else {
                fs::create_dir_all(&dst).expect("mkdir");
            }
        }
    }

    /// Roots inside the copy; `host` is a directory that holds no mount points.
    pub fn roots(&self) -> HostRoots {
        HostRoots {
            proc: self.dir.path().join("proc"),
            sys: self.dir.path().join("sys"),
            host: self.dir.path().join("host"),
        }
    }

    pub fn ctx(&self) -> ModuleContext {
        ModuleContext { roots: self.roots(), ..Default::default() }
    }

    /// A path inside the copy, e.g. `path("proc/diskstats")`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Overwrites (or creates) a file inside the copy.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, text).expect("write fixture file");
    }

    /// The current text of a file inside the copy.
    pub fn text(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).expect("read fixture copy")
    }

    /// Removes a file or a directory inside the copy.
    pub fn remove(&self, rel: &str) {
        let path = self.path(rel);
        if path.is_dir() {
            fs::remove_dir_all(&path).expect("remove dir");
        } else {
            fs::remove_file(&path).expect("remove file");
        }
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir");
    for entry in fs::read_dir(src).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            // sysfs is made of symlinks (`class/hwmon/hwmon0` → `devices/…`): keep them as links.
            let target = fs::read_link(entry.path()).expect("read fixture link");
            std::os::unix::fs::symlink(target, &to).expect("copy fixture link");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).expect("copy fixture file");
        }
    }
}

/// A plugin config from literal JSON.
pub fn conf(name: &str, text: &str) -> PluginConf {
    PluginConf::from_text(name, Path::new(&format!("conf.d/{name}.conf")), text)
}

/// Builds a module through its registry entry; panics with the error if it fails.
pub fn build(spec: &ModuleSpec, ctx: &ModuleContext, text: &str) -> Box<dyn Module> {
    match (spec.build)(ctx, &conf(spec.name, text)) {
        Ok(m) => m,
        Err(e) => panic!("building {}: {e}", spec.name),
    }
}

/// The error of building a module; panics if the build succeeds.
pub fn build_error(spec: &ModuleSpec, ctx: &ModuleContext, text: &str) -> badger_api::plugin::BuildError {
    match (spec.build)(ctx, &conf(spec.name, text)) {
        Ok(_) => panic!("building {} with {text} should fail", spec.name),
        Err(e) => e,
    }
}

/// One collection at `t0() + secs`.
pub fn collect(m: &mut dyn Module, secs: f64) -> Vec<Point> {
    let mut out = Vec::new();
    m.collect(at(secs), &mut out).expect("collect");
    out
}

pub fn names(points: &[Point]) -> Vec<&str> {
    points.iter().map(|p| p.name.as_str()).collect()
}

pub fn find<'a>(points: &'a [Point], name: &str) -> Option<&'a Point> {
    points.iter().find(|p| p.name == name)
}

pub fn value(points: &[Point], name: &str) -> Option<Value> {
    find(points, name).map(|p| p.value)
}

/// The float value of a stat; panics if it is missing or an int.
pub fn float(points: &[Point], name: &str) -> f64 {
    match value(points, name) {
        Some(Value::Float(f)) => f,
        other => panic!("{name}: expected a float, got {other:?}"),
    }
}

/// The int value of a stat; panics if it is missing or a float.
pub fn int(points: &[Point], name: &str) -> i64 {
    match value(points, name) {
        Some(Value::Int(i)) => i,
        other => panic!("{name}: expected an int, got {other:?}"),
    }
}

/// Asserts two floats are equal to within rounding.
#[track_caller]
pub fn assert_close(got: f64, want: f64) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "got {got}, want {want}");
}

/// One row of a module's stat table.
#[derive(Debug, Clone)]
pub struct StatRow {
    pub stat: String,
    pub units: String,
    pub kind_int: bool,
}

/// The rows of the first `| stat | units | type | kind | meaning |` table in a module's `//!`
/// docs (pass `include_str!("load.rs")`).
pub fn stat_table(source: &str) -> Vec<StatRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in source.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if in_table {
                break;
            }
            continue;
        };
        let doc = doc.trim();
        if !doc.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = doc.trim_matches('|').split('|').map(str::trim).collect();
        if !in_table {
            if cells.first() == Some(&"stat") {
                assert_eq!(cells, ["stat", "units", "type", "kind", "meaning"], "table header");
                in_table = true;
            }
            continue;
        }
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        assert_eq!(cells.len(), 5, "table row {doc}");
        let stat = cells[0].trim_matches('`').to_string();
        assert!(matches!(cells[2], "int" | "float"), "type of {stat}: {}", cells[2]);
        assert!(matches!(cells[3], "gauge" | "rate" | "counter"), "kind of {stat}: {}", cells[3]);
        rows.push(StatRow { stat, units: cells[1].to_string(), kind_int: cells[2] == "int" });
    }
    assert!(!rows.is_empty(), "no stat table found");
    rows
}

/// Whether a stat name fits a table pattern. `<x>` stands for one name segment; as the last
/// segment of a pattern it stands for the rest of the name (a mount point, or a device whose
/// name has a dot such as `veth0.10`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let mut rest = name;
    let segs: Vec<&str> = pattern.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let is_placeholder = seg.starts_with('<') && seg.ends_with('>');
        if last {
            return if is_placeholder { !rest.is_empty() } else { rest == *seg };
        }
        let (head, tail) = match rest.split_once('.') {
            Some(x) => x,
            None => return false,
        };
        if head.is_empty() || (!is_placeholder && head != *seg) {
            return false;
        }
        rest = tail;
    }
    false
}

/// Asserts that every point fits a row of the module's stat table (name, units and int/float)
/// and that its structured name agrees with its Stat Badger name.
#[track_caller]
pub fn assert_documented(source: &str, points: &[Point]) {
    let rows = stat_table(source);
    for p in points {
        let is_int = matches!(p.value, Value::Int(_));
        let ok = rows.iter().any(|r| name_matches(&r.stat, &p.name) && r.units == p.units && r.kind_int == is_int);
        assert!(
            ok,
            "{} (units {:?}, {}) matches no row of the stat table",
            p.name,
            p.units,
            if is_int { "int" } else { "float" }
        );
        if p.kind == badger_api::point::Kind::Counter {
            // `<module>.<field>` and every tag value (the node_exporter-style counters).
            let module = p.name.split('.').next().unwrap_or_default();
            let mut want = format!("{module}.{}", p.field);
            for (_, v) in &p.tags {
                want.push('.');
                want.push_str(v);
            }
            assert_eq!(p.name, want);
            continue;
        }
        let prefix = format!("{}.{}", p.measurement, p.field);
        match p.tags.first() {
            None => assert_eq!(p.name, prefix),
            Some((_, v)) => assert_eq!(p.name, format!("{prefix}.{v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert!(name_matches("disk.reads.<d>", "disk.reads.sda"));
        assert!(!name_matches("disk.reads.<d>", "disk.reads"));
        assert!(!name_matches("disk.reads.<d>", "disk.writes.sda"));
        assert!(name_matches("net.rx_bytes.<i>", "net.rx_bytes.veth0.10"));
        assert!(name_matches("fs.total.<mount>", "fs.total./mnt/a b"));
        assert!(name_matches("cpu.<state>.<cpu>", "cpu.user.cpu0"));
        assert!(!name_matches("cpu.user", "cpu.user.cpu0"));
    }

    #[test]
    fn advance_replaces_the_tree() {
        let root = FixtureRoot::new("linux-4.19-synth");
        assert!(root.path("proc/814/stat").exists());
        assert!(!root.path("proc/820/stat").exists());
        root.advance();
        assert!(!root.path("proc/814/stat").exists());
        assert!(root.path("proc/820/stat").exists());
        assert_eq!(root.text("proc/stat"), read("linux-4.19-synth", "t1", "proc/stat"));
    }
}
