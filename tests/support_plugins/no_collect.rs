//! A library of the right ABI version without `badger_module_collect` (tests/plugins.rs builds
//! it with rustc): badger must refuse it, naming the missing symbol.

#[unsafe(no_mangle)]
pub extern "C" fn badger_plugin_abi_version() -> u32 {
    1
}

/// # Safety
/// Never called: badger refuses the library first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn badger_plugin_free(_ptr: *mut u8, _len: usize) {}
