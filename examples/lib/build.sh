# shellcheck shell=bash
# Builds what an example's run.sh needs; sourced by the run.sh of
# flask-sessions, php-sessions, cache-aside, feature-flags and
# one-time-tokens (the Node.js examples use bindings/node/build.sh instead):
#
#   source examples/lib/build.sh     # any directory: paths are the repository's
#   shmkv_example_lib [--check CMD] [--quiet]
#   shmkv_example_build [--check CMD] [--quiet] [--no-setup] TARGET...
#
# The functions (the others below are internal):
#
#   shmkv_example_build_dir
#       prints the build tree as an absolute path: $SHMKV_BUILD_DIR, absolute
#       or relative to the top of the repository; default build/ there.
#   shmkv_example_build TARGET...
#       brings the CMake targets TARGET... of that tree up to date
#       (incrementally). First, when the tree is not configured yet, or when
#       CMD fails, scripts/setup.sh installs the missing packages and builds
#       everything into it. A tree configured without the examples
#       (SHMKV_BUILD_EXAMPLES off) is reconfigured with them when a TARGET is
#       defined in examples/.
#   shmkv_example_lib
#       exports SHMKV_LIB: as the caller set it, else the libshmkv.so of the
#       tree, brought up to date by shmkv_example_build (target shmkv). CMD,
#       if given, is checked in both cases.
#
# Options:
#   --check CMD  a command or function that fails when packages the example
#                needs are missing: scripts/setup.sh then installs them.
#   --quiet      cmake writes nothing to stdout (setup.sh still reports).
#   --no-setup   never run scripts/setup.sh: an unconfigured tree is
#                configured here with the library, the tools and the
#                examples only (no tests, no benchmarks). Needs cmake and
#                ninja; without them the script stops with a message.

shmkv_example_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

shmkv_example_build_dir() {
  local dir="${SHMKV_BUILD_DIR:-build}"
  [[ "$dir" == /* ]] || dir="$shmkv_example_root/$dir"
  realpath -m -- "$dir"
}

# Runs scripts/setup.sh on the build tree $1.
shmkv_example_setup() {
  SHMKV_BUILD_DIR="$1" bash "$shmkv_example_root/scripts/setup.sh"
}

# Succeeds when the CMake target $1 is defined by one of the examples.
shmkv_example_is_example_target() {
  local name
  name="$(printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
  grep -qsE "^[[:space:]]*add_(executable|library|custom_target)\([[:space:]]*$name([[:space:])]|\$)" \
    "$shmkv_example_root"/examples/*/CMakeLists.txt
}

# Runs a cmake command; with --quiet (of the caller) its stdout is dropped.
shmkv_example_cmake() {
  if ((quiet)); then
    cmake "$@" >/dev/null
  else
    cmake "$@"
  fi
}

shmkv_example_build() {
  local check="" quiet=0 setup=1 dir target
  while (($# > 0)); do
    case "$1" in
      --check) check="$2"; shift 2 ;;
      --quiet) quiet=1; shift ;;
      --no-setup) setup=0; shift ;;
      *) break ;;
    esac
  done
  dir="$(shmkv_example_build_dir)"

  if ((!setup)); then
    if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
      echo "${0##*/}: cmake and ninja are needed (bash scripts/setup.sh installs them)" >&2
      exit 1
    fi
    if [[ ! -f "$dir/CMakeCache.txt" ]]; then
      shmkv_example_cmake -S "$shmkv_example_root" -B "$dir" -G Ninja \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=OFF \
        -DSHMKV_BUILD_EXAMPLES=ON
    fi
  elif [[ ! -f "$dir/CMakeCache.txt" ]] || { [[ -n "$check" ]] && ! "$check"; }; then
    shmkv_example_setup "$dir"
  fi

  if ! grep -q '^SHMKV_BUILD_EXAMPLES:BOOL=ON' "$dir/CMakeCache.txt"; then
    for target in "$@"; do
      if shmkv_example_is_example_target "$target"; then
        shmkv_example_cmake -S "$shmkv_example_root" -B "$dir" -DSHMKV_BUILD_EXAMPLES=ON
        break
      fi
    done
  fi
  shmkv_example_cmake --build "$dir" --target "$@"
}

shmkv_example_lib() {
  local check="" opts=()
  while (($# > 0)); do
    case "$1" in
      --check) check="$2"; opts+=("$1" "$2"); shift 2 ;;
      *) opts+=("$1"); shift ;;
    esac
  done
  if [[ -z "${SHMKV_LIB:-}" ]]; then
    shmkv_example_build "${opts[@]}" shmkv
    SHMKV_LIB="$(shmkv_example_build_dir)/lib/libshmkv.so"
  elif [[ -n "$check" ]] && ! "$check"; then
    shmkv_example_setup "$(shmkv_example_build_dir)"
  fi
  export SHMKV_LIB
}
