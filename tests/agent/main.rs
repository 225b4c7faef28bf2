//! The agent, its command line, config, signals, plugins and docs (no external servers).
//! One test binary per group, so `cargo test` links three binaries instead of one per file.

mod agent;
mod cli;
mod docs;
mod l2met;
mod plugins;
mod signals;
mod stock;
