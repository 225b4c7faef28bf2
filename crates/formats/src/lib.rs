//! The wire formats badger writes and reads, in one place, so that every emitter (and the
//! Pulse server) shares one encoder per format instead of borrowing another emitter's:
//!
//! | module | format | used by |
//! |---|---|---|
//! | [`json`] | the payload as JSON (the original's shape) | `stdout`, `stdout_pretty`, `exec`, `kafka`, shared-library emitters |
//! | [`plugin_json`] | points as exec and shared-library modules send them | `exec` module, the plugin loader |
//! | [`influx`] | InfluxDB line protocol, Telegraf naming | `influxdb`, `kafka` |
//! | [`graphite`] | Graphite plaintext, tags and pickle | `graphite`, `kafka` |
//! | [`prometheus`] | Prometheus text 0.0.4 / OpenMetrics: parse, write, exposition | `prometheus`, `pushgateway`, `prometheus_scrape`, `pushgateway_receiver` |
//! | [`otlp`] | OTLP metrics (protobuf), host-metrics naming | `otlp` |
//! | [`pulse`] | the Pulse relay protocol | `pulse` emitter, Pulse server |

pub mod graphite;
pub mod influx;
pub mod json;
pub mod otlp;
pub mod plugin_json;
pub mod prometheus;
pub mod pulse;
