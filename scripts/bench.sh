#!/usr/bin/env bash
# Runs the peer comparison suite (issue 6): shmkv side by side with Redis,
# memcached, a Boost.Interprocess map and in-process maps, in one run, on the
# same data. Writes bench/results/latest.md (the table), latest.csv and PNG
# charts, and prints the table. Then the near-cache benchmark
# (bench/near/bench_near.cc: NearCache::Get hits against Redis GET, and the
# invalidation delay of shmkvd --upstream), which adds its "Near cache"
# section to the same latest.md.
#
#   bash scripts/bench.sh              # the full suite (about 10 minutes)
#   bash scripts/bench.sh --smoke      # a reduced run of about a minute (CI);
#                                      # results in build-bench/smoke-results/,
#                                      # so that bench/results/ keeps the full run
#   bash scripts/bench.sh --near-only  # only the near-cache benchmark (about a
#                                      # minute; with --smoke, a few seconds): the
#                                      # peers' sections of latest.md are kept
#
# Other arguments go to the peer driver (bench/peers/bench_peers.cc lists
# them in its header), e.g. --peers=shmkv,redis or --reps=5; with
# --near-only they go to bench_near instead (its header lists them), e.g.
# --rounds=9.
#
# Idempotent: installs only the packages that are missing (apt-get update
# only then), reconfigures and rebuilds incrementally. It starts its own
# redis-server and memcached on unix sockets in a temporary directory (no
# TCP, no persistence) and stops them on exit, whatever happens; bench_near
# starts its own redis-server (unix socket and 127.0.0.1) and shmkvd, and
# removes them and its segments itself (this script too, if it was killed).
#
# Environment: SHMKV_BENCH_BUILD_DIR (default build-bench), SHMKV_JOBS
# (default: nproc), SHMKV_BENCH_OUT (default bench/results, or
# $SHMKV_BENCH_BUILD_DIR/smoke-results with --smoke).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What the suite needs beyond scripts/setup.sh:
#   redis-server memcached          the server peers
#   libhiredis-dev libmemcached-dev their C clients
#   libabsl-dev                     absl::flat_hash_map (the in-process ceiling)
#   gnuplot-nox                     the charts
#   valgrind                        callgrind instruction counts
# and to build at all (in case setup.sh never ran):
#   build-essential cmake ninja-build pkg-config libboost-dev libxxhash-dev
#   libbenchmark-dev
PACKAGES=(
  redis-server memcached
  libhiredis-dev libmemcached-dev
  libabsl-dev
  gnuplot-nox
  valgrind
  build-essential cmake ninja-build pkg-config
  libboost-dev libxxhash-dev libbenchmark-dev
)

# shellcheck source=scripts/lib/packages.sh
source scripts/lib/packages.sh
APT_INSTALL_OPTS=(--no-install-recommends)
ensure_packages bench "${PACKAGES[@]}"
if ((packages_added)); then
  # Debian starts the services it installs where it can: the suite runs its
  # own instances, so stop those (they would only compete for the cores).
  for svc in redis-server memcached; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      "${as_root[@]}" systemctl stop "$svc" || true
    elif command -v service >/dev/null 2>&1; then
      "${as_root[@]}" service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
else
  echo "bench: all ${#PACKAGES[@]} packages already installed"
fi

build_dir="${SHMKV_BENCH_BUILD_DIR:-build-bench}"
jobs="${SHMKV_JOBS:-$(nproc)}"
smoke=0
near_only=0
args=()
for arg in "$@"; do
  case "$arg" in
    --near-only) near_only=1 ;;
    --smoke) smoke=1 && args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done
if ((smoke)); then
  out_dir="${SHMKV_BENCH_OUT:-$build_dir/smoke-results}"
else
  out_dir="${SHMKV_BENCH_OUT:-bench/results}"
fi
# Release: the numbers are about the optimised library. Tests and examples
# are not needed here.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=ON -DSHMKV_BUILD_EXAMPLES=OFF -DSHMKV_SANITIZE= \
  >/dev/null
targets=(bench_near)
((near_only)) || targets+=(bench_peers)
cmake --build "$build_dir" --parallel "$jobs" --target "${targets[@]}"
driver="$build_dir/bench/bench_peers"
near="$build_dir/bench/bench_near"

tmp="$(mktemp -d /tmp/shmkv-bench.XXXXXX)"
pids=()
driver_pid=
near_pid=
cleanup() {
  if [[ -n "$driver_pid" ]]; then
    kill "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
    # Segments of an interrupted run (the driver removes its own otherwise);
    # their names carry the driver's pid.
    rm -f /dev/shm/peers-"$driver_pid"-* 2>/dev/null || true
  fi
  if [[ -n "$near_pid" ]]; then
    # On SIGTERM bench_near kills its redis-server and shmkvd and removes its
    # segments; if it was killed itself, the kernel sent its children
    # SIGTERM, and its segments (named with its pid) are removed here.
    kill "$near_pid" 2>/dev/null || true
    wait "$near_pid" 2>/dev/null || true
    rm -f /dev/shm/shmkv-near-bench-"$near_pid"-* 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if mountpoint -q "$tmp/huge" 2>/dev/null; then
    umount "$tmp/huge" 2>/dev/null || umount -l "$tmp/huge" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- 2>/dev/null; then
  commit="$commit+uncommitted"
fi
mkdir -p "$out_dir"

# The near cache: after the peers, whose report rewrites latest.md; it
# replaces its own section there or appends it. Its directory is in $tmp.
run_near() {
  local near_args=(--out="$out_dir" --commit="$commit" --dir="$tmp/near")
  ((smoke)) && near_args+=(--smoke)
  ((near_only)) && near_args+=("${args[@]}")
  local t0
  t0=$(date +%s)
  "$near" "${near_args[@]}" &
  near_pid=$!
  wait "$near_pid"
  near_pid=
  echo "bench: near cache done in $(($(date +%s) - t0)) s; results in $out_dir/latest.md"
}
if ((near_only)); then
  run_near
  exit 0
fi

# redis: no TCP, no RDB or AOF. The "evict" instance is small and evicts (the
# set_new_evict workload); the main one holds everything without evicting.
start_redis() {  # name maxmemory
  local conf=(--port 0 --unixsocket "$tmp/$1.sock" --unixsocketperm 700
    --save '' --appendonly no --dir "$tmp" --daemonize no --loglevel warning
    --logfile "$tmp/$1.log")
  if [[ "$2" != 0 ]]; then
    conf+=(--maxmemory "$2" --maxmemory-policy allkeys-lru)
  fi
  redis-server "${conf[@]}" &
  pids+=($!)
}
# memcached: unix socket only (-s disables TCP and UDP). The main instance
# gets 4 GiB (-m 4096): the 16-KiB scenario alone stores 1.6 GB of values,
# and memcached keeps slab pages with the class they were first given to.
start_memcached() {  # name megabytes
  local user=()
  ((EUID == 0)) && user=(-u root)
  memcached -s "$tmp/$1.sock" -a 0700 -m "$2" -c 64 "${user[@]}" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
}
start_redis redis 0
start_redis redis-evict 8mb
start_memcached memcached 4096
start_memcached memcached-evict 8

for sock in redis redis-evict memcached memcached-evict; do
  for _ in $(seq 100); do
    [[ -S "$tmp/$sock.sock" ]] && break
    sleep 0.05
  done
  if [[ ! -S "$tmp/$sock.sock" ]]; then
    echo "bench: $sock did not start:" >&2
    cat "$tmp/$sock.log" >&2 || true
    exit 1
  fi
done

# shmkv-huge: shmkv with its segments on 2-MiB pages (README "Huge pages"),
# in a tmpfs mounted here with huge=within_size. Mounting needs root; without
# it (or where the kernel refuses) that peer is reported as not run.
huge_args=()
mkdir -p "$tmp/huge"
if ((EUID == 0)) && mount -t tmpfs -o huge=within_size,mode=0700 shmkv-bench-huge "$tmp/huge" 2>/dev/null; then
  huge_args=(--huge-dir="$tmp/huge")
else
  echo "bench: no huge-page tmpfs (needs root and a kernel with shmem THP): shmkv-huge does not run"
fi

start=$(date +%s)
"$driver" --redis="$tmp/redis.sock" --redis-evict="$tmp/redis-evict.sock" \
  --memcached="$tmp/memcached.sock" --memcached-evict="$tmp/memcached-evict.sock" \
  --out="$out_dir" --commit="$commit" "${huge_args[@]}" "${args[@]}" &
driver_pid=$!
wait "$driver_pid"
driver_pid=

if command -v gnuplot >/dev/null 2>&1; then
  gnuplot -e "dir='$out_dir'" bench/peers/charts.gp
else
  echo "bench: gnuplot not found: no charts" >&2
fi
echo "bench: done in $(($(date +%s) - start)) s; results in $out_dir/latest.md"
run_near
