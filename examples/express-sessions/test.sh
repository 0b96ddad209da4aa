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

# shellcheck source=examples/lib/node/example.sh
source "$here/../lib/node/example.sh"
shmkv_node_example_build "$here"

artifacts="${SHMKV_TEST_ARTIFACTS:-$here/build}"
mkdir -p "$artifacts"
SHMKV_TEST_ARTIFACTS="$(cd "$artifacts" && pwd)"
export SHMKV_TEST_ARTIFACTS
tap="$SHMKV_TEST_ARTIFACTS/express-sessions.tap"
screenshot="$SHMKV_TEST_ARTIFACTS/express-sessions-cart.png"
rm -f "$tap" "$screenshot"

shmkv_node_test "$tap" test/app.test.js
if [[ -f "$screenshot" ]]; then echo "screenshot: $screenshot"; fi
shmkv_node_test_summary "$tap"
