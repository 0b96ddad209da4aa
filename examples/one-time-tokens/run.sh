#!/usr/bin/env bash
# One-time tokens (one_time_tokens.cc): issue, redeem, replay, expiry, a
# duplicate id and four processes racing for one token.
#
#   bash examples/one-time-tokens/run.sh [SEGMENT]
#
# Builds the example if needed (CMake, in $SHMKV_BUILD_DIR, default build;
# scripts/setup.sh first when nothing is configured yet) and runs it. Exit
# status 0 when every step gave the expected answer. Without SEGMENT it
# uses a private segment and removes it; with one, that existing segment.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=examples/lib/build.sh
source examples/lib/build.sh

shmkv_example_build --quiet one_time_tokens
exec "$(shmkv_example_build_dir)/examples/one-time-tokens/one_time_tokens" "$@"
