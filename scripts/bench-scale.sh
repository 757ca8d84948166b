#!/usr/bin/env bash
# bench-scale.sh: the scale curves of issue 11, for cairn and etcd, each a
# single member in a fresh data dir, one server running at a time (the
# load generator, cmd/cairn-bench, shares the machine with it):
#
#   key count: for each N, load N keys of 256 B (put, 64 clients / 8 conns,
#     every key once), then RSS (VmRSS of /proc/PID/status; VmHWM is the peak
#     during the load), on-disk size (du of the data dir), put throughput
#     over the same N keys and range throughput, linearizable and
#     serializable single-key gets over the N keys (64 clients / 8 conns,
#     BENCH_SECONDS each), with their latency percentiles.
#   watchers: for each W, W watchers on one prefix over W/100 streams (at
#     least 10, at most 1,000) and a writer at a fixed, low rate
#     (SCALE_WATCH_RATE puts/s for BENCH_SECONDS): delivery latency (put sent
#     -> event received), events/s and the exactly-once check per point.
#
# Every server gets a fresh data dir for every point. Both servers take
# --quota-backend-bytes SCALE_QUOTA in the key-count runs (both default to
# 2 GiB, which 10,000,000 keys of 256 B pass); the watcher runs use defaults.
# Nothing else is tuned; both fsync every commit. Every cairn-bench run is
# bounded by `timeout`, every server start by cairn-bench ready --wait 300
# and every stop by 30 s before SIGKILL; everything started here is stopped
# on exit (trap). `make bench-scale` runs it. Functions shared with
# scripts/bench-vs-etcd.sh are in scripts/bench-lib.sh.
#
# Environment (all optional):
#   SCALE_KEYS="10000 100000 1000000"   key counts of the first curve ("": none)
#   SCALE_10M=0          1: add 10,000,000 keys (a long run: see docs/benchmarks.md)
#   SCALE_WATCHERS="1000 10000 100000"  watcher counts of the second curve ("": none)
#   BENCH_SECONDS=5      seconds per put/range run, and the watch writer's duration
#   SCALE_WATCH_RATE=10  the watch writer's puts per second
#   SCALE_DRAIN=30       seconds a watch point waits for its last events
#   SCALE_QUOTA=34359738368  --quota-backend-bytes of the key-count runs (32 GiB)
#   SCALE_SERVERS="etcd cairn"
#   SCALE_IMG=docs/img   where scale-keys.png and scale-watchers.png go ("" = none)
#   OUT=$BENCH_TMP/cairn-scale-results.<UTC time>  JSON results, machine.txt, scale.md
#   BENCH_BUILD=build-release  build dir (configured Release if new)
#   BENCH_TMP=/var/tmp   where the temp dir with the data dirs goes (a disk, not tmpfs)
#   SCALE_KEEP=0         1: keep the temp dir (data dirs, logs)
#   JOBS=2               build parallelism
#   ETCD=/usr/bin/etcd
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${SCALE_KEYS-10000 100000 1000000}
[ "${SCALE_10M:-0}" != 1 ] || KEYS="$KEYS 10000000"
WATCHERS=${SCALE_WATCHERS-1000 10000 100000}
DURATION=${BENCH_SECONDS:-5}
WATCH_RATE=${SCALE_WATCH_RATE:-10}
DRAIN=${SCALE_DRAIN:-30}
QUOTA=${SCALE_QUOTA:-34359738368}
SERVERS=${SCALE_SERVERS:-etcd cairn}
IMG=${SCALE_IMG-$ROOT/docs/img}
case "$IMG" in /* | "") ;; *) IMG=$ROOT/$IMG ;; esac
BUILD=${BENCH_BUILD:-$ROOT/build-release}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TMP_BASE=${BENCH_TMP:-/var/tmp}
ETCD=${ETCD:-/usr/bin/etcd}
JOBS=${JOBS:-2}

BENCH_TAG=scale
# log, die, build_release, free_port, start_server, wait_ready, stop_server,
# report_dead, describe_machine.
. "$ROOT/scripts/bench-lib.sh"

for n in $KEYS $WATCHERS $DURATION $DRAIN $QUOTA; do
  case "$n" in '' | *[!0-9]*) die "SCALE_KEYS, SCALE_WATCHERS, BENCH_SECONDS, SCALE_DRAIN and SCALE_QUOTA take whole numbers (got '$n')" ;; esac
done
[ "$DURATION" -ge 1 ] || die "BENCH_SECONDS must be at least 1"
for s in $SERVERS; do
  case "$s" in etcd | cairn) ;; *) die "SCALE_SERVERS: etcd and/or cairn (got '$s')" ;; esac
done
command -v "$ETCD" >/dev/null || die "etcd not found ($ETCD); run scripts/setup.sh"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -z "$IMG" ] || command -v gnuplot >/dev/null || die "gnuplot not found; run scripts/setup.sh (or SCALE_IMG=)"

mkdir -p "$TMP_BASE"
WORK=$(mktemp -d "$TMP_BASE/cairn-scale.XXXXXX")
OUT=${OUT:-$TMP_BASE/cairn-scale-results.$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT" "$WORK/logs"
OUT=$(cd "$OUT" && pwd)
[ "$(df --output=fstype "$WORK" | tail -1)" != tmpfs ] ||
  log "warning: $WORK is on tmpfs: fsync is free there; set BENCH_TMP to a disk"

declare -A PID=()   # server -> pid
declare -A PORT=()  # server -> client port
declare -A PEER=()  # server -> peer port (etcd)
SERVER_FLAGS=()
BENCH_PID=""        # the cairn-bench run under way (its timeout), if any
T_START=$(date +%s)

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  report_dead || true
  if [ -n "$BENCH_PID" ]; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true  # timeout passes it on to cairn-bench
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  for s in "${!PID[@]}"; do stop_server "$s" || true; done
  if [ "${SCALE_KEEP:-0}" = 1 ]; then
    log "kept $WORK (data dirs, logs)"
  else
    rm -rf "$WORK"
  fi
  log "results in $OUT"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release cairn cairn-bench
CLK_TCK=$(getconf CLK_TCK)

# bench RUN SERVER LIMIT ARGS...: one cairn-bench run, killed after LIMIT
# seconds; JSON into $OUT/RUN.SERVER.json, the server's CPU seconds during
# the run into $OUT/RUN.SERVER.cpu; a one-line summary on stderr. Dies if the
# server stopped. The run goes in the background and is waited for, so that
# a signal to this script runs cleanup() at once (which stops the run).
bench() {
  local run=$1 s=$2 limit=$3
  shift 3
  local file="$OUT/$run.$s.json" before after status=0
  before=$(awk '{ print $14 + $15 }' "/proc/${PID[$s]}/stat")
  timeout -k 10 "$limit" "$BENCH" --endpoints "127.0.0.1:${PORT[$s]}" --json "$@" \
    >"$file" 2>"$OUT/$run.$s.stderr" </dev/null &
  BENCH_PID=$!
  wait "$BENCH_PID" || status=$?
  BENCH_PID=""
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    log "  $run on $s did not finish in $limit s: stopped (see $OUT/$run.$s.stderr)"
  elif [ "$status" != 0 ]; then
    log "  $run on $s reported errors (exit $status; see $file, $OUT/$run.$s.stderr)"
  fi
  report_dead || die "$s stopped during $run"
  after=$(awk '{ print $14 + $15 }' "/proc/${PID[$s]}/stat")
  awk -v a="$before" -v b="$after" -v t="$CLK_TCK" 'BEGIN { printf "%.2f\n", (b - a) / t }' \
    >"$OUT/$run.$s.cpu"
  python3 - "$file" "$run" "$s" <<'EOF' >&2 || true
import json, sys
path, run, server = sys.argv[1:4]
try:
    d = json.loads(open(path).read().strip().splitlines()[-1])
    l = d["latency_ms"]
    line = "[scale]   %-5s %-16s %11.1f %s/s  p50 %8.3f  p99 %8.3f ms  errors %d" % (
        server, run, d["throughput"], d["unit"], l["p50"], l["p99"], d["errors"])
    if d["workload"] == "watch":
        line += "  exactly once: %s" % ("yes" if d["extra"].get("exactly_once") else "NO")
    print(line)
except Exception as e:
    print("[scale]   %-5s %-16s (no result: %s)" % (server, run, e))
EOF
}

# status_kb SERVER FIELD: a field of /proc/PID/status in KiB (0 if absent).
status_kb() { awk -v f="$2:" '$1 == f { v = $2 } END { print v + 0 }' "/proc/${PID[$1]}/status"; }

# fresh SERVER DIR: starts SERVER alone on new ports in the new data dir DIR.
fresh() {
  local s=$1 dir=$2
  rm -rf "$dir"
  PORT[$s]=$(free_port)
  [ "$s" != etcd ] || PEER[etcd]=$(free_port)
  start_server "$s" "$dir"
  wait_ready "$s"
}

# keys_point SERVER N: one point of the key-count curve.
keys_point() {
  local s=$1 n=$2 dir="$WORK/$1-n$2" rss hwm anon file disk_kb
  local d="--duration $DURATION" k="--clients 64 --conns 8"
  # Bounds: the load at >= 2,000 puts/s, a timed run 10x over.
  local load_limit=$((300 + n / 2000)) run_limit=$((120 + DURATION * 10))
  SERVER_FLAGS=(--quota-backend-bytes "$QUOTA")
  fresh "$s" "$dir"
  SERVER_FLAGS=()
  log "$s, $n keys: load"
  bench "load-n$n" "$s" "$load_limit" $k --total "$n" \
    put --key-prefix r/ --key-space "$n" --sequential-keys --val-size 256
  sleep 2  # let background flushes settle before measuring
  rss=$(status_kb "$s" VmRSS)
  hwm=$(status_kb "$s" VmHWM)
  anon=$(status_kb "$s" RssAnon)
  file=$(status_kb "$s" RssFile)
  disk_kb=$(du -sk "$dir" | cut -f1)
  log "  $s: RSS $((rss / 1024)) MiB (peak $((hwm / 1024))), disk $((disk_kb / 1024)) MiB"
  bench "put-n$n" "$s" "$run_limit" $d $k put --key-prefix r/ --key-space "$n" --val-size 256
  bench "range-l-n$n" "$s" "$run_limit" $d $k range --consistency l --key-space "$n" --no-preload
  bench "range-s-n$n" "$s" "$run_limit" $d $k range --consistency s --key-space "$n" --no-preload
  printf '{"server": "%s", "keys": %d, "rss_kb": %d, "hwm_kb": %d, "rss_anon_kb": %d, "rss_file_kb": %d, "disk_kb": %d, "rss_end_kb": %d, "disk_end_kb": %d}\n' \
    "$s" "$n" "$rss" "$hwm" "$anon" "$file" "$disk_kb" "$(status_kb "$s" VmRSS)" \
    "$(du -sk "$dir" | cut -f1)" >"$OUT/resources-n$n.$s.json"
  stop_server "$s"
  rm -rf "$dir"
}

# watch_point SERVER W: one point of the watcher curve.
watch_point() {
  local s=$1 w=$2 dir="$WORK/$1-w$2" streams
  streams=$((w / 100))
  [ "$streams" -ge 10 ] || streams=10
  [ "$streams" -le 1000 ] || streams=1000
  [ "$streams" -le "$w" ] || streams=$w
  # Bounds: 30 s to create the watchers, the writer, the drain, and slack.
  local limit=$((30 + DURATION * 2 + DRAIN + 60))
  fresh "$s" "$dir"
  log "$s, $w watchers over $streams streams, $WATCH_RATE puts/s for $DURATION s"
  # Memory per watcher: the server's RSS before, and its maximum while the
  # watchers exist (sampled every 0.5 s by a loop that ends with the run).
  local idle max_file="$WORK/rss-max" sampler
  idle=$(status_kb "$s" VmRSS)
  echo "$idle" >"$max_file"
  (
    m=$idle
    while kill -0 "${PID[$s]}" 2>/dev/null; do
      r=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/${PID[$s]}/status" 2>/dev/null) || break
      [ -n "$r" ] && [ "$r" -gt "$m" ] && m=$r && echo "$m" >"$max_file"
      sleep 0.5
    done
  ) &
  sampler=$!
  bench "watch-w$w" "$s" "$limit" --conns 8 --duration "$DURATION" \
    watch --watchers "$w" --streams "$streams" --put-rate "$WATCH_RATE" --drain-timeout "$DRAIN"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  printf '{"server": "%s", "watchers": %d, "streams": %d, "rss_idle_kb": %d, "rss_max_kb": %d}\n' \
    "$s" "$w" "$streams" "$idle" "$(cat "$max_file")" >"$OUT/resources-w$w.$s.json"
  stop_server "$s"
  rm -rf "$dir"
}

describe_machine "scale: keys $KEYS; watchers $WATCHERS; $DURATION s per run; watch writer $WATCH_RATE puts/s" \
  >"$OUT/machine.txt"
echo "uptime before: $(uptime)" >>"$OUT/machine.txt"
log "results in $OUT"
sed 's/^/[scale] /' "$OUT/machine.txt" >&2

# Who goes first alternates from one point to the next.
order() {
  local flip=$1 list=$SERVERS
  [ "$flip" = 0 ] || list=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
  echo "$list"
}
flip=0
for n in $KEYS; do
  for s in $(order $flip); do keys_point "$s" "$n"; done
  flip=$((1 - flip))
done
for w in $WATCHERS; do
  for s in $(order $flip); do watch_point "$s" "$w"; done
  flip=$((1 - flip))
done

{
  echo "uptime after: $(uptime)"
  echo "wall time: $(($(date +%s) - T_START)) s"
} >>"$OUT/machine.txt"
report_args=("$OUT")
[ -z "$IMG" ] || report_args+=(--img-dir "$IMG")
python3 "$ROOT/scripts/bench_report.py" scale "${report_args[@]}" >"$OUT/scale.md"
echo
cat "$OUT/machine.txt"
echo
cat "$OUT/scale.md"
echo
[ -z "$IMG" ] || log "plots: $IMG/scale-keys.png, $IMG/scale-watchers.png"
log "table: $OUT/scale.md"
