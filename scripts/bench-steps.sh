#!/usr/bin/env bash
# The agent's exact RSS at the end of each step of its start-up (issue 13).
#
#   scripts/bench-steps.sh [CONFIG]
#
# The agent releases its start-up pages at each step (badger_api::memory::
# ExecutablePages::release: as `main` begins, after the command line, the config file and
# the plan, when the first tick is due, and before the fourth tick), and its RSS only grows between two
# releases, so its RSS just before each release is the peak of that step. This stops the
# agent there with gdb (on an unstripped build of the release profile, whose layout is the
# release binary's: BADGER_KEEP_SYMBOLS=1 in target/order, as scripts/symbol-order.sh
# builds it) and sums /proc/PID/smaps by mapping, exactly: VmHWM can miss part of a peak
# that a release ends (scripts/bench-lib.sh says why), and a sampler misses the steps that
# last a millisecond. The page cache is warm (the build just wrote the binary), and gdb's
# breakpoint makes one private page of code.
#
# CONFIG: run `badger -f CONFIG`; default, the stock six modules and stdout (what
# scripts/bench-agent.sh runs). Prints one line a step, in kB: total, the binary, libc,
# ld.so, other files, the main stack, the heap, other anonymous memory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
command -v gdb >/dev/null || { echo "bench-steps: needs gdb (apt-get install gdb)" >&2; exit 1; }
CONFIG=${1:-}
[ -n "$CONFIG" ] && CONFIG=$(realpath "$CONFIG")

BADGER_KEEP_SYMBOLS=1 CARGO_TARGET_DIR="$PWD/target/order" cargo build --release --locked -q
BIN="$PWD/target/order/release/badger"
RELEASE_FN=$(nm "$BIN" | awk '$3 ~ /15ExecutablePages7release/ && !f {print $3; f = 1}')
[ -n "$RELEASE_FN" ] || { echo "bench-steps: no ExecutablePages::release in $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/badger-steps.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$CONFIG" ]; then
    CONFIG="$WORK/config.json"
    stock_config "$CONFIG"
fi

cat >"$WORK/gdb.py" <<'PY'
import gdb

STEPS = ("the dynamic linker and the runtime", "the command line", "the config file", "the plan",
         "the threads' start (first tick due)", "the first ticks (fourth tick due)")


def rss(pid):
    """Rss by mapping, in kB, from /proc/PID/smaps."""
    kb = dict.fromkeys(("binary", "libc", "ld.so", "other_files", "stack", "heap", "anon"), 0)
    exe = gdb.selected_inferior().progspace.filename
    where = "anon"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            f = line.split()
            if "-" in f[0] and ":" not in f[0]:
                path = f[5] if len(f) > 5 else ""
                where = ("binary" if path == exe else "libc" if "/libc.so" in path
                         else "ld.so" if "/ld-linux" in path else "other_files" if path.startswith("/")
                         else "stack" if path == "[stack]" else "heap" if path == "[heap]" else "anon")
            elif f[0] == "Rss:":
                kb[where] += int(f[1])
    return kb


pid = gdb.selected_inferior().pid
for n, step in enumerate(STEPS, 1):
    kb = rss(pid)
    print(f"end of {step + ':':38} total={sum(kb.values())} " + " ".join(f"{k}={v}" for k, v in kb.items()), flush=True)
    gdb.execute("continue" if n < len(STEPS) else "kill")
PY

(cd "$WORK" && timeout 60 gdb -q -batch -ex "set pagination off" -ex "break $RELEASE_FN" -ex "run" \
    -ex "source $WORK/gdb.py" --args "$BIN" -f "$CONFIG" >"$WORK/gdb.out" 2>&1) || true
grep '^end of' "$WORK/gdb.out" || { echo "bench-steps: gdb stopped early:" >&2; tail -20 "$WORK/gdb.out" >&2; exit 1; }
