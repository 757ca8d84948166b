# bench-lib.sh: shell functions shared by scripts/bench-vs-etcd.sh and
# scripts/bench-scale.sh (sourced, not run): logging, the Release build,
# starting and stopping single servers, the machine description.
#
# The sourcing script sets, before calling them:
#   ROOT, BUILD, JOBS, ETCD   the repository, the build dir, build parallelism, etcd
#   WORK                      its temp dir (logs go to $WORK/logs)
#   BENCH_TAG                 the log prefix ("bench" if unset)
# and declares the associative arrays PID, PORT and PEER (server -> pid,
# client port, peer port). SERVER_FLAGS (an array, empty if unset) is appended
# to the command line of every etcd and cairn that start_server starts.

log() { printf '[%s %s] %s\n' "${BENCH_TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# build_release TARGET...: configures $BUILD as Release if new, builds the
# targets with -j$JOBS (log in $WORK/logs/build.log) and sets CAIRN, BENCH,
# CEILING and build_type.
build_release() {
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    log "configuring $BUILD (Release)"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/logs/build.log" 2>&1 ||
      { tail -30 "$WORK/logs/build.log" >&2; die "cmake configure failed"; }
  fi
  local names="$*"
  names=${names// /, }
  [ $# -lt 2 ] || names="${names%, *} and ${names##*, }"
  log "building $names in $BUILD (-j$JOBS)"
  cmake --build "$BUILD" --target "$@" -j"$JOBS" >>"$WORK/logs/build.log" 2>&1 ||
    { tail -30 "$WORK/logs/build.log" >&2; die "build failed"; }
  CAIRN=$BUILD/cmd/cairn
  BENCH=$BUILD/cmd/cairn-bench
  CEILING=$BUILD/cmd/cairn-ceiling
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
  [ "$build_type" = Release ] || log "warning: $BUILD is a $build_type build, not Release"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------ processes
# start_server NAME DATA_DIR: starts etcd or cairn on its ports.
start_server() {
  local s=$1 dir=$2 url="http://127.0.0.1:${PORT[$1]}"
  mkdir -p "$WORK/logs"
  if [ "$s" = ceiling ]; then
    "$CEILING" --listen "127.0.0.1:${PORT[ceiling]}" >>"$WORK/logs/ceiling.log" 2>&1 &
  elif [ "$s" = etcd ]; then
    local peer="http://127.0.0.1:${PEER[etcd]}"
    "$ETCD" --name n1 --data-dir "$dir" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "n1=$peer" --logger zap --log-outputs stderr --log-level error \
      ${SERVER_FLAGS[@]+"${SERVER_FLAGS[@]}"} >>"$WORK/logs/etcd.log" 2>&1 &
  else
    "$CAIRN" --name n1 --data-dir "$dir" \
      --listen-client-urls "$url" --advertise-client-urls "$url" --log-level warn \
      ${SERVER_FLAGS[@]+"${SERVER_FLAGS[@]}"} >>"$WORK/logs/cairn.log" 2>&1 &
  fi
  PID[$s]=$!
}

# wait_ready NAME: until the server answers a Range (cairn-bench ready).
wait_ready() {
  "$BENCH" --endpoints "127.0.0.1:${PORT[$1]}" --json ready --wait 300 >/dev/null ||
    die "$1 did not answer a Range; see $WORK/logs/$1.log"
}

# stop_server NAME: SIGTERM, then SIGKILL after 30 s.
stop_server() {
  local s=$1 pid=${PID[$1]:-}
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PID[$s]"
}

# report_dead: the log tail of every started server that is no longer running
# (it crashed or exited on its own: a bug to report). Returns 1 if there was one.
report_dead() {
  local s dead=0
  for s in "${!PID[@]}"; do
    kill -0 "${PID[$s]}" 2>/dev/null && continue
    dead=1
    log "error: $s (pid ${PID[$s]}) is not running; last lines of $WORK/logs/$s.log:"
    tail -40 "$WORK/logs/$s.log" 2>/dev/null | sed "s/^/[${BENCH_TAG:-bench}]   | /" >&2 || true
  done
  [ "$dead" = 0 ]
}

# --------------------------------------------------------------- machine
# describe_machine RUN_LINE: the machine description (date, RUN_LINE, CPU,
# memory, disk with what one synced 4 KiB write costs on it, the versions).
describe_machine() {
  local run_line=$1 fsync_ms cpu dev disk fstype
  # What one synced 4 KiB write costs on this disk: the floor of a put's latency.
  fsync_ms=$(dd if=/dev/zero of="$WORK/fsync-probe" bs=4k count=200 oflag=dsync 2>&1 |
    awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) * 1000 / 200 }')
  rm -f "$WORK/fsync-probe"
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  dev=$(df --output=source "$WORK" | tail -1)
  fstype=$(df --output=fstype "$WORK" | tail -1)
  disk=$(lsblk -no NAME,SIZE,ROTA,MODEL "$dev" 2>/dev/null | head -1 | tr -s ' ' || true)
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "$run_line"
  echo "cpu: $(nproc) x ${cpu:-unknown}"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "disk: $dev ($fstype) ${disk:-}; ${fsync_ms:-?} ms per 4 KiB O_DSYNC write (dd)"
  echo "etcd: $("$ETCD" --version | head -1)"
  echo "cairn: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown) ($build_type)"
}
