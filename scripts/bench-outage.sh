#!/usr/bin/env bash
# badger's memory across server outages, for issue 13: does RSS come back after its outboxes
# buffered, spooled and drained?
#
#   scripts/bench-outage.sh [OUTAGES] [SECONDS_UP] [SECONDS_DOWN]     (defaults 10, 20, 15)
#
# Runs badger (the six modules cpu, load, disk, network, memory, system at every 1 s tick,
# internal every tick; emitters graphite and influxdb with their disk spool in the temp dir,
# and stdout to a file, blacklisted down to the badger.* stats so the script can read the
# internal module's figures) against a real carbon-cache (Debian graphite-carbon) and
# InfluxDB 1.x (Debian influxdb) on free loopback ports. After a warm-up it runs OUTAGES
# cycles: stop both servers by PID (SIGTERM, or OUTAGE_SIGNAL), wait SECONDS_DOWN while
# badger buffers and spools, start them again on the same ports and data dirs, wait until
# badger has drained, wait SETTLE seconds, measure, then keep the servers up until
# SECONDS_UP after the restart (or longer while draining) before the next outage.
#
# Drained means: graphite, badger.emitter.queued_records.graphite and
# .spooled_bytes.graphite are 0 in a payload after the restart; influxdb, the same stats of
# influxdb when badger reports them, else the newest cpu.user point in influxd is from after
# the restart (the outbox sends oldest first, so nothing older is still waiting). No drain
# within DRAIN_TIMEOUT seconds is reported as drained=timeout.
#
# One line per outage (kB, VmRSS and RssAnon from /proc/PID/status, sampled every 0.2 s):
#   outage N: rss_before_kb=… rss_during_peak_kb=… rss_after_drain_kb=… delta_kb=…
#             anon_after_kb=… anon_delta_kb=… drain_s=… drained=yes|timeout
#             graphite_spool_peak_b=… influx_points=GOT/EXPECTED influx_drain=stats|query
# delta_kb is rss_after_drain - rss_before of that outage; influx_points counts the cpu.user
# points influxd holds for the outage's seconds (nothing lost: GOT = EXPECTED). The last
# lines: the same memory figures as scripts/bench-agent.sh, the mappings whose Rss changed
# since before outage 1 ([heap], anonymous mappings such as malloc arenas and thread
# stacks, files; /proc/PID/smaps), badger's delivery counters, and the max delta of
# rss_after_drain against the baseline (rss_before of outage 1) and against each outage's
# own rss_before: PASS when both are within TOLERANCE_KB (default 256) and every outage
# drained, else FAIL (the script still exits 0 when it ran through).
#
# Env: BADGER_BIN=/path/to/badger (else `cargo build --release`; copied to the temp dir
# either way); WARMUP (default 30 s); SETTLE (default 3 s); DRAIN_TIMEOUT (default 150 s,
# above the outbox's retry_max of 60 s); OUTAGE_SIGNAL (default TERM; KILL for a crash);
# TOLERANCE_KB (default 256); KEEP_WORK=1 keeps the temp dir (logs, stdout.ndjson).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

OUTAGES=${1:-10}
SECONDS_UP=${2:-20}
SECONDS_DOWN=${3:-15}
WARMUP=${WARMUP:-30}
SETTLE=${SETTLE:-3}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-150}
OUTAGE_SIGNAL=${OUTAGE_SIGNAL:-TERM}
TOLERANCE_KB=${TOLERANCE_KB:-256}
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

need=()
command -v influxd >/dev/null || need+=(influxdb)
[ -x /usr/bin/carbon-cache ] || need+=(graphite-carbon)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

bench_init badger-outage
INFLUX_PORT=$(free_port); LINE_PORT=$(free_port); PICKLE_PORT=$(free_port); QUERY_PORT=$(free_port)
servers_up() {
    start_influxd "$WORK/influxd" "$INFLUX_PORT"
    start_carbon "$WORK/carbon" "$LINE_PORT" "$PICKLE_PORT" "$QUERY_PORT"
}
servers_down() {
    bench_stop "$INFLUXD_PID" "$OUTAGE_SIGNAL"
    bench_stop "$CARBON_PID" "$OUTAGE_SIGNAL"
}
servers_up

A="$WORK/agent"
mkdir -p "$A/conf.d" "$WORK/spool"
cat >"$A/config.json" <<'JSON'
{ "core": {"datacenter": "", "region": "", "zone": "", "cluster": ""},
  "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
  "emitters": ["graphite", "influxdb", "stdout"] }
JSON
echo "{ \"port\": $LINE_PORT, \"spool_dir\": \"$WORK/spool\" }" >"$A/conf.d/graphite.conf"
echo "{ \"url\": \"http://127.0.0.1:$INFLUX_PORT\", \"spool_dir\": \"$WORK/spool\" }" >"$A/conf.d/influxdb.conf"
echo '{ "interval": 1 }' >"$A/conf.d/internal.conf"
echo '{ "blacklist": ["[!b]*", "badger.module.*"] }' >"$A/conf.d/stdout.conf"
OUT="$WORK/stdout.ndjson"
bench_spawn BP "" "$OUT" "$WORK/badger.log" "$BADGER" -f "$A/config.json"

alive() { is_ours "$BP" || { echo "badger exited; its log:" >&2; tail -20 "$WORK/badger.log" >&2; exit 1; }; }
rss() { status_kb "$BP" VmRSS; }
anon() { status_kb "$BP" RssAnon; }

# The newest complete payload line of badger's stdout (the last line may be half written).
last_payload() {
    if [ "$(tail -c 1 "$OUT" | wc -l)" = 1 ]; then tail -n 1 "$OUT"; else tail -n 2 "$OUT" | head -n 1; fi
}
# usage: pstat LINE STAT -> its value, or "" when the payload has no such stat
pstat() { grep -o "\"$2\":{[^}]*}" <<<"$1" | sed 's/.*"value"://; s/}$//' || true; }
ptime() { grep -o '"timestamp":[0-9]*' <<<"$1" | cut -d: -f2 || true; }

# usage: influx_q QUERY -> the rows of influxd's JSON answer, e.g. [["2026-…",12]]
influx_q() {
    curl -s -m 5 "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode db=badger --data-urlencode epoch=s \
        --data-urlencode "q=$1" | grep -o '"values":\[\[[^]]*\]' | sed 's/^"values":\[\[//; s/\]$//' || true
}

# usage: drained SINCE -> 0 when both emitters have nothing left from before epoch second SINCE
drained() {
    local since=$1 line t q
    line=$(last_payload)
    t=$(ptime "$line")
    [ -n "$t" ] && [ "$t" -gt "$since" ] || return 1
    [ "$(pstat "$line" badger.emitter.queued_records.graphite)" = 0 ] || return 1
    [ "$(pstat "$line" badger.emitter.spooled_bytes.graphite)" = 0 ] || return 1
    q=$(pstat "$line" badger.emitter.queued_records.influxdb)
    if [ -n "$q" ]; then
        INFLUX_DRAIN=stats
        [ "$q" = 0 ] && [ "$(pstat "$line" badger.emitter.spooled_bytes.influxdb)" = 0 ]
    else
        INFLUX_DRAIN=query
        t=$(influx_q 'SELECT last("user") FROM "cpu"' | cut -d, -f1)
        [ -n "$t" ] && [ "$t" -gt "$since" ]
    fi
}

# usage: watch SECONDS [SINCE] -> samples RSS every 0.2 s into PEAK (and the graphite spool
# into SPOOL_PEAK) for SECONDS, or with SINCE until drained (DRAINED=yes) or DRAIN_TIMEOUT
watch() {
    local until=$((SECONDS + $1)) since=${2:-} r s n=0
    DRAINED=no
    while [ "$SECONDS" -lt "$until" ]; do
        alive
        r=$(rss); [ "$r" -gt "$PEAK" ] && PEAK=$r
        if ((n++ % 5 == 0)); then
            s=$(pstat "$(last_payload)" badger.emitter.spooled_bytes.graphite)
            [ -n "$s" ] && [ "$s" -gt "$SPOOL_PEAK" ] && SPOOL_PEAK=$s
            if [ -n "$since" ] && drained "$since"; then DRAINED=yes; return; fi
        fi
        sleep 0.2
    done
}

INFLUX_DRAIN=query
echo "badger: $(stat -c %s "$BADGER") bytes ($BADGER_SRC); carbon :$LINE_PORT, influxd :$INFLUX_PORT, spool $WORK/spool"
echo "plan: warm-up ${WARMUP}s, $OUTAGES outages of ${SECONDS_DOWN}s (SIG$OUTAGE_SIGNAL), servers up >= ${SECONDS_UP}s after each restart"
PEAK=0 SPOOL_PEAK=0
watch "$WARMUP"
# usage: wait_drained SINCE -> waits for the drain (after warm-up, or after an outage)
wait_drained() { watch "$DRAIN_TIMEOUT" "$1"; [ "$DRAINED" = yes ] || DRAINED=timeout; }
wait_drained "$(($(date +%s) - 2))"
echo "after warm-up: rss_kb=$(rss) anon_kb=$(anon) peak_kb=$(status_kb "$BP" VmHWM) (drained: $DRAINED)"

BASE=""; MAXD=""; MAXSTEP=""; TIMEOUTS=0
for ((n = 1; n <= OUTAGES; n++)); do
    alive
    BEFORE=$(rss); ANON_BEFORE=$(anon)
    [ -n "$BASE" ] || { BASE=$BEFORE; smaps_snapshot "$BP" "$WORK/smaps.before"; }
    PEAK=$BEFORE SPOOL_PEAK=0
    DOWN_AT=$(date +%s)
    servers_down
    watch "$SECONDS_DOWN"
    servers_up
    UP_AT=$(date +%s)
    T0=$SECONDS
    wait_drained "$UP_AT"
    DRAIN_S=$((SECONDS - T0))
    WAS_DRAINED=$DRAINED
    [ "$DRAINED" = yes ] || TIMEOUTS=$((TIMEOUTS + 1))
    watch "$SETTLE"
    AFTER=$(rss); ANON_AFTER=$(anon)
    GOT=$(influx_q "SELECT count(\"user\") FROM \"cpu\" WHERE time >= ${DOWN_AT}s AND time < ${UP_AT}s" | cut -d, -f2)
    D=$((AFTER - BEFORE)); DB=$((AFTER - BASE))
    { [ -z "$MAXSTEP" ] || [ "$D" -gt "$MAXSTEP" ]; } && MAXSTEP=$D
    { [ -z "$MAXD" ] || [ "$DB" -gt "$MAXD" ]; } && MAXD=$DB
    echo "outage $n: rss_before_kb=$BEFORE rss_during_peak_kb=$PEAK rss_after_drain_kb=$AFTER delta_kb=$D" \
        "anon_after_kb=$ANON_AFTER anon_delta_kb=$((ANON_AFTER - ANON_BEFORE)) drain_s=$DRAIN_S drained=$WAS_DRAINED graphite_spool_peak_b=$SPOOL_PEAK" \
        "influx_points=${GOT:-0}/$((UP_AT - DOWN_AT)) influx_drain=$INFLUX_DRAIN"
    REST=$((SECONDS_UP - (SECONDS - T0)))
    [ "$REST" -gt 0 ] && watch "$REST"
done

echo "after $OUTAGES outages:"
mem_report "$BP" badger
smaps_snapshot "$BP" "$WORK/smaps.after"
echo "badger    rss_growth_kb_by_mapping (since before outage 1): $(smaps_growth "$WORK/smaps.before" "$WORK/smaps.after")"
LINE=$(last_payload)
printf 'badger    counters:'
for e in graphite influxdb; do
    printf ' %s:' "$e"
    for k in sent_points retries dropped_points rejected_points spool_errors errors dropped; do
        v=$(pstat "$LINE" "badger.emitter.$k.$e")
        [ -n "$v" ] && printf ' %s=%s' "$k" "$v"
    done
    printf ';'
done
echo " spool dir $(du -sk "$WORK/spool" | cut -f1) kB"
VERDICT=PASS
{ [ "$MAXD" -gt "$TOLERANCE_KB" ] || [ "$MAXSTEP" -gt "$TOLERANCE_KB" ] || [ "$TIMEOUTS" -gt 0 ]; } && VERDICT=FAIL
echo "max delta: vs baseline (rss_before of outage 1, $BASE kB) ${MAXD} kB; vs each outage's own rss_before ${MAXSTEP} kB;" \
    "drain timeouts $TIMEOUTS; tolerance ${TOLERANCE_KB} kB: $VERDICT"
