#!/usr/bin/env bash
# Builds and tests the Node.js binding; registered in CTest as node_tests
# (bindings/node/CMakeLists.txt), and runnable by hand:
#
#   bash bindings/node/test.sh                      # builds libshmkv in build-node/
#   SHMKV_LIB_DIR=build/lib bash bindings/node/test.sh
#
# Steps:
#   1-3. libshmkv.so, node_modules and the addon: build.sh (the same steps
#      for the examples that use this binding).
#   4. node --test (test/cache.test.js, test/compute.test.js,
#      test/session.test.js) and vitest (test/*.test.mjs: @keyv/test-suite
#      and KeyvShmkv's own tests).
#
# Ends with "N passed, N failed" over both runners (vitest's own summary is
# not one CI reads), and exits non-zero if anything failed or did not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# shellcheck source=bindings/node/build.sh
source "$here/build.sh"
shmkv_node_build

results="$here/build/test-results"
rm -rf "$results"
mkdir -p "$results"
status=0

echo "== node --test"
set +e
node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$results/node.tap" \
  test/cache.test.js test/compute.test.js test/session.test.js
node_rc=$?
set -e
# The TAP summary of the whole run is the unindented "# pass N"/"# fail N".
node_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$results/node.tap" | tail -1)
node_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$results/node.tap" | tail -1)
node_cancelled=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$results/node.tap" | tail -1)
node_pass=${node_pass:-0}
node_fail=$((${node_fail:-0} + ${node_cancelled:-0}))
if ((node_rc != 0)) && ((node_fail == 0)); then node_fail=1; fi
((node_rc == 0)) || status=1
echo "node --test: $node_pass pass, $node_fail fail"

echo "== vitest"
set +e
npx --no-install vitest run --reporter=default --reporter=json \
  --outputFile.json="$results/vitest.json"
vitest_rc=$?
set -e
# vitest's JSON report (jest's format) -> "passed failed skipped", with a
# line per file on stderr. No report at all counts as a failure.
read -r vitest_pass vitest_fail vitest_skip < <(node -e '
  const fs = require("node:fs");
  const path = require("node:path");
  let r;
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { console.log("0 1 0"); process.exit(0); }
  for (const file of r.testResults) {
    const n = { passed: 0, failed: 0, other: 0 };
    for (const t of file.assertionResults) n[t.status in n ? t.status : "other"] += 1;
    console.error(`  ${path.basename(file.name)}: ${n.passed} pass, ${n.failed} fail, ${n.other} skipped`);
  }
  console.log(r.numPassedTests, r.numFailedTests, r.numPendingTests + r.numTodoTests);
' "$results/vitest.json")
if ((vitest_rc != 0)) && ((vitest_fail == 0)); then vitest_fail=1; fi
((vitest_rc == 0)) || status=1
echo "vitest: $vitest_pass pass, $vitest_fail fail, $vitest_skip skipped"

node_skip=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$results/node.tap" | tail -1)
passed=$((node_pass + vitest_pass))
failed=$((node_fail + vitest_fail))
skipped=$((${node_skip:-0} + vitest_skip))
((failed == 0)) || status=1
if ((skipped > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
exit "$status"
