#!/usr/bin/env bash
# Regenerates packaging/symbol-order.txt and packaging/data-order.txt, the link order of the
# release binary's functions and of its constants.
#
#   scripts/symbol-order.sh [SECONDS]
#
# The agent touches a few hundred kilobytes of a 6 MB text segment and a few kilobytes of
# 1.1 MB of constants, but the kernel maps the 64 KiB around every page fault of a file
# mapping, so code or data spread over the whole binary costs its whole spread in RSS.
# build.rs hands symbol-order.txt to the linker (lld's --symbol-ordering-file) for release
# builds, which places the listed functions first, in this order: what the stock agent (the
# six modules and stdout, as scripts/bench-agent.sh runs it) runs every tick, hottest first,
# then in its first ticks only, then at each step of start-up; then, likewise, what the sample config adds
# (internal, stdout_pretty); then what a production agent runs besides: the influxdb,
# graphite, kafka and prometheus emitters against real servers on loopback, when influxd,
# carbon-cache and tansu are installed (scripts/test.sh installs them), with influxd and
# carbon stopped for 8 s in the middle, so that an outage's code (buffering, the spool,
# reconnecting, draining) is in the order too. Everything else (the Pulse server, TLS, other
# emitters) follows, untouched unless configured. data-order.txt lists the constants the same
# agents read, in the same order of phases, by content (crates/linkorder says why and how the
# link uses it).
#
# How: an unstripped release build (in target/order, BADGER_KEEP_SYMBOLS=1: the same profile,
# so the same symbol names; BADGER_DATA_DUMP: its link map and its sections' content keys)
# runs under valgrind's callgrind for SECONDS (default 20) per config, dumping the profile
# after each release of the start-up pages (badger_api::memory::ExecutablePages::release:
# after each step of start-up, and a few ticks in) and before the shutdown (Agent::shutdown,
# on the SIGTERM that ends the run), which splits the steps of start-up, the first ticks,
# the steady state and the shutdown, which is left out.
# Then under valgrind's lackey, whose trace of data reads, split at the same calls, gives the
# constants each phase reads. symbol-order.txt lists mangled symbol names, one per line;
# data-order.txt content keys. Stale files are harmless: names that no longer exist are
# skipped (the build passes --no-warn-symbol-ordering) and keys that no longer match place
# nothing, so the layout only degrades until this is re-run. Re-run it after a change to the
# profile, the features or the tick path, and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-20}
OUT=packaging/symbol-order.txt
DATA_OUT=packaging/data-order.txt
command -v valgrind >/dev/null || { echo "symbol-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

# The same profile as the release build (so the same symbol names), linked without --strip-all.
DUMP="$PWD/target/order/data-sections"
BADGER_KEEP_SYMBOLS=1 BADGER_DATA_DUMP="$DUMP" CARGO_TARGET_DIR="$PWD/target/order" cargo build --release --locked -q
BIN="$PWD/target/order/release/badger"
# Where the start-up pages are released: the profiles' phase boundaries.
RELEASE_FN=$(nm "$BIN" | awk '$3 ~ /15ExecutablePages7release/ && !f {print $1, $3; f = 1}')
[ -n "$RELEASE_FN" ] || { echo "symbol-order: no ExecutablePages::release in $BIN" >&2; exit 1; }
RELEASE_AT=$(printf '%x' "0x${RELEASE_FN%% *}")
# Where the steady state ends: the agent's shutdown on SIGTERM (its own phase, left out).
SHUTDOWN_FN=$(nm "$BIN" | awk '$3 ~ /5agent5Agent8shutdown/ && !f {print $1, $3; f = 1}')
[ -n "$SHUTDOWN_FN" ] || { echo "symbol-order: no Agent::shutdown in $BIN" >&2; exit 1; }
SHUTDOWN_AT=$(printf '%x' "0x${SHUTDOWN_FN%% *}")

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
BADGER_BIN=$BIN bench_init badger-order

# usage: profile NAME CONFIG_DIR [DURING] -> in $WORK: NAME.cg.1 … NAME.cg.<n-2> (the steps
# of start-up), NAME.cg.<n-1> (first ticks), NAME.cg.<n> (steady state, dumped as the
# shutdown begins), NAME.cg (the shutdown, left out), from callgrind; NAME.trace, lackey's
# data reads of the binary's constants with a line "I  <address>" at each release and at
# the shutdown; DURING, a function, runs instead of the plain SECONDS of steady state
profile() {
    local name=$1 dir=$2 during=${3:-} vp tool
    for tool in callgrind lackey; do
        if [ $tool = callgrind ]; then
            (cd "$dir" && exec valgrind --tool=callgrind --demangle=no --dump-instr=no \
                --dump-after="${RELEASE_FN#* }" --dump-before="${SHUTDOWN_FN#* }" \
                --callgrind-out-file="$WORK/$name.cg" "$BIN" -f config.json >/dev/null 2>"$WORK/$name.log") &
        else
            # Data reads in 0x200000-0x9fffff (the position-dependent binary's image), filtered
            # as they stream; the exact ranges are the map's.
            (cd "$dir" && exec valgrind --tool=lackey --trace-mem=yes --log-fd=9 "$BIN" -f config.json \
                9>&1 >/dev/null 2>>"$WORK/$name.log" \
                | LC_ALL=C grep -E "^ [LM] 00[2-9][0-9a-f]{5},|^I  0*(${RELEASE_AT}|${SHUTDOWN_AT})," >"$WORK/$name.trace") &
        fi
        vp=$!
        BENCH_PIDS+=("$vp")
        # Start-up under valgrind takes a few seconds.
        sleep 8
        if [ -n "$during" ]; then "$during"; else sleep "$SECONDS_RUN"; fi
        pkill -TERM -f -- "--tool=$tool .*$BIN" || true
        wait "$vp" || true
    done
    ls "$WORK/$name.cg.1" "$WORK/$name.cg.2" "$WORK/$name.cg" "$WORK/$name.trace" >/dev/null
}

# The stock six modules with stdout (what scripts/bench-agent.sh measures: every tick on the
# shared thread, which sends it out), then the sample config's internal and stdout_pretty.
mkdir -p "$WORK/stock" "$WORK/sample"
stock_config "$WORK/stock/config.json"
cat > "$WORK/sample/config.json" <<'JSON'
{ "core": { "datacenter": "", "region": "", "zone": "", "cluster": "" },
  "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
  "emitters": ["stdout", "stdout_pretty"] }
JSON
profile stock "$WORK/stock"
# Constants the kernel reads (a system call's path argument, such as the empty path std
# passes to statx), which lackey cannot see: strace's raw arguments that point into the
# binary, over start-up and the first ticks of the stock agent.
: >"$WORK/stock.syscalls"
if command -v strace >/dev/null; then
    (cd "$WORK/stock" && exec strace -f -qq -e raw=all -e trace='!madvise,mprotect,munmap,mmap' \
        -o "$WORK/stock.syscalls" "$BIN" -f config.json >/dev/null 2>&1) &
    vp=$!
    BENCH_PIDS+=("$vp")
    sleep 6
    # strace's child, the agent; strace exits with it.
    pkill -TERM -P "$vp" || true
    wait "$vp" || true
else
    echo "symbol-order: no strace: constants only the kernel reads are left out" >&2
fi
profile sample "$WORK/sample"

PROFILES=("$WORK/stock.cg" "$WORK/sample.cg")
TRACES=("$WORK/stock.trace" "$WORK/sample.trace")
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
    TRACES+=("$WORK/prod.trace")
else
    echo "symbol-order: influxd, carbon-cache or tansu missing: the production emitters are left out" >&2
fi

python3 - "$BIN" "$OUT" "${PROFILES[@]}" <<'PY'
import glob, re, sys

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


# What the agent runs once more after start-up, and that the profile can count as start-up:
# the releases of the start-up pages (badger_api::memory), else a release maps a start-up
# window back in just to return from it; and the start of a thread (std's stack-overflow
# handler set-up), which a reload, an outage's reconnect or a plugin can run at any time
# (`perf record -e page-faults -d` found each in a start-up window of its own, faulted back
# in during the first ticks, when the release came before the threads had started).
AGAIN = ("15ExecutablePages7release", "6memory5linux7release", "6memory5linux9dont_need",
         "11thread_info16set_current_info", "3imp12make_handler")

# What the ticks run now and then, which a profile of 20 s can miss: core's float formatting
# falls back to Dragon4 for a value Grisu cannot print shortest (perf found its three windows
# faulted in half a minute in). Listed with the steady state; its tables likewise in the
# data order (RARE_DATA below).
RARE = ("6dragon15format_shortest", "6dragon9mul_pow10", "8Big32x408mul_pow2", "8Big32x4010mul_digits")


def named(endings):
    """The binary's functions whose names end with one of `endings` (the crate hash and the
    legacy mangling's hash suffix are left out of the match), one cost each."""
    import subprocess
    names = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout.split()
    return {n: 1 for n in names if n.endswith(endings) or re.sub(r"17h[0-9a-f]{16}E$", "", n).endswith(endings)}


# The stock agent's steady state and start-up first, so it touches one dense run of pages;
# then what the production agent runs besides, likewise.
def dumps(p):
    """p.1 … p.<n>: the steps of start-up, the first ticks, the steady state (p itself is the
    shutdown, left out)."""
    numbered = sorted((int(f.rsplit(".", 1)[1]), f) for f in glob.glob(p + ".*") if f.rsplit(".", 1)[1].isdigit())
    return [self_costs(f, binary) for _, f in numbered]


for i, p in enumerate(profiles):
    phases = dumps(p)
    if len(phases) < 3:
        sys.exit(f"symbol-order: {p} has {len(phases)} dumps, expected the steps of start-up, the first ticks and the steady state")
    counts.append(f"{add(phases.pop())} steady-state ({p.rsplit('/', 1)[-1]})")
    if i == 0:
        counts.append(f"{add(named(AGAIN))} run again after start-up")
        counts.append(f"{add(named(RARE))} run now and then")
    # The steps of start-up, then the first ticks. What more than one step
    # runs (allocation, collections, formatting) comes first, then each step's own
    # functions together, the last step first: a step then faults in the windows of the
    # steady state, of the first ticks and of what the steps share, and its own, and no
    # other step's; and the last steps, whose threads, heap and libc pages make them the
    # largest, share the most windows with the steady state.
    steps = phases
    name = p.rsplit("/", 1)[-1]
    counts.append(f"{add(steps.pop())} first ticks ({name})")
    runs = {}
    for costs in steps:
        for f, c in costs.items():
            if c > 0:
                runs[f] = runs.get(f, 0) + 1
    shared = {f: sum(costs.get(f, 0) for costs in steps) for f, n in runs.items() if n > 1}
    counts.append(f"{add(shared)} shared by the steps of start-up ({name})")
    for n, costs in reversed(list(enumerate(steps, 1))):
        counts.append(f"{add(costs)} start-up step {n} ({name})")
    if i == 0:
        counts.append(f"{add(named(MISSED))} missed by the profile")
with open(out, "w") as o:
    o.write("".join(f + "\n" for f in order))
print(f"symbol-order: {', '.join(counts)} functions -> {out}")
PY

# The constants: each trace's data reads, mapped to the input sections of the link map and
# from there to their content keys (the build's dump), ordered like the functions: the stock
# agent's steady state (most read first), first ticks, what the steps of start-up share and
# each step's own, then the other configs'.
python3 - "$DUMP" "$DUMP.map" "$DATA_OUT" "$WORK/stock.syscalls" "$SHUTDOWN_AT" "$BIN" "${TRACES[@]}" <<'PY'
import bisect, re, struct, sys

dump, link_map, out, syscalls, shutdown, binary, traces = *sys.argv[1:7], sys.argv[7:]
keys = dict(line.rstrip("\n").split("\t") for line in open(dump))
sections = []  # (address, size, name) of the LTO object's orderable input sections
for line in open(link_map):
    m = re.match(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S*\.rcgu\.o:\((.*)\)$", line)
    if m and m.group(3) in keys:
        sections.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
sections.sort()
starts = [s[0] for s in sections]

def section(addr):
    """The name of the orderable section at `addr`, or None."""
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr < sections[i][0] + sections[i][1]:
        return sections[i][2]
    return None


# What the ticks read now and then, after the stock agent's steady state: the tables of
# core's Dragon4 float formatting (RARE in the symbol order above), by name; by content,
# core::fmt's runs of zeros for a float's zero parts, which a float like 1200.0 reads
# (`perf record -e page-faults -d` found each faulting in a window of its own in the first
# ticks): a constant of five ("00000"), by its key, and the 64 of Formatter::
# write_formatted_parts, found in the binary: LLVM merges that one with neighbouring strings
# into a constant whose size and content change with the code around it.
RARE_DATA = "6dragon"
RARE_KEYS = (".rodata 5 38e7b2ae",)


def zeros(path):
    """The addresses of the runs of 64 zeros in the loaded segments of the ELF file `path`."""
    data = open(path, "rb").read()
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads = []
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1:
            loads.append((offset, vaddr, filesz))
    return [vaddr + m.start() - offset for m in re.finditer(rb"0{64}", data)
            for offset, vaddr, size in loads if offset <= m.start() < offset + size]


RARE_SECTIONS = {section(a) for a in zeros(binary)} - {None}

# The constants the kernel read (strace's raw arguments), with the stock steady state.
kernel = {}
for line in open(syscalls):
    for arg in re.findall(r"0x[0-9a-f]+", line.partition("(")[2]):
        name = section(int(arg, 16))
        if name:
            kernel[name] = kernel.get(name, 0) + 1

order, seen, counts = [], set(), []


def place(reads, label):
    """Appends the keys of the sections in `reads` (name -> reads) not placed yet, most read
    first; identical constants share a key, and one line places them all."""
    new = [k for _, k in sorted(((-n, keys[name]) for name, n in reads.items())) if k not in seen]
    new = list(dict.fromkeys(new))
    order.extend(new)
    seen.update(new)
    counts.append(f"{len(new)} {label}")


for trace_no, t in enumerate(traces):
    # the steps of start-up, the first ticks, the steady state: name -> reads
    phases = [{}]
    for line in open(t):
        if line[0] == "I":
            if int(line[3:].split(",")[0], 16) == int(shutdown, 16):
                break
            phases.append({})
            continue
        name = section(int(line[3:].split(",")[0], 16))
        if name:
            phases[-1][name] = phases[-1].get(name, 0) + 1
    if len(phases) < 3:
        sys.exit(f"data-order: {t} has {len(phases) - 1} releases of the start-up pages, expected at least 2")
    trace = t.rsplit("/", 1)[-1]
    steady, first, steps = phases[-1], phases[-2], phases[:-2]
    place(steady, f"steady-state ({trace})")
    if trace_no == 0:
        rare = {name: 1 for _, _, name in sections
                if RARE_DATA in name or keys[name] in RARE_KEYS or name in RARE_SECTIONS}
        place(rare, "used now and then")
        place(kernel, "read by the kernel")
    place(first, f"first ticks ({trace})")
    # As in the symbol order: what more than one step reads, then each step's own, the last
    # step first.
    in_steps = {}
    for reads in steps:
        for name in reads:
            in_steps[name] = in_steps.get(name, 0) + 1
    place({n: sum(r.get(n, 0) for r in steps) for n, c in in_steps.items() if c > 1}, f"shared by the steps ({trace})")
    for n, reads in reversed(list(enumerate(steps, 1))):
        place(reads, f"start-up step {n} ({trace})")
with open(out, "w") as o:
    o.write("# The release binary's constants, hottest first, by content: <kind> <size> <crc32>.\n")
    o.write("# Generated by scripts/symbol-order.sh; crates/linkorder says how the link uses it.\n")
    o.write("".join(k + "\n" for k in order))
print(f"data-order: {', '.join(counts)} sections -> {out}")
PY
