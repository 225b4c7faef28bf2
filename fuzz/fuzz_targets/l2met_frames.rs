//! The l2met frame parser on arbitrary bytes (see badger_modules::l2met::fuzzing):
//! `cargo +nightly fuzz run l2met_frames`; scripts/fuzz.sh runs it for a bounded time.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    badger_modules::l2met::fuzzing::frames(data);
});
