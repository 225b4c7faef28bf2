#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time: FUZZ_SECONDS each (default 60),
# starting from the seeds in fuzz/seeds/<target>/. Needs the nightly toolchain (cargo fuzz
# builds with sanitizers); installs cargo-fuzz when it is missing. Without nightly it says so
# and exits 0: the bounded randomised tests of `cargo test` still run the same parsers on
# stable. A crash fails the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-${BADGER_FUZZ_SECONDS:-60}}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "==> fuzz: no nightly toolchain here; skipped (the stable randomised tests ran in cargo test)"
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    echo "==> cargo fuzz run $target (${SECONDS_EACH}s)"
    log="target/fuzz-$target.log"
    mkdir -p target
    if ! cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$SECONDS_EACH" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz target $target failed; a crashing input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
done
