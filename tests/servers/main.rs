//! Emitters and modules against the real servers they talk to (carbon, InfluxDB, tansu, Prometheus, the Pushgateway, the Rotel OTLP collector), started on loopback ports.
//! One test binary per group, so `cargo test` links three binaries instead of one per file.

mod support_graphite;
mod support_influx;
mod support_kafka;
mod support_otlp;
mod support_prom;

mod abuse;
mod graphite;
mod http_listener;
mod influxdb;
mod kafka;
mod node_exporter;
mod otlp;
mod prometheus;
mod promfetch;
mod push_receiver;
mod remote_write;
