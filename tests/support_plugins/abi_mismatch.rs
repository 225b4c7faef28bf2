//! A library that looks like a badger plugin of a future ABI version (tests/plugins.rs builds
//! it with rustc): badger must refuse it before calling anything else.

#[unsafe(no_mangle)]
pub extern "C" fn badger_plugin_abi_version() -> u32 {
    999
}
