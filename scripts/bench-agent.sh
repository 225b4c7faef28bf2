#!/usr/bin/env bash
# Whole-process footprint: runs `badger -f config.json` (stdout to /dev/null) and collectd
# (Debian collectd-core: Interval 1; cpu, load, disk, interface, memory; csv writer) side by
# side for DURATION seconds (default 60) and prints CPU seconds and peak RSS of each.
#
#   scripts/bench-agent.sh [DURATION] [CONFIG]
#
# Targets (issue 2): badger ≤ 0.5 × collectd's CPU seconds, ≤ 4 MB peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
CONFIG=${2:-config.json}
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

if ! command -v collectd >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends collectd-core
fi
cargo build --release --locked -q

WORK=$(mktemp -d /tmp/badger-bench.XXXXXX)
trap 'kill $BP $CP 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/csv"
cat > "$WORK/collectd.conf" <<CONF
Hostname "benchhost"
FQDNLookup false
BaseDir "$WORK"
PIDFile "$WORK/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
ReadThreads 1
WriteThreads 1
LoadPlugin cpu
LoadPlugin load
LoadPlugin disk
LoadPlugin interface
LoadPlugin memory
LoadPlugin csv
<Plugin csv>
  DataDir "$WORK/csv"
  StoreRates true
</Plugin>
CONF

# usage: procstat PID LABEL -> "LABEL cpu_s=… utime_s=… stime_s=… peak_rss_kb=… rss_kb=…"
procstat() {
    local pid=$1 label=$2 tck ut st
    tck=$(getconf CLK_TCK)
    read -r ut st <<<"$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12, $13}')"
    awk -v l="$label" -v u="$ut" -v s="$st" -v t="$tck" \
        -v h="$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")" -v r="$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")" \
        'BEGIN{printf "%-9s cpu_s=%.2f utime_s=%.2f stime_s=%.2f peak_rss_kb=%d rss_kb=%d\n", l, (u+s)/t, u/t, s/t, h, r}'
}

# usage: oncpu PID -> nanoseconds on CPU of its live threads (schedstat: exact, unlike CLK_TCK)
oncpu() {
    local t sum=0
    for t in /proc/"$1"/task/*; do sum=$((sum + $(cut -d' ' -f1 "$t/schedstat"))); done
    echo "$sum"
}

./target/release/badger -f "$CONFIG" >/dev/null 2>"$WORK/badger.log" &
BP=$!
collectd -f -C "$WORK/collectd.conf" >"$WORK/collectd.log" 2>&1 &
CP=$!
WARM=5
sleep "$WARM"
B0=$(oncpu $BP); C0=$(oncpu $CP)
sleep "$((DURATION - WARM))"
B1=$(oncpu $BP); C1=$(oncpu $CP)
echo "after ${DURATION}s (CLK_TCK=$(getconf CLK_TCK), so these CPU times resolve to 10 ms):"
procstat $BP badger
procstat $CP collectd
STEADY=$((DURATION - WARM))
awk -v b=$((B1 - B0)) -v c=$((C1 - C0)) -v s=$STEADY 'BEGIN {
    printf "steady state over %ds (schedstat, ns precision): badger %.0f us/s, collectd %.0f us/s, ratio %.2f\n",
        s, b / s / 1000, c / s / 1000, (c > 0 ? b / c : 0) }'
echo "badger binary: $(stat -c %s target/release/badger) bytes"
