#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole shmkv test suite:
#
#   setup   packages + RelWithDebInfo build in build/
#   ctest   every test in build/ except the "soak" label
#   asan    ASan+UBSan build in build-asan/, every test except "soak"
#   tsan    ThreadSanitizer build in build-tsan/, only the "tsan" label
#           (TSan cannot see across processes, so only threaded tests)
#   fuzz    libFuzzer target tests/fuzz/ (clang-14, ASan+UBSan) on corrupted
#           segments for SHMKV_FUZZ_SECONDS (default 60) s, build in build-fuzz/
#   format  clang-format-14 --dry-run -Werror over the C/C++ sources
#   package scripts/package.sh: `cmake --install` into a temporary prefix
#           and examples/consumer built against it; the Debian packages
#           (CPack, build-deb/) checked with lintian, installed with apt-get
#           and used: the CLI, shmkvd and the consumer (find_package and
#           pkg-config) from the installed files
#   bench   the peer comparison suite in its 1-minute smoke form
#           (scripts/bench.sh --smoke: Release build in build-bench/, Redis
#           and memcached started on unix sockets); no target is enforced
#
# Every stage runs even if an earlier one failed; a summary line per stage
# is printed at the end and the exit status is non-zero if any failed.
# Budget: under 30 minutes on 2 cores.
#
#   bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${SHMKV_BUILD_DIR:-build}"
jobs="${SHMKV_JOBS:-$(nproc)}"
ctest_jobs="${SHMKV_CTEST_JOBS:-2}"
# A default for tests that set no TIMEOUT of their own.
ctest_timeout="${SHMKV_CTEST_TIMEOUT:-300}"

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

stages=()
results=()
durations=()

run_stage() {
  local name="$1"
  shift
  echo
  echo "===== stage $name ====="
  local start=$SECONDS rc
  # A subshell so that `set -e` inside it stops this stage only. It must not
  # be the left side of || or &&, which would switch `set -e` off inside.
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  stages+=("$name")
  durations+=($((SECONDS - start)))
  if ((rc == 0)); then results+=(PASS); else results+=("FAIL(rc=$rc)"); fi
}

sanitizer_build() {  # <dir> <sanitizers> [wrapper...]
  local dir="$1" sanitize="$2"
  shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSHMKV_SANITIZE="$sanitize" -DSHMKV_BUILD_TESTS=ON -DSHMKV_BUILD_BENCH=OFF \
    -DSHMKV_BUILD_EXAMPLES=OFF
  # The build runs test binaries (gtest test discovery), so it needs the
  # same wrapper as the tests.
  "$@" cmake --build "$dir" --parallel "$jobs"
}

# A trivial program built with the given sanitizer; used to adapt to the
# machine before the real build (LeakSanitizer needs ptrace rights that some
# containers lack; TSan of GCC 12 cannot run with 32 bits of mmap ASLR).
probe() {  # <sanitizer> [wrapper...]
  local sanitize="$1" dir
  shift
  dir="$(mktemp -d)"
  printf '#include <thread>\nint main() { int x = 0; std::thread t([&] { x = 1; }); t.join(); return x - 1; }\n' \
    >"$dir/probe.cc"
  local rc=0
  g++ -std=c++20 -fsanitize="$sanitize" -pthread "$dir/probe.cc" -o "$dir/probe" &&
    "$@" "$dir/probe" >"$dir/log" 2>&1 || rc=$?
  rm -rf "$dir"
  return $rc
}

stage_setup() {
  bash scripts/setup.sh
}

stage_ctest() {
  ctest --test-dir "$build_dir" --output-on-failure -j "$ctest_jobs" --timeout "$ctest_timeout" \
    -LE soak
}

stage_asan() {
  if ! probe address,undefined; then
    echo "asan: LeakSanitizer cannot run here (no ptrace rights?): detect_leaks=0"
    export ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}"
  fi
  sanitizer_build build-asan address,undefined
  ctest --test-dir build-asan --output-on-failure -j "$ctest_jobs" --timeout "$ctest_timeout" \
    -LE soak
}

stage_tsan() {
  local wrapper=()
  if ! probe thread; then
    # GCC 12's TSan needs a smaller address-space randomisation than
    # recent kernels default to; running without ASLR is the usual fix.
    wrapper=(setarch "$(uname -m)" -R)
    echo "tsan: running under '${wrapper[*]}'"
    probe thread "${wrapper[@]}"
  fi
  sanitizer_build build-tsan thread "${wrapper[@]}"
  "${wrapper[@]}" ctest --test-dir build-tsan --output-on-failure -j "$ctest_jobs" \
    --timeout "$ctest_timeout" -L tsan
}

stage_fuzz() {
  bash tests/fuzz/run.sh "${SHMKV_FUZZ_SECONDS:-60}"
}

stage_format() {
  local dirs=() d
  for d in lib tests bench examples tools daemon bindings/php-ext; do
    [[ -d "$d" ]] && dirs+=("$d")
  done
  local files=()
  mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.cc' -o -name '*.h' -o -name '*.c' \) |
    sort)
  echo "format: checking ${#files[@]} files"
  clang-format-14 --dry-run -Werror "${files[@]}"
}

stage_package() {
  bash scripts/package.sh
}

stage_bench() {
  bash scripts/bench.sh --smoke
}

total_start=$SECONDS
run_stage setup stage_setup
run_stage ctest stage_ctest
run_stage asan stage_asan
run_stage tsan stage_tsan
run_stage fuzz stage_fuzz
run_stage format stage_format
run_stage package stage_package
run_stage bench stage_bench

echo
echo "===== summary ($((SECONDS - total_start)) s) ====="
failed=0
for i in "${!stages[@]}"; do
  printf '%-7s %-12s %5d s\n' "${stages[$i]}" "${results[$i]}" "${durations[$i]}"
  [[ "${results[$i]}" == PASS ]] || failed=1
done
if ((failed)); then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all stages passed"
