#!/usr/bin/env bash
# badger against node_exporter: runs the release badger (cpu, load, disk, network, memory,
# system at 1 s; the prometheus emitter in node_exporter naming) and Debian's
# prometheus-node-exporter (default collectors) side by side for DURATION seconds (default
# 60), scrapes both once a second (node_exporter only works when scraped), and prints the
# series each serves and the RSS, peak RSS and CPU seconds of each.
#
#   scripts/bench-node-exporter.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
if ! command -v prometheus-node-exporter >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus-node-exporter
fi
cargo build --release --locked -q --bin badger
BADGER="${CARGO_TARGET_DIR:-target}/release/badger"
[ -x "$BADGER" ] || BADGER="$PWD/$BADGER"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/badger-bench-ne.XXXXXX)
BP=$(free_port); NP=$(free_port)
mkdir -p "$WORK/conf.d"
echo '{ "core": { "http_listen": "127.0.0.1:'"$BP"'" }, "modules": ["cpu", "load", "disk", "network", "memory", "system"], "emitters": ["prometheus"] }' > "$WORK/config.json"
echo '{"naming": "node_exporter"}' > "$WORK/conf.d/prometheus.conf"
(cd "$WORK" && exec "$BADGER" -f config.json > "$WORK/badger.log" 2>&1) & B=$!
prometheus-node-exporter --web.listen-address="127.0.0.1:$NP" > "$WORK/node_exporter.log" 2>&1 & N=$!
trap 'kill $B $N 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 2
for _ in $(seq "$DURATION"); do
    curl -s -o /dev/null "http://127.0.0.1:$BP/metrics"
    curl -s -o /dev/null "http://127.0.0.1:$NP/metrics"
    sleep 1
done
echo "series: badger $(curl -s "http://127.0.0.1:$BP/metrics" | grep -c '^node_'), node_exporter $(curl -s "http://127.0.0.1:$NP/metrics" | grep -c '^node_') (node_* lines)"
TCK=$(getconf CLK_TCK)
for P in $B $N; do
    read -r UT ST <<<"$(sed 's/^.*) //' "/proc/$P/stat" | awk '{print $12, $13}')"
    awk -v n="$(cat "/proc/$P/comm")" -v u="$UT" -v s="$ST" -v t="$TCK" \
        -v r="$(awk '/^VmRSS/{print $2}' "/proc/$P/status")" -v h="$(awk '/^VmHWM/{print $2}' "/proc/$P/status")" \
        'BEGIN { printf "%s: rss_kb=%d peak_rss_kb=%d cpu_s=%.2f\n", n, r, h, (u + s) / t }'
done
