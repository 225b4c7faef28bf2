//! The two functions librdkafka takes from the C math library: `pow` (its bundled cJSON,
//! parsing numbers) and `log2` (its latency histograms). They are defined here, by the
//! `libm` crate (the Rust port of musl's libm, kept by the Rust project), so the linker
//! finds them in the binary and does not make it load `libm.so.6`, whose start-up
//! (relocations and IFUNC resolvers) cost every badger about 290 KB of RSS whether Kafka is
//! configured or not (issue 13, docs/BENCHMARKS.md). Nothing else in the binary calls the C
//! math library (`scripts/bench-agent.sh` prints the libraries the agent maps).

/// `pow(3)`.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `log2(3)`.
#[no_mangle]
pub extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn agree_with_the_c_library_on_the_values_librdkafka_uses() {
        // cJSON scales by powers of ten; the histograms take log2 of bucket bounds.
        for e in -20..=20 {
            let exact: f64 = format!("1e{e}").parse().expect("a float");
            let got = super::pow(10.0, f64::from(e));
            assert!(got.to_bits().abs_diff(exact.to_bits()) <= 1, "10^{e}: {got:e}");
        }
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        for v in [1.0, 2.0, 3.0, 1000.0, 1e9, 0.5] {
            assert!((super::log2(v) - v.log2()).abs() <= f64::EPSILON * v.log2().abs().max(1.0), "log2 {v}");
        }
    }
}
