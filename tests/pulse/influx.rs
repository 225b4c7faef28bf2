//! The API cases against a real InfluxDB 1.6 (Debian's `influxd`, started by the tests;
//! skipped when it is not installed unless BADGER_REQUIRE_SERVERS=1), and the InfluxDB
//! layout checks of the reference §7 (5 and 8).

use crate::support as support_pulse;

use std::time::{Duration, Instant};

use crate::cases::{self, feed};
use support_pulse::Store;

#[test]
fn influx_ingest_and_latest() {
    cases::ingest_and_latest(Store::Influx);
}

#[test]
fn influx_latest_raw_rows_with_repeated_filters() {
    cases::latest_raw_rows_with_repeated_filters(Store::Influx);
}

#[test]
fn influx_auth_cors_and_routes() {
    cases::auth_cors_and_routes(Store::Influx);
}

#[test]
fn influx_hourly_and_daily() {
    cases::hourly_and_daily(Store::Influx);
}

#[test]
fn influx_our_relay_against_our_server() {
    cases::our_relay_against_our_server(Store::Influx);
}

#[test]
fn influx_alert_fires_and_recovers() {
    cases::alert_fires_and_recovers(Store::Influx);
}

fn series(v: &serde_json::Value) -> &serde_json::Value {
    &v["results"][0]["series"]
}

#[test]
fn influx_layout_retention_policies_writes_and_the_continuous_query() {
    let Some(mut s) = Store::Influx.server(&["-p", "1", "-a", "1", "--self-metrics=false"]) else { return };
    let db = s.influx.take().unwrap();
    // §7.8: the database and the two retention policies (one_day 8h default, one_week 1w).
    let rps = db.query("SHOW RETENTION POLICIES ON statistics");
    let rows = series(&rps)[0]["values"].as_array().unwrap().clone();
    let find = |name: &str| rows.iter().find(|r| r[0] == name).cloned().unwrap_or_else(|| panic!("{name}: {rps}"));
    assert_eq!(find("one_day")[1], "8h0m0s");
    assert_eq!(find("one_day")[4], true);
    assert_eq!(find("one_week")[1], "168h0m0s");
    // §7.5: got cpu_used-cpu_used:0.2500 → measurement cpu_used, field cpu_used=0.25, tags
    // host and service (not the bare "guy"); abc → -1.
    let _c = feed(&s, "host1", &[("cpu_used", "service:web1,guy", "0.2500"), ("ram_used", "", "abc")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = db.query("SELECT * FROM one_day.cpu_used");
        if !series(&v).is_null() || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let s0 = &series(&v)[0];
    assert_eq!(s0["columns"], serde_json::json!(["time", "cpu_used", "host", "service"]), "{v}");
    assert_eq!(s0["values"][0][1], 0.25);
    assert_eq!(s0["values"][0][2], "host1");
    assert_eq!(s0["values"][0][3], "web1");
    let v = db.query("SELECT * FROM one_day.ram_used");
    assert_eq!(series(&v)[0]["columns"], serde_json::json!(["time", "host", "ram_used"]), "{v}");
    assert_eq!(series(&v)[0]["values"][0][2], -1.0, "{v}");
    // §7.8: with fields cpu_used, ram_used and tag keys host, service and -a 1, the CQ.
    let want = "CREATE CONTINUOUS QUERY aggregate ON statistics BEGIN SELECT mean(cpu_used) AS cpu_used, mean(ram_used) AS ram_used INTO statistics.one_week.aggregate FROM statistics.one_day./.*/ GROUP BY time(1m), host, service END";
    let deadline = Instant::now() + Duration::from_secs(80);
    loop {
        let v = db.query("SHOW CONTINUOUS QUERIES");
        let text = v.to_string();
        if text.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "no CQ like\n{want}\nin {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(s);
    // A restart with other retentions ALTERs the policies (the original never did).
    let url = db.url.clone();
    let t = support_pulse::Server::start(&["-i", &url, "-r", "2", "--raw-retention", "12h"]);
    let rps = db.query("SHOW RETENTION POLICIES ON statistics");
    let text = rps.to_string();
    assert!(text.contains("[\"one_day\",\"12h0m0s\"") && text.contains("[\"one_week\",\"336h0m0s\""), "{text}");
    drop(t);
}
