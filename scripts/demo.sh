#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the quick-start demo:
# several processes sharing one shmkv segment.
#
#   bash scripts/demo.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo
exec "${SHMKV_BUILD_DIR:-build}/examples/demo/shmkv_demo" "$@"
