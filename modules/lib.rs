//! Built-in stats modules. Each file is one module and opens with a table of every stat it
//! emits; [`REGISTRY`] is the one list the core is handed.

use badger_api::plugin::ModuleSpec;

pub mod cpu;
pub mod disk;
pub mod exec;
pub mod internal;
pub mod l2met;
pub mod load;
pub mod memory;
pub mod network;
pub mod pressure;
pub mod process_stats;
pub mod prometheus_scrape;
pub mod pushgateway_receiver;
pub mod system;

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
];

#[cfg(test)]
mod golden;
