//! Built-in emitters. Each file is one emitter and opens with a table of its config keys;
//! [`REGISTRY`] is the one list the core is handed.

use badger_api::plugin::EmitterSpec;

pub mod exec;
pub mod graphite;
mod http_client;
pub mod influxdb;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod otlp;
pub mod prometheus;
pub mod pulse;
pub mod pushgateway;
pub mod remote_write;
pub mod stdout;

/// Every built-in emitter.
pub static REGISTRY: &[&EmitterSpec] = &[
    &stdout::SPEC,
    &stdout::pretty::SPEC,
    &influxdb::SPEC,
    &graphite::SPEC,
    &prometheus::SPEC,
    &pushgateway::SPEC,
    &otlp::SPEC,
    &remote_write::SPEC,
    &pulse::SPEC,
    #[cfg(feature = "kafka")]
    &kafka::SPEC,
    &exec::SPEC,
];
