#!/usr/bin/env bash
# Builds what the example needs and starts it:
#
#   bash examples/rate-limit/run.sh [--port 3000] [--workers 4] [--rate 10] [--burst 10]
#                                   [--fixed-limit 10] [--segment NAME] [--keep-segment]
#   SHMKV_LIB_DIR=build/lib bash examples/rate-limit/run.sh --port 0
#
# libshmkv.so and the Node addon as bindings/node/build.sh makes them
# (libshmkv from $SHMKV_LIB_DIR, else built in build-node/), then this
# directory's node_modules (`npm ci --ignore-scripts` when missing or stale),
# then app.js (which lists every option and its environment variable). Try
#   curl -i -H 'X-Client-Id: alice' http://127.0.0.1:3000/api/hello
# a few times in a row; Ctrl-C stops the workers and removes the segment.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck source=examples/lib/node/example.sh
source "$here/../lib/node/example.sh"
shmkv_node_example_run "$here" "$@"
