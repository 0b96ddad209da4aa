#!/usr/bin/env bash
# The PHP session example end to end, the way it is run: run.sh starts
# PHP's built-in server with 4 workers on a free port (FFI through
# ffi.preload + opcache.preload), and curl plays the browser. CTest runs it
# as example_php_sessions:
#
#   bash examples/php-sessions/test.sh [path/to/libshmkv.so [path/to/shmkv
#                                       [path/to/shmkv-php-extension.so]]]
#
# (default: build/lib/libshmkv.so and build/tools/shmkv). It first runs
# test/handler_test.php (the handler in one CLI process), then three
# servers, each on a segment of its own:
#   A, locking on: a session seen by several workers (sign-in, cart),
#     lazy_write refreshing the TTL, sign-out deleting the entry, strict
#     mode, the lost update prevented (two overlapping requests of one
#     session give counter 2), a stale lease outliving its request, a held
#     lease failing session_start() as phpredis does, 20 concurrent adds to
#     one cart all kept;
#   B, locking off: the lost update (two overlapping requests, counter 1);
#   C, session.gc_maxlifetime=2: the entry expires, the old cookie is
#     refused;
#   D, given the native extension (third argument): the same server with
#     the extension and FFI off: the session across workers, the lost
#     update prevented.
# The checks read the segment with the shmkv CLI. Overlapping requests meet
# at a rendezvous in the segment (test/router.php), so the outcome does not
# depend on timing; every wait is a poll with a deadline. Prints a line per
# failure and "N passed, N failed"; exits 1 on any failure. The servers are
# stopped and the segments removed on exit, failures included.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$(realpath "${1:-$root/build/lib/libshmkv.so}")"
cli="$(realpath "${2:-$root/build/tools/shmkv}")"
ext="${3:+$(realpath "$3")}"

passed=0
failed=0
tmp="$(mktemp -d)"
servers=()   # run.sh pids
segments=()

cleanup() {
  local pid
  for pid in "${servers[@]}"; do stop_server "$pid" >/dev/null 2>&1; done
  for seg in "${segments[@]}"; do "$cli" destroy "$seg" --yes >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  echo "FAIL $*"
}
# expect NAME ACTUAL WANT
expect() {
  if [[ "$2" == "$3" ]]; then ok; else fail "$1: got '$2', want '$3'"; fi
}
# expect_grep NAME FILE PATTERN (extended regex)
expect_grep() {
  if grep -Eq -- "$3" "$2"; then ok; else fail "$1: no /$3/ in: $(head -c 600 "$2")"; fi
}

# --- the handler on its own ------------------------------------------------
out="$(php -n -d extension=ffi -d ffi.enable=1 "$here/test/handler_test.php" "$lib" 2>&1)"
[[ "$out" == *" passed, 0 failed" ]] || echo "$out"
if [[ "$(tail -n 1 <<<"$out")" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
else
  fail "handler_test.php did not finish: $out"
fi

# --- servers -----------------------------------------------------------------
free_port() {
  php -r '$s = stream_socket_server("tcp://127.0.0.1:0");
          echo substr(strrchr(stream_socket_get_name($s, false), ":"), 1);'
}

# start_server NAME [VAR=VALUE...] -- [run.sh arguments]: sets $port, $seg,
# $log and $server; returns 1 if the server did not come up within 15 s.
start_server() {
  local name="$1" env=()
  shift
  while [[ $# -gt 0 && "$1" != -- ]]; do env+=("$1"); shift; done
  shift
  port="$(free_port)"
  seg="php-sessions-test-$$-$name"
  log="$tmp/server-$name.log"
  segments+=("$seg")
  env "${env[@]}" SHMKV_LIB="$lib" PORT="$port" SHMKV_SESSION_SEGMENT="$seg" WORKERS=4 \
    setsid bash "$here/run.sh" "$@" >"$log" 2>&1 &
  server=$!
  servers+=("$server")
  local deadline=$((SECONDS + 15))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$server" 2>/dev/null || ((SECONDS >= deadline)); then
      fail "server $name did not start: $(cat "$log")"
      return 1
    fi
    sleep 0.05
  done
}

# stop_server PID: TERM to run.sh, which stops php and removes the segment;
# KILL to both process groups if that takes more than 10 s.
stop_server() {
  local pid="$1" deadline=$((SECONDS + 10)) php p
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then
    php="$(sed -n 's/.*(server pid \([0-9]*\);.*/\1/p' "$tmp"/server-*.log 2>/dev/null)"
    kill -KILL -- "-$pid" 2>/dev/null
    for p in $php; do kill -KILL -- "-$p" 2>/dev/null; done
    return 1
  fi
  wait "$pid" 2>/dev/null
  return 0
}

# req JAR METHOD PATH [DATA]: the body in $tmp/body, and sets $code, $pid.
req() {
  local jar="$1" method="$2" path="$3" data=()
  [[ $# -ge 4 ]] && data=(--data "$4")
  local w
  w="$(curl -s -m 30 -X "$method" -b "$jar" -c "$jar" "${data[@]}" -o "$tmp/body" \
            -w '%{http_code} %header{x-worker-pid}' "http://127.0.0.1:$port$path")"
  code="${w%% *}"
  pid="${w#* }"
}

# binding JAR: which Shmkv served a page (X-Shmkv-Binding): extension or ffi.
binding() {
  curl -s -m 30 -b "$1" -D - -o /dev/null "http://127.0.0.1:$port/" |
    tr -d '\r' | sed -n 's/^X-Shmkv-Binding: //Ip'
}
session_id() { awk '$6 == "PHPSESSID" { print $7 }' "$1"; }
entry() { "$cli" get "$seg" "$1" 2>/dev/null; }
lock_keys() { "$cli" keys "$seg" --prefix sess: | grep -c ':lock	'; }

# race TAG WAIT_MS JAR: two overlapping /race requests of one session; the
# answers in $tmp/race-1 and $tmp/race-2. The second is sent once the first
# one runs (it has counted itself in the segment): a worker of the
# cli-server that accepted two connections at once would serve them one
# after the other, while a busy worker leaves the second to another one.
race() {
  local url="http://127.0.0.1:$port/race?tag=$1&wait_ms=$2" first deadline=$((SECONDS + 10))
  curl -s -m 30 -b "$3" -o "$tmp/race-1" "$url" &
  first=$!
  until [[ "$(entry "race:$1:started")" == 1 ]] || ((SECONDS >= deadline)); do sleep 0.01; done
  curl -s -m 30 -b "$3" -o "$tmp/race-2" "$url"
  wait "$first"
}
json() { php -r 'echo var_export(json_decode(file_get_contents($argv[1]), true)[$argv[2]] ?? null, true);' "$1" "$2"; }

# --- A: locking on -----------------------------------------------------------
if start_server A -- "$here/test/router.php"; then
  jar="$tmp/alice"
  req "$jar" POST /login user=alice
  expect "sign in: status" "$code" 200
  expect_grep "sign in: page" "$tmp/body" "Signed in as <b>alice</b>"
  expect "sign in: the class is the FFI wrapper's" "$(binding "$jar")" ffi
  id="$(session_id "$jar")"
  expect "sign in: X-Worker-Pid is the pid on the page" \
    "$(grep -o 'id="pid">[0-9]*' "$tmp/body" | grep -o '[0-9]*$')" "$pid"
  entry "sess:$id" >"$tmp/entry"
  expect_grep "sign in: the session entry is in the segment" "$tmp/entry" 'user\|s:5:"alice";'

  # The cart across workers: add items until at least two workers have
  # served this session; each one sees every earlier item.
  declare -A seen=()
  n=0
  items=
  consistent=yes
  while ((n < 40)) && { ((n < 8)) || ((${#seen[@]} < 2)); }; do
    n=$((n + 1))
    req "$jar" POST /cart "item=apple$n"
    seen[$pid]=1
    items="${items:+$items, }apple$n"
    want="Cart: $n items: $items."
    ((n == 1)) && want="Cart: 1 item: apple1."
    if [[ "$code" != 200 ]] || ! grep -qF "$want" "$tmp/body" ||
       ! grep -qF "Signed in as <b>alice</b>" "$tmp/body"; then
      consistent="no (request $n, worker $pid, status $code)"
    fi
  done
  expect "cart: every worker sees the whole cart" "$consistent" yes
  workers_seen=${#seen[@]}
  expect "cart: served by at least 2 worker pids" "$((workers_seen >= 2))" 1
  entry "sess:$id" >"$tmp/entry"
  expect_grep "cart: $n items in the entry" "$tmp/entry" "cart\|a:$n:"

  # lazy_write: a page that changes nothing refreshes the TTL (updateTimestamp).
  "$cli" touch "$seg" "sess:$id" --ttl 60s >/dev/null
  req "$jar" GET /
  expect_grep "lazy_write: same session on a GET" "$tmp/body" "Cart: $n items"
  ttl="$("$cli" ttl "$seg" "sess:$id")"
  expect "lazy_write: TTL back to gc_maxlifetime (1440 s)" "$((ttl > 1400000))" 1

  # Strict mode: an id the segment does not hold is replaced.
  bogus="$tmp/bogus"
  printf '127.0.0.1\tFALSE\t/\tFALSE\t0\tPHPSESSID\tinvented0123456789abcdef\n' >"$bogus"
  req "$bogus" GET /
  newid="$(session_id "$bogus")"
  expect "strict mode: a new id for an unknown one" \
    "$([[ -n "$newid" && "$newid" != invented0123456789abcdef ]] && echo yes)" yes
  expect "strict mode: no entry for the invented id" "$(entry sess:invented0123456789abcdef)" ""

  # The lost update, prevented: the second request waits in session_start()
  # until the first one has written, so it reads 1 and writes 2.
  jar="$tmp/bob"
  req "$jar" POST /login user=bob
  id="$(session_id "$jar")"
  race locked 500 "$jar"
  expect "locking: the second request read the first one's write" \
    "$(json "$tmp/race-1" read) $(json "$tmp/race-2" read)" "0 1"
  expect "locking: the first one waited in vain for the second" "$(json "$tmp/race-1" met)" false
  expect "locking: ... which had started meanwhile (held in session_start)" \
    "$(json "$tmp/race-1" started)" 2
  entry "sess:$id" >"$tmp/entry"
  expect_grep "locking: counter == 2 after two requests" "$tmp/entry" 'counter\|i:2;'
  expect "locking: served by 2 workers" \
    "$([[ "$(json "$tmp/race-1" pid)" != "$(json "$tmp/race-2" pid)" ]] && echo yes)" yes
  locked_counter="$(grep -ao 'counter|i:[0-9]*' "$tmp/entry" | cut -d: -f2)"

  # A lease left by a request that died runs out (lock_expire); the next
  # request then gets the session.
  "$cli" add "$seg" "sess:$id:lock" stale --ttl 700ms >/dev/null
  req "$jar" POST /cart item=pear
  expect "stale lease: the request gets the session once it expired" "$code" 200
  expect_grep "stale lease: and wrote" "$tmp/body" "Cart: 1 item: pear"

  expect "no PHP warning so far" "$(grep -c 'PHP \(Warning\|Fatal\|Notice\|Deprecated\)' "$log")" 0

  # A lease that stays taken: session_start() fails after the retries, as
  # with phpredis ("Failed to acquire session lock"), and the lease is left.
  "$cli" add "$seg" "sess:$id:lock" held --ttl 60s >/dev/null
  req "$jar" GET /
  expect "held lease: 503" "$code" 503
  expect_grep "held lease: the phpredis warning" "$log" "Failed to acquire session lock"
  expect "held lease: still the other holder's" "$(entry "sess:$id:lock")" held
  "$cli" del "$seg" "sess:$id:lock" >/dev/null
  req "$jar" GET /
  expect "held lease: served once it is released" "$code" 200

  # 20 concurrent adds to one cart: none lost.
  jar="$tmp/carol"
  req "$jar" POST /login user=carol
  id="$(session_id "$jar")"
  pids=()
  for i in $(seq 1 20); do
    curl -s -m 30 -b "$jar" -o /dev/null -w '%{http_code}\n' --data "item=c$i" \
      "http://127.0.0.1:$port/cart" >"$tmp/code-$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  expect "20 concurrent adds: all answered 200" "$(cat "$tmp"/code-* | grep -c '^200$')" 20
  entry "sess:$id" >"$tmp/entry"
  expect_grep "20 concurrent adds: 20 items in the entry" "$tmp/entry" 'cart\|a:20:'
  req "$jar" GET /
  expect_grep "20 concurrent adds: 20 items on the page" "$tmp/body" "Cart: 20 items"
  expect "no lease left behind" "$(lock_keys)" 0

  # Sign-out deletes the session's entry.
  jar="$tmp/alice"
  id="$(session_id "$jar")"
  req "$jar" POST /logout
  expect_grep "sign out: page" "$tmp/body" "Not signed in"
  "$cli" get "$seg" "sess:$id" >/dev/null 2>&1
  expect "sign out: the entry is gone (shmkv get exits 1)" "$?" 1
  req "$jar" GET /
  expect_grep "sign out: the next request is anonymous" "$tmp/body" "Not signed in"

  stop_server "$server"
  expect "run.sh stopped" "$?" 0
  expect "run.sh removed the segment" "$([[ -e /dev/shm/$seg ]] && echo left || echo gone)" gone
  expect "no php process of the server left" \
    "$(pgrep -fc "^php -c $here/php.ini -S 127.0.0.1:$port ")" 0
fi

# --- B: locking off ----------------------------------------------------------
if start_server B SHMKV_SESSION_LOCKING=0 -- "$here/test/router.php"; then
  jar="$tmp/dave"
  req "$jar" POST /login user=dave
  id="$(session_id "$jar")"
  race unlocked 5000 "$jar"
  expect "no locking: both requests met" "$(json "$tmp/race-1" met) $(json "$tmp/race-2" met)" \
    "true true"
  expect "no locking: both read 0" "$(json "$tmp/race-1" read) $(json "$tmp/race-2" read)" "0 0"
  entry "sess:$id" >"$tmp/entry"
  expect_grep "no locking: counter == 1, one update lost" "$tmp/entry" 'counter\|i:1;'
  expect "no locking: served by 2 workers" \
    "$([[ "$(json "$tmp/race-1" pid)" != "$(json "$tmp/race-2" pid)" ]] && echo yes)" yes
  unlocked_counter="$(grep -ao 'counter|i:[0-9]*' "$tmp/entry" | cut -d: -f2)"
  expect "no locking: no lease taken" "$(lock_keys)" 0
  stop_server "$server"
  expect "run.sh stopped (B)" "$?" 0
fi

# --- C: expiry -----------------------------------------------------------------
if start_server C -- -d session.gc_maxlifetime=2; then
  jar="$tmp/erin"
  req "$jar" POST /login user=erin
  id="$(session_id "$jar")"
  ttl="$("$cli" ttl "$seg" "sess:$id")"
  expect "expiry: TTL of gc_maxlifetime (2 s)" "$((${ttl:-0} > 0 && ${ttl:-0} <= 2000))" 1
  deadline=$((SECONDS + 10))
  while "$cli" get "$seg" "sess:$id" >/dev/null 2>&1 && ((SECONDS < deadline)); do
    sleep 0.1
  done
  "$cli" get "$seg" "sess:$id" >/dev/null 2>&1
  expect "expiry: the entry is gone within 10 s" "$?" 1
  req "$jar" GET /
  expect_grep "expiry: signed out" "$tmp/body" "Not signed in"
  expect "expiry: strict mode gave a new id" \
    "$([[ "$(session_id "$jar")" != "$id" ]] && echo yes)" yes
  stop_server "$server"
  expect "run.sh stopped (C)" "$?" 0
fi

# --- D: the native extension, no FFI ------------------------------------------
if [[ -n "$ext" ]] && start_server D SHMKV_PHP_EXTENSION="$ext" -- "$here/test/router.php"; then
  jar="$tmp/frank"
  req "$jar" POST /login user=frank
  expect_grep "extension: sign in" "$tmp/body" "Signed in as <b>frank</b>"
  id="$(session_id "$jar")"
  declare -A ext_seen=()
  n=0
  while ((n < 40)) && { ((n < 8)) || ((${#ext_seen[@]} < 2)); }; do
    n=$((n + 1))
    req "$jar" POST /cart "item=pear$n"
    ext_seen[$pid]=1
  done
  expect_grep "extension: every item in the cart" "$tmp/body" "Cart: $n items"
  expect "extension: served by at least 2 worker pids" "$((${#ext_seen[@]} >= 2))" 1
  race ext 500 "$jar"
  expect "extension: the second request read the first one's write" \
    "$(json "$tmp/race-1" read) $(json "$tmp/race-2" read)" "0 1"
  entry "sess:$id" >"$tmp/entry"
  expect_grep "extension: counter == 2 after two requests" "$tmp/entry" 'counter\|i:2;'
  expect "extension: the class is the extension's" "$(binding "$jar")" extension
  stop_server "$server"
  expect "run.sh stopped (D)" "$?" 0
fi

echo "one session served by ${workers_seen:-0} worker pids; two overlapping increments:" \
     "counter ${unlocked_counter:-?} without locking, ${locked_counter:-?} with"
echo "$passed passed, $failed failed"
((failed == 0))
