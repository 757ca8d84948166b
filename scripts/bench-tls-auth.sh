#!/usr/bin/env bash
# bench-tls-auth.sh: what TLS and auth cost, cairn against etcd. One member of
# each, started in turn on loopback: plaintext, mutual TLS (client URL https,
# --client-cert-auth) and plaintext with auth on (root signed in once with
# cairn-bench --user); put and linearizable range with 64 clients / 8
# connections. Prints one line per run (ops/s, p50, p99, server CPU per op).
# Figures of a run are in docs/benchmarks.md ("Over mutual TLS", "Auth on
# against auth off").
#
# Environment: BENCH_SECONDS=8 per run, BENCH_ROUNDS=2, BENCH_BUILD=build-release
# (configured Release and built if missing), BENCH_TMP=/var/tmp, ETCD=/usr/bin/etcd.
# Every server started is stopped on exit and the temp dir removed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-2}
BUILD=${BENCH_BUILD:-$ROOT/build-release}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
ETCD=${ETCD:-/usr/bin/etcd}
TCK=$(getconf CLK_TCK)
command -v "$ETCD" >/dev/null || { echo "etcd not found; run scripts/setup.sh" >&2; exit 1; }
[ -f "$BUILD/Makefile" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target cairn cairn-bench -j"${JOBS:-2}" >/dev/null
BENCH=$BUILD/cmd/cairn-bench
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/cairn-bench-tls.XXXXXX")
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
# Certificates from the tests' own helper (openssl; EC P-256).
CA=$WORK/ca
(cd "$ROOT/tests" && /usr/bin/python3 -c "
import sys, tls_certs
ca = tls_certs.CertAuthority(sys.argv[1]); ca.issue('server', server=True); ca.issue('root')" "$CA")

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run ROUND SERVER MODE: start SERVER (cairn|etcd) in MODE (plain|mtls|auth), bench, stop.
run() {
  local round=$1 srv=$2 mode=$3 bin=$BUILD/cmd/cairn scheme=http tls=() client=()
  [ "$srv" = etcd ] && bin=$ETCD
  local cport pport
  cport=$(free_port)
  pport=$(free_port)
  if [ "$mode" = mtls ]; then
    scheme=https
    tls=(--cert-file "$CA/server.crt" --key-file "$CA/server.key" --trusted-ca-file "$CA/ca.crt" --client-cert-auth)
    client=(--cacert "$CA/ca.crt" --cert "$CA/root.crt" --key "$CA/root.key")
  fi
  rm -rf "$WORK/data"
  "$bin" --name default --data-dir "$WORK/data" \
    --listen-client-urls "$scheme://127.0.0.1:$cport" --advertise-client-urls "$scheme://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "default=http://127.0.0.1:$pport" "${tls[@]}" >"$WORK/$srv-$mode.log" 2>&1 &
  PID=$!
  "$BENCH" --endpoints "127.0.0.1:$cport" "${client[@]}" ready --wait 30 >/dev/null
  if [ "$mode" = auth ]; then
    etcdctl --endpoints "127.0.0.1:$cport" user add root:pw >/dev/null
    etcdctl --endpoints "127.0.0.1:$cport" auth enable >/dev/null 2>&1
    client=(--user root:pw)
  fi
  local wl before after out
  for wl in "put --val-size 256 --key-space 100000" "range --consistency l --key-space 10000"; do
    before=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    # shellcheck disable=SC2086
    out=$("$BENCH" --endpoints "127.0.0.1:$cport" "${client[@]}" --clients 64 --conns 8 --json \
      --duration "$SECS" $wl | tail -1) || true
    after=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1]); l = d["latency_ms"]; n = max(d["ok"], 1)
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / float(sys.argv[4])
print("round %s %-5s %-5s %-5s %9.0f ops/s  p50 %6.2f  p99 %6.2f ms  server CPU/op %6.1f us  errors %d"
      % (tuple(sys.argv[5:9]) + (d["throughput"], l["p50"], l["p99"], cpu / n * 1e6, d["errors"])))' \
      "$out" "$before" "$after" "$TCK" "$round" "$srv" "$mode" "${wl%% *}"
  done
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

for round in $(seq "$ROUNDS"); do
  for srv in cairn etcd; do
    for mode in plain mtls auth; do run "$round" "$srv" "$mode"; done
  done
done
