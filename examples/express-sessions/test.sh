#!/usr/bin/env bash
# Tests the example the way it is run; registered in CTest as
# example_express_sessions (CMakeLists.txt here), and runnable by hand:
#
#   bash examples/express-sessions/test.sh
#   SHMKV_LIB_DIR=build/lib bash examples/express-sessions/test.sh
#
# Builds what run.sh builds, then runs test/app.test.js with node --test:
# the real cluster on a free port, driven over HTTP and by a headless
# Chromium ($CHROMIUM, default /usr/bin/chromium). The screenshot and the
# TAP report go to $SHMKV_TEST_ARTIFACTS (default build/ here).
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

artifacts="${SHMKV_TEST_ARTIFACTS:-$here/build}"
mkdir -p "$artifacts"
SHMKV_TEST_ARTIFACTS="$(cd "$artifacts" && pwd)"
export SHMKV_TEST_ARTIFACTS
tap="$SHMKV_TEST_ARTIFACTS/express-sessions.tap"
screenshot="$SHMKV_TEST_ARTIFACTS/express-sessions-cart.png"
rm -f "$tap" "$screenshot"

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
if [[ -f "$screenshot" ]]; then echo "screenshot: $screenshot"; fi
if ((${skipped:-0} > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
((rc == 0 && failed == 0)) || exit 1
