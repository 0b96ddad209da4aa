#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build and test shmkv, then builds it
# into build/ (RelWithDebInfo: optimised, with debug info).
#
#   bash scripts/setup.sh
#
# Idempotent: packages that are already installed are not touched (no
# apt-get update at all when nothing is missing), and a configured build/
# is only rebuilt incrementally. Run as root, or as a user with sudo; a user
# without either is told what to install.
#
# Environment: SHMKV_BUILD_DIR (default build), SHMKV_JOBS (default: nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Exactly what the build and the tests need.
#   build-essential cmake ninja-build pkg-config  toolchain
#   libboost-dev                                  Boost.Interprocess (segment)
#   libboost-program-options-dev                  shmkv CLI and shmkvd options
#   libxxhash-dev                                 XXH3 key hashing
#   nlohmann-json3-dev                            JSON output of CLI and daemon
#   libgtest-dev libbenchmark-dev                 tests/ and bench/
#   libncurses-dev                                `shmkv top`
#   libsystemd-dev                                sd_notify in shmkvd
#   prometheus systemd                            promtool and systemd-analyze
#                                                 (tests/daemon checks metrics, unit)
#   clang-format-14                               format check in scripts/test.sh
#   clang-14 libclang-rt-14-dev                   libFuzzer target (tests/fuzz/)
#   binutils                                      nm/objdump (no libatomic calls test)
#   tmux                                          drives `shmkv top` (tests/tools)
#   php8.2-cli php8.2-dev                         PHP FFI binding and native extension
#                                                 (bindings/php-ext, php-config) tests
#   python3-pytest libpython3.11-testsuite        Python binding tests (pytest, and
#                                                 CPython's test.mapping_tests)
#   python3-flask gunicorn python3-flask-session  Flask sessions example and its test
#                                                 (examples/flask-sessions), Flask-Session shim
#   chromium                                      headless browser of the Express sessions
#                                                 example's test (examples/express-sessions)
#   php8.2-opcache curl                           PHP sessions example (opcache.preload) and
#                                                 its test's HTTP client (examples/php-sessions)
#   libhiredis-dev redis-server                   near cache: shmkvd --upstream and its
#                                                 tests (a real Redis per test)
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-program-options-dev
  libxxhash-dev nlohmann-json3-dev
  libgtest-dev libbenchmark-dev
  libncurses-dev
  libsystemd-dev prometheus systemd
  clang-format-14
  clang-14 libclang-rt-14-dev
  binutils
  tmux
  php8.2-cli php8.2-dev
  python3-pytest libpython3.11-testsuite
  python3-flask gunicorn python3-flask-session
  chromium
  php8.2-opcache curl
  libhiredis-dev redis-server
)

# shellcheck source=scripts/lib/packages.sh
source scripts/lib/packages.sh
ensure_packages setup "${PACKAGES[@]}"

build_dir="${SHMKV_BUILD_DIR:-build}"
jobs="${SHMKV_JOBS:-$(nproc)}"
# Every option is given explicitly, so that a build directory configured
# earlier with other values is brought back to the full build.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHMKV_BUILD_TESTS=ON -DSHMKV_BUILD_BENCH=ON -DSHMKV_BUILD_EXAMPLES=ON -DSHMKV_SANITIZE=
cmake --build "$build_dir" --parallel "$jobs"
echo "setup: built into $build_dir/"
