<?php
/* shmkv from PHP against APCu, in the same script shape: one loop per
   workload and side, identical except for the call (apcu_fetch($k) vs
   $kv->get($k), ...). The class Shmkv is the FFI wrapper
   (bindings/php/Shmkv.php) or, when it is loaded, the native extension
   (bindings/php-ext: php -d extension=.../shmkv.so); scripts/bench_php.sh
   runs the script once each way.

   Data: 100 000 keys of 16 bytes ("k:%014d"), 64-byte values, keys drawn
   uniformly at random (one precomputed order of 2^20 draws, seed fixed).

   Workloads, each run on both sides:
     GET hit            apcu_fetch           / Shmkv::get
     GET, one hot key   the same on one key (no cache misses: the call alone)
     GET, 16 keys       apcu_fetch(array)    / Shmkv::getMulti (per key; 16 keys a call)
     SET update         apcu_store           / Shmkv::set
     INCR, many keys    apcu_inc             / Shmkv::incr   (100 000 counters)
     INCR, one hot key  apcu_inc             / Shmkv::incr
     2 processes 90/10 and 10/90 GET/SET: the parent forks two children with
       pcntl_fork on both sides (APCu's memory is inherited by forked
       children only, so the parent fills APCu before forking; for shmkv each
       child opens the segment itself); both start at a barrier and the
       aggregate rate is total ops / (last end - first start). Each child
       also reports its CPU time: cores used = CPU time / wall time, 2 when
       both ran all along; less on the shmkv side means something else took
       a core (this machine is shared), less on the APCu side than on the
       shmkv side is time asleep on APCu's lock.
   The FFI path, on its own (the floor under any FFI binding; with the
   extension only the loop, a method call and the two gets are timed):
     the loop alone; a PHP method call; an FFI call with no argument; an FFI
     call to libc memcpy of 64 B; FFI::string of 64 B; memcpy + FFI::string
     (the bare FFI call that copies 64 bytes out); an FFI call with
     shmkv_get's seven argument types; shmkv_get called on the FFI object
     directly, without and with FFI::string.

   hrtime(true) around each loop, a warm-up pass, 3 interleaved repetitions
   (the side that goes first alternates), the median reported. Prints a
   markdown table. Run:

     php -d apc.enable_cli=1 -d apc.shm_size=256M -d apc.entries_hint=131072 \
         -d ffi.enable=1 bench/php/bench.php [--smoke] [--ops=N] [--mix-ops=N]
         [--reps=N] [--keys=N] [--only=REGEX (rows whose label matches)]

   (2 000 000 ops per 1-process loop and 1 000 000 per process in the mixes
   by default, 50 000 with --smoke.) --count runs each 1-process loop once
   for callgrind instead; scripts/bench_php.sh does both.

   apc.entries_hint sizes APCu's hash table for the 100 000 keys (its default,
   4096 slots, would give chains of ~25 and handicap APCu). SHMKV_LIB names
   the library (default: see Shmkv::libraryPath()). */

declare(strict_types=1);

require __DIR__ . '/../../bindings/php/Shmkv.php';

// ---------------------------------------------------------------- options

$opt = getopt('', ['smoke', 'count', 'ops:', 'mix-ops:', 'reps:', 'keys:', 'only:']);
$smoke = isset($opt['smoke']);
$count = isset($opt['count']);
$OPS = (int)($opt['ops'] ?? ($smoke ? 50000 : 2000000));
$MIX_OPS = (int)($opt['mix-ops'] ?? ($smoke ? 50000 : 1000000)); // per process
$REPS = (int)($opt['reps'] ?? 3);
$NKEYS = (int)($opt['keys'] ?? 100000);
$VAL_LEN = 64;

$native = extension_loaded('shmkv');
$SIDE = $native ? 'shmkv (extension)' : 'shmkv (FFI)';
foreach ($native ? ['apcu', 'pcntl', 'posix'] : ['apcu', 'ffi', 'pcntl', 'posix'] as $ext) {
    if (!extension_loaded($ext)) {
        fwrite(STDERR, "bench: the $ext extension is not loaded\n");
        exit(2);
    }
}
if (!apcu_enabled()) {
    fwrite(STDERR, "bench: APCu is disabled; run with -d apc.enable_cli=1\n");
    exit(2);
}

// ---------------------------------------------------------------- data

mt_srand(12345);
$keys = [];
$cntKeys = [];
for ($i = 0; $i < $NKEYS; ++$i) {
    $keys[] = sprintf('k:%014d', $i);       // 16 bytes
    $cntKeys[] = sprintf('c:%014d', $i);    // 16 bytes
}
$vals = [];
for ($j = 0; $j < 4; ++$j) {
    $v = '';
    for ($b = 0; $b < $VAL_LEN; ++$b) {
        $v .= chr(mt_rand(33, 126));
    }
    $vals[] = $v;
}
$MASK = (1 << ($smoke || $count ? 17 : 20)) - 1;  // the key order: 2^20 draws (2^17 in short runs)
$order = [];   // uniform random draws of the keys
$corder = [];
for ($i = 0; $i <= $MASK; ++$i) {
    $r = mt_rand(0, $NKEYS - 1);
    $order[] = $keys[$r];
    $corder[] = $cntKeys[$r];
}
// The same draws in groups of 16 keys, for the batch gets.
$groups = array_chunk($order, 16);
$GMASK = count($groups) - 1;  // a power of two
// Keys a group's answer holds (draws repeat: a key answers once).
$gsize = array_map(fn(array $g): int => count(array_unique($g)), $groups);
// The op pattern of the mixes: exactly pct% GETs per 1000, shuffled.
function opPattern(int $getPct): array
{
    $p = [];
    for ($i = 0; $i < 1024; ++$i) {
        $p[] = ($i % 100) < $getPct;
    }
    shuffle($p);
    return $p;
}

$seg = 'shmkv-php-bench-' . getmypid();
Shmkv::unlink($seg);
$owner = getmypid();
register_shutdown_function(function () use ($seg, $owner) {
    if (getmypid() === $owner) {  // not in a forked child
        Shmkv::unlink($seg);      // also after an exception
    }
});
// 2 x 100 000 keys (values and counters): the index is sized for twice that,
// since an index about 3/4 full already evicts a few keys (bucket overflow).
$kv = Shmkv::create($seg, ['memory_bytes' => 64 << 20, 'max_items' => 4 * $NKEYS,
                           'exclusive' => true]);
apcu_clear_cache();
foreach ($keys as $i => $k) {
    $kv->set($k, $vals[$i & 3]);
    apcu_store($k, $vals[$i & 3]);
}
foreach ($cntKeys as $k) {
    $kv->set($k, '0');
    apcu_store($k, 0);
}
$kv->set('hot:counter', '0');
apcu_store('hot:counter', 0);

// ---------------------------------------------------------------- loops
// One function per workload and side; the bodies differ only in the call.

function apcuGet(array $ks, int $n, int $mask): int
{
    $miss = 0;
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = apcu_fetch($ks[$i & $mask]);
        if ($v === false) {
            ++$miss;
        }
    }
    $t = hrtime(true) - $t;
    if ($miss) {
        throw new RuntimeException("apcu get: $miss misses");
    }
    return $t;
}

// Batch gets of 16 keys: apcu_fetch() of an array, Shmkv::getMulti(). $n
// counts keys (a multiple of 16), so ns/op is per key as in the GET rows.
function apcuGetMulti(array $gs, array $sizes, int $n, int $mask): int
{
    $miss = 0;
    $t = hrtime(true);
    for ($i = 0, $g = intdiv($n, 16); $i < $g; ++$i) {
        $miss += $sizes[$i & $mask] - count(apcu_fetch($gs[$i & $mask]));
    }
    $t = hrtime(true) - $t;
    if ($miss) {
        throw new RuntimeException("apcu multi get: $miss misses");
    }
    return $t;
}

function shmkvGetMulti(Shmkv $kv, array $gs, array $sizes, int $n, int $mask): int
{
    $miss = 0;
    $t = hrtime(true);
    for ($i = 0, $g = intdiv($n, 16); $i < $g; ++$i) {
        $miss += $sizes[$i & $mask] - count($kv->getMulti($gs[$i & $mask]));
    }
    $t = hrtime(true) - $t;
    if ($miss) {
        throw new RuntimeException("shmkv multi get: $miss misses");
    }
    return $t;
}

function shmkvGet(Shmkv $kv, array $ks, int $n, int $mask): int
{
    $miss = 0;
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = $kv->get($ks[$i & $mask]);
        if ($v === null) {
            ++$miss;
        }
    }
    $t = hrtime(true) - $t;
    if ($miss) {
        throw new RuntimeException("shmkv get: $miss misses");
    }
    return $t;
}

function apcuGetHot(string $k, int $n): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = apcu_fetch($k);
    }
    return hrtime(true) - $t;
}

function shmkvGetHot(Shmkv $kv, string $k, int $n): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = $kv->get($k);
    }
    return hrtime(true) - $t;
}

function apcuSet(array $ks, array $vals, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        apcu_store($ks[$i & $mask], $vals[$i & 3]);
    }
    return hrtime(true) - $t;
}

function shmkvSet(Shmkv $kv, array $ks, array $vals, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $kv->set($ks[$i & $mask], $vals[$i & 3]);
    }
    return hrtime(true) - $t;
}

function apcuIncr(array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        apcu_inc($ks[$i & $mask]);
    }
    return hrtime(true) - $t;
}

function shmkvIncr(Shmkv $kv, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $kv->incr($ks[$i & $mask]);
    }
    return hrtime(true) - $t;
}

function apcuIncrHot(int $n): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        apcu_inc('hot:counter');
    }
    return hrtime(true) - $t;
}

function shmkvIncrHot(Shmkv $kv, int $n): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $kv->incr('hot:counter');
    }
    return hrtime(true) - $t;
}

function apcuMix(array $ks, array $vals, array $pat, int $n, int $mask, int $off): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[($i + $off) & $mask];
        if ($pat[$i & 1023]) {
            $v = apcu_fetch($k);
        } else {
            apcu_store($k, $vals[$i & 3]);
        }
    }
    return hrtime(true) - $t;
}

function shmkvMix(Shmkv $kv, array $ks, array $vals, array $pat, int $n, int $mask, int $off): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[($i + $off) & $mask];
        if ($pat[$i & 1023]) {
            $v = $kv->get($k);
        } else {
            $kv->set($k, $vals[$i & 3]);
        }
    }
    return hrtime(true) - $t;
}

// The FFI floor, piece by piece.

final class Noop
{
    public function get(string $key): ?string
    {
        return $key;
    }
}

function loopOnly(array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = $ks[$i & $mask];
    }
    return hrtime(true) - $t;
}

function methodCall(Noop $o, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $v = $o->get($ks[$i & $mask]);
    }
    return hrtime(true) - $t;
}

function ffiMemcpy(FFI $libc, FFI\CData $dst, FFI\CData $src, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $libc->memcpy($dst, $src, 64);
    }
    return hrtime(true) - $t;
}

function ffiCall0(FFI $libc, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $libc->getpagesize();
    }
    return hrtime(true) - $t;
}

// memcpy declared with shmkv_get's seven parameter types: the x86-64 SysV
// callee ignores the four extra arguments, so this is the FFI cost of a call
// with shmkv_get's signature around a 16-byte copy.
function ffiCall7(FFI $libc7, FFI\CData $dst, FFI\CData $len, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $libc7->memcpy($dst, $k, \strlen($k), $dst, 64, $len, null);
    }
    return hrtime(true) - $t;
}

function ffiString(FFI\CData $buf, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $v = FFI::string($buf, 64);
    }
    return hrtime(true) - $t;
}

function ffiFloor(FFI $libc, FFI\CData $dst, FFI\CData $src, array $ks, int $n, int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $libc->memcpy($dst, $src, 64);
        $v = FFI::string($dst, 64);
    }
    return hrtime(true) - $t;
}

function rawGetCall(FFI $ffi, FFI\CData $h, FFI\CData $buf, FFI\CData $len, array $ks, int $n,
                    int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        $rc = $ffi->shmkv_get($h, $k, \strlen($k), $buf, 4096, $len, null);
    }
    return hrtime(true) - $t;
}

function rawGet(FFI $ffi, FFI\CData $h, FFI\CData $buf, FFI\CData $len, array $ks, int $n,
                int $mask): int
{
    $t = hrtime(true);
    for ($i = 0; $i < $n; ++$i) {
        $k = $ks[$i & $mask];
        if ($ffi->shmkv_get($h, $k, \strlen($k), $buf, 4096, $len, null) === 0) {
            $v = FFI::string($buf, $len[0]);
        }
    }
    return hrtime(true) - $t;
}

// ---------------------------------------------------------------- 2 processes

/* After a fork the parent's and the children's pages are copy-on-write, and
   PHP writes to every string it reads (its refcount): the first touch of
   each page faults. Touching every key once outside the timed loops keeps
   those faults out of the measurements. */
function touchKeys(array ...$arrays): void
{
    foreach ($arrays as $a) {
        foreach ($a as $v) {
            $x = $v;
        }
    }
}

function cpuNs(array $ru): int
{
    return ($ru['ru_utime.tv_sec'] + $ru['ru_stime.tv_sec']) * 1000000000
        + ($ru['ru_utime.tv_usec'] + $ru['ru_stime.tv_usec']) * 1000;
}

/** Forks two children running $side's mix; returns aggregate ns per op. */
function twoProcess(string $side, int $getPct, string $seg, array $ks, array $vals, array $pat,
                    int $n, int $mask): float
{
    $kids = [];
    for ($c = 0; $c < 2; ++$c) {
        $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $pid = pcntl_fork();
        if ($pid < 0) {
            throw new RuntimeException('fork failed');
        }
        if ($pid === 0) {
            fclose($pair[0]);
            $sock = $pair[1];
            $code = 0;
            try {
                $off = $c * 524287;
                touchKeys($ks, $vals, $pat);
                if ($side === 'shmkv') {
                    $ckv = Shmkv::open($seg);
                    shmkvMix($ckv, $ks, $vals, $pat, min($n, 20000), $mask, $off);  // warm-up
                    fwrite($sock, "R\n");
                    fgets($sock);
                    $ru0 = getrusage();
                    $t0 = hrtime(true);
                    shmkvMix($ckv, $ks, $vals, $pat, $n, $mask, $off);
                    $t1 = hrtime(true);
                    $ru1 = getrusage();
                    $ckv->close();
                } else {
                    apcuMix($ks, $vals, $pat, min($n, 20000), $mask, $off);
                    fwrite($sock, "R\n");
                    fgets($sock);
                    $ru0 = getrusage();
                    $t0 = hrtime(true);
                    apcuMix($ks, $vals, $pat, $n, $mask, $off);
                    $t1 = hrtime(true);
                    $ru1 = getrusage();
                }
                $cpu = cpuNs($ru1) - cpuNs($ru0);
                fwrite($sock, "$t0 $t1 $cpu\n");
            } catch (Throwable $e) {
                fwrite(STDERR, "bench child: $e\n");
                $code = 1;
            }
            exit($code);
        }
        fclose($pair[1]);
        $kids[] = [$pid, $pair[0]];
    }
    foreach ($kids as [$pid, $sock]) {
        if (fgets($sock) !== "R\n") {
            throw new RuntimeException("$side child $pid did not get ready");
        }
    }
    foreach ($kids as [$pid, $sock]) {
        fwrite($sock, "G\n");
    }
    $first = PHP_INT_MAX;
    $last = 0;
    $cpu = 0;
    foreach ($kids as [$pid, $sock]) {
        $line = fgets($sock);
        pcntl_waitpid($pid, $status);
        if ($line === false || !pcntl_wifexited($status) || pcntl_wexitstatus($status) !== 0) {
            throw new RuntimeException("$side child $pid failed");
        }
        [$t0, $t1, $c] = array_map('intval', explode(' ', trim($line)));
        $first = min($first, $t0);
        $last = max($last, $t1);
        $cpu += $c;
        fclose($sock);
    }
    // How many cores the two processes had on average: 2 when they ran side
    // by side undisturbed, towards 1 when something else took a core.
    $GLOBALS['PARALLELISM']["$side $getPct"][] = $cpu / ($last - $first);
    return ($last - $first) / (2 * $n);
}

// ---------------------------------------------------------------- runs

if (!$native) {
    $libc = FFI::cdef('void *memcpy(void *dest, const void *src, size_t n); int getpagesize(void);',
                     'libc.so.6');
    $libc7 = FFI::cdef('void *memcpy(void *dest, const void *src, size_t n, void *x4, size_t x5, '
                       . 'size_t *x6, void *x7);', 'libc.so.6');
    $src = FFI::new('char[64]');
    $dst = FFI::new('char[64]');
    FFI::memcpy($src, $vals[0], 64);
    $raw = Shmkv::ffi();
    $rawH = $raw->new('shmkv_t*');
    if ($raw->shmkv_open($seg, null, FFI::addr($rawH)) !== 0) {
        throw new RuntimeException('raw open failed');
    }
    $rawBuf = $raw->new('char[4096]');
    $rawLen = $raw->new('size_t[1]');
}
$noop = new Noop();
$pat90 = opPattern(90);
$pat10 = opPattern(10);

/* Each row: [label, apcu fn or null, shmkv fn, ops]. A fn returns ns per op. */
$per = fn(int $ns, int $n): float => $ns / $n;
$rows = [
    ['GET hit', fn(int $n, int $m) => $per(apcuGet($order, $n, $MASK), $n),
                fn(int $n, int $m) => $per(shmkvGet($kv, $order, $n, $MASK), $n)],
    ['GET hit, one hot key', fn(int $n, int $m) => $per(apcuGetHot($keys[7], $n), $n),
                            fn(int $n, int $m) => $per(shmkvGetHot($kv, $keys[7], $n), $n)],
    ['GET hit, 16 keys a call (per key)',
        fn(int $n, int $m) => $per(apcuGetMulti($groups, $gsize, $n, $GMASK), intdiv($n, 16) * 16),
        fn(int $n, int $m) => $per(shmkvGetMulti($kv, $groups, $gsize, $n, $GMASK), intdiv($n, 16) * 16)],
    ['SET update', fn(int $n, int $m) => $per(apcuSet($order, $vals, $n, $MASK), $n),
                   fn(int $n, int $m) => $per(shmkvSet($kv, $order, $vals, $n, $MASK), $n)],
    ['INCR, 100 000 keys', fn(int $n, int $m) => $per(apcuIncr($corder, $n, $MASK), $n),
                           fn(int $n, int $m) => $per(shmkvIncr($kv, $corder, $n, $MASK), $n)],
    ['INCR, one hot key', fn(int $n, int $m) => $per(apcuIncrHot($n), $n),
                          fn(int $n, int $m) => $per(shmkvIncrHot($kv, $n), $n)],
    ['2 processes, 90/10 GET/SET',
        fn(int $n, int $m) => twoProcess('apcu', 90, $seg, $order, $vals, $pat90, $m, $MASK),
        fn(int $n, int $m) => twoProcess('shmkv', 90, $seg, $order, $vals, $pat90, $m, $MASK)],
    ['2 processes, 10/90 GET/SET',
        fn(int $n, int $m) => twoProcess('apcu', 10, $seg, $order, $vals, $pat10, $m, $MASK),
        fn(int $n, int $m) => twoProcess('shmkv', 10, $seg, $order, $vals, $pat10, $m, $MASK)],
];
$floor = $native ? [
    ['loop alone (array read)', fn(int $n, int $m) => $per(loopOnly($order, $n, $MASK), $n)],
    ['PHP method call (no FFI)', fn(int $n, int $m) => $per(methodCall($noop, $order, $n, $MASK), $n)],
    ['Shmkv::get() (the extension)', fn(int $n, int $m) => $per(shmkvGet($kv, $order, $n, $MASK), $n)],
    ['apcu_fetch()', fn(int $n, int $m) => $per(apcuGet($order, $n, $MASK), $n)],
] : [
    ['loop alone (array read)', fn(int $n, int $m) => $per(loopOnly($order, $n, $MASK), $n)],
    ['PHP method call (no FFI)', fn(int $n, int $m) => $per(methodCall($noop, $order, $n, $MASK), $n)],
    ['FFI call, no argument (libc getpagesize)', fn(int $n, int $m) => $per(ffiCall0($libc, $order, $n, $MASK), $n)],
    ['FFI call: libc memcpy 64 B', fn(int $n, int $m) => $per(ffiMemcpy($libc, $dst, $src, $order, $n, $MASK), $n)],
    ['FFI::string 64 B', fn(int $n, int $m) => $per(ffiString($dst, $order, $n, $MASK), $n)],
    ['FFI floor: memcpy 64 B + FFI::string', fn(int $n, int $m) => $per(ffiFloor($libc, $dst, $src, $order, $n, $MASK), $n)],
    ['FFI call with shmkv_get\'s 7 argument types (memcpy 16 B)', fn(int $n, int $m) => $per(ffiCall7($libc7, $rawBuf, $rawLen, $order, $n, $MASK), $n)],
    ['$ffi->shmkv_get() call, no string', fn(int $n, int $m) => $per(rawGetCall($raw, $rawH, $rawBuf, $rawLen, $order, $n, $MASK), $n)],
    ['$ffi->shmkv_get() + FFI::string', fn(int $n, int $m) => $per(rawGet($raw, $rawH, $rawBuf, $rawLen, $order, $n, $MASK), $n)],
    ['Shmkv::get() (the wrapper)', fn(int $n, int $m) => $per(shmkvGet($kv, $order, $n, $MASK), $n)],
    ['apcu_fetch()', fn(int $n, int $m) => $per(apcuGet($order, $n, $MASK), $n)],
];

/* --count: instruction counts, for callgrind (scripts/bench_php.sh runs it as
   valgrind --tool=callgrind --dump-before=getppid). Each 1-process loop runs
   once, --ops times, right after posix_getppid() (libc getppid), so that callgrind's
   dump k+1 holds exactly loop k; prints the loops' names in that order. */
if ($count) {
    posix_getppid();  // dump 1: the setup
    $n = (int)($opt['ops'] ?? 10000);
    foreach ($rows as [$label, $a, $s]) {
        if (str_starts_with($label, '2 processes')) {
            continue;
        }
        posix_getppid();
        $a($n, 0);
        echo "$label: APCu\n";
        posix_getppid();
        $s($n, 0);
        echo "$label: shmkv\n";
    }
    foreach ($floor as [$label, $f]) {
        posix_getppid();
        $f($n, 0);
        echo "$label\n";
    }
    posix_getppid();
    if (!$native) {
        $raw->shmkv_close($rawH);
    }
    $kv->close();
    exit(0);
}

if (isset($opt['only'])) {  // --only=REGEX: the rows whose label matches
    $keep = fn(array $r): bool => (bool)preg_match('{' . $opt['only'] . '}i', $r[0]);
    $rows = array_values(array_filter($rows, $keep));
    $floor = array_values(array_filter($floor, $keep));
}

$t_start = microtime(true);
fwrite(STDERR, sprintf("bench: %d keys, %d ops per 1-process run, %d per process in the mixes, %d reps\n",
                       $NKEYS, $OPS, $MIX_OPS, $REPS));
// Warm-up: every loop once, short.
foreach ($rows as [$label, $a, $s]) {
    $a(min($OPS, 50000), min($MIX_OPS, 20000));
    $s(min($OPS, 50000), min($MIX_OPS, 20000));
}
touchKeys($order, $corder, $keys, $cntKeys, $vals);
foreach ($floor as [$label, $f]) {
    $f(min($OPS, 50000), 0);
}

$res = [];
$fres = [];
$PARALLELISM = [];
for ($rep = 0; $rep < $REPS; ++$rep) {
    foreach ($rows as $r => [$label, $a, $s]) {
        foreach ($rep % 2 === 0 ? ['apcu' => $a, 'shmkv' => $s] : ['shmkv' => $s, 'apcu' => $a]
                 as $side => $fn) {
            $res[$r][$side][] = $fn($OPS, $MIX_OPS);
            if (str_starts_with($label, '2 processes')) {
                touchKeys($order, $corder, $keys, $cntKeys, $vals);  // after a fork: see touchKeys()
            }
        }
    }
    foreach ($floor as $r => [$label, $f]) {
        $fres[$r][] = $f($OPS, $MIX_OPS);
    }
    fwrite(STDERR, sprintf("bench: rep %d done (%.1f s)\n", $rep + 1, microtime(true) - $t_start));
}

// Sanity: the counters are exact on both sides after everything above.
$hotShmkv = (int)$kv->get('hot:counter');
$hotApcu = apcu_fetch('hot:counter');
if ($hotShmkv !== $hotApcu) {
    fwrite(STDERR, "bench: WARNING hot counter differs: shmkv $hotShmkv, apcu $hotApcu\n");
}

if (!$native) {
    $raw->shmkv_close($rawH);
}
$kv->close();

// ---------------------------------------------------------------- report

function median(array $xs): float
{
    sort($xs);
    $n = count($xs);
    return $n % 2 ? $xs[intdiv($n, 2)] : ($xs[$n / 2 - 1] + $xs[$n / 2]) / 2;
}
function fmtOps(float $nsPerOp): string
{
    $ops = 1e9 / $nsPerOp;
    return $ops >= 1e6 ? sprintf('%.2f M', $ops / 1e6) : sprintf('%.0f k', $ops / 1e3);
}

$out = [];
$out[] = sprintf('PHP %s, APCu %s, %s; %d keys of 16 B, %d-B values; %s ops per 1-process run, '
                 . '%s per process in the mixes; median of %d interleaved reps.',
                 PHP_VERSION, phpversion('apcu'), $native ? 'the shmkv extension' : 'FFI', $NKEYS, $VAL_LEN, number_format($OPS),
                 number_format($MIX_OPS), $REPS);
$out[] = '';
$out[] = "| workload | APCu ns/op | APCu ops/s | $SIDE ns/op | shmkv ops/s | shmkv/APCu |";
$out[] = '|---|---:|---:|---:|---:|---:|';
foreach ($rows as $r => [$label]) {
    $a = median($res[$r]['apcu']);
    $s = median($res[$r]['shmkv']);
    $out[] = sprintf('| %s | %.0f | %s | %.0f | %s | %.2f× |', $label, $a, fmtOps($a), $s,
                     fmtOps($s), $a / $s);
}
$out[] = '';
$out[] = 'shmkv/APCu is the throughput ratio (APCu ns/op ÷ shmkv ns/op): above 1 shmkv is faster. '
         . 'The 2-process rows are aggregate: ns/op = wall time ÷ total ops of both processes.';
$par = [];
foreach (['90', '10'] as $mix) {
    if (isset($PARALLELISM["apcu $mix"], $PARALLELISM["shmkv $mix"])) {
        $par[] = sprintf('%s/%s: APCu %.2f, shmkv %.2f', $mix, 100 - (int)$mix,
                         median($PARALLELISM["apcu $mix"]), median($PARALLELISM["shmkv $mix"]));
    }
}
if ($par) {
    $out[] = 'Cores the two processes used (CPU time ÷ wall time): ' . implode('; ', $par) . '. '
             . 'shmkv never sleeps (lock-free), so below 2.00 there means the machine took the core; '
             . 'APCu below shmkv is time its processes slept on its lock.';
}
if ($floor) {
    $out[] = '';
    $out[] = $native ? 'A GET through the extension next to its parts (1 process, same key order):'
                     : 'Where the time goes in a GET through FFI (1 process, same key order):';
    $out[] = '';
    $out[] = '| step | ns/op |';
    $out[] = '|---|---:|';
    foreach ($floor as $r => [$label]) {
        $out[] = sprintf('| %s | %.0f |', $label, median($fres[$r]));
    }
}
echo implode("\n", $out), "\n";
fwrite(STDERR, sprintf("bench: done in %.1f s\n", microtime(true) - $t_start));
