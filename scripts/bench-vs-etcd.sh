#!/usr/bin/env bash
# bench-vs-etcd.sh: the same workloads, with cmd/cairn-bench, against a real
# etcd and a cairn started side by side on loopback, alternating between the
# two; prints one table (etcd, cairn, cairn/etcd) and draws the latency /
# throughput plot with gnuplot. `make bench` runs it.
#
# Two sections, each with its own table: single members (one etcd, one cairn:
# every workload, the plot, memory/disk/restart), then 3-member clusters (three
# etcd and three cairn members on loopback: put with 1 and 64 clients, range
# linearizable and serializable with 64 clients; CPU per op is the sum of the
# three members' CPU). In a cluster run the clients are given all three client
# URLs, leader first: one connection (put, 1 client) goes to the leader, eight
# are spread over the members round-robin (3 on the leader, 3 and 2 on the
# followers), as a client with all endpoints would.
#
# The single-member section ends with the ceiling: put (1 and 64 clients) and
# range (64 clients) against cmd/cairn-ceiling, a do-nothing server on cairn's
# gRPC stack answering from memory (no fsync), with the same client; its
# table gives cairn and etcd as a fraction of it.
#
# All servers fsync every commit (their defaults: none is given an unsafe
# flag) and keep their data dirs in one temp dir on one disk.
# Every process started here is stopped on exit (trap), and the temp dir is
# removed unless BENCH_KEEP=1. Building, starting and stopping single servers
# and the machine description are in scripts/bench-lib.sh (shared with
# scripts/bench-scale.sh).
#
# Environment (all optional):
#   BENCH_SCALE=1        multiplies every duration and the size of the loaded
#                        data set; 0.1 gives a quick run of about four minutes
#   BENCH_SECONDS=10     seconds per workload run at scale 1
#   BENCH_LOAD_KEYS=1000000  keys (256 B values) loaded for memory/disk/restart
#   BENCH_BUILD=build-release  build dir (configured Release if new)
#   BENCH_TMP=/var/tmp   where the temp dir with both data dirs goes (a disk,
#                        not tmpfs: fsync must cost what it costs)
#   BENCH_PLOT=docs/img/bench-latency-vs-throughput.png   the plot ("" = none)
#   BENCH_OUT=<temp dir>/results   where the JSON results and table.md go
#   BENCH_KEEP=0         1: keep the temp dir (data, logs, results)
#   BENCH_CLUSTER=       empty: both sections; 0: single members only;
#                        1: 3-member clusters only
#   JOBS=2               build parallelism
#   ETCD=/usr/bin/etcd
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALE=${BENCH_SCALE:-1}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
LOAD_KEYS_FULL=${BENCH_LOAD_KEYS:-1000000}
BUILD=${BENCH_BUILD:-$ROOT/build-release}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TMP_BASE=${BENCH_TMP:-/var/tmp}
PLOT=${BENCH_PLOT-$ROOT/docs/img/bench-latency-vs-throughput.png}
ETCD=${ETCD:-/usr/bin/etcd}
JOBS=${JOBS:-2}
case "${BENCH_CLUSTER:-}" in
  "") RUN_SINGLE=1 RUN_CLUSTER=1 ;;
  0) RUN_SINGLE=1 RUN_CLUSTER=0 ;;
  1) RUN_SINGLE=0 RUN_CLUSTER=1 ;;
  *) echo "bench-vs-etcd.sh: BENCH_CLUSTER must be empty, 0 or 1" >&2; exit 2 ;;
esac

BENCH_TAG=bench
# log, die, build_release, free_port, start_server, wait_ready, stop_server,
# report_dead, describe_machine.
. "$ROOT/scripts/bench-lib.sh"

# awk does the float arithmetic: duration per run, keys to load.
DURATION=$(awk -v s="$SCALE" -v d="$SECONDS_PER_RUN" 'BEGIN { v = s * d; if (v < 1) v = 1; printf "%g", v }')
LOAD_KEYS=$(awk -v s="$SCALE" -v k="$LOAD_KEYS_FULL" 'BEGIN { v = int(s * k); if (v < 1000) v = 1000; print v }')
# watch-max: puts of the writer that goes as fast as it can (x 1000 watchers = events).
WATCH_MAX_PUTS=$(awk -v s="$SCALE" 'BEGIN { v = int(s * 20000); if (v < 200) v = 200; print v }')
# Memory per watcher: 100,000 watchers at scale 1 on one stream per 100 (at most 1,000),
# held for at least 5 s while a writer puts 1/s.
WATCH_MEM_WATCHERS=$(awk -v s="$SCALE" 'BEGIN { v = int(s * 100000); if (v < 1000) v = 1000; print v }')
WATCH_MEM_STREAMS=$((WATCH_MEM_WATCHERS / 100 > 1000 ? 1000 : WATCH_MEM_WATCHERS / 100))
WATCH_MEM_SECONDS=$(awk -v d="$DURATION" 'BEGIN { v = d; if (v < 5) v = 5; printf "%g", v }')

# ------------------------------------------------------- temp dir, build
command -v "$ETCD" >/dev/null || die "etcd not found ($ETCD); run scripts/setup.sh"
[ "$RUN_SINGLE" = 0 ] || command -v gnuplot >/dev/null ||
  { [ -z "$PLOT" ] || die "gnuplot not found; run scripts/setup.sh"; }
[ "$RUN_CLUSTER" = 0 ] || command -v etcdctl >/dev/null || die "etcdctl not found; run scripts/setup.sh"
mkdir -p "$TMP_BASE"
WORK=$(mktemp -d "$TMP_BASE/cairn-bench.XXXXXX")
OUT=${BENCH_OUT:-$WORK/results}
mkdir -p "$OUT" "$WORK/logs"
fstype=$(df --output=fstype "$WORK" | tail -1)
[ "$fstype" != tmpfs ] || log "warning: $WORK is on tmpfs: fsync is free there; set BENCH_TMP to a disk"
# Servers started (stop_server below); cleanup() stops them on any exit.
# A server is a single member (etcd, cairn) or a cluster member (etcd3-1, ...).
declare -A PID=()      # server -> pid
declare -A PORT=()     # server -> client port
declare -A PEER=()     # server -> peer port (etcd, cluster members)
declare -A MEMBERS=()  # etcd/cairn -> its members, leader first (a cluster run)
RESULTS=$OUT           # where bench() writes: $OUT, or $OUT/cluster3

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  report_dead || true
  for s in "${!PID[@]}"; do stop_server "$s" || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release cairn cairn-bench cairn-ceiling

# members NAME: the servers behind NAME: itself, or its cluster's members.
members() { echo "${MEMBERS[$1]:-$1}"; }

# endpoint NAME: the client endpoints of NAME's members, comma-separated.
endpoint() {
  local m e=""
  for m in $(members "$1"); do e+="${e:+,}127.0.0.1:${PORT[$m]}"; done
  echo "$e"
}

CLK_TCK=$(getconf CLK_TCK)
# server_cpu_ticks NAME: user + system CPU so far (/proc/PID/stat), summed
# over NAME's members.
server_cpu_ticks() {
  local m
  for m in $(members "$1"); do cat "/proc/${PID[$m]}/stat"; done | awk '{ t += $14 + $15 } END { print t }'
}

# bench RUN SERVER ARGS...: one cairn-bench run, JSON into $RESULTS/RUN.SERVER.json
# and the server's CPU seconds (all its members') during the run into
# $RESULTS/RUN.SERVER.cpu.
bench() {
  local run=$1 s=$2
  shift 2
  local file="$RESULTS/$run.$s.json" before after
  before=$(server_cpu_ticks "$s")
  if ! "$BENCH" --endpoints "$(endpoint "$s")" --json "$@" >"$file" 2>"$RESULTS/$run.$s.stderr"; then
    log "  $run on $s reported errors (see $file)"
  fi
  after=$(server_cpu_ticks "$s")
  awk -v a="$before" -v b="$after" -v t="$CLK_TCK" 'BEGIN { printf "%.2f\n", (b - a) / t }' \
    >"$RESULTS/$run.$s.cpu"
  python3 - "$file" <<'EOF' >&2 || true
import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    l = d["latency_ms"]
    print("[bench]   %-5s %10.1f %s/s  p50 %8.3f  p99 %8.3f ms  errors %d"
          % (sys.argv[1].rsplit(".", 2)[1], d["throughput"], d["unit"], l["p50"], l["p99"], d["errors"]))
except Exception as e:
    print("[bench]   (no result: %s)" % e)
EOF
}

# both RUN ARGS...: the run against both servers; who goes first alternates.
ORDER_FLIP=0
both() {
  local run=$1
  shift
  log "$run: $*"
  # Other work on the machine skews the figures: keep the load next to them.
  echo "$run $(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS/loadavg.txt"
  if [ $ORDER_FLIP = 0 ]; then
    bench "$run" etcd "$@"; bench "$run" cairn "$@"; ORDER_FLIP=1
  else
    bench "$run" cairn "$@"; bench "$run" etcd "$@"; ORDER_FLIP=0
  fi
}

# --------------------------------------------------------------- machine
describe_machine "scale: $SCALE ($DURATION s per run, $LOAD_KEYS keys loaded)" >"$OUT/machine.txt"
log "results in $OUT"
sed 's/^/[bench] /' "$OUT/machine.txt" >&2

# single_member_runs: phase 1 (every workload, both servers up at once) and
# phase 2 (memory, disk and restart on a loaded store), one member each.
single_member_runs() {
  # ------------------------------------------- phase 1: the workload runs
  for s in etcd cairn; do PORT[$s]=$(free_port); done
  PEER[etcd]=$(free_port)
  start_server etcd "$WORK/etcd-run"
  start_server cairn "$WORK/cairn-run"
  wait_ready etcd
  wait_ready cairn

  RANGE_KEYS=10000
  log "preloading $RANGE_KEYS keys for range and mixed on both"
  for s in etcd cairn; do
    "$BENCH" --endpoints "$(endpoint "$s")" --clients 64 --conns 8 --total $RANGE_KEYS --json \
      put --key-prefix r/ --key-space $RANGE_KEYS --sequential-keys --val-size 256 >/dev/null ||
      die "preload on $s failed"
  done

  D="--duration $DURATION"
  for c in 1 4 16 64; do
    conns=$((c < 8 ? c : 8))
    both "put-c$c" $D --clients $c --conns $conns put --val-size 256 --key-space 100000
  done
  for c in 1 4 16 64; do
    conns=$((c < 8 ? c : 8))
    both "range-l-c$c" $D --clients $c --conns $conns range --consistency l \
      --key-space $RANGE_KEYS --no-preload
  done
  both range-s-c64 $D --clients 64 --conns 8 range --consistency s --key-space $RANGE_KEYS --no-preload
  both mixed-c64 $D --clients 64 --conns 8 mixed --val-size 256 --key-prefix r/ \
    --key-space $RANGE_KEYS --no-preload
  both txn-put-c64 $D --clients 64 --conns 8 txn-put --val-size 256
  both lease-keepalive-c64 $D --clients 64 --conns 8 lease-keepalive
  both watch $D --conns 8 watch --watchers 1000 --streams 100 --put-rate 1000 --drain-timeout 120
  both watch-max --total "$WATCH_MAX_PUTS" --conns 8 watch --watchers 1000 --streams 100 \
    --put-rate 0 --max-puts-in-flight 1024 --drain-timeout 120
  stop_server etcd
  stop_server cairn

  # ------------- the ceiling: the same client against a do-nothing server
  # (cmd/cairn-ceiling: Put and Range from memory on cairn's gRPC stack), alone
  # on the machine as each server was in its runs.
  PORT[ceiling]=$(free_port)
  start_server ceiling ""
  wait_ready ceiling
  "$BENCH" --endpoints "$(endpoint ceiling)" --clients 64 --conns 8 --total $RANGE_KEYS --json \
    put --key-prefix r/ --key-space $RANGE_KEYS --sequential-keys --val-size 256 >/dev/null ||
    die "preload on the ceiling failed"
  log "ceiling: put-c1, put-c64, range-l-c64, range-s-c64"
  bench put-c1 ceiling $D --clients 1 --conns 1 put --val-size 256 --key-space 100000
  bench put-c64 ceiling $D --clients 64 --conns 8 put --val-size 256 --key-space 100000
  bench range-l-c64 ceiling $D --clients 64 --conns 8 range --consistency l --key-space $RANGE_KEYS --no-preload
  bench range-s-c64 ceiling $D --clients 64 --conns 8 range --consistency s --key-space $RANGE_KEYS --no-preload
  stop_server ceiling

  # ----------------------- phase 2: memory, disk and restart on a loaded store
  for s in etcd cairn; do
    dir="$WORK/$s-load"
    log "$s: loading $LOAD_KEYS keys of 256 B"
    start_server "$s" "$dir"
    wait_ready "$s"
    bench load "$s" --clients 64 --conns 8 --total "$LOAD_KEYS" \
      put --key-prefix k/ --key-space "$LOAD_KEYS" --sequential-keys --val-size 256
    sleep 2  # let background flushes settle before measuring
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[$s]}/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/${PID[$s]}/status")
    disk_kb=$(du -sk "$dir" | cut -f1)
    stop_server "$s"
    log "$s: restarting on the loaded data"
    t0=$(date +%s%N)
    start_server "$s" "$dir"
    wait_ready "$s"
    t1=$(date +%s%N)
    restart_rss=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[$s]}/status")
    stop_server "$s"
    restart=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    printf '{"keys": %d, "rss_kb": %d, "hwm_kb": %d, "disk_kb": %d, "restart_seconds": %s, "restart_rss_kb": %d}\n' \
      "$LOAD_KEYS" "$rss" "$hwm" "$disk_kb" "$restart" "$restart_rss" >"$OUT/resources.$s.json"
    log "  $s: RSS $((rss / 1024)) MiB, disk $((disk_kb / 1024)) MiB, restart ${restart} s"
    rm -rf "$dir"
  done

  # ------------- phase 3: memory per watcher, one member each, fresh data dir
  # RSS before the watchers (idle), held with every watcher in place (3 s
  # after cairn-bench's --created-file appears: the creates' transient
  # allocations returned), and the maximum during the run (sampled every
  # 0.5 s), each less idle and divided by the watchers.
  for s in etcd cairn; do
    dir="$WORK/$s-watchers"
    log "$s: $WATCH_MEM_WATCHERS watchers on $WATCH_MEM_STREAMS streams for RSS per watcher"
    start_server "$s" "$dir"
    wait_ready "$s"
    "$BENCH" --endpoints "$(endpoint "$s")" --clients 1 --conns 1 --total 10 --json \
      put --key-prefix w/ --key-space 10 --sequential-keys >/dev/null || die "put on $s failed"
    sleep 1
    local idle created="$WORK/watchers-created" samples="$WORK/rss-samples" sampler
    idle=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[$s]}/status")
    rm -f "$created"
    echo "max $idle" >"$samples"
    (
      m=$idle held="" since=""
      while kill -0 "${PID[$s]}" 2>/dev/null; do
        r=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[$s]}/status" 2>/dev/null) || break
        [ -n "$r" ] || break
        [ "$r" -gt "$m" ] && m=$r
        if [ -z "$held" ] && [ -e "$created" ]; then
          now=$(date +%s%N)
          [ -n "$since" ] || since=$now
          [ $((now - since)) -ge 3000000000 ] && held=$r
        fi
        printf 'max %s\nheld %s\n' "$m" "$held" >"$samples"
        sleep 0.5
      done
    ) &
    sampler=$!
    bench watch-memory "$s" --conns 8 --duration "$WATCH_MEM_SECONDS" watch --key-prefix w/ \
      --watchers "$WATCH_MEM_WATCHERS" --streams "$WATCH_MEM_STREAMS" --put-rate 1 \
      --drain-timeout 30 --created-file "$created"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local max held
    max=$(awk '$1 == "max" {print $2}' "$samples")
    held=$(awk '$1 == "held" {print $2}' "$samples")
    printf '{"watchers": %d, "streams": %d, "rss_idle_kb": %d, "rss_held_kb": %s, "rss_max_kb": %d}\n' \
      "$WATCH_MEM_WATCHERS" "$WATCH_MEM_STREAMS" "$idle" "${held:-null}" "$max" \
      >"$OUT/resources-watchers.$s.json"
    log "  $s: idle RSS $((idle / 1024)) MiB, with the watchers ${held:-?} KiB held, $max KiB at most"
    stop_server "$s"
    rm -rf "$dir"
  done
}

# ------------------------------------------------- 3-member clusters
# Member I of SYSTEM's cluster is the server SYSTEM3-I (etcd3-1, cairn3-2, ...).
CLUSTER_SIZE=3
declare -A ALL_MEMBERS=()  # etcd/cairn -> its members in name order
declare -A INITIAL=()      # etcd/cairn -> its --initial-cluster

# start_member SYSTEM M: starts member M of SYSTEM's cluster, with the same
# etcd flags on etcd and cairn (etcd's default heartbeat and election timeout,
# given explicitly).
start_member() {
  local sys=$1 m=$2 url="http://127.0.0.1:${PORT[$2]}" peer="http://127.0.0.1:${PEER[$2]}"
  local flags=(--name "$m" --data-dir "$WORK/$m"
    --listen-client-urls "$url" --advertise-client-urls "$url"
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
    --initial-cluster "${INITIAL[$sys]}" --initial-cluster-token "bench-$sys"
    --initial-cluster-state new --heartbeat-interval 100 --election-timeout 1000)
  if [ "$sys" = etcd ]; then
    "$ETCD" "${flags[@]}" --logger zap --log-outputs stderr --log-level error \
      >>"$WORK/logs/$m.log" 2>&1 &
  else
    "$CAIRN" "${flags[@]}" --log-level warn >>"$WORK/logs/$m.log" 2>&1 &
  fi
  PID[$m]=$!
}

# leader_first SYSTEM: MEMBERS[SYSTEM] = its members, the leader first and the
# followers in name order, once every member reports the same leader
# (etcdctl endpoint status, which cairn answers as etcd does).
leader_first() {
  local sys=$1 m eps="" names=() order=""
  for m in ${ALL_MEMBERS[$sys]}; do
    eps+="${eps:+,}127.0.0.1:${PORT[$m]}"
    names+=("127.0.0.1:${PORT[$m]}=$m")
  done
  for _ in $(seq 60); do
    order=$(ETCDCTL_API=3 etcdctl --endpoints "$eps" --command-timeout 2s -w json endpoint status 2>/dev/null |
      python3 -c '
import json, sys
names = dict(a.split("=", 1) for a in sys.argv[1:])
status = json.load(sys.stdin)
ids = {e["Endpoint"]: e["Status"]["header"]["member_id"] for e in status}
leaders = {e["Status"]["leader"] for e in status}
if set(ids) != set(names) or len(leaders) != 1 or leaders.pop() not in ids.values():
    sys.exit(1)
leader = status[0]["Status"]["leader"]
print(" ".join(names[ep] for ep in sorted(names, key=lambda ep: (ids[ep] != leader, names[ep]))))
' "${names[@]}") && break
    order=""
    sleep 0.5
  done
  [ -n "$order" ] || die "$sys: its members do not agree on a leader; see $WORK/logs/${sys}3-*.log"
  MEMBERS[$sys]=$order
}

# check_run RUN: after a cluster run: every member still running, errors
# reported with the members' log tails, the leader unchanged.
check_run() {
  local run=$1 sys m before errors
  for sys in etcd cairn; do
    # cleanup() prints the log tail of a member that stopped.
    for m in ${ALL_MEMBERS[$sys]}; do
      kill -0 "${PID[$m]}" 2>/dev/null || die "$m stopped during $run"
    done
    errors=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["errors"])' \
      "$RESULTS/$run.$sys.json" 2>/dev/null || echo "no result")
    if [ "$errors" != 0 ]; then
      log "warning: $run on $sys: errors $errors; first lines of $RESULTS/$run.$sys.stderr and the members' log tails:"
      head -5 "$RESULTS/$run.$sys.stderr" 2>/dev/null | sed 's/^/[bench]   | /' >&2 || true
      for m in ${ALL_MEMBERS[$sys]}; do
        log "  $WORK/logs/$m.log:"
        tail -20 "$WORK/logs/$m.log" | sed 's/^/[bench]   | /' >&2 || true
      done
    fi
    before=${MEMBERS[$sys]%% *}
    leader_first "$sys"
    [ "${MEMBERS[$sys]%% *}" = "$before" ] ||
      log "warning: $sys: the leader changed during $run ($before -> ${MEMBERS[$sys]%% *})"
    echo "$run $sys leader $before after ${MEMBERS[$sys]%% *}" >>"$RESULTS/leaders.txt"
  done
}

# cluster_runs: the 3-member section; results in $OUT/cluster3.
cluster_runs() {
  local sys m i
  RESULTS=$OUT/cluster3
  mkdir -p "$RESULTS"
  {
    cat "$OUT/machine.txt"
    echo "cluster: $CLUSTER_SIZE members per system on loopback, heartbeat 100 ms, election timeout 1000 ms;" \
      "clients given every member's endpoint, leader first"
    echo "uptime before: $(uptime)"
  } >"$RESULTS/machine.txt"
  for sys in etcd cairn; do
    ALL_MEMBERS[$sys]=""
    INITIAL[$sys]=""
    for ((i = 1; i <= CLUSTER_SIZE; i++)); do
      m=$sys$CLUSTER_SIZE-$i
      PORT[$m]=$(free_port)
      PEER[$m]=$(free_port)
      ALL_MEMBERS[$sys]+="${ALL_MEMBERS[$sys]:+ }$m"
      INITIAL[$sys]+="${INITIAL[$sys]:+,}$m=http://127.0.0.1:${PEER[$m]}"
    done
  done
  log "starting a $CLUSTER_SIZE-member etcd and a $CLUSTER_SIZE-member cairn"
  for sys in etcd cairn; do
    for m in ${ALL_MEMBERS[$sys]}; do start_member "$sys" "$m"; done
  done
  for sys in etcd cairn; do
    for m in ${ALL_MEMBERS[$sys]}; do wait_ready "$m"; done
    leader_first "$sys"
    log "  $sys: leader ${MEMBERS[$sys]%% *}; endpoints $(endpoint "$sys")"
  done

  local range_keys=10000
  log "preloading $range_keys keys for range on both clusters"
  for sys in etcd cairn; do
    "$BENCH" --endpoints "$(endpoint "$sys")" --clients 64 --conns 8 --total $range_keys --json \
      put --key-prefix r/ --key-space $range_keys --sequential-keys --val-size 256 >/dev/null ||
      die "preload on the $sys cluster failed"
  done

  local D="--duration $DURATION"
  both put-c1 $D --clients 1 --conns 1 put --val-size 256 --key-space 100000
  check_run put-c1
  both put-c64 $D --clients 64 --conns 8 put --val-size 256 --key-space 100000
  check_run put-c64
  both range-l-c64 $D --clients 64 --conns 8 range --consistency l --key-space $range_keys --no-preload
  check_run range-l-c64
  both range-s-c64 $D --clients 64 --conns 8 range --consistency s --key-space $range_keys --no-preload
  check_run range-s-c64

  for sys in etcd cairn; do
    for m in ${ALL_MEMBERS[$sys]}; do stop_server "$m"; done
    unset "MEMBERS[$sys]"
  done
  echo "uptime after: $(uptime)" >>"$RESULTS/machine.txt"
  RESULTS=$OUT
}

[ "$RUN_SINGLE" = 0 ] || single_member_runs
[ "$RUN_CLUSTER" = 0 ] || cluster_runs

# ------------------------------------------------------------ the report
if [ "$RUN_SINGLE" = 1 ]; then
  awk '{ n++; s += $2; if ($2 > m) m = $2 } END { if (n) printf "load average (1 min) at the start of each run: mean %.1f, max %.1f\n", s / n, m }' \
    "$OUT/loadavg.txt" >>"$OUT/machine.txt"
  python3 "$ROOT/scripts/bench_report.py" table "$OUT" >"$OUT/table.md"
  python3 "$ROOT/scripts/bench_report.py" ceiling "$OUT" >"$OUT/ceiling.md"
  if [ -n "$PLOT" ]; then
    mkdir -p "$(dirname "$PLOT")"
    gnuplot "$(python3 "$ROOT/scripts/bench_report.py" plot "$OUT" "$PLOT")"
    log "plot: $PLOT"
  fi
  echo
  cat "$OUT/machine.txt"
  echo
  cat "$OUT/table.md"
  echo
  echo "Against the ceiling (cmd/cairn-ceiling: the same client, Put and Range from memory):"
  echo
  cat "$OUT/ceiling.md"
fi
if [ "$RUN_CLUSTER" = 1 ]; then
  C=$OUT/cluster3
  awk '{ n++; s += $2; if ($2 > m) m = $2 } END { if (n) printf "load average (1 min) at the start of each run: mean %.1f, max %.1f\n", s / n, m }' \
    "$C/loadavg.txt" >>"$C/machine.txt"
  python3 "$ROOT/scripts/bench_report.py" table "$C" >"$C/table.md"
  echo
  echo "3 members: cairn against etcd"
  cat "$C/machine.txt"
  echo
  cat "$C/table.md"
fi
