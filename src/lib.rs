//! The badger agent core: reads the config, plans which modules and emitters run, ticks
//! them, and serves the HTTP listener. It is handed the registries of built-in modules and
//! emitters by the binary and never names a concrete plugin; the plugin API it shares with
//! them lives in `badger-api` (see `docs/ARCHITECTURE.md` for the crate graph).

pub mod agent;
pub mod clock;
pub mod config;
pub mod hostmeta;
pub mod httpd;
pub mod loader;
pub mod plan;
pub mod scheduler;
pub mod workers;

#[cfg(test)]
mod engine_tests;
