//! The Pulse server: relay protocol, API, alerts, live stream, on the embedded store and on a real InfluxDB.
//! One test binary per group, so `cargo test` links three binaries instead of one per file.

mod cases;
mod support;

mod abuse;
mod alerts;
mod api;
mod influx;
mod live;
mod server;
