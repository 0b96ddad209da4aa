#!/usr/bin/env bash
# The PHP part of the peer benchmark suite: shmkv called from PHP through the
# native extension (bindings/php-ext) and through FFI (bindings/php/Shmkv.php),
# each against APCu in the same script shape (bench/php/bench.php lists the
# workloads).
#
#   bash scripts/bench_php.sh           # about a minute; writes bench/results/php.md
#   bash scripts/bench_php.sh --smoke   # a few seconds; writes build-php/php-smoke.md
#
# Installs what is missing (php8.2-cli, which brings FFI through
# php8.2-common, php8.2-apcu, valgrind, and what configuring the project
# needs, php8.2-dev for the extension; no apt-get update when nothing is
# missing), builds libshmkv and the extension (Release) into build-php/, and
# runs the benchmark with APCu enabled in the CLI, once with the extension
# loaded and once through FFI. A full run then counts instructions per operation
# of every 1-process loop under callgrind (bench.php --count): times on this
# shared machine drift, instruction counts do not. Prints the tables too.
# Extra arguments go to bench.php (--ops=N, --mix-ops=N, --reps=N, --keys=N).
#
# Environment: SHMKV_JOBS (default: nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
args=()
for a in "$@"; do
  if [[ "$a" == --smoke ]]; then
    smoke=1
  fi
  args+=("$a")
done

#   build-essential cmake ninja-build pkg-config   toolchain
#   libboost-dev libboost-program-options-dev      the library; configuring daemon/ and tools/
#   libxxhash-dev nlohmann-json3-dev               the library; configuring tools/
#   libncurses-dev libsystemd-dev                  configuring tools/ and daemon/
#   php8.2-cli php8.2-apcu php8.2-dev              PHP (FFI, pcntl, posix), the APCu peer,
#                                                 php-config for the extension
#   valgrind                                       instruction counts (callgrind)
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-program-options-dev
  libxxhash-dev nlohmann-json3-dev
  libncurses-dev libsystemd-dev
  php8.2-cli php8.2-apcu php8.2-dev
  valgrind
)

# shellcheck source=scripts/lib/packages.sh
source scripts/lib/packages.sh
ensure_packages bench_php "${PACKAGES[@]}"

# -n: no php.ini, no conf.d; the modules are named (an extension enabled
# system-wide, such as the php8.2-shmkv package, must not stand in for the
# form measured).
php_ini=(-n -d extension=apcu -d extension=posix -d extension=ffi
  -d apc.enable_cli=1 -d apc.shm_size=256M -d apc.entries_hint=131072 -d ffi.enable=1)
for ext in FFI apcu pcntl posix; do
  if ! php "${php_ini[@]}" -m | grep -x "$ext" >/dev/null; then
    echo "bench_php: the PHP extension $ext is not loaded" >&2
    exit 1
  fi
done

build_dir=build-php
jobs="${SHMKV_JOBS:-$(nproc)}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=OFF -DSHMKV_BUILD_EXAMPLES=OFF -DSHMKV_SANITIZE= \
  >/dev/null
cmake --build "$build_dir" --target shmkv shmkv_php --parallel "$jobs"
export SHMKV_LIB="$PWD/$build_dir/lib/libshmkv.so"
ext="$PWD/$build_dir/bindings/php-ext/shmkv.so"

if ((smoke)); then
  out="$build_dir/php-smoke.md"
else
  out=bench/results/php.md
  mkdir -p bench/results
fi
tables="$(mktemp -d)"
trap 'rm -rf "$tables"' EXIT

# run_side NAME PHP-ARGS...: the timed run and (not --smoke) the callgrind
# run of bench.php with those php arguments; writes $tables/NAME.md.
run_side() {
  local name="$1"
  shift
  local table="$tables/$name.md" cg_dir="$tables/$name.cg"
  mkdir -p "$cg_dir"
  php "$@" bench/php/bench.php "${args[@]}" >"$table"
  ((smoke)) && return 0
  # One callgrind run; --dump-before=getppid cuts a profile at each
  # posix_getppid() that bench.php --count calls before each loop: dump k+2
  # holds loop k (dump 1 is the setup, dump 2 empty).
  local cg_ops=10000 i=0 ir name_k
  valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file="$cg_dir/cg.out" \
    php "$@" bench/php/bench.php --count --ops="$cg_ops" >"$cg_dir/names" 2>"$cg_dir/log"
  while IFS= read -r name_k; do
    i=$((i + 1))
    ir="$(awk '/^totals:/ {print $2}' "$cg_dir/cg.out.$((i + 2))")"
    printf '%s\t%s\n' "$name_k" "$((ir / cg_ops))"
  done <"$cg_dir/names" >"$cg_dir/counts"
  local label="shmkv (FFI)" steps="step of a GET through FFI"
  if [[ "$name" == ext ]]; then
    label="shmkv (extension)"
    steps="a GET through the extension, and its parts"
  fi
  {
    echo
    echo "Instructions per operation (callgrind, $cg_ops operations per loop, the loop's own"
    echo "~130 included). They leave out what cache misses cost, which dominates the GET"
    echo "rows above at 100 000 random keys."
    echo
    echo "| workload | APCu instr/op | $label instr/op | shmkv/APCu |"
    echo '|---|---:|---:|---:|'
    awk -F'\t' '
      $1 ~ /: APCu$/  { a = $2; next }
      $1 ~ /: shmkv$/ { sub(/: shmkv$/, "", $1); printf "| %s | %d | %d | %.2f× |\n", $1, a, $2, a / $2 }
    ' "$cg_dir/counts"
    echo
    echo "| $steps | instr/op |"
    echo '|---|---:|'
    awk -F'\t' '$1 !~ /: (APCu|shmkv)$/ { printf "| %s | %d |\n", $1, $2 }' "$cg_dir/counts"
  } >>"$table"
}

# The native extension first (what PHP shops should load), then FFI; APCu
# runs in each, so every ratio is taken within one run.
run_side ext "${php_ini[@]}" -d ffi.enable=0 -d extension="$ext"
run_side ffi "${php_ini[@]}"

table="$tables/all.md"
{
  echo "## The shmkv extension (\`-d extension=$build_dir/bindings/php-ext/shmkv.so\`)"
  echo
  cat "$tables/ext.md"
  echo
  echo "## FFI (\`bindings/php/Shmkv.php\`, \`-d ffi.enable=1\`)"
  echo
  cat "$tables/ffi.md"
} >"$table"

{
  echo "# shmkv from PHP (native extension and FFI) vs APCu"
  echo
  echo "Written by \`bash scripts/bench_php.sh$( ((smoke)) && echo ' --smoke')\` on $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- lib 2>/dev/null || echo ' (lib/ modified)'),"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "libshmkv Release from $build_dir/. PHP ran as"
  echo "\`php ${php_ini[*]} bench/php/bench.php\`, with FFI off and the extension"
  echo "loaded for the first section."
  echo "This machine is shared and noisy: compare the ratios, which are taken in one run."
  echo
  cat "$table"
} >"$out"
cat "$table"
echo "bench_php: wrote $out"
