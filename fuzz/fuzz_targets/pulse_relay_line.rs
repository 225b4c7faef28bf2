//! One Pulse relay protocol line on arbitrary bytes (see badger_pulse::fuzzing::relay_line):
//! `cargo +nightly fuzz run pulse_relay_line`; scripts/fuzz.sh runs it for a bounded time.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    badger_pulse::fuzzing::relay_line(data);
});
