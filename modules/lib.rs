//! Built-in stats modules. Each file is one module and opens with a table of every stat it
//! emits; [`REGISTRY`] is the one list the core is handed.

use badger_api::plugin::ModuleSpec;

pub mod arp;
pub mod conntrack;
pub mod cpu;
pub mod cpufreq;
pub mod disk;
pub mod edac;
pub mod entropy;
pub mod exec;
mod fields;
pub mod filefd;
pub mod hwmon;
pub mod internal;
pub mod l2met;
pub mod load;
pub mod mdadm;
pub mod memory;
pub mod netclass;
pub mod netstat;
pub mod network;
pub mod nvme;
pub mod os;
pub mod pressure;
pub mod process_stats;
pub mod processes;
pub mod prometheus_scrape;
pub mod pushgateway_receiver;
pub mod schedstat;
pub mod selinux;
pub mod sockstat;
pub mod softnet;
pub mod system;
pub mod textfile;
pub mod thermal_zone;
pub mod time;
pub mod timex;
pub mod udp_queues;
pub mod uname;
pub mod vmstat;

/// Every built-in module, in the order an unknown-name error lists them ("known: …") and the
/// generated reference shows them.
pub static REGISTRY: &[&ModuleSpec] = &[
    &cpu::SPEC,
    &load::SPEC,
    &disk::SPEC,
    &network::SPEC,
    &memory::SPEC,
    &system::SPEC,
    &process_stats::SPEC,
    &exec::SPEC,
    &prometheus_scrape::SPEC,
    &pushgateway_receiver::SPEC,
    &internal::SPEC,
    &l2met::SPEC,
    &pressure::SPEC,
    &vmstat::SPEC,
    &filefd::SPEC,
    &entropy::SPEC,
    &sockstat::SPEC,
    &netstat::SPEC,
    &softnet::SPEC,
    &conntrack::SPEC,
    &arp::SPEC,
    &udp_queues::SPEC,
    &timex::SPEC,
    &textfile::SPEC,
    &hwmon::SPEC,
    &processes::SPEC,
    &thermal_zone::SPEC,
    &schedstat::SPEC,
    &cpufreq::SPEC,
    &nvme::SPEC,
    &edac::SPEC,
    &mdadm::SPEC,
    &netclass::SPEC,
    &uname::SPEC,
    &os::SPEC,
    &selinux::SPEC,
    &time::SPEC,
];

#[cfg(test)]
mod golden;

/// A point whose field is only known at run time (a vmstat or netstat key): name
/// `measurement.field`, then `.` and each tag value.
pub(crate) fn named_point(
    measurement: &'static str,
    field: &str,
    units: &'static str,
    value: badger_api::point::Value,
    tags: &[(&'static str, &str)],
) -> badger_api::point::Point {
    use std::borrow::Cow;
    let mut name = format!("{measurement}.{field}");
    for (_, v) in tags {
        name.push('.');
        name.push_str(v);
    }
    badger_api::point::Point {
        name,
        value,
        units: Cow::Borrowed(units),
        measurement: Cow::Borrowed(measurement),
        field: Cow::Owned(field.to_string()),
        tags: tags.iter().map(|(k, v)| (Cow::Borrowed(*k), v.to_string())).collect(),
        kind: badger_api::point::Kind::Gauge,
    }
}

/// A point of a node_exporter-family module whose measurement is not the module's name
/// (`nf_conntrack` in module `conntrack`): `named_point` with the Stat Badger name
/// `module.field`, then `.` and each tag value.
pub(crate) fn module_point(
    module: &'static str,
    measurement: &'static str,
    field: &str,
    units: &'static str,
    value: badger_api::point::Value,
    tags: &[(&'static str, &str)],
) -> badger_api::point::Point {
    let mut p = named_point(measurement, field, units, value, tags);
    p.name.replace_range(..measurement.len(), module);
    p
}

/// Test check for node_exporter-family modules: every point fits a row of the module's stat
/// table (name, units, int/float), and its name is `module.field` then each tag value.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_node_documented(module: &str, source: &str, points: &[badger_api::point::Point]) {
    use badger_test_support::fixture::{name_matches, stat_table};
    let rows = stat_table(source);
    for p in points {
        let is_int = matches!(p.value, badger_api::point::Value::Int(_));
        let ok = rows.iter().any(|r| name_matches(&r.stat, &p.name) && r.units == p.units && r.kind_int == is_int);
        assert!(ok, "{} (units {:?}, int {is_int}) matches no row of the stat table", p.name, p.units);
        let mut want = format!("{module}.{}", p.field);
        for (_, v) in &p.tags {
            want.push('.');
            want.push_str(v);
        }
        assert_eq!(p.name, want);
    }
}
