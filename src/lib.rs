//! badger: a per-host Linux stats agent, the successor of Stat Badger.
//!
//! Dependency direction (one way): the point model and plugin API ([`point`], [`plugin`],
//! [`matcher`], [`rate`], [`procfile`], [`units`], [`json`], [`http`], [`telemetry`], [`promtext`],
//! [`pulse_proto`]) ← [`modules`] and [`emitters`] ← the core
//! ([`config`], [`scheduler`], [`runtime`], …) ← the binary. The core never names a concrete
//! module or emitter: it is handed the registries.

pub mod external;
#[cfg(test)]
pub mod fixture;
pub mod http;
pub mod json;
pub mod matcher;
pub mod plugin;
pub mod point;
pub mod procfile;
pub mod promtext;
pub mod pulse_proto;
pub mod rate;
pub mod telemetry;
pub mod units;

#[path = "../modules/mod.rs"]
pub mod modules;

#[path = "../emitters/mod.rs"]
pub mod emitters;

pub mod agent;
pub mod cli;
pub mod config;
pub mod hostmeta;
pub mod httpd;
pub mod logging;
pub mod native;
pub mod pulse;
pub mod scheduler;
