#!/usr/bin/env bash
# The one test command (README "Run the tests"): installs what the tests need on a fresh
# Debian 12 machine with Rust, then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need a real server (InfluxDB, …) fail instead of skipping when it is missing.
export BADGER_REQUIRE_SERVERS=1

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages the tests use (real servers and tools, started by the tests themselves).
APT_PACKAGES=(procps influxdb influxdb-client)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked "$@"

if [ "${BADGER_SKIP_PACKAGING:-0}" != 1 ]; then
    echo "==> packaging (scripts/package-test.sh; skip with BADGER_SKIP_PACKAGING=1)"
    ./scripts/package-test.sh
fi
