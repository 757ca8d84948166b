#!/bin/sh
# Installs every Debian package cairn needs to build, run and test. Idempotent:
# packages already present are skipped, so running it again costs a second.
set -eu
PKGS="build-essential cmake ccache pkg-config
libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
librocksdb-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
libcrypt-dev libjwt-dev libjemalloc-dev libboost-dev prometheus-cpp-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
etcd-server etcd-client python3 python3-etcd3 python3-grpcio python3-pytest
curl openssl gnuplot-nox"
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  echo "setup: installing:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
fi
