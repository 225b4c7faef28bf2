//! The Pulse API's stat-route query parameters on arbitrary bytes (see
//! badger_pulse::fuzzing::api_query): `cargo +nightly fuzz run pulse_api_query`;
//! scripts/fuzz.sh runs it for a bounded time.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    badger_pulse::fuzzing::api_query(data);
});
