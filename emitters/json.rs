//! The payload as JSON: the encoder lives in the plugin API ([`crate::json`]) because plugins
//! outside the binary (exec and shared-library emitters) receive payloads in this format too.

pub use crate::json::*;
