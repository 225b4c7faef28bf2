#!/usr/bin/env bash
# Regenerates packaging/symbol-order.txt, the link order of the release binary's functions.
#
#   scripts/symbol-order.sh [SECONDS]
#
# The agent touches a few hundred kilobytes of a 9 MB text segment, but the kernel maps a
# file page around every fault (64 KiB windows), so code spread over the whole segment costs
# its whole spread in RSS. build.rs hands this file to the linker (lld's
# --symbol-ordering-file) for release builds, which places the listed functions first, in
# this order: what the agent runs every tick, hottest first, then what it runs once at
# start-up. Everything else (the Pulse server, TLS, Kafka, the HTTP stacks) follows, untouched
# unless configured.
#
# How: an unstripped release build (in target/order, BADGER_KEEP_SYMBOLS=1) runs under valgrind's callgrind with the
# stock six modules, `internal`, `stdout` and `stdout_pretty` for SECONDS (default 20); a
# dump after start-up splits start-up from steady state. The file lists mangled symbol
# names, one per line. A stale file is harmless: names that no longer exist are skipped (the
# build passes --no-warn-symbol-ordering), so the layout only degrades until this is re-run.
# Re-run it after changes to the tick path and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-20}
OUT=packaging/symbol-order.txt
command -v valgrind >/dev/null || { echo "symbol-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# The same profile as the release build (so the same symbol names), linked without --strip-all.
BADGER_KEEP_SYMBOLS=1 CARGO_TARGET_DIR="$PWD/target/order" cargo build --release --locked -q
BIN="$PWD/target/order/release/badger"

WORK=$(mktemp -d /tmp/badger-order.XXXXXX)
trap 'kill "$VP" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/config.json" <<'JSON'
{ "core": { "datacenter": "", "region": "", "zone": "", "cluster": "" },
  "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
  "emitters": ["stdout", "stdout_pretty"] }
JSON
(cd "$WORK" && exec valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$WORK/cg.out" "$BIN" -f config.json >/dev/null 2>"$WORK/vg.log") &
VP=$!
# Start-up under callgrind takes a few seconds; the first dump closes it.
sleep 6
callgrind_control -d "$VP" >/dev/null
sleep "$SECONDS_RUN"
kill -TERM "$VP"
wait "$VP" || true

# The dumps: cg.out.1 (start-up, from callgrind_control -d) and cg.out (the rest, at exit).
ls "$WORK"/cg.out.1 "$WORK"/cg.out >/dev/null
python3 - "$BIN" "$WORK/cg.out.1" "$WORK/cg.out" "$OUT" <<'PY'
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
                cost[fn] = cost.get(fn, 0) + int(parts[1])
    return cost

binary, start, steady, out = sys.argv[1:5]
hot = sorted(((c, f) for f, c in self_costs(steady, binary).items() if c > 0), reverse=True)
once = sorted(((c, f) for f, c in self_costs(start, binary).items() if c > 0), reverse=True)
seen = {f for _, f in hot}
order = [f for _, f in hot] + [f for _, f in once if f not in seen]
with open(out, "w") as o:
    o.write("".join(f + "\n" for f in order))
print(f"symbol-order: {len(hot)} steady-state and {len(order) - len(hot)} start-up functions -> {out}")
PY
