//! `textfile`: metrics that scripts write to `*.prom` files, as node_exporter's textfile collector.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `textfile.mtime_seconds.<file>` | s | float | gauge | last modification of the file `<file>` (its path: `directory` joined with its name, as node_exporter 1.5 labels it), seconds since the epoch, for each file read without error |
//! | `textfile.scrape_error` | | int | gauge | 1 when a file could not be listed, read or parsed, or a limit was reached, in this collection; else 0 |
//! | `<sample>` | | float | gauge | each sample of the files, as `prometheus_scrape` and `pushgateway_receiver` give them: the sample name then each label value |
//!
//! Every collection lists `directory`, keeps the regular files whose name ends in `.prom`
//! (not in subdirectories), in name order, and parses each with the Prometheus text format
//! 0.0.4 parser of `badger_formats::prometheus`. The samples become points exactly as a
//! scrape's (measurement = the sample name, field = its type's `counter`, `gauge`,
//! `histogram`, `summary` or `value`, tags = its labels), so the Prometheus emitter exposes
//! them under their own names and TYPE. node_exporter's own two families are measurement
//! `textfile` (`node_textfile_mtime_seconds{file="…"}`, `node_textfile_scrape_error`).
//!
//! As node_exporter does, a file is all or nothing: one that cannot be read, does not parse,
//! or holds a sample with a timestamp gives no samples and no mtime, and sets
//! `scrape_error`; the other files still count. A missing `directory` is an error of each
//! collection too (`scrape_error` 1, a warning once a minute), not of the start, so scripts
//! may create it later. Limits bound the work of a collection: files beyond `max_files`,
//! files larger than `max_file_bytes` and samples beyond `max_series` (counted over all the
//! files, in name order; the file that crosses the limit is left out whole) are left out
//! and set `scrape_error`. Problems are logged at most once a minute.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `directory` | `"/var/lib/prometheus/node-exporter"` | the directory of `*.prom` files (Debian's node_exporter default, so existing cron scripts keep working); relative to the config file's directory when relative |
//! | `max_files` | `100` | most `*.prom` files read per collection |
//! | `max_file_bytes` | `1048576` | largest file read, in bytes |
//! | `max_series` | `10000` | most samples taken from all files per collection |

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::throttle::LogThrottle;
use badger_formats::prometheus::{self, Format};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "textfile", aliases: &[], summary: "metrics from *.prom files that scripts write", build };

fn default_directory() -> PathBuf {
    PathBuf::from("/var/lib/prometheus/node-exporter")
}
fn default_max_files() -> usize {
    100
}
fn default_max_file_bytes() -> u64 {
    1 << 20
}
fn default_max_series() -> usize {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_directory")]
    directory: PathBuf,
    #[serde(default = "default_max_files")]
    max_files: usize,
    #[serde(default = "default_max_file_bytes")]
    max_file_bytes: u64,
    #[serde(default = "default_max_series")]
    max_series: usize,
}

fn build(_ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let c: Config = conf.parse()?;
    for (key, zero) in
        [("max_files", c.max_files == 0), ("max_file_bytes", c.max_file_bytes == 0), ("max_series", c.max_series == 0)]
    {
        if zero {
            return Err(BuildError::Config(conf.error(key, "must be at least 1")));
        }
    }
    Ok(Box::new(Textfile {
        dir: conf.resolve(&c.directory),
        max_files: c.max_files,
        max_file_bytes: c.max_file_bytes,
        max_series: c.max_series,
        log: LogThrottle::default(),
        buf: Vec::new(),
    }))
}

struct Textfile {
    dir: PathBuf,
    max_files: usize,
    max_file_bytes: u64,
    max_series: usize,
    log: LogThrottle,
    buf: Vec<u8>,
}

/// One file's samples as points, or why it is left out. `budget` is how many samples may
/// still be taken.
pub fn file_points(text: &[u8], budget: usize) -> Result<Vec<Point>, String> {
    let families = prometheus::parse_bytes(text, Format::Text).map_err(|e| e.to_string())?;
    let n: usize = families.iter().map(|f| f.samples.len()).sum();
    if n > budget {
        return Err(format!("{n} samples, more than the {budget} left of max_series"));
    }
    let mut out = Vec::with_capacity(n);
    for f in families {
        for s in f.samples {
            if s.timestamp_ms.is_some() {
                return Err(format!("sample {} has a timestamp, which textfiles may not have", s.name));
            }
            out.push(prometheus::sample_point(f.kind, &s.name, s.labels, s.value));
        }
    }
    Ok(out)
}

impl Textfile {
    fn complain(&mut self, what: String) {
        if let Some(more) = self.log.allow() {
            log::warn!("module \"textfile\": {what} ({more} more not logged since the last line)");
        }
    }

    /// The `*.prom` files of the directory in name order, at most `max_files` (and whether
    /// some were left out).
    fn list(&self) -> std::io::Result<(Vec<(String, PathBuf)>, bool)> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".prom") && entry.file_type().map(|t| t.is_file() || t.is_symlink()).unwrap_or(false) {
                files.push((name, entry.path()));
            }
        }
        files.sort();
        let over = files.len() > self.max_files;
        files.truncate(self.max_files);
        Ok((files, over))
    }

    /// Reads a file into `buf`, at most `max_file_bytes`; returns its mtime.
    fn read(&mut self, path: &Path) -> Result<f64, String> {
        let f = fs::File::open(path).map_err(|e| e.to_string())?;
        let meta = f.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        self.buf.clear();
        f.take(self.max_file_bytes + 1).read_to_end(&mut self.buf).map_err(|e| e.to_string())?;
        if self.buf.len() as u64 > self.max_file_bytes {
            return Err(format!("larger than max_file_bytes ({})", self.max_file_bytes));
        }
        let mtime = meta.modified().map_err(|e| e.to_string())?;
        Ok(match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        })
    }
}

impl Module for Textfile {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let mut error = false;
        let files = match self.list() {
            Ok((files, over)) => {
                if over {
                    error = true;
                    let max = self.max_files;
                    self.complain(format!(
                        "{}: more than max_files ({max}) *.prom files; the rest are left out",
                        self.dir.display()
                    ));
                }
                files
            }
            Err(e) => {
                error = true;
                self.complain(format!("{}: {e}", self.dir.display()));
                Vec::new()
            }
        };
        let mut budget = self.max_series;
        let mut mtimes = Vec::with_capacity(files.len());
        for (_name, path) in files {
            let got = self.read(&path).and_then(|mtime| Ok((mtime, file_points(&self.buf, budget)?)));
            match got {
                Ok((mtime, points)) => {
                    budget -= points.len();
                    out.extend(points);
                    mtimes.push((path, mtime));
                }
                Err(e) => {
                    error = true;
                    self.complain(format!("{}: left out: {e}", path.display()));
                }
            }
        }
        for (path, mtime) in mtimes {
            let file = path.display().to_string();
            out.push(Point::device("textfile", "mtime_seconds", "s", "file", &file, Value::Float(mtime)));
        }
        out.push(Point::simple("textfile", "scrape_error", "", Value::Int(i64::from(error))));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture;
    use std::os::unix::fs::symlink;

    fn module(dir: &Path, extra: &str) -> Box<dyn Module> {
        let text = format!(r#"{{"directory": {:?}{extra}}}"#, dir.display().to_string());
        fixture::build(&SPEC, &Default::default(), &text)
    }

    fn set_mtime(path: &Path, secs: u64) {
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn files_become_points_with_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("apt.prom");
        fs::write(
            &a,
            "# HELP apt_upgrades_pending Pending upgrades.\n# TYPE apt_upgrades_pending gauge\n\
             apt_upgrades_pending{arch=\"amd64\",origin=\"Debian\"} 3\n\
             # TYPE backup_runs_total counter\nbackup_runs_total 17\n",
        )
        .unwrap();
        set_mtime(&a, 1_700_000_000);
        let b = dir.path().join("z_raid.prom");
        fs::write(&b, "raid_ok 1\n").unwrap();
        set_mtime(&b, 1_700_000_100);
        fs::write(dir.path().join("notes.txt"), "not a prom file\n").unwrap();
        fs::create_dir(dir.path().join("sub.prom")).unwrap();

        let mut m = module(dir.path(), "");
        let p = fixture::collect(m.as_mut(), 0.0);
        fixture::assert_documented(include_str!("textfile.rs"), &p[3..]);
        let got: Vec<(String, &str, &str, Value)> =
            p.iter().map(|p| (p.name.clone(), &*p.measurement, &*p.field, p.value)).collect();
        let (apt, raid) = (a.display().to_string(), b.display().to_string());
        assert_eq!(
            got,
            [
                ("apt_upgrades_pending.amd64.Debian".into(), "apt_upgrades_pending", "gauge", Value::Float(3.0)),
                ("backup_runs_total".into(), "backup_runs_total", "counter", Value::Float(17.0)),
                ("raid_ok".into(), "raid_ok", "value", Value::Float(1.0)),
                (format!("textfile.mtime_seconds.{apt}"), "textfile", "mtime_seconds", Value::Float(1_700_000_000.0)),
                (format!("textfile.mtime_seconds.{raid}"), "textfile", "mtime_seconds", Value::Float(1_700_000_100.0)),
                ("textfile.scrape_error".into(), "textfile", "scrape_error", Value::Int(0)),
            ]
        );
        assert_eq!(p[0].tags, [("arch".into(), "amd64".to_string()), ("origin".into(), "Debian".to_string())]);
        // The file's path, as node_exporter 1.5 labels it (`{file="/dir/apt.prom"}`).
        assert_eq!(p[3].tags, [("file".into(), apt.clone())]);

        // A bad file is left out whole; the good one stays; scrape_error is 1.
        fs::write(&b, "raid_ok 1\nraid_broken{ 2\n").unwrap();
        let p = fixture::collect(m.as_mut(), 1.0);
        assert_eq!(
            fixture::names(&p),
            [
                "apt_upgrades_pending.amd64.Debian",
                "backup_runs_total",
                &format!("textfile.mtime_seconds.{apt}"),
                "textfile.scrape_error"
            ]
        );
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 1);

        // A timestamp makes the file an error too (node_exporter refuses them).
        fs::write(&b, "raid_ok 1 1700000000000\n").unwrap();
        let p = fixture::collect(m.as_mut(), 2.0);
        assert!(fixture::find(&p, "raid_ok").is_none());
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 1);

        // A symlink to a file is followed.
        fs::remove_file(&b).unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "linked 5\n").unwrap();
        symlink(&target, &b).unwrap();
        let p = fixture::collect(m.as_mut(), 3.0);
        assert_eq!(fixture::value(&p, "linked"), Some(Value::Float(5.0)));
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 0);
    }

    #[test]
    fn limits_and_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in
            [("a.prom", "a 1\n"), ("b.prom", "b{x=\"1\"} 1\nb{x=\"2\"} 2\nb{x=\"3\"} 3\n"), ("c.prom", "c 1\n")]
        {
            fs::write(dir.path().join(name), text).unwrap();
        }
        // max_files 2: c.prom is not read.
        let mut m = module(dir.path(), r#", "max_files": 2"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p)[..4], ["a", "b.1", "b.2", "b.3"]);
        assert!(fixture::find(&p, "c").is_none());
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 1);

        // max_series 3: b.prom (3 samples after a's 1) crosses it and is left out whole.
        let mut m = module(dir.path(), r#", "max_series": 3"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        let samples: Vec<&str> = fixture::names(&p).into_iter().filter(|n| !n.starts_with("textfile.")).collect();
        assert_eq!(samples, ["a", "c"]);
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 1);

        // max_file_bytes 10: b.prom (36 bytes) is too large.
        let mut m = module(dir.path(), r#", "max_file_bytes": 10"#);
        let p = fixture::collect(m.as_mut(), 0.0);
        assert!(fixture::find(&p, "b.1").is_none() && fixture::find(&p, "a").is_some());

        // No directory: no samples, scrape_error 1, and the module still runs.
        let mut m = module(&dir.path().join("nope"), "");
        let p = fixture::collect(m.as_mut(), 0.0);
        assert_eq!(fixture::names(&p), ["textfile.scrape_error"]);
        assert_eq!(fixture::int(&p, "textfile.scrape_error"), 1);

        match fixture::build_error(&SPEC, &Default::default(), "{\n\"max_series\": 0}") {
            BuildError::Config(e) => assert_eq!((e.key.as_deref(), e.line), (Some("max_series"), Some(2))),
            BuildError::Unavailable(m) => panic!("{m}"),
        }
    }
}
