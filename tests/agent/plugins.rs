//! Custom modules and emitters: shared libraries built with `badger-plugin-sdk` (the example
//! plugins `dir_files` and `jsonl_file`, and `tests/support_plugins/misbehave`) and exec
//! commands, run through the real binary.
//!
//! The plugin crates are built once per run with `cargo build -p dir_files -p jsonl_file -p
//! misbehave` (into this test's target directory); the two hand-made libraries of
//! `tests/support_plugins/*.rs` (another ABI version, a missing symbol) with `rustc`.

use badger_test_support::process as common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

// ---- building the plugins -------------------------------------------------------------------

/// The target directory this test binary was built into (`<target>/<profile>/deps/plugins-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("<target>/<profile>/deps/<test>").to_path_buf()
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the SDK plugin crates once; returns the directory that holds their `lib*.so`.
fn sdk_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = target_dir();
        let out = Command::new(&cargo)
            .args(["build", "--quiet", "--locked", "-p", "dir_files", "-p", "jsonl_file", "-p", "misbehave"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(manifest_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo} to build the test plugins: {e}"));
        assert!(
            out.status.success(),
            "building the plugin crates failed (try `cargo build -p dir_files -p jsonl_file -p misbehave`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug")
    })
}

/// Builds `tests/support_plugins/<name>.rs` into a library with rustc (once per run).
fn rustc_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let dir = target_dir().join("plugin-tests");
        std::fs::create_dir_all(&dir).expect("mkdir plugin-tests");
        // rustc next to the cargo that runs the tests, else the one in PATH.
        let rustc = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|c| c.parent().map(|d| d.join("rustc")))
            .filter(|r| r.exists())
            .unwrap_or_else(|| PathBuf::from("rustc"));
        for src in ["abi_mismatch", "no_collect"] {
            let out = Command::new(&rustc)
                .args(["--edition", "2021", "--crate-type", "cdylib", "-o"])
                .arg(dir.join(format!("lib{src}.so")))
                .arg(manifest_dir().join(format!("tests/support_plugins/{src}.rs")))
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.display()));
            assert!(out.status.success(), "rustc {src}.rs:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        dir
    });
    dir.join(format!("lib{name}.so"))
}

/// Copies a library into `<config dir>/plugins/lib<name>.so` with `mode`.
fn install(c: &TempConfig, lib: &Path, name: &str, mode: u32) -> PathBuf {
    let dir = c.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("mkdir plugins");
    let dst = dir.join(format!("lib{name}.so"));
    std::fs::copy(lib, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).expect("chmod");
    dst
}

fn sdk_lib(name: &str) -> PathBuf {
    sdk_plugins().join(format!("lib{name}.so"))
}

/// Writes an executable script into the config directory.
fn script(c: &TempConfig, rel: &str, body: &str, mode: u32) -> PathBuf {
    c.write(rel, &format!("#!/bin/sh\n{body}\n"));
    let p = c.dir.path().join(rel);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

// ---- running badger -------------------------------------------------------------------------

/// A running badger: stdout lines as they arrive (with the wall time), stderr at the end.
struct Run {
    child: Child,
    lines: mpsc::Receiver<(f64, String)>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

impl Run {
    fn start(c: &TempConfig) -> Run {
        let (child, lines, stderr) = common::spawn_lines(c, |line| Some((now_secs(), line)));
        Run { child, lines, stderr: Some(stderr) }
    }

    /// The next `n` stdout lines, parsed, with their arrival times.
    fn payloads(&mut self, n: usize, within: Duration) -> Vec<(f64, String, serde_json::Value)> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, line)) = self.lines.recv_timeout(left) else {
                let _ = self.child.kill();
                panic!("{} of {n} payloads within {within:?}; stderr:\n{}", out.len(), self.stderr());
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout is NDJSON ({e}): {line}"));
            out.push((at, line, v));
        }
        out
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM; waits for the exit code (within 6 s) and the rest of stdout.
    fn stop(&mut self) -> (i32, Vec<String>) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
        let t = Instant::now();
        let code = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s.code().unwrap_or(-1);
            }
            if t.elapsed() > Duration::from_secs(6) {
                let _ = self.child.kill();
                panic!("badger did not stop within 6 s; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = self.lines.iter().map(|(_, l)| l).collect();
        (code, rest)
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p.as_object().and_then(|o| o.keys().next().cloned()))
        .collect()
}

fn point<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["points"]
        .as_array()
        .and_then(|ps| ps.iter().find_map(|p| p.get(name)))
        .unwrap_or_else(|| panic!("no point {name} in {v}"))
}

const LOAD: [&str; 5] = ["load.one", "load.five", "load.fifteen", "load.runnable_entities", "load.total_entities"];

fn main_config(modules: &str, emitters: &str) -> String {
    format!(
        r#"{{ "core": {{"hostname": "h1", "ipv4": "", "ipv6": "", "log": {{"level": "info"}}, "plugin_dirs": ["plugins"]}},
  "modules": [{modules}], "emitters": [{emitters}] }}"#
    )
}

// ---- the tests ------------------------------------------------------------------------------

/// Both kinds of both sorts: a shared-library module and an exec module feed the payload; a
/// shared-library emitter and an exec emitter receive exactly what `stdout` prints. Module
/// and emitter blacklists apply to plugins as to built-ins.
#[test]
fn library_and_exec_plugins_collect_and_receive() {
    let c = TempConfig::new(&main_config(r#""load", "dir_files", "queues""#, r#""stdout", "jsonl_file", "tee""#), &[]);
    install(&c, &sdk_lib("dir_files"), "dir_files", 0o755);
    install(&c, &sdk_lib("jsonl_file"), "jsonl_file", 0o755);
    let spool = c.dir.path().join("spool");
    std::fs::create_dir_all(spool.join("subdir")).unwrap();
    for (f, size) in [("a", 1), ("b", 10), ("c", 100)] {
        std::fs::write(spool.join(f), vec![b'x'; size]).unwrap();
    }
    let jsonl = c.dir.path().join("out.jsonl");
    let tee = c.dir.path().join("tee.out");
    c.write("conf.d/dir_files.conf", &format!(r#"{{"dirs": {{"spool": "{}"}}}}"#, spool.display()));
    c.write("conf.d/jsonl_file.conf", &format!(r#"{{"path": "{}", "blacklist": "load.*"}}"#, jsonl.display()));
    // The exec module: two good lines, a line that is not JSON, a point with a bad value.
    script(
        &c,
        "conf.d/queues.sh",
        r#"echo '{"queue.depth.mail": {"value": 3, "units": "msgs", "tags": {"queue": "mail"}}}'
echo 'garbage'
echo '{"queue.age.mail": 1.5}'
echo '{"queue.bad": {"value": "x"}}'
echo '{"queue.hidden": 7}'"#,
        0o755,
    );
    c.write("conf.d/queues.conf", r#"{"exec": ["./queues.sh"], "blacklist": ["queue.hid*"]}"#);
    script(&c, "tee.sh", r#"exec cat >> "$1""#, 0o700);
    c.write("conf.d/tee.conf", &format!(r#"{{"exec": ["../tee.sh", "{}"]}}"#, tee.display()));

    let mut run = Run::start(&c);
    let first = run.payloads(3, Duration::from_secs(10));
    let (code, rest) = run.stop();
    let err = run.stderr();
    assert_eq!(code, 0, "{err}");

    let mut expected: Vec<String> = LOAD.iter().map(|s| s.to_string()).collect();
    expected.extend(
        ["dir_files.count.spool", "dir_files.bytes.spool", "queue.depth.mail", "queue.age.mail"].map(String::from),
    );
    for (_, _, v) in &first {
        assert_eq!(names(v), expected, "{v}");
        assert_eq!(point(v, "dir_files.count.spool"), &serde_json::json!({"units": "", "value": 3}));
        assert_eq!(point(v, "dir_files.bytes.spool"), &serde_json::json!({"units": "B", "value": 111}));
        assert_eq!(point(v, "queue.depth.mail"), &serde_json::json!({"units": "msgs", "value": 3}));
        assert_eq!(point(v, "queue.age.mail"), &serde_json::json!({"units": "", "value": 1.5}));
        assert_eq!(v["hostname"], "h1");
    }
    // The exec module's bad lines: dropped, counted, logged once a minute.
    assert!(
        err.contains(&format!(
            "module \"queues\": dropped line 2 of {}'s output: not JSON: expected value at line 1 column 1 (1 bad lines in all, 0 not logged since the last line)",
            c.dir.path().join("conf.d/./queues.sh").display()
        )),
        "{err}"
    );
    assert!(!err.contains("dropped line 4"), "rate-limited: {err}");

    // Every payload went to stdout, the exec emitter (byte for byte) and the library emitter.
    let stdout: Vec<String> = first.iter().map(|(_, l, _)| l.clone()).chain(rest).collect();
    let tee_lines: Vec<String> = std::fs::read_to_string(&tee).unwrap().lines().map(String::from).collect();
    assert_eq!(tee_lines, stdout);
    let parse = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
    let jsonl_lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl).unwrap().lines().map(parse).collect();
    // The library emitter's blacklist ("load.*") leaves the load points out of its copy only.
    let without_load = |l: &String| {
        let mut v = parse(l);
        if let Some(points) = v["points"].as_array_mut() {
            points.retain(|p| !p.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with("load."))));
        }
        v
    };
    assert_eq!(jsonl_lines, stdout.iter().map(without_load).collect::<Vec<_>>());
    assert!(jsonl_lines.iter().all(|v| !names(v).is_empty() && !names(v).iter().any(|n| n.starts_with("load."))));
    assert!(err.contains("emitter \"tee\": started "), "{err}");
}

/// A library module's points keep their structured parts (measurement, field, tags), which
/// the JSON payload does not show.
#[test]
fn library_points_keep_measurement_field_and_tags() {
    use badger_api::plugin::{ModuleContext, PluginConf};
    use badger_api::point::Value;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"12345").unwrap();
    let conf = PluginConf::from_text(
        "dir_files",
        Path::new("conf.d/dir_files.conf"),
        &format!(r#"{{"interval": 5, "dirs": {{"d": "{}"}}}}"#, dir.path().display()),
    );
    let mut m = badger::loader::build_module(&sdk_lib("dir_files"), &ModuleContext::default(), &conf)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    m.collect(Instant::now(), &mut out).unwrap();
    /// name, value, units, measurement, field, tags
    type Row<'a> = (&'a str, Value, &'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>);
    let got: Vec<Row> = out
        .iter()
        .map(|p| {
            let tags = p.tags.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
            (p.name.as_str(), p.value, p.units.as_ref(), p.measurement.as_ref(), p.field.as_ref(), tags)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dir_files.count.d", Value::Int(1), "", "dir_files", "count", vec![("dir", "d")]),
            ("dir_files.bytes.d", Value::Int(5), "B", "dir_files", "bytes", vec![("dir", "d")]),
        ]
    );
}

/// Config errors in a library plugin's conf file are config errors (exit 2) with file, line
/// and key; an unknown name names the conf file and the directories searched; the original
/// shape's section `dir` is searched too.
#[test]
fn library_config_errors_and_lookup() {
    let check = |main: &str, conf: &str| {
        let c = TempConfig::new(main, &[("dir_files", conf)]);
        install(&c, &sdk_lib("dir_files"), "dir_files", 0o755);
        let o = run(&["--check", "-f", "config.json"], c.dir.path());
        (o.status.code(), stdout(&o), stderr(&o))
    };
    let main = main_config(r#""dir_files""#, r#""stdout""#);
    let (code, _, err) = check(&main, "{\n  \"interval\": 5,\n  \"dirs\": {}\n}");
    assert_eq!(code, Some(2));
    assert_eq!(err, "badger: config error: conf.d/dir_files.conf, line 3, key \"dirs\": name at least one directory\n");
    let (code, _, err) = check(&main, "{\n\"dirz\": {}}");
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "badger: config error: conf.d/dir_files.conf, line 2, key \"dirz\": unknown field `dirz`, expected `dirs`\n"
    );
    let (code, _, err) = check(&main, "{\"dirs\": {\"a\":\n 7}}");
    assert_eq!(code, Some(2));
    assert_eq!(err, "badger: config error: conf.d/dir_files.conf, line 1, key \"dirs.a\": invalid type: integer `7`, expected path string\n");

    let (code, _, err) = check(&main_config(r#""load", "nothing""#, r#""stdout""#), "{}");
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("badger: config error: config.json, line 2, key \"modules\": \"nothing\": unknown module; known: cpu, load, "),
        "{err}"
    );
    assert!(
        err.ends_with("; and no conf.d/nothing.conf has an \"exec\" key, nor is there a libnothing.so in plugins\n"),
        "{err}"
    );

    // The original shape: the section's "dir" holds the library.
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": ""},
            "modules": {"dir": "badger_modules", "config": "badger_modules/conf.d", "included_modules": ["load", "dir_files"]},
            "emitters": {"dir": "badger_emitters", "config": "badger_emitters/conf.d", "included_emitters": ["stdout"]}}"#,
        &[],
    );
    std::fs::create_dir_all(c.dir.path().join("badger_modules")).unwrap();
    std::fs::copy(sdk_lib("dir_files"), c.dir.path().join("badger_modules/libdir_files.so")).unwrap();
    c.write("badger_modules/conf.d/dir_files.conf", r#"{"dirs": {"tmp": "/tmp"}}"#);
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "  module dir_files (= badger_modules/libdir_files.so): every tick, badger_modules/conf.d/dir_files.conf: ok\n"
        ),
        "{}",
        stdout(&o)
    );
}

/// Another ABI version, a missing symbol, a file that is no library, a library others could
/// change or another user owns, an exec command others could change: each is refused with a
/// message naming the file, skipped, and badger runs the rest.
#[test]
fn refused_plugins_are_skipped_and_badger_keeps_running() {
    let root = rustix_is_root();
    let mut modules = vec!["load", "future", "no_collect", "garbage", "loose", "loose_cmd"];
    if root {
        modules.push("foreign");
    }
    let list = |names: &[&str]| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    let c = TempConfig::new(&main_config(&list(&modules), &list(&["stdout", "wrong_kind"])), &[]);
    install(&c, &rustc_plugin("abi_mismatch"), "future", 0o755);
    install(&c, &rustc_plugin("no_collect"), "no_collect", 0o755);
    c.write("plugins/libgarbage.so", "not an ELF file");
    install(&c, &sdk_lib("dir_files"), "loose", 0o775);
    install(&c, &sdk_lib("dir_files"), "wrong_kind", 0o755);
    c.write("conf.d/wrong_kind.conf", r#"{"dirs": {"tmp": "/tmp"}}"#);
    script(&c, "conf.d/loose.sh", "echo '{\"x\": 1}'", 0o777);
    c.write("conf.d/loose_cmd.conf", r#"{"exec": ["./loose.sh"]}"#);
    if root {
        let f = install(&c, &sdk_lib("dir_files"), "foreign", 0o755);
        std::os::unix::fs::chown(&f, Some(4242), None).expect("chown");
    }

    let expected = [
        ("future", "plugins/libfuture.so: plugin ABI version 999, but this badger speaks version 1; rebuild the plugin with a badger-plugin-sdk of ABI version 1".to_string()),
        ("no_collect", "plugins/libno_collect.so: missing symbol badger_module_init: not a badger plugin of this kind, or built without the SDK's macro".to_string()),
        ("loose", "plugins/libloose.so: refusing to load it: it is writable by group or others (mode 0775); make it writable by its owner only (chmod go-w)".to_string()),
        ("loose_cmd", format!("{}: refusing to run it: it is writable by group or others (mode 0777); make it writable by its owner only (chmod go-w)", c.dir.path().join("conf.d/./loose.sh").display())),
        ("foreign", format!("plugins/libforeign.so: refusing to load it: it is owned by uid 4242, not by root or badger's own user (uid {})", rustix_euid())),
    ];
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for (name, why) in &expected {
        if *name == "foreign" && !root {
            continue;
        }
        let via = if *name == "loose_cmd" { " (= exec)".to_string() } else { format!(" (= plugins/lib{name}.so)") };
        let conf =
            if *name == "loose_cmd" { "conf.d/loose_cmd.conf".to_string() } else { "(defaults; no conf file)".into() };
        let line = format!("  module {name}{via}: every tick, {conf}: would be skipped: {why}\n");
        assert!(out.contains(&line), "missing {line:?} in\n{out}");
    }
    assert!(
        out.contains("  module garbage (= plugins/libgarbage.so): every tick, (defaults; no conf file): would be skipped: plugins/libgarbage.so: cannot load it: "),
        "{out}"
    );
    assert!(
        out.contains("  emitter wrong_kind (= plugins/libwrong_kind.so): every tick, conf.d/wrong_kind.conf: would be skipped: plugins/libwrong_kind.so: missing symbol badger_emitter_init: "),
        "{out}"
    );

    // Running: the refused ones are logged and skipped, load still reaches stdout.
    let o = run(&["--once", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one payload");
    assert_eq!(names(&v), LOAD);
    let err = stderr(&o);
    for (name, why) in &expected {
        if *name == "foreign" && !root {
            continue;
        }
        assert!(err.contains(&format!("module \"{name}\" skipped: {why}\n")), "{name}: {err}");
    }
}

/// An exec emitter whose command exits after every line is restarted with a doubling wait.
/// (Lines already in the pipe when it exits are lost with it; those that arrive while it is
/// down wait in the queue.)
#[test]
fn a_crashing_exec_emitter_is_restarted() {
    let c = TempConfig::new(&main_config(r#""load""#, r#""crashy""#), &[]);
    let out = c.dir.path().join("crashy.out");
    let cmd = script(&c, "crashy.sh", r#"read -r line || exit 0; echo "$$ $line" >> "$1"; exit 3"#, 0o755);
    c.write(
        "conf.d/crashy.conf",
        &format!(
            r#"{{"exec": ["{}", "{}"], "restart_initial": "100ms", "restart_max": "400ms"}}"#,
            cmd.display(),
            out.display()
        ),
    );
    let mut run = Run::start(&c);
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= 4 {
            break lines;
        }
        assert!(Instant::now() < deadline, "only {} lines in 15 s; stderr:\n{}", lines.len(), run.stderr());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(run.alive());
    let (code, _) = run.stop();
    let err = run.stderr();
    assert_eq!(code, 0, "{err}");
    let mut pids = Vec::new();
    let mut stamps = Vec::new();
    for l in &lines {
        let (pid, payload) = l.split_once(' ').expect("pid and payload");
        let v: serde_json::Value = serde_json::from_str(payload).expect("a payload line");
        assert_eq!(names(&v), LOAD);
        pids.push(pid.to_string());
        stamps.push(v["timestamp"].as_i64().expect("timestamp"));
    }
    pids.dedup();
    assert_eq!(pids.len(), lines.len(), "one process per line: {lines:?}");
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "payloads in order: {stamps:?}");
    let exited = format!("emitter \"crashy\": {} exited (exit status: 3); restarting it in ", cmd.display());
    for wait in ["100ms", "200ms", "400ms"] {
        assert!(err.contains(&format!("{exited}{wait} (")), "no restart after {wait}:\n{err}");
    }
}

/// A library module that panics on every collection, and one that panics while being built:
/// badger logs them and goes on with the rest.
#[test]
fn a_panicking_library_plugin_does_not_take_badger_down() {
    let c = TempConfig::new(
        &main_config(r#""load", "boom", "boom_new", "fine""#, r#""stdout""#),
        &[("boom", r#"{"mode": "panic"}"#), ("boom_new", r#"{"mode": "panic_in_new"}"#), ("fine", r#"{"mode": "ok"}"#)],
    );
    for name in ["boom", "boom_new", "fine"] {
        install(&c, &sdk_lib("misbehave"), name, 0o755);
    }
    let mut run = Run::start(&c);
    let got = run.payloads(3, Duration::from_secs(10));
    assert!(run.alive());
    for (i, (_, _, v)) in got.iter().enumerate() {
        let mut expected: Vec<String> = LOAD.iter().map(|s| s.to_string()).collect();
        expected.push("misbehave.calls".into());
        assert_eq!(names(v), expected);
        assert_eq!(point(v, "misbehave.calls")["value"], i as i64 + 1);
    }
    let (code, _) = run.stop();
    let err = run.stderr();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("module \"boom_new\" skipped: plugins/libboom_new.so: panicked while starting: misbehave: panic while being built\n"), "{err}");
    for n in 1..=3 {
        assert!(err.contains(&format!("module \"boom\": panicked: misbehave: panic in collection {n}\n")), "{err}");
    }
}

/// A library module that never returns and an exec command that sleeps: every payload still
/// goes out within its second, with the other modules' points.
#[test]
fn a_hung_plugin_module_does_not_delay_the_others() {
    let c = TempConfig::new(
        &main_config(r#""stuck", "load", "sleepy", "fine""#, r#""stdout""#),
        &[
            ("stuck", r#"{"mode": "hang", "timeout": "300ms"}"#),
            ("fine", r#"{"mode": "ok"}"#),
            ("sleepy", r#"{"exec": ["../sleepy.sh"], "timeout": "300ms"}"#),
        ],
    );
    install(&c, &sdk_lib("misbehave"), "stuck", 0o755);
    install(&c, &sdk_lib("misbehave"), "fine", 0o755);
    script(&c, "sleepy.sh", "echo '{\"sleepy.early\": 1}'; exec sleep 60", 0o755);
    let mut run = Run::start(&c);
    let got = run.payloads(4, Duration::from_secs(10));
    for (at, _, v) in &got {
        let ts = v["timestamp"].as_i64().expect("timestamp") as f64;
        assert!((0.0..0.9).contains(&(at - ts)), "payload {ts} arrived {:.3}s after its tick", at - ts);
        let mut expected: Vec<String> = LOAD.iter().map(|s| s.to_string()).collect();
        expected.push("misbehave.calls".into());
        assert_eq!(names(v), expected);
    }
    let (code, _) = run.stop();
    let err = run.stderr();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("module \"stuck\" did not answer within 300ms; the tick went out without it"), "{err}");
    assert!(
        err.contains(&format!(
            "module \"sleepy\": {} killed: still running after 270ms; its output was dropped",
            c.dir.path().join("conf.d/../sleepy.sh").display()
        )),
        "{err}"
    );
}

fn rustix_euid() -> u32 {
    // The owner of a file this process creates is its effective uid.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("me");
    std::fs::write(&f, "").expect("write");
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&f).expect("stat"))
}

fn rustix_is_root() -> bool {
    rustix_euid() == 0
}
