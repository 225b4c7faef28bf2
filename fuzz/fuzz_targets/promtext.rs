//! Fuzzes the Prometheus text parser (`badger_formats::prometheus`): any input, in both formats, must
//! give families or an error, never a panic; and what parses as the 0.0.4 format must be
//! written back by `write_family` into text that parses again to the same samples.
//!
//! Run: `cargo +nightly fuzz run promtext "$(mktemp -d)" fuzz/seeds/promtext -- -max_total_time=60`
//! (scripts/test.sh does, when a nightly toolchain is installed).
#![no_main]

use badger_formats::prometheus::{parse, parse_bytes, to_text, write_family, Family, Format};
use libfuzzer_sys::fuzz_target;

fn samples(families: &[Family]) -> Vec<(String, Vec<(String, String)>, u64, Option<i64>)> {
    families
        .iter()
        .flat_map(|f| f.samples.iter())
        .map(|s| {
            let bits = if s.value.is_nan() { u64::MAX } else { s.value.to_bits() };
            (s.name.clone(), s.labels.clone(), bits, s.timestamp_ms)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(families) = parse_bytes(data, Format::Text) {
        let mut text = String::new();
        for f in &families {
            write_family(&mut text, f);
        }
        match parse(&text, Format::Text) {
            Ok(back) => assert_eq!(samples(&families), samples(&back), "round trip changed the samples:\n{text}"),
            Err(e) => panic!("written text does not parse: {e}\n{text}"),
        }
    }
    if let Ok(families) = parse_bytes(data, Format::OpenMetrics) {
        let mut text = String::new();
        for f in &to_text(families) {
            write_family(&mut text, f);
        }
        // OpenMetrics families made 0.0.4-sayable may clash (a counter `x` and a family
        // `x_total`); the parser must still answer.
        let _ = parse(&text, Format::Text);
    }
});
