#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the quick-start demo:
# shmkvd creates a segment and looks after it, four worker processes share
# it, and `shmkv info` and `shmkv stats` show what happened.
#
#   bash scripts/demo.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo

build="${SHMKV_BUILD_DIR:-build}"
segment="shmkv-demo-$$"
"$build/daemon/shmkvd" --segment "$segment" --create --memory 16M --interval 50ms \
  --log-level info &
janitor=$!
cleanup() {
  kill -TERM "$janitor" 2>/dev/null && wait "$janitor" 2>/dev/null || true
  "$build/tools/shmkv" destroy "$segment" --yes >/dev/null 2>&1 || true
}
trap cleanup EXIT

# shmkvd creates the segment before it reports ready: wait for it.
for _ in $(seq 100); do
  "$build/tools/shmkv" info "$segment" >/dev/null 2>&1 && break
  kill -0 "$janitor" 2>/dev/null || { echo "demo: shmkvd exited" >&2; exit 1; }
  sleep 0.1
done

rc=0
"$build/examples/demo/shmkv_demo" "$segment" || rc=$?
echo
echo "\$ shmkv info $segment"
"$build/tools/shmkv" info "$segment"
echo
echo "\$ shmkv stats $segment"
"$build/tools/shmkv" stats "$segment"
exit "$rc"
