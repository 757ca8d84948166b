#!/usr/bin/env bash
# trace-put-path.sh: where one put's time goes on a cairn cluster. Starts
# MEMBERS (3) cairn members on loopback with the latency trace on
# (CAIRN_TRACE, src/common/trace_points.h), runs cmd/cairn-bench with one
# client against the leader for SECONDS (8), stops the members (their traces
# are written at exit) and prints the median and p90 time of each stage after
# the leader took the proposal (scripts/trace_put_path.py).
#
# Environment: MEMBERS=3, SECONDS_PER_RUN=8, BUILD=build-release (built if
# needed), TRACE_TMP=/var/tmp (a disk: fsync must cost what it costs),
# PORT_BASE=24010 (client ports PORT_BASE, +10, +20; peer ports +1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MEMBERS=${MEMBERS:-3}
SECS=${SECONDS_PER_RUN:-8}
BUILD=${BUILD:-$ROOT/build-release}
PORT_BASE=${PORT_BASE:-24010}
[ -f "$BUILD/Makefile" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target cairn cairn-bench -j"${JOBS:-2}" >/dev/null
WORK=$(mktemp -d "${TRACE_TMP:-/var/tmp}/cairn-trace.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
initial=""
for ((i = 0; i < MEMBERS; i++)); do initial+="${initial:+,}m$i=http://127.0.0.1:$((PORT_BASE + i * 10 + 1))"; done
endpoints=""
for ((i = 0; i < MEMBERS; i++)); do
  c=$((PORT_BASE + i * 10))
  CAIRN_TRACE=$WORK/m$i.trace "$BUILD/cmd/cairn" --name m$i --data-dir "$WORK/m$i" \
    --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
    --listen-peer-urls http://127.0.0.1:$((c + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((c + 1)) \
    --initial-cluster "$initial" --initial-cluster-token trace --initial-cluster-state new >"$WORK/m$i.log" 2>&1 &
  pids+=($!)
  endpoints+="${endpoints:+,}127.0.0.1:$c"
done
leader=""
for _ in $(seq 100); do  # at most 10 s for a leader
  leader=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status 2>/dev/null | awk -F', ' '$5 == "true" {print $1}' || true)
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "trace-put-path.sh: no leader" >&2; exit 1; }
"$BUILD/cmd/cairn-bench" --endpoints "$leader" --clients 1 --conns 1 --duration "$SECS" \
  put --val-size 256 --key-space 100000 | grep -E "throughput|all "
for p in "${pids[@]}"; do kill "$p"; done
wait || true
pids=()
leader_i=$(( (${leader##*:} - PORT_BASE) / 10 ))
files=("$WORK/m$leader_i.trace")
for ((i = 0; i < MEMBERS; i++)); do [ $i = $leader_i ] || files+=("$WORK/m$i.trace"); done
/usr/bin/python3 "$ROOT/scripts/trace_put_path.py" "${files[@]}"
