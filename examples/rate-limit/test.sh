#!/usr/bin/env bash
# Tests the example the way it is run; registered in CTest as
# example_rate_limit (CMakeLists.txt here), and runnable by hand:
#
#   bash examples/rate-limit/test.sh
#   SHMKV_LIB_DIR=build/lib bash examples/rate-limit/test.sh
#
# Builds what run.sh builds, then runs test/app.test.js with node --test:
# the real cluster on a free port, hammered over keep-alive connections by
# several client processes for a few seconds; it prints the admitted
# requests per window against the limits. The TAP report goes to
# $SHMKV_TEST_ARTIFACTS when set (CTest sets it to the build directory).
#
# Ends with "N passed, N failed", and exits non-zero if anything failed or
# did not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# shellcheck source=examples/lib/node/example.sh
source "$here/../lib/node/example.sh"
shmkv_node_example_build "$here"

if [[ -n "${SHMKV_TEST_ARTIFACTS:-}" ]]; then
  mkdir -p "$SHMKV_TEST_ARTIFACTS"
  tap="$SHMKV_TEST_ARTIFACTS/rate-limit.tap"
  rm -f "$tap"
else
  tap="$(mktemp --suffix=.tap)"
  trap 'rm -f "$tap"' EXIT
fi

shmkv_node_test "$tap" test/app.test.js
shmkv_node_test_summary "$tap"
