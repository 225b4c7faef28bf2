//! Helpers shared by badger's tests (a dev-dependency only, never in the binary).

pub mod fixture;
pub mod payload;
pub mod process;
