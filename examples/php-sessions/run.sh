#!/usr/bin/env bash
# Runs the PHP session example (index.php) in PHP's built-in web server with
# four worker processes that share their sessions through one shmkv segment:
#
#   bash examples/php-sessions/run.sh      # then open http://127.0.0.1:8080/
#
# Each page shows the pid of the worker that served it; the session (the
# signed-in name, the cart) is the same whichever worker that is. Ctrl-C
# stops the server and removes the segment.
#
# FFI is loaded the production way, with FFI at its default
# ffi.enable=preload (php.ini): this script writes the header that
# ffi.preload reads (the declarations of bindings/php/Shmkv.php with
# FFI_SCOPE and FFI_LIB), and opcache.preload compiles the binding and the
# session handler before the server forks its workers.
#
# With SHMKV_PHP_EXTENSION=path/to/shmkv.so (the native extension,
# bindings/php-ext), the server loads that instead and runs with FFI off
# (ffi.enable=0, no ffi.preload): the same pages and handler, no FFI.
#
# Arguments are passed on to `php -S` after the address and the document
# root: more -d settings, and a router script last, e.g.
#   bash examples/php-sessions/run.sh -d session.gc_maxlifetime=60
#
# Environment: PORT (default 8080), WORKERS (default 4),
# SHMKV_SESSION_SEGMENT (default php-sessions-PID), SHMKV_SESSION_LOCKING
# (0: no session locking; default on), SHMKV_SESSION_LOCK_EXPIRE,
# SHMKV_SESSION_LOCK_WAIT_TIME, SHMKV_SESSION_LOCK_RETRIES (see
# bindings/php/ShmkvSessionHandler.php), SHMKV_LIB (default: build the
# library in $SHMKV_BUILD_DIR, default build). When php or its opcache is
# missing, or nothing is built yet, scripts/setup.sh installs and builds
# what is needed first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
example="$root/examples/php-sessions"
# shellcheck source=examples/lib/build.sh
source examples/lib/build.sh

# php with FFI and OPcache. A missing php is a missing package, not an
# error (|| true). The module list is read whole, not piped into `grep -q`,
# which may quit before php has written it all: php would die of SIGPIPE and
# the pipeline fail under pipefail although the module is there.
php_installed() {
  local modules
  modules="$(php -m 2>/dev/null || true)"
  [[ $'\n'"$modules"$'\n' == *$'\nFFI\n'* && $'\n'"$modules"$'\n' == *$'\nZend OPcache\n'* ]]
}
shmkv_example_lib --check php_installed
export SHMKV_SESSION_SEGMENT="${SHMKV_SESSION_SEGMENT:-php-sessions-$$}"

tmp="$(mktemp -d)"
export SHMKV_FFI_HEADER="$tmp/shmkv_ffi.h"
export SHMKV_PRELOAD="$example/preload.php"
SHMKV_PRELOAD_USER="$(id -un)"
export SHMKV_PRELOAD_USER
{
  echo '#define FFI_SCOPE "SHMKV"'
  echo "#define FFI_LIB \"$SHMKV_LIB\""
  php -n -r 'require $argv[1]; echo Shmkv::CDEF, "\n";' "$root/bindings/php/Shmkv.php"
} >"$SHMKV_FFI_HEADER"

# How PHP reaches the library: FFI (the default), or the native extension.
# The modules are named here, and PHP's conf.d is not read (PHP_INI_SCAN_DIR
# empty): an extension enabled system-wide (the php8.2-shmkv package) must
# not stand in for the one asked for.
if [[ -n "${SHMKV_PHP_EXTENSION:-}" ]]; then
  php_lib=(-d "extension=$SHMKV_PHP_EXTENSION")
  server_lib=("${php_lib[@]}" -d ffi.enable=0 -d ffi.preload=)
else
  php_lib=(-d extension=ffi -d ffi.enable=1)
  server_lib=(-d extension=ffi)
fi
server_lib+=(-d zend_extension=opcache)

# The segment: created here (it must not exist yet), removed on exit.
segment_php() {
  php -n "${php_lib[@]}" -r \
    'require $argv[1]; $n = getenv("SHMKV_SESSION_SEGMENT");'"$1" "$root/bindings/php/Shmkv.php"
}
segment_php 'Shmkv::create($n, ["memory_bytes" => 64 << 20, "exclusive" => true])->close();'

server=
cleanup() {
  local deadline=$((SECONDS + 5))
  if [[ -n "$server" ]]; then
    # The workers are in the server's process group: stopping only the
    # server would leave them running.
    kill -TERM -- "-$server" 2>/dev/null || true
    local state
    while state="$(ps -o stat= -p "$server")" && [[ "$state" != Z* ]] &&
          ((SECONDS < deadline)); do
      sleep 0.05
    done
    kill -KILL -- "-$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  segment_php 'Shmkv::unlink($n);' || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="${PORT:-8080}"
set -m  # the server gets a process group of its own
PHP_INI_SCAN_DIR= PHP_CLI_SERVER_WORKERS="${WORKERS:-4}" php -c "$example/php.ini" \
  -S "127.0.0.1:$port" -t "$example" "${server_lib[@]}" "$@" &
server=$!
set +m
echo "php-sessions: segment $SHMKV_SESSION_SEGMENT, http://127.0.0.1:$port/" \
     "(server pid $server; Ctrl-C stops)"
wait "$server"
