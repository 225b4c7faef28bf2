//! Built-in stats modules. Each file is one module and opens with a table of every stat it
//! emits; [`REGISTRY`] is the one list the core is handed.

use crate::plugin::ModuleSpec;

pub mod load;

/// Every built-in module, in the order `--check` lists them.
pub static REGISTRY: &[&ModuleSpec] = &[&load::SPEC];
