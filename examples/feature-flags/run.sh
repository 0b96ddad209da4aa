#!/usr/bin/env bash
# Feature flags shared by running workers, flipped from the command line.
#
#   bash examples/feature-flags/run.sh
#
# Builds the shmkv CLI and the feature_flags worker if needed (CMake, in
# ${SHMKV_BUILD_DIR:-build}), creates a segment, seeds the flags with
# `shmkv set ... --noevict`, starts four workers that each read the flags on
# every request, then changes and deletes flags with the CLI while they run:
# every worker answers its next request with the new value. Exit status 0
# when every worker saw every change on its next request.
#
# Environment: SHMKV_BUILD_DIR (default build); SHMKV_CLI and
# FEATURE_FLAGS_WORKER, the two programs, to skip the build;
# FEATURE_FLAGS_SEGMENT, the segment name (default feature-flags-demo-PID).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=examples/lib/build.sh
source examples/lib/build.sh

build="$(shmkv_example_build_dir)"
if [[ -z "${SHMKV_CLI:-}" || -z "${FEATURE_FLAGS_WORKER:-}" ]]; then
  # A configured build tree is only rebuilt incrementally (examples on).
  shmkv_example_build --no-setup --quiet shmkv_cli feature_flags
fi
shmkv="${SHMKV_CLI:-$build/tools/shmkv}"
worker="${FEATURE_FLAGS_WORKER:-$build/examples/feature-flags/feature_flags}"
segment="${FEATURE_FLAGS_SEGMENT:-feature-flags-demo-$$}"
workers=4

tmp="$(mktemp -d)"
pids=()
to=()    # write ends: requests to worker i
from=()  # read ends: answers of worker i
cleanup() {
  for fd in "${to[@]}" "${from[@]}"; do exec {fd}>&-; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$shmkv" destroy "$segment" --yes >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap '' PIPE  # a worker that died is reported, not fatal to the script

run() {
  echo "\$ shmkv $*"
  "$shmkv" "$@"
}

# Sends one request to every worker and prints each answer; every answer
# must contain each of the expected KEY=VALUE words.
failures=0
request_all() {
  local i answer want
  for ((i = 0; i < workers; i++)); do
    if ! echo "GET /checkout" 2>/dev/null >&"${to[i]}"; then
      echo "run.sh: worker $i is gone" >&2
      exit 1
    fi
    if ! read -r -t 10 -u "${from[i]}" answer; then
      echo "run.sh: worker $i did not answer" >&2
      exit 1
    fi
    echo "  $answer"
    for want in "$@"; do
      if [[ " $answer " != *" $want "* ]]; then
        echo "  FAIL worker $i: expected $want"
        failures=$((failures + 1))
      fi
    done
  done
}

run create "$segment" --memory 8M
run set "$segment" flag:checkout_v2 off --noevict
run set "$segment" flag:dark_mode on --noevict
run set "$segment" config:max_items 100 --noevict
run get "$segment" flag:checkout_v2 --json
echo

for ((i = 0; i < workers; i++)); do
  mkfifo "$tmp/in$i" "$tmp/out$i"
  "$worker" "$segment" "$i" <"$tmp/in$i" >"$tmp/out$i" &
  pids+=("$!")
  exec {fd}>"$tmp/in$i"
  to+=("$fd")
  exec {fd}<"$tmp/out$i"
  from+=("$fd")
done
echo "$workers workers started (pids ${pids[*]}); one request each:"
request_all flag:checkout_v2=off flag:dark_mode=on config:max_items=100
echo

run set "$segment" flag:checkout_v2 on --noevict
echo "the next request of each worker:"
request_all flag:checkout_v2=on flag:dark_mode=on config:max_items=100
echo

run set "$segment" config:max_items 200 --noevict
echo "the next request of each worker:"
request_all flag:checkout_v2=on flag:dark_mode=on config:max_items=200
echo

run del "$segment" flag:dark_mode
echo "deleted: the workers fall back to their default"
request_all flag:checkout_v2=on "flag:dark_mode=off(default)" config:max_items=200
echo

# End of input: each worker exits 0.
for fd in "${to[@]}"; do exec {fd}>&-; done
to=()
for i in "${!pids[@]}"; do
  if ! wait "${pids[i]}"; then
    echo "run.sh: worker $i failed" >&2
    failures=$((failures + 1))
  fi
done
pids=()
if ((failures > 0)); then
  echo "$failures expectations FAILED"
  exit 1
fi
echo "every worker saw every change on its next request"
