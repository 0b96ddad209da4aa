# shellcheck shell=bash
# The shell part of the Node examples (express-sessions, rate-limit),
# sourced by their run.sh and test.sh:
#
#   source examples/lib/node/example.sh
#   shmkv_node_example_run DIR [ARG...]
#   shmkv_node_example_build DIR
#   shmkv_node_test TAP FILE...
#   shmkv_node_test_summary TAP
#
# The functions:
#
#   shmkv_node_example_build DIR
#       what the example in DIR needs: libshmkv.so and the Node addon as
#       bindings/node/build.sh makes them (libshmkv from $SHMKV_LIB_DIR,
#       else built in build-node/; exports SHMKV_LIB_DIR), then DIR's
#       node_modules (`npm ci --ignore-scripts` when missing or stale).
#   shmkv_node_example_run DIR [ARG...]
#       shmkv_node_example_build DIR, then replaces the shell with
#       `node DIR/app.js ARG...` (so that a signal to the shell's pid
#       reaches the cluster's primary).
#   shmkv_node_test TAP FILE...
#       `node --test` on FILE...: the spec report on stdout, the TAP report
#       in the file TAP. Its exit code goes to shmkv_node_test_rc; the
#       function itself always succeeds.
#   shmkv_node_test_summary TAP
#       prints "N passed, N failed" (", N skipped" when some were) from the
#       TAP report of that run, and fails if anything failed or did not run.

# shellcheck source=bindings/node/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../../bindings/node/build.sh"

shmkv_node_example_build() {
  shmkv_node_build
  echo "== node_modules ($1)"
  shmkv_npm_ci "$1"
}

shmkv_node_example_run() {
  local dir="$1"
  shift
  shmkv_node_example_build "$dir"
  echo "== app"
  exec node "$dir/app.js" "$@"
}

shmkv_node_test() {
  local tap="$1"
  shift
  echo "== node --test"
  shmkv_node_test_rc=0
  node --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" "$@" || shmkv_node_test_rc=$?
}

# The count of the TAP summary line "# $2 N" of the whole run (unindented) in $1.
shmkv_tap_count() {
  sed -n "s/^# $2 \([0-9]*\)$/\1/p" "$1" 2>/dev/null | tail -1
}

shmkv_node_test_summary() {
  local tap="$1" passed failed cancelled skipped
  passed=$(shmkv_tap_count "$tap" pass)
  failed=$(shmkv_tap_count "$tap" fail)
  cancelled=$(shmkv_tap_count "$tap" cancelled)
  skipped=$(shmkv_tap_count "$tap" skipped)
  passed=${passed:-0}
  failed=$((${failed:-0} + ${cancelled:-0}))
  # A run that fails without a failed test (no summary, a crash) counts one.
  if ((shmkv_node_test_rc != 0)) && ((failed == 0)); then failed=1; fi
  if ((${skipped:-0} > 0)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  ((shmkv_node_test_rc == 0 && failed == 0))
}
