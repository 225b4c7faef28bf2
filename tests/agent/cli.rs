//! The binary's command line and every config error path: exit codes and messages.

use badger_test_support::process as common;
use common::*;

const MAIN: &str = r#"{ "core": {"datacenter": "dc1", "hostname": "h1", "ipv4": "", "ipv6": ""},
  "modules": ["load"], "emitters": ["stdout_pretty"] }"#;

#[test]
fn without_config_is_a_usage_error_naming_f() {
    let o = badger().output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-f <config.json>"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn version_and_help() {
    let o = badger().arg("--version").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), format!("badger {}", env!("CARGO_PKG_VERSION")));
    let o = badger().arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    for flag in ["-f, --config <FILE>", "--test", "--once", "--check", "-l, --log-level <LEVEL>", "--version"] {
        assert!(stdout(&o).contains(flag), "help lacks {flag}:\n{}", stdout(&o));
    }
}

#[test]
fn unknown_flag_exits_2() {
    let o = badger().arg("--bogus").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn check_prints_what_would_run() {
    let c = TempConfig::new(MAIN, &[("load", r#"{"interval": "5s", "blacklist": "load.one, load.five"}"#)]);
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("config ok: config.json\n"), "{out}");
    assert!(out.contains(r#"hostname="h1" ipv4="" ipv6="""#), "{out}");
    assert!(out.contains("module load: every 5s, "), "{out}");
    assert!(out.contains("emitter stdout_pretty: every tick, (defaults; no conf file): ok"), "{out}");
}

/// Runs `--check` and returns stderr, asserting exit 2.
fn config_error(main: &str, confs: &[(&str, &str)]) -> String {
    let c = TempConfig::new(main, confs);
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(2), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    assert!(o.stdout.is_empty());
    stderr(&o)
}

#[test]
fn missing_config_file() {
    let o = run(&["--check", "-f", "nope.json"], std::env::temp_dir().as_path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("badger: config error: nope.json: cannot read the config file:"), "{}", stderr(&o));
}

#[test]
fn json_syntax_error_names_line() {
    let e = config_error("{\n \"modules\": [\"load\"],\n \"emitters\": [\"stdout\"]\n,,}", &[]);
    assert!(e.starts_with("badger: config error: config.json, line 4:"), "{e}");
}

#[test]
fn unknown_main_key_names_line_and_key() {
    let e = config_error("{\n \"modules\": [\"load\"],\n // comment\n \"emiters\": []\n}", &[]);
    assert_eq!(
        e.lines().next().unwrap(),
        "badger: config error: config.json, line 4, key \"emiters\": unknown field `emiters`, expected one of `core`, `modules`, `async_modules`, `emitters`, `conf_dir`"
    );
}

#[test]
fn missing_required_section() {
    let e = config_error(r#"{"modules": ["load"]}"#, &[]);
    assert!(e.contains("missing field `emitters`"), "{e}");
}

#[test]
fn wrong_type_in_core_names_key() {
    let e = config_error("{\"core\": {\n\"hostname\": 5},\n\"modules\": [], \"emitters\": []}", &[]);
    assert!(e.starts_with("badger: config error: config.json, line 2, key \"core.hostname\": invalid type: integer `5`, expected a string"), "{e}");
}

#[test]
fn unknown_core_key() {
    let e = config_error("{\"core\": {\"hostnme\": \"x\"}, \"modules\": [], \"emitters\": []}", &[]);
    assert!(e.contains("key \"core.hostnme\": unknown field `hostnme`"), "{e}");
}

#[test]
fn bad_log_level() {
    let e = config_error("{\"core\": {\"log\": {\n\"level\": \"loud\"}}, \"modules\": [], \"emitters\": []}", &[]);
    assert!(e.contains("config.json, line 2, key \"core.log.level\": unknown log level \"loud\""), "{e}");
}

#[test]
fn unknown_module_names_line() {
    let e = config_error("{\n\"modules\": [\"load\",\n \"telepathy\"],\n\"emitters\": [\"stdout\"]}", &[]);
    assert!(
        e.starts_with(
            "badger: config error: config.json, line 3, key \"modules\": \"telepathy\": unknown module; known: "
        ),
        "{e}"
    );
}

#[test]
fn unknown_emitter_names_line() {
    let e = config_error("{\"modules\": [\"load\"],\n\"emitters\": [\"carrier_pigeon\"]}", &[]);
    assert!(e.contains("line 2, key \"emitters\": \"carrier_pigeon\": unknown emitter"), "{e}");
}

#[test]
fn module_listed_twice() {
    let e = config_error(r#"{"modules": ["load", "load"], "emitters": []}"#, &[]);
    assert!(e.contains("module listed twice"), "{e}");
}

#[test]
fn conf_d_unknown_key_names_file_line_key() {
    let e = config_error(MAIN, &[("load", "{\n  \"interval\": 1,\n  \"intervall\": 2\n}")]);
    assert!(e.contains("conf.d/load.conf, line 3, key \"intervall\": unknown field `intervall`"), "{e}");
}

#[test]
fn conf_d_bad_interval() {
    let e = config_error(MAIN, &[("load", "{\n\"interval\": \"often\"}")]);
    assert!(e.contains("conf.d/load.conf, line 2, key \"interval\": \"often\" is not a duration"), "{e}");
    let e = config_error(MAIN, &[("load", "{\"interval\": 0.5}")]);
    assert!(e.contains("key \"interval\": an interval is whole seconds"), "{e}");
}

#[test]
fn conf_d_bad_blacklist() {
    let e = config_error(MAIN, &[("load", "{\"blacklist\": 7}")]);
    assert!(
        e.contains(
            "key \"blacklist\": invalid type: integer `7`, expected an array of strings or a comma-separated string"
        ),
        "{e}"
    );
    let e = config_error(MAIN, &[("load", "{\n\"blacklist\": [\"load.[x\"]}")]);
    assert!(e.contains("conf.d/load.conf, line 2, key \"blacklist\": bad pattern \"load.[x\""), "{e}");
}

#[test]
fn conf_d_not_an_object() {
    let e = config_error(MAIN, &[("load", "[1]")]);
    assert!(e.contains("conf.d/load.conf, line 1"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let c = TempConfig::new(r#"{"modules": ["load"], "emitters": ["stdout"], "conf_dir": "plugins"}"#, &[]);
    c.write("plugins/load.conf", r#"{"interval": 7}"#);
    // Run from another directory: the conf dir is still found next to config.json.
    let o = run(&["--check", "-f", c.path().to_str().unwrap()], std::env::temp_dir().as_path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("module load: every 7s"), "{}", stdout(&o));
}

#[test]
fn comments_and_urls_survive() {
    let main = "/* header\n spanning lines */\n{\n  // a line comment\n  \"core\": {\"datacenter\": \"http://dc/*x*/\", \"hostname\": \"h\"},\n  \"modules\": [\"load\"], /* inline */\n  \"emitters\": [\"stdout\"]\n}\n";
    let c = TempConfig::new(main, &[]);
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(r#"datacenter="http://dc/*x*/""#), "{}", stdout(&o));
}

#[test]
fn test_mode_prints_one_pretty_payload_from_the_proc_root() {
    let c = TempConfig::new(
        r#"{"core": {"datacenter": "dc1", "region": "", "zone": "", "cluster": "c1", "hostname": "h1",
                     "ipv4": "10.0.0.1", "ipv6": "", "proc_root": "proc"},
            "modules": ["load"], "emitters": ["stdout"]}"#,
        &[],
    );
    c.write("proc/loadavg", "2.09 1.5 0.25 3/181 4242\n");
    let o = run(&["--test", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let ts_line = out.lines().find(|l| l.starts_with("    \"timestamp\": ")).expect("timestamp line");
    let expected = format!(
        r#"{{
    "cluster": "c1",
    "datacenter": "dc1",
    "hostname": "h1",
    "ipv4": "10.0.0.1",
    "ipv6": "",
    "points": [
        {{
            "load.one": {{
                "units": "",
                "value": 2.09
            }}
        }},
        {{
            "load.five": {{
                "units": "",
                "value": 1.5
            }}
        }},
        {{
            "load.fifteen": {{
                "units": "",
                "value": 0.25
            }}
        }},
        {{
            "load.runnable_entities": {{
                "units": "",
                "value": 3
            }}
        }},
        {{
            "load.total_entities": {{
                "units": "",
                "value": 181
            }}
        }}
    ],
    "region": "",
{ts_line}
    "zone": ""
}}
"#
    );
    assert_eq!(out, expected);
    let ts: i64 = ts_line.trim().trim_start_matches("\"timestamp\": ").trim_end_matches(',').parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - ts).abs() <= 2, "timestamp {ts} vs now {now}");
}

#[test]
fn unavailable_module_is_skipped_and_the_rest_runs() {
    // proc root without loadavg: load cannot run, but --check still passes (it is not a config error).
    let c = TempConfig::new(r#"{"core": {"proc_root": "empty"}, "modules": ["load"], "emitters": ["stdout"]}"#, &[]);
    c.write("empty/.keep", "");
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("module load: every tick, (defaults; no conf file): would be skipped: reading "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn once_sends_one_payload_through_the_configured_emitters() {
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h1", "ipv4": "", "ipv6": "", "proc_root": "proc"},
            "modules": ["load"], "emitters": ["stdout"]}"#,
        &[],
    );
    c.write("proc/loadavg", "2.09 1.5 0.25 3/181 4242\n");
    let o = run(&["--once", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hostname"], "h1");
    assert_eq!(v["points"][0]["load.one"]["value"], 2.09);
}

#[test]
fn missing_metadata_is_detected_and_empty_stays_empty() {
    // hostname left out: the kernel's; ipv4 set to "": stays empty; datacenter left out: empty.
    let c = TempConfig::new(r#"{"core": {"ipv4": ""}, "modules": ["load"], "emitters": ["stdout"]}"#, &[]);
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = stdout(&o);
    assert!(out.contains("datacenter=\"\" "), "{out}");
    assert!(out.contains(&format!("hostname={:?} ipv4=\"\"", kernel.trim())), "{out}");
}
