#!/usr/bin/env bash
# Regenerates packaging/symbol-order.txt, the link order of the release binary's functions.
#
#   scripts/symbol-order.sh [SECONDS]
#
# The agent touches a few hundred kilobytes of a 6 MB text segment, but the kernel maps the
# 64 KiB around every page fault of a file mapping, so code spread over the whole segment
# costs its whole spread in RSS. build.rs hands this file to the linker (lld's
# --symbol-ordering-file) for release builds, which places the listed functions first, in
# this order: what the stock agent (the six modules and stdout, as scripts/bench-agent.sh
# runs it) runs every tick, hottest first, then once at start-up; then, likewise, what the
# sample config adds (internal, stdout_pretty); then what a production agent runs besides:
# the influxdb, graphite, kafka and prometheus emitters against real servers on loopback,
# when influxd, carbon-cache and tansu are installed (scripts/test.sh installs them), with
# influxd and carbon stopped for 8 s in the middle, so that an outage's code (buffering,
# the spool, reconnecting, draining) is in the order too. Everything else (the Pulse server,
# TLS, other emitters) follows, untouched unless configured.
#
# How: an unstripped release build (in target/order, BADGER_KEEP_SYMBOLS=1: the same profile,
# so the same symbol names) runs under valgrind's callgrind for SECONDS (default 20) per
# config; a dump after start-up splits start-up from steady state. The file lists mangled
# symbol names, one per line. A stale file is harmless: names that no longer exist are
# skipped (the build passes --no-warn-symbol-ordering), so the layout only degrades until
# this is re-run. Re-run it after a change to the profile, the features or the tick path,
# and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-20}
OUT=packaging/symbol-order.txt
command -v valgrind >/dev/null || { echo "symbol-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# The same profile as the release build (so the same symbol names), linked without --strip-all.
BADGER_KEEP_SYMBOLS=1 CARGO_TARGET_DIR="$PWD/target/order" cargo build --release --locked -q
BIN="$PWD/target/order/release/badger"

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
BADGER_BIN=$BIN bench_init badger-order

# usage: profile NAME CONFIG_DIR [DURING] -> NAME.cg.1 (start-up) and NAME.cg (steady state)
# in $WORK; DURING, a function, runs instead of the plain SECONDS of steady state
profile() {
    local name=$1 dir=$2 during=${3:-} vp
    (cd "$dir" && exec valgrind --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$WORK/$name.cg" "$BIN" -f config.json >/dev/null 2>"$WORK/$name.log") &
    vp=$!
    BENCH_PIDS+=("$vp")
    # Start-up under callgrind takes a few seconds; the first dump closes it.
    sleep 8
    callgrind_control -d "$vp" >/dev/null
    if [ -n "$during" ]; then "$during"; else sleep "$SECONDS_RUN"; fi
    kill -TERM "$vp"
    wait "$vp" || true
    ls "$WORK/$name.cg.1" "$WORK/$name.cg" >/dev/null
}

# The stock six modules with stdout (what scripts/bench-agent.sh measures: every tick on the
# shared thread, which sends it out), then the sample config's internal and stdout_pretty.
mkdir -p "$WORK/stock" "$WORK/sample"
cat > "$WORK/stock/config.json" <<'JSON'
{ "core": { "datacenter": "", "region": "", "zone": "", "cluster": "" },
  "modules": ["cpu", "load", "disk", "network", "memory", "system"],
  "emitters": ["stdout"] }
JSON
cat > "$WORK/sample/config.json" <<'JSON'
{ "core": { "datacenter": "", "region": "", "zone": "", "cluster": "" },
  "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
  "emitters": ["stdout", "stdout_pretty"] }
JSON
profile stock "$WORK/stock"
profile sample "$WORK/sample"

PROFILES=("$WORK/stock.cg" "$WORK/sample.cg")
if command -v influxd >/dev/null && command -v carbon-cache >/dev/null && [ -x "$(tansu_bin 2>/dev/null)" ]; then
    start_production "$WORK/prod" "$WORK/spool"
    ( for _ in $(seq 1 $((SECONDS_RUN + 10))); do curl -s -o /dev/null "http://127.0.0.1:$PROM_PORT/metrics"; sleep 1; done ) &
    BENCH_PIDS+=("$!")
    # An outage in the middle: the agent buffers, spools, reconnects and drains, code that
    # is then in the order too (else the first outage faults it in, window by window).
    outage() {
        sleep 5
        bench_stop "$INFLUXD_PID"
        bench_stop "$CARBON_PID"
        sleep 8
        start_influxd "$WORK/influxd" "$INFLUX_PORT"
        start_carbon "$WORK/carbon" "$LINE_PORT" "$PICKLE_PORT" "$QUERY_PORT"
        sleep $((SECONDS_RUN > 13 ? SECONDS_RUN - 13 : 5))
    }
    profile prod "$WORK/prod" outage
    PROFILES+=("$WORK/prod.cg")
else
    echo "symbol-order: influxd, carbon-cache or tansu missing: the production emitters are left out" >&2
fi

python3 - "$BIN" "$OUT" "${PROFILES[@]}" <<'PY'
import re, sys

def self_costs(path, binary):
    """Self cost of every function of `binary` in one callgrind dump."""
    names = {"ob": {}, "fn": {}}
    cost, ob, fn, fn_ob, skip = {}, None, None, None, False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        key, eq, val = line.partition("=")
        if eq and key in ("ob", "cob", "fn", "cfn"):
            table = names["ob" if key.endswith("ob") else "fn"]
            m = re.match(r"\((\d+)\)(?: (.*))?$", val)
            name = val
            if m:
                if m.group(2) is not None:
                    table[m.group(1)] = m.group(2)
                name = table.get(m.group(1))
            if key == "ob":
                ob = name
            elif key == "fn":
                fn, fn_ob = name, ob
            continue
        if line.startswith("calls="):
            skip = True  # the next cost line is the call's inclusive cost
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if skip:
                skip = False
                continue
            parts = line.split()
            if len(parts) >= 2 and fn_ob == binary:
                # valgrind's name for the binary's entry point (crt1's _start).
                name = "_start" if fn == "(below main)" else fn
                cost[name] = cost.get(name, 0) + int(parts[1])
    return cost

binary, out, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
order, seen, counts = [], set(), []


def add(costs):
    """Appends the functions not listed yet, hottest first; returns how many."""
    new = [f for c, f in sorted(((c, f) for f, c in costs.items() if c > 0), reverse=True) if f not in seen]
    order.extend(new)
    seen.update(new)
    return len(new)


# Start-up functions the stock agent runs that callgrind's profile leaves out (found with
# `perf record -e page-faults -d` on the release build: each cost a 64 KiB window of its
# own): crtbegin's frame_dummy, which .init_array calls, and core's character count that
# padded formatting of a long string uses. Matched by name ending, as the crate hash varies.
MISSED = ("frame_dummy", "4core3str5count14do_count_chars")


# What the agent runs once more after start-up, a few ticks in, and that the profile counts
# as start-up: the second release of the start-up pages (badger_api::memory). Listed with the
# steady state, else that release maps a start-up window back in just to return from it.
AGAIN = ("15ExecutablePages7release", "6memory5linux7release", "6memory5linux9dont_need")


def named(endings):
    """The binary's functions whose names end with one of `endings` (the crate hash and the
    legacy mangling's hash suffix are left out of the match), one cost each."""
    import subprocess
    names = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout.split()
    return {n: 1 for n in names if n.endswith(endings) or re.sub(r"17h[0-9a-f]{16}E$", "", n).endswith(endings)}


# The stock agent's steady state and start-up first, so it touches one dense run of pages;
# then what the production agent runs besides, likewise.
for i, p in enumerate(profiles):
    counts.append(f"{add(self_costs(p, binary))} steady-state ({p.rsplit('/', 1)[-1]})")
    if i == 0:
        counts.append(f"{add(named(AGAIN))} run again after start-up")
    counts.append(f"{add(self_costs(p + '.1', binary))} start-up ({p.rsplit('/', 1)[-1]})")
    if i == 0:
        counts.append(f"{add(named(MISSED))} missed by the profile")
with open(out, "w") as o:
    o.write("".join(f + "\n" for f in order))
print(f"symbol-order: {', '.join(counts)} functions -> {out}")
PY
