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

# shellcheck source=bindings/node/build.sh
source "$here/../../bindings/node/build.sh"
shmkv_node_build
echo "== node_modules ($here)"
shmkv_npm_ci "$here"

if [[ -n "${SHMKV_TEST_ARTIFACTS:-}" ]]; then
  mkdir -p "$SHMKV_TEST_ARTIFACTS"
  tap="$SHMKV_TEST_ARTIFACTS/rate-limit.tap"
  rm -f "$tap"
else
  tap="$(mktemp --suffix=.tap)"
  trap 'rm -f "$tap"' EXIT
fi

echo "== node --test"
set +e
node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" test/app.test.js
rc=$?
set -e
# The TAP summary of the whole run is the unindented "# pass N"/"# fail N";
# a run that fails without a failed test (no summary, a crash) counts one.
summary() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$tap" 2>/dev/null | tail -1; }
passed=$(summary pass)
failed=$(summary fail)
cancelled=$(summary cancelled)
skipped=$(summary skipped)
passed=${passed:-0}
failed=$((${failed:-0} + ${cancelled:-0}))
if ((rc != 0)) && ((failed == 0)); then failed=1; fi
if ((${skipped:-0} > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
((rc == 0 && failed == 0)) || exit 1
