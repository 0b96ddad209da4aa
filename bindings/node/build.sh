#!/usr/bin/env bash
# Builds what the Node.js binding needs before it can be loaded from this
# tree; sourced by test.sh and by the examples that use the binding
# (examples/lib/node/example.sh), and runnable by hand:
#
#   bash bindings/node/build.sh                      # builds libshmkv in build-node/
#   SHMKV_LIB_DIR=build/lib bash bindings/node/build.sh
#
# Sourcing it defines two functions:
#
#   shmkv_node_build   the three steps below; exports SHMKV_LIB_DIR.
#   shmkv_npm_ci DIR   `npm ci --ignore-scripts` in DIR when its
#                      node_modules is missing or older than its
#                      package-lock.json.
#
# Steps:
#   1. libshmkv.so: from $SHMKV_LIB_DIR, else built here (target shmkv only)
#      in $SHMKV_BUILD_DIR (default build-node/ at the top of the repository).
#   2. node_modules: `npm ci --ignore-scripts` when missing or older than
#      package-lock.json. Install scripts are skipped on purpose: nothing
#      here needs one (sqlite3, a dependency of @keyv/test-suite, would
#      compile for a minute and is never loaded), and the addon is built
#      explicitly in the next step.
#   3. the addon: cmake-js configure + build into build/Release/shmkv.node, linked
#      to that libshmkv.so with a run path to it.
#
# Runs that overlap (node_tests and an example's test under `ctest -j`)
# take turns on a lock file in build/: steps 2 and 3 rewrite this directory.

shmkv_node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

shmkv_npm_ci() {
  # npm writes node_modules/.package-lock.json on every install; a lock file
  # newer than it means the tree is stale.
  if [[ ! -f "$1/node_modules/.package-lock.json" ||
    "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]]; then
    (cd "$1" && npm ci --ignore-scripts --no-audit --no-fund)
  else
    echo "up to date"
  fi
}

shmkv_node_build() {
  local repo build_dir lock
  repo="$(cd "$shmkv_node_dir/../.." && pwd)"
  mkdir -p "$shmkv_node_dir/build"
  exec {lock}>"$shmkv_node_dir/build/.lock"
  flock "$lock"

  echo "== libshmkv"
  if [[ -z "${SHMKV_LIB_DIR:-}" ]]; then
    build_dir="${SHMKV_BUILD_DIR:-$repo/build-node}"
    cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=OFF -DSHMKV_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build_dir" --target shmkv
    SHMKV_LIB_DIR="$build_dir/lib"
  fi
  SHMKV_LIB_DIR="$(cd "$SHMKV_LIB_DIR" && pwd)"
  export SHMKV_LIB_DIR
  echo "using $SHMKV_LIB_DIR"

  echo "== node_modules"
  shmkv_npm_ci "$shmkv_node_dir"

  echo "== addon"
  # configure every time: it looks libshmkv up again, and SHMKV_LIB_DIR may
  # differ from the last build's (a plain `compile` reuses the old cache).
  (
    cd "$shmkv_node_dir"
    npx --no-install cmake-js configure --out build --log-level warn >/dev/null
    npx --no-install cmake-js build --out build --log-level warn
  )
  exec {lock}>&-
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  shmkv_node_build
fi
