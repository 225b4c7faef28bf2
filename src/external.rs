//! What plugins outside the binary share (exec commands and shared libraries): the JSON shape
//! of the points they send, the owner and mode check of their files, and process helpers.
//!
//! A point, as an exec module prints it (one object per line) or a shared-library module
//! returns it (a JSON array of such objects), is the shape of a payload's point objects plus
//! optional structured parts:
//!
//! ```json
//! {"app.queue.mail": {"value": 3, "units": "", "measurement": "app", "field": "queue", "tags": {"queue": "mail"}}}
//! ```
//!
//! `value` is required (a JSON integer makes an int stat, a number with a `.` or an exponent a
//! float stat; `{"name": 3}` is short for `{"name": {"value": 3}}`); `units` defaults to `""`.
//! Without `measurement` and `field` the name is split at its first dot (`app.requests` is
//! measurement `app`, field `requests`; a name without a dot is the measurement, field
//! `value`). An object may hold several points. Names are non-empty and have no whitespace.

use std::borrow::Cow;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::point::{Point, Value};

/// Refuses a file that someone other than root or badger's own user could change: writable
/// by group or others, or owned by another user. `verb` says what badger would do with it
/// ("load", "run").
pub fn check_file(path: &Path, verb: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{}: refusing to {verb} it: it is writable by group or others (mode {mode:04o}); \
             make it writable by its owner only (chmod go-w)",
            path.display()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{}: refusing to {verb} it: it is owned by uid {}, not by root or badger's own user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    Ok(())
}

/// The program of a command: a name without `/` is looked up in `PATH`; a relative path
/// resolves against `base` (the directory of the conf file that names it).
pub fn resolve_program(program: &str, base: &Path) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the command is empty".into());
    }
    if program.contains('/') {
        let p = Path::new(program);
        return Ok(if p.is_relative() { base.join(p) } else { p.to_path_buf() });
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!("\"{program}\" is not in PATH ({})", path.to_string_lossy()))
}

/// The absolute directory of a plugin's conf file: where an exec command runs, and what its
/// relative program path is relative to.
pub fn conf_dir(conf: &crate::plugin::PluginConf) -> PathBuf {
    let dir = match conf.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Checks that a program can be run by badger: [`check_file`] plus the execute bits.
pub fn check_program(path: &Path) -> Result<(), String> {
    check_file(path, "run")?;
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!("{}: not executable (mode {:04o})", path.display(), mode & 0o7777));
    }
    Ok(())
}

/// Appends the points of one JSON object in the plugin shape (see the module docs). On an
/// error nothing is appended.
pub fn points_from_json(value: &serde_json::Value, out: &mut Vec<Point>) -> Result<(), String> {
    let serde_json::Value::Object(map) = value else {
        return Err(format!("expected an object {{\"<name>\": {{\"value\": …}}}}, found {}", kind_of(value)));
    };
    if map.is_empty() {
        return Err("an empty object".into());
    }
    let start = out.len();
    for (name, v) in map {
        match point(name, v) {
            Ok(p) => out.push(p),
            Err(e) => {
                out.truncate(start);
                return Err(format!("\"{name}\": {e}"));
            }
        }
    }
    Ok(())
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn number(v: &serde_json::Value) -> Result<Value, String> {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Value::Int(i))
            } else {
                n.as_f64().map(Value::Float).ok_or_else(|| "value is not a number".to_string())
            }
        }
        other => Err(format!("value must be a number, found {}", kind_of(other))),
    }
}

fn point(name: &str, v: &serde_json::Value) -> Result<Point, String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a stat name is non-empty and has no whitespace".into());
    }
    let (default_measurement, default_field) = name.split_once('.').unwrap_or((name, "value"));
    let mut p = Point {
        name: name.to_string(),
        value: Value::Int(0),
        units: Cow::Borrowed(""),
        measurement: Cow::Owned(default_measurement.to_string()),
        field: Cow::Owned(default_field.to_string()),
        tags: Vec::new(),
    };
    let inner = match v {
        serde_json::Value::Number(_) => {
            p.value = number(v)?;
            return Ok(p);
        }
        serde_json::Value::Object(inner) => inner,
        other => return Err(format!("expected {{\"value\": …}} or a number, found {}", kind_of(other))),
    };
    let string = |key: &str, v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        other => Err(format!("{key} must be a string, found {}", kind_of(other))),
    };
    let mut has_value = false;
    for (key, v) in inner {
        match key.as_str() {
            "value" => {
                p.value = number(v)?;
                has_value = true;
            }
            "units" => p.units = Cow::Owned(string("units", v)?),
            "measurement" => p.measurement = Cow::Owned(string("measurement", v)?),
            "field" => p.field = Cow::Owned(string("field", v)?),
            "tags" => {
                let serde_json::Value::Object(tags) = v else {
                    return Err(format!("tags must be an object of strings, found {}", kind_of(v)));
                };
                for (k, tv) in tags {
                    p.tags.push((Cow::Owned(k.clone()), string(&format!("tag {k}"), tv)?));
                }
            }
            other => {
                return Err(format!("unknown key \"{other}\" (a point has value, units, measurement, field, tags)"))
            }
        }
    }
    if !has_value {
        return Err("no \"value\"".into());
    }
    Ok(p)
}

/// Kills a child's whole process group (it was started as a group leader) and reaps it.
pub fn kill_group(child: &mut Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a child to exit until `deadline`; `None` if it is still running then.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `timeout` as the `poll` argument.
pub fn timespec(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Point>, String> {
        let mut out = Vec::new();
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        points_from_json(&v, &mut out).map(|_| out)
    }

    #[test]
    fn the_payload_shape_with_structured_parts() {
        let p = parse(r#"{"app.queue.mail": {"value": 3, "units": "msgs", "measurement": "app", "field": "queue", "tags": {"queue": "mail"}}}"#).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "app.queue.mail");
        assert_eq!(p[0].value, Value::Int(3));
        assert_eq!((p[0].units.as_ref(), p[0].measurement.as_ref(), p[0].field.as_ref()), ("msgs", "app", "queue"));
        assert_eq!(p[0].tags, vec![(Cow::Borrowed("queue"), "mail".to_string())]);
    }

    #[test]
    fn defaults_and_shorthand() {
        let p = parse(r#"{"app.requests.total": {"value": 1.0}, "bare": 7}"#).unwrap();
        assert_eq!(p[0].name, "app.requests.total");
        assert_eq!(p[0].value, Value::Float(1.0));
        assert_eq!(
            (p[0].units.as_ref(), p[0].measurement.as_ref(), p[0].field.as_ref()),
            ("", "app", "requests.total")
        );
        assert_eq!((p[1].name.as_str(), p[1].value), ("bare", Value::Int(7)));
        assert_eq!((p[1].measurement.as_ref(), p[1].field.as_ref()), ("bare", "value"));
        assert_eq!(parse(r#"{"big": 18446744073709551615}"#).unwrap()[0].value, Value::Float(18446744073709551615.0));
    }

    #[test]
    fn bad_points_say_why() {
        assert_eq!(parse("[1]").unwrap_err(), "expected an object {\"<name>\": {\"value\": …}}, found an array");
        assert_eq!(parse(r#"{"a": {"value": "1"}}"#).unwrap_err(), "\"a\": value must be a number, found a string");
        assert_eq!(parse(r#"{"a": {"units": ""}}"#).unwrap_err(), "\"a\": no \"value\"");
        assert_eq!(
            parse(r#"{"a": {"value": 1, "unit": ""}}"#).unwrap_err(),
            "\"a\": unknown key \"unit\" (a point has value, units, measurement, field, tags)"
        );
        assert_eq!(parse(r#"{"a b": 1}"#).unwrap_err(), "\"a b\": a stat name is non-empty and has no whitespace");
        assert_eq!(
            parse(r#"{"a": {"value": 1, "tags": {"k": 1}}}"#).unwrap_err(),
            "\"a\": tag k must be a string, found a number"
        );
        assert_eq!(parse("{}").unwrap_err(), "an empty object");
        // Nothing of a bad object is kept.
        let mut out = Vec::new();
        let v: serde_json::Value = serde_json::from_str(r#"{"a": 1, "b": null}"#).unwrap();
        assert!(points_from_json(&v, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check_file(&f, "load"), Ok(()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check_file(&f, "load").unwrap_err();
        assert!(e.ends_with(": refusing to load it: it is writable by group or others (mode 0664); make it writable by its owner only (chmod go-w)"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_program(&f).unwrap_err().ends_with(": not executable (mode 0644)"));
        assert!(check_file(dir.path(), "load").unwrap_err().ends_with(": not a regular file"));
        assert_eq!(resolve_program("./x", Path::new("/etc/badger")), Ok(PathBuf::from("/etc/badger/./x")));
        assert_eq!(resolve_program("/bin/true", Path::new("/etc")), Ok(PathBuf::from("/bin/true")));
        assert!(resolve_program("sh", Path::new("/")).unwrap().ends_with("sh"));
        assert!(resolve_program("no-such-program-here", Path::new("/"))
            .unwrap_err()
            .starts_with("\"no-such-program-here\" is not in PATH"));
    }
}
