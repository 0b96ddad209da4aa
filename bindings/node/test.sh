#!/usr/bin/env bash
# Builds and tests the Node.js binding; registered in CTest as node_tests
# (bindings/node/CMakeLists.txt), and runnable by hand:
#
#   bash bindings/node/test.sh                      # builds libshmkv in build-node/
#   SHMKV_LIB_DIR=build/lib bash bindings/node/test.sh
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
#   4. node --test (test/cache.test.js, test/session.test.js) and vitest
#      (test/*.test.mjs: @keyv/test-suite and KeyvShmkv's own tests).
#
# Ends with "N passed, N failed" over both runners (vitest's own summary is
# not one CI reads), and exits non-zero if anything failed or did not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

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
# npm writes node_modules/.package-lock.json on every install; a lock file
# newer than it means the tree is stale.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --ignore-scripts --no-audit --no-fund
else
  echo "up to date"
fi

echo "== addon"
# configure every time: it looks libshmkv up again, and SHMKV_LIB_DIR may
# differ from the last build's (a plain `compile` reuses the old cache).
npx --no-install cmake-js configure --out build --log-level warn >/dev/null
npx --no-install cmake-js build --out build --log-level warn

results="$here/build/test-results"
rm -rf "$results"
mkdir -p "$results"
status=0

echo "== node --test"
set +e
node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$results/node.tap" \
  test/cache.test.js test/session.test.js
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
