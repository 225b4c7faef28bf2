//! The original Stat Badger configuration tree loads unchanged: its `config.json` (with
//! comments, the three section objects, `async_modules`) and its stock conf.d files,
//! including those of the original emitters it does not list.

use badger_test_support::process as common;
use common::*;

const STOCK_CONFIG: &str = r#"{
    /* Core config. Every key must be present; keep them empty strings if not applicable,
       since the payload always carries them. */
    "core": {
        "datacenter": "bld",
        "region": "",
        "zone": "",
        "cluster": "test",
        "hostname": "cody-dev",
        "ipv4": "192.168.2.15",
        "ipv6": "",
        "log": {
            "dest": "stdout", // or "file"
            "fileName": "badger.log",
            "level": "debug"
        }
    },
    "modules": {
        "dir": "badger_modules",
        "config": "badger_modules/conf.d",
        "included_modules": ["system", "cpu", "disk", "network", "memory", "process_stats"]
    },
    "async_modules": {
        "dir": "badger_modules",
        "config": "badger_modules/conf.d",
        "included_modules": ["load"]
    },
    "emitters": {
        "dir": "badger_emitters",
        "config": "badger_emitters/conf.d",
        "included_emitters": ["stdout_pretty"]
    }
}
"#;

const MODULE_CONFS: &[(&str, &str)] = &[
    ("cpu", r#"{ "interval": 0, "blacklist": [] }"#),
    ("memory", r#"{ "interval": 0, "blacklist": [] }"#),
    ("system", r#"{ "interval": 0, "blacklist": [] }"#),
    ("load", r#"{ "interval": 5, "blacklist": [] }"#),
    (
        "disk",
        r#"{
    "interval": 0,
    "blacklist": [],
    // comma-separated list of disks to check; leave empty to check all devices
    "disks_to_check": "sda,nbd8,nbd9"
}"#,
    ),
    ("network", r#"{ "interval": 0, "blacklist": [], "interfaces_to_check": "eth0" }"#),
    (
        "process_stats",
        r#"{ "interval": 0, "blacklist": [],
    "processes": [ {"name": "stat-badger", "pattern": ".+badger_core\\.py -f.+"} ] }"#,
    ),
];

const EMITTER_CONFS: &[(&str, &str)] = &[
    ("stdout", r#"{ "interval": 0, "blacklist": [] }"#),
    ("stdout_pretty", r#"{ "interval": 0, "blacklist": [] }"#),
    (
        "graphite_emitter",
        r#"{ "interval": 0, "blacklist": [],
    // use the pickle/bulk port
    "host": "127.0.0.1", "port": 2004 }"#,
    ),
    (
        "influxdb08_emitter",
        r#"{ "interval": 0, "blacklist": [], "host": "127.0.0.1", "port": 8086,
    "database": "system_stats", "user": "test", "pass": "test" }"#,
    ),
    (
        "kafka082_emitter",
        r#"{ "interval": 0, "blacklist": [],
    "brokers": "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094",
    "topic": "stat-badger-3",
    "codec": "gzip" // none, gzip, speedy
}"#,
    ),
];

fn stock_tree() -> TempConfig {
    let c = TempConfig::new(STOCK_CONFIG, &[]);
    for (name, text) in MODULE_CONFS {
        c.write(&format!("badger_modules/conf.d/{name}.conf"), text);
    }
    for (name, text) in EMITTER_CONFS {
        c.write(&format!("badger_emitters/conf.d/{name}.conf"), text);
    }
    c
}

#[test]
fn stock_config_checks() {
    let c = stock_tree();
    let o = run(&["--check", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            r#"host: datacenter="bld" region="" zone="" cluster="test" hostname="cody-dev" ipv4="192.168.2.15" ipv6="""#
        ),
        "{out}"
    );
    let listed: Vec<&str> =
        out.lines().filter_map(|l| l.strip_prefix("  module ")).map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(listed, ["system", "cpu", "disk", "network", "memory", "process_stats", "load"]);
    assert!(
        out.contains("module load: every 5s, config.json/../badger_modules/conf.d/load.conf")
            || out.contains("module load: every 5s, "),
        "{out}"
    );
    assert!(out.contains("badger_modules/conf.d/disk.conf: ok"), "{out}");
    assert!(out.contains("emitter stdout_pretty: every tick, "), "{out}");
}

#[test]
fn stock_config_runs_once() {
    let c = stock_tree();
    let o = run(&["--test", "-f", "config.json"], c.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(doc["datacenter"], "bld");
    assert_eq!(doc["cluster"], "test");
    assert_eq!(doc["hostname"], "cody-dev");
    assert_eq!(doc["ipv4"], "192.168.2.15");
    let names: Vec<String> = doc["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    // Module order of the config: system first, load (the async module) last.
    assert_eq!(names.first().map(String::as_str), Some("cpu.cores"));
    assert!(names.iter().any(|n| n == "cpu.user"));
    assert!(names.iter().any(|n| n.starts_with("mem.memtotal")));
    assert_eq!(names.last().map(String::as_str), Some("load.total_entities"));
    // The stock config logs JSON-less text at debug to stderr; nothing but stats on stdout.
    assert!(stderr(&o).contains("DEBUG") || stderr(&o).contains("INFO"), "{}", stderr(&o));
}
