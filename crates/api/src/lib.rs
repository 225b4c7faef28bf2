//! badger's plugin API: what every module, emitter and the core share, and nothing else.
//!
//! A built-in or external module produces [`point::Point`]s; an emitter consumes
//! [`point::Payload`]s through [`plugin::Batch`]. This crate depends on no other badger crate;
//! every other crate depends on it (see `docs/ARCHITECTURE.md`).

pub mod config;
pub mod duration;
pub mod host;
pub mod http;
pub mod http_client;
pub mod listener;
pub mod logging;
pub mod matcher;
pub mod memory;
pub mod plugin;
pub mod point;
pub mod process;
pub mod procfile;
pub mod rate;
pub mod telemetry;
pub mod throttle;
