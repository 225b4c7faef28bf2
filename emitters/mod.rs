//! Built-in emitters. Each file is one emitter and opens with a table of its config keys;
//! [`REGISTRY`] is the one list the core is handed.

use crate::plugin::EmitterSpec;

pub mod graphite;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod outbox;
pub mod pulse;
pub mod stdout;
pub mod stdout_pretty;

/// Every built-in emitter.
pub static REGISTRY: &[&EmitterSpec] = &[
    &stdout::SPEC,
    &stdout_pretty::SPEC,
    &graphite::SPEC,
    &pulse::SPEC,
    #[cfg(feature = "kafka")]
    &kafka::SPEC,
];
