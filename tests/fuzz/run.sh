#!/usr/bin/env bash
# Builds and runs fuzz_segment, the libFuzzer target for corrupted segments
# (issue 4): it mutates the header, slots, page table, bitmaps and block
# headers of a small segment and runs attach + every verb + shmkv_check on
# it under ASan and UBSan (see fuzz_segment.cc).
#
#   bash tests/fuzz/run.sh [seconds] [extra libFuzzer flags...]
#
# Builds with clang-14 into build-fuzz/ (a separate CMake project, so the
# main GCC build is untouched), then fuzzes for `seconds` (default: env
# SHMKV_FUZZ_SECONDS, else 60) starting from the committed seed corpus
# tests/fuzz/corpus/. New inputs go to build-fuzz/corpus/ (not committed),
# crash reproducers to tests/fuzz/crashes/. Prints the executions count
# from libFuzzer's final stats; exits non-zero on a crash, leak or timeout.
#
# Reproduce a crash:  build-fuzz/fuzz_segment tests/fuzz/crashes/crash-...
# Minimise it:        build-fuzz/fuzz_segment -minimize_crash=1 \
#                       -runs=10000 tests/fuzz/crashes/crash-...
# Keep going past findings (each saved to tests/fuzz/crashes/):
#                     bash tests/fuzz/run.sh 300 -fork=1 -ignore_crashes=1 \
#                       -ignore_timeouts=1
# Environment: SHMKV_FUZZ_BUILD_DIR (default build-fuzz), SHMKV_JOBS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

seconds="${1:-${SHMKV_FUZZ_SECONDS:-60}}"
shift || true
build_dir="${SHMKV_FUZZ_BUILD_DIR:-build-fuzz}"
jobs="${SHMKV_JOBS:-$(nproc)}"

cmake -S tests/fuzz -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$build_dir" --parallel "$jobs"

work_corpus="$build_dir/corpus"
crashes="tests/fuzz/crashes"
mkdir -p "$work_corpus" "$crashes"
log="$build_dir/fuzz.log"

# halt_on_error: the first report stops the run; libFuzzer saves the input.
# Options from the environment win (scripts/test.sh sets its own).
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

echo "fuzz: running fuzz_segment for ${seconds} s (log: $log)"
rc=0
"$build_dir/fuzz_segment" "$work_corpus" tests/fuzz/corpus \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$crashes/" "$@" >"$log" 2>&1 || rc=$?

execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
if [[ -z "$execs" ]]; then  # -fork=N prints no stat:: lines: the last status line
  execs="$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  speed="$(sed -n 's/.*exec\/s: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
fi
echo "fuzz: executions: ${execs:-unknown} (${speed:-?}/s), exit status $rc"
if ((rc != 0)); then
  # The report: from the sanitizer's or libFuzzer's first line of it.
  grep -n -m1 -E '^==[0-9]+==|^(SUMMARY|ERROR|INFO): libFuzzer|fuzz_segment: contract' "$log" || true
  tail -n 60 "$log"
  echo "fuzz: FAILED; reproducers in $crashes/"
  exit 1
fi
echo "fuzz: no crash"
