#!/usr/bin/env bash
# cluster.sh: a cluster of cairn members on this machine (loopback), in the
# foreground; Ctrl-C (or SIGTERM) stops them all. `make cluster` runs it.
#
# The ports and names follow etcd's own Procfile: members infra1..infraN,
# client URLs 127.0.0.1:2379, :22379, :32379 and peer URLs :12380, :22380,
# :32380. Data dirs go to $CLUSTER_DIR/infraN (kept across runs: a second run
# restarts the same cluster; remove the folder for a new one).
#
# Environment (all optional):
#   CLUSTER_SIZE=3                         members (at most as many ports as given)
#   CLUSTER_DIR=cluster.cairn              where the data dirs and logs go
#   CLUSTER_CLIENT_PORTS="2379 22379 32379"
#   CLUSTER_PEER_PORTS="12380 22380 32380"
#   CLUSTER_TOKEN=etcd-cluster-1
#   CAIRN=build/cmd/cairn
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${CLUSTER_SIZE:-3}
DIR=${CLUSTER_DIR:-cluster.cairn}
read -r -a CLIENT <<< "${CLUSTER_CLIENT_PORTS:-2379 22379 32379}"
read -r -a PEER <<< "${CLUSTER_PEER_PORTS:-12380 22380 32380}"
TOKEN=${CLUSTER_TOKEN:-etcd-cluster-1}
CAIRN=${CAIRN:-$ROOT/build/cmd/cairn}
[ "$SIZE" -le "${#CLIENT[@]}" ] && [ "$SIZE" -le "${#PEER[@]}" ] ||
  { echo "cluster.sh: $SIZE members but only ${#CLIENT[@]} client / ${#PEER[@]} peer ports" >&2; exit 1; }
[ -x "$CAIRN" ] || { echo "cluster.sh: $CAIRN not built (make build-server)" >&2; exit 1; }

initial=""
for ((i = 0; i < SIZE; i++)); do
  initial+="${initial:+,}infra$((i + 1))=http://127.0.0.1:${PEER[i]}"
done

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT

mkdir -p "$DIR"
for ((i = 0; i < SIZE; i++)); do
  name=infra$((i + 1))
  "$CAIRN" --name "$name" --data-dir "$DIR/$name" \
    --listen-client-urls "http://127.0.0.1:${CLIENT[i]}" \
    --advertise-client-urls "http://127.0.0.1:${CLIENT[i]}" \
    --listen-peer-urls "http://127.0.0.1:${PEER[i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${PEER[i]}" \
    --initial-cluster "$initial" --initial-cluster-token "$TOKEN" \
    --initial-cluster-state new >> "$DIR/$name.log" 2>&1 &
  pids+=($!)
  echo "cluster.sh: $name on 127.0.0.1:${CLIENT[i]} (peer ${PEER[i]}), log $DIR/$name.log"
done
echo "cluster.sh: $SIZE members running; Ctrl-C stops them"
# A member that exits (or is killed, to try a failover) leaves the others
# running; the script ends when all have.
wait || true
