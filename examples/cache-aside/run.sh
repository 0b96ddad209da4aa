#!/usr/bin/env bash
# Cache-aside in front of a real SQLite database (cache_aside.py), with
# stampede protection (shmkv.Cache.get_or_compute):
#
#   bash examples/cache-aside/run.sh
#
# Builds libshmkv if needed, builds the sample database on first run
# (200 000 orders, reused by later runs), then prints the timings of a slow
# aggregate query uncached, on a miss and cached; runs 8 processes that
# miss at once and sums the queries the database actually ran (1); shows
# that the next call after the TTL queries again, once; and that
# serve_stale returns the expired report at once while another process
# recomputes it. Exit status 0 when every check passed. The segment is
# removed on exit.
#
# Arguments go to cache_aside.py: --db PATH, --orders N, --ttl SECONDS,
# --processes N, --start-method fork|spawn (see --help).
#
# Environment: SHMKV_LIB (default: build the library in $SHMKV_BUILD_DIR,
# default build). When nothing is built yet, scripts/setup.sh installs and
# builds what is needed first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
python=/usr/bin/python3
# shellcheck source=examples/lib/build.sh
source examples/lib/build.sh

shmkv_example_lib --quiet
export PYTHONPATH="$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

segment="shmkv-cache-aside-$$"
cleanup() {
  "$python" -c "import shmkv, sys; shmkv.unlink(sys.argv[1])" "$segment" || true
}
trap cleanup EXIT

"$python" "$root/examples/cache-aside/cache_aside.py" --segment "$segment" "$@"
