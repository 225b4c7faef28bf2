#!/usr/bin/env bash
# Whole-process footprint of badger, for issue 13 ("Lighter than collectd").
#
#   scripts/bench-agent.sh [SECONDS] [CONFIG]
#   scripts/bench-agent.sh --production [SECONDS]
#
# Default mode: badger and collectd (Debian collectd-core, installed here when missing:
# Interval 1; cpu, load, disk, interface, memory; csv writer) side by side for SECONDS
# (default 60). badger runs a config generated in a temp dir: the six modules cpu, load,
# disk, network, memory, system and the stdout emitter (to /dev/null), with no conf.d, so
# every module runs at its default interval, every 1 s tick. CONFIG: run `badger -f CONFIG`
# instead.
#
# --production: badger alone (no collectd), the six modules plus internal (every tick) and
# the emitters influxdb, graphite, kafka and prometheus, each with a real server on a free
# loopback port: InfluxDB 1.x (Debian influxdb: influxd), carbon-cache (Debian
# graphite-carbon), the tansu Kafka-protocol broker (BADGER_TANSU, else
# target/tools/tansu-pkg as scripts/test.sh installs it), and the prometheus emitter on
# core.http_listen, scraped with curl once a second. Only the non-default settings are in
# the generated conf.d (server addresses). The last scrape's badger_emitter_* counters show
# that every emitter delivered.
#
# Printed for each process (kB): VmHWM, VmRSS, RssAnon, RssFile (/proc/PID/status), Pss
# (smaps_rollup), threads; the peak: the larger of VmHWM and the largest VmRSS read every
# 2 ms over the first 6 s (bench-lib.sh says why VmHWM alone can miss part of badger's);
# Rss by mapping (the executable's own mappings, libc, other files, anonymous;
# /proc/PID/smaps); the memory of its transient cgroup, as systemd would
# show a unit's (systemd-run --scope, else a child memory cgroup: cgroup v2 at
# /sys/fs/cgroup/badger-bench.PID.NAME, or under this script's own cgroup v1 memory
# cgroup; "cgroup: not available" when neither works). Each binary is dropped from the
# page cache before it starts, so its cgroup is charged the pages it faults in, as after a
# boot; that file figure depends on the disk's read_ahead_kb, which is printed. Then CPU
# seconds (utime + stime, 10 ms resolution), the steady-state CPU after a warm-up
# (schedstat: µs of CPU per second, and badger/collectd; badger's also by thread name),
# and the binaries' sizes.
#
# Env: BADGER_BIN=/path/to/badger uses that binary instead of `cargo build --release`
# (either way it is copied to the temp dir first, so a rebuild during the run is harmless);
# WARMUP=seconds before the steady-state CPU window (default 5, 10 with --production);
# BADGER_TANSU=/path/to/tansu; KEEP_WORK=1 keeps the temp dir with the logs.
#
# Targets (issue 13): badger's peak ≤ collectd's and ≤ 4 MB, CPU ≤ 0.4 × collectd's,
# release binary ≤ 8 MB. docs/BENCHMARKS.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

MODE=agent
if [ "${1:-}" = --production ]; then
    MODE=production
    shift
fi
DURATION=${1:-60}
CONFIG=${2:-}
[ -n "$CONFIG" ] && CONFIG=$(realpath "$CONFIG")
if [ "$MODE" = production ]; then WARM=${WARMUP:-10}; else WARM=${WARMUP:-5}; fi
[ "$DURATION" -gt "$WARM" ] && [ "$DURATION" -gt 6 ] || { echo "SECONDS ($DURATION) must be more than the warm-up ($WARM) and than the 6 s of peak sampling" >&2; exit 2; }
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

need=()
if [ "$MODE" = agent ]; then
    command -v collectd >/dev/null || need+=(collectd-core)
else
    command -v influxd >/dev/null || need+=(influxdb)
    [ -x /usr/bin/carbon-cache ] || need+=(graphite-carbon)
fi
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

bench_init badger-bench
cgroup_detect
TCK=$(getconf CLK_TCK)

# usage: procstat PID LABEL -> "LABEL cpu_s=… utime_s=… stime_s=…" (whole run, dead threads included)
procstat() {
    local ut st
    read -r ut st <<<"$(sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}')"
    awk -v l="$2" -v u="$ut" -v s="$st" -v t="$TCK" \
        'BEGIN { printf "%-9s cpu_s=%.2f utime_s=%.2f stime_s=%.2f (CLK_TCK %d)\n", l, (u + s) / t, u / t, s / t, t }'
}

report() { # PID LABEL
    mem_report "$1" "$2"
    peak_report "$WORK/peak.$2" "$1" "$2"
    cgroup_report "$1" "$2"
    procstat "$1" "$2"
}

mkdir -p "$WORK/agent"
if [ -n "$CONFIG" ]; then
    CFG=$CONFIG
    CFG_WHAT="$CONFIG"
elif [ "$MODE" = agent ]; then
    CFG="$WORK/agent/config.json"
    CFG_WHAT="generated: cpu, load, disk, network, memory, system every 1 s; stdout emitter to /dev/null; no conf.d"
    stock_config "$CFG"
fi

if [ "$MODE" = production ]; then
    [ -z "$CONFIG" ] || { echo "--production generates its own config" >&2; exit 2; }
    start_production "$WORK/agent"
    CFG="$WORK/agent/config.json"
    CFG_WHAT="generated: cpu, load, disk, network, memory, system, internal every 1 s; emitters influxdb (:$INFLUX_PORT), graphite (:$LINE_PORT), kafka (:$KAFKA_PORT), prometheus (http_listen :$PROM_PORT)"
fi

bench_spawn BP "badger-bench.$$.badger" /dev/null "$WORK/badger.log" "$BADGER" -f "$CFG"
peak_sample "$WORK/peak.badger" 6 "$BP"
if [ "$MODE" = agent ]; then
    mkdir -p "$WORK/csv"
    cat >"$WORK/collectd.conf" <<CONF
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
    drop_cache /usr/sbin/collectd /usr/lib/collectd/{cpu,load,disk,interface,memory,csv}.so
    bench_spawn CP "badger-bench.$$.collectd" "$WORK/collectd.log" "$WORK/collectd.err" collectd -f -C "$WORK/collectd.conf"
    peak_sample "$WORK/peak.collectd" 6 "$CP"
fi

# Runs for SECS seconds; with --production scrapes the prometheus emitter once a second.
run_for() {
    local until=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$until" ]; do
        kill -0 "$BP" 2>/dev/null || { echo "badger exited; its log:" >&2; tail -20 "$WORK/badger.log" >&2; exit 1; }
        if [ "$MODE" = production ]; then
            curl -s -m 2 -o "$WORK/scrape.tmp" "http://127.0.0.1:$PROM_PORT/metrics" && mv "$WORK/scrape.tmp" "$WORK/scrape.txt"
        fi
        sleep 1
    done
}

run_for "$WARM"
B0=$(oncpu "$BP"); thread_cpu "$BP" "$WORK/threads.0"
[ "$MODE" = agent ] && C0=$(oncpu "$CP")
run_for "$((DURATION - WARM))"
B1=$(oncpu "$BP"); thread_cpu "$BP" "$WORK/threads.1"
[ "$MODE" = agent ] && C1=$(oncpu "$CP")
STEADY=$((DURATION - WARM))

echo "badger config: $CFG_WHAT"
echo "after ${DURATION}s:"
[ -n "$CG_MODE" ] && echo "cgroups: $CG_MODE; started cold (own files dropped from the page cache first; read_ahead_kb $(readahead_kb "$BADGER")), so file= / cache= is what they faulted in plus readahead"
report "$BP" badger
thread_cpu_report "$WORK/threads.0" "$WORK/threads.1" "$STEADY" badger
if [ "$MODE" = agent ]; then
    report "$CP" collectd
    awk -v b=$((B1 - B0)) -v c=$((C1 - C0)) -v s="$STEADY" 'BEGIN {
        printf "cpu steady state over %ds (schedstat): badger %.0f us/s, collectd %.0f us/s, ratio %.2f\n",
            s, b / s / 1000, c / s / 1000, (c > 0 ? b / c : 0) }'
else
    echo "collectd: not run in --production mode"
    awk -v b=$((B1 - B0)) -v s="$STEADY" 'BEGIN {
        printf "cpu steady state over %ds (schedstat): badger %.0f us/s\n", s, b / s / 1000 }'
    # Delivery check: the outbox counters of the last scrape, and what the servers hold.
    awk '/^badger_emitter_(batches|sent_points|retries|dropped_points|errors|dropped)[{ ]/ {
            n = $1; sub(/^badger_emitter_/, "", n); sub(/[{].*/, "", n)
            e = $1; sub(/.*emitter="/, "", e); sub(/".*/, "", e)
            if (!(e in s)) order[++k] = e
            s[e] = s[e] " " n "=" $NF }
        END { printf "delivered (last scrape):"; for (i = 1; i <= k; i++) printf " %s:%s;", order[i], s[order[i]]; print "" }' \
        "$WORK/scrape.txt"
    INFLUX_N=$(curl -s -m 5 "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode db=badger \
        --data-urlencode 'q=SELECT count("user") FROM "cpu"' | grep -o '\[\[[^]]*\]\]' || true)
    echo "servers: influxdb cpu.user points ${INFLUX_N:-none}; carbon whisper files $(find "$WORK/carbon/whisper" -name '*.wsp' | wc -l); prometheus scrape $(grep -vc '^#' "$WORK/scrape.txt") samples"
fi
echo "binary: badger $(stat -c %s "$BADGER") bytes ($BADGER_SRC)"
[ "$MODE" = agent ] && echo "binary: collectd $(stat -c %s "$(readlink "/proc/$CP/exe")") bytes ($(readlink "/proc/$CP/exe"), $(collectd -h 2>/dev/null | awk '/^collectd [0-9]/ {print $2; exit}'); plus its plugins)"
exit 0
