<?php
/* tests/php: the class Shmkv against the built libshmkv.so, as the PHP FFI
   wrapper bindings/php/Shmkv.php or, when it is loaded, as the native
   extension (bindings/php-ext): both must pass the same checks. Checks
   that the wrapper's cdef is the header's declarations verbatim (FFI only),
   that the class constants are the header's values, the data operations (set/get/add/delete/incr/ttl), binary-safe
   keys and values, add's cas token and delete with it, add with noEvict
   under memory pressure, the get buffer growing for a large value, errors as ShmkvException with the library's
   code and message, read-only handles, close, and a forked child sharing
   the segment.

     php -d ffi.enable=1 tests/php/wrapper_test.php [path/to/libshmkv.so]
     php -d extension=path/to/shmkv.so tests/php/wrapper_test.php

   Prints one line per failure and "N passed, N failed"; exits 1 on any
   failure. Each run uses its own segment, removed at exit. */

declare(strict_types=1);

if (isset($argv[1])) {
    putenv('SHMKV_LIB=' . $argv[1]);
}
require __DIR__ . '/../../bindings/php/Shmkv.php';

$passed = 0;
$failed = 0;

function check(string $name, callable $fn): void
{
    global $passed, $failed;
    try {
        $fn();
        ++$passed;
    } catch (Throwable $e) {
        ++$failed;
        echo "FAIL $name: ", get_class($e), ': ', $e->getMessage(), ' (',
            basename($e->getFile()), ':', $e->getLine(), ")\n";
    }
}

function expect(bool $cond, string $what = 'expectation'): void
{
    if (!$cond) {
        throw new Exception("expected: $what");
    }
}

function same($actual, $expected, string $what = 'value'): void
{
    if ($actual !== $expected) {
        throw new Exception("$what: got " . var_export($actual, true) . ', want '
                            . var_export($expected, true));
    }
}

/** Runs $fn, which must throw ShmkvException with $code; returns it. */
function expectError(int $code, callable $fn): ShmkvException
{
    try {
        $fn();
    } catch (ShmkvException $e) {
        same($e->getCode(), $code, 'error code');
        return $e;
    }
    throw new Exception("expected ShmkvException $code, nothing thrown");
}

/** Declarations with comments, SHMKV_EXPORT and spacing taken out. */
function normalise(string $c): string
{
    $c = preg_replace('#/\*.*?\*/#s', ' ', $c);
    $c = str_replace('SHMKV_EXPORT', ' ', $c);
    $c = preg_replace('/\s+/', ' ', $c);
    return preg_replace(['/\( /', '/ \)/', '/ ;/'], ['(', ')', ';'], $c);
}

$seg = sprintf('shmkv-php-test-%d-%s', getmypid(), bin2hex(random_bytes(4)));
$owner = getmypid();
register_shutdown_function(function () use ($seg, $owner) {
    if (getmypid() !== $owner) {
        return;  // a forked child exiting
    }
    try {
        Shmkv::unlink($seg);
    } catch (Throwable $e) {
    }
});

$native = extension_loaded('shmkv');
echo 'testing the ', $native ? 'native extension' : 'FFI wrapper', "\n";

check('class constants are the values of shmkv.h', function () {
    $header = file_get_contents(__DIR__ . '/../../lib/include/shmkv/shmkv.h');
    preg_match_all('/#define SHMKV_(\w+) \(?(-?\d+)\)?/', $header, $m, PREG_SET_ORDER);
    $rename = ['SET' => 'MODE_SET', 'ADD' => 'MODE_ADD', 'REPLACE' => 'MODE_REPLACE'];
    $seen = 0;
    foreach ($m as [, $name, $value]) {
        $const = 'Shmkv::' . ($rename[$name] ?? $name);
        if (!defined($const)) {
            continue;  // not every macro is a class constant (versions, limits)
        }
        same(constant($const), (int)$value, $const);
        ++$seen;
    }
    expect($seen >= 25, "at least 25 constants compared, got $seen");
});

if (!$native) check('cdef declarations are copied verbatim from shmkv.h', function () {
    $header = normalise(file_get_contents(__DIR__ . '/../../lib/include/shmkv/shmkv.h'));
    // Each declaration of the cdef: a struct typedef block or a one-line one.
    preg_match_all('/typedef struct \w+ \{.*?\} \w+;|[^;{}]+;/s', Shmkv::CDEF, $m);
    expect(count($m[0]) >= 15, 'at least 15 declarations in the cdef');
    foreach ($m[0] as $decl) {
        $d = normalise(trim($decl));
        expect(str_contains($header, $d), "shmkv.h declares `$d`");
    }
});

check('library loads and reports its version', function () {
    expect((bool)preg_match('/^\d+\.\d+\.\d+/', Shmkv::version()), 'a version string');
});

$kv = null;
check('create, set and get', function () use ($seg, &$kv) {
    $kv = Shmkv::create($seg, ['memory_bytes' => 4 << 20, 'exclusive' => true]);
    $kv->set('greeting', 'hello');
    same($kv->get('greeting'), 'hello');
    $kv->set('greeting', 'hello again');
    same($kv->get('greeting'), 'hello again', 'after overwrite');
});
if ($kv === null) {
    echo "$passed passed, " . ($failed) . " failed\n";
    exit(1);
}

check('get of a missing key is null', function () use ($kv) {
    same($kv->get('no-such-key'), null);
});

check('keys and values are binary-safe (NUL bytes, every byte value)', function () use ($kv) {
    $all = '';
    for ($b = 0; $b < 256; ++$b) {
        $all .= chr($b);
    }
    $kv->set("k\0ey", "va\0lue\0");
    same($kv->get("k\0ey"), "va\0lue\0");
    same($kv->get('k'), null, 'the key up to its NUL is another key');
    $key = substr($all, 0, 250);  // the default max_key_len
    $kv->set($key, $all . $all);
    same($kv->get($key), $all . $all);
    $kv->set("\0", '');
    same($kv->get("\0"), '', 'empty value');
});

check('a value larger than the get buffer grows it', function () use ($kv) {
    $big = str_repeat("0123456789abcde\0", (3 * 65536) >> 4) . 'end';
    $kv->set('big', $big);
    same($kv->get('big'), $big);
    same($kv->get('greeting'), 'hello again', 'a small get afterwards');
    same($kv->get('big'), $big, 'again, in the grown buffer');
});

check('getMulti: the keys present, in order, across groups and sizes', function () use ($kv) {
    same($kv->getMulti([]), [], 'no keys');
    $want = [];
    $keys = [];
    for ($i = 0; $i < 40; ++$i) {   // more than one group of 16
        $k = "multi:$i";
        $keys[] = $k;
        if ($i % 3 === 0) {
            continue;  // missing
        }
        $v = $i % 7 === 0 ? str_repeat("big$i\0", 300) : "v$i";  // some past 512 bytes
        $kv->set($k, $v);
        $want[$k] = $v;
    }
    same($kv->getMulti($keys), $want, 'hits only, in order');
    $kv->set('123', 'numeric');
    same($kv->getMulti(['123']), [123 => 'numeric'], 'a numeric key is an int key, as in any array');
    try {
        $kv->getMulti(['multi:1', 42]);
        throw new Exception('no TypeError');
    } catch (TypeError $e) {
        expect(str_contains($e->getMessage(), 'must contain only strings, int given'),
               'message: ' . $e->getMessage());
    }
    expectError(Shmkv::EINVAL, fn() => $kv->getMulti(['multi:1', '']));
});

check('get gives the cas token; cas stores only while it is current', function () use ($kv) {
    $kv->set('versioned', 'v1');
    $cas = null;
    same($kv->get('versioned', $cas), 'v1', 'get with a token');
    expect(is_int($cas) && $cas !== 0, 'a token: ' . var_export($cas, true));
    same($kv->cas('versioned', 'v2', $cas), true, 'cas with the current token');
    same($kv->get('versioned'), 'v2');
    same($kv->cas('versioned', 'v3', $cas), false, 'cas with a stale token');
    same($kv->get('versioned'), 'v2', 'unchanged by the stale cas');
    $big = str_repeat('b', 200000);
    $kv->set('versioned-big', $big);
    $cas2 = null;
    same($kv->get('versioned-big', $cas2), $big, 'a large value with its token');
    same($kv->cas('versioned-big', 'small', $cas2), true, 'its token is current');
    $none = 7;
    same($kv->get('no-such-key', $none), null, 'a miss');
    same($none, 7, 'a miss leaves $cas alone');
    same($kv->cas('no-such-key', 'x', $cas), false, 'cas of a missing key');
    try {
        $kv->cas('versioned', 'x', 0);
        throw new Exception('no ValueError');
    } catch (ValueError $e) {
        expect(str_contains($e->getMessage(), 'cas token'), 'message: ' . $e->getMessage());
    }
});

check('replace, exists and clear', function () use ($seg) {
    $c = Shmkv::open($seg);
    same($c->replace('replace-me', 'x'), false, 'replace of a missing key');
    same($c->exists('replace-me'), false, 'not there');
    $c->set('replace-me', 'a');
    same($c->replace('replace-me', 'b', 60000), true, 'replace of a present key');
    same($c->get('replace-me'), 'b');
    same($c->exists('replace-me'), true, 'there');
    $c->set('empty-value', '');
    same($c->exists('empty-value'), true, 'an empty value exists');
    $c->clear();
    same($c->exists('replace-me'), false, 'gone after clear');
    same($c->get('greeting'), null, 'every entry gone after clear');
    $c->set('greeting', 'hello again');  // what later checks expect
    $c->close();
});

check('add stores only when absent', function () use ($kv) {
    same($kv->add('lock', 'a'), true, 'first add');
    same($kv->add('lock', 'b'), false, 'second add');
    same($kv->get('lock'), 'a', 'value kept');
});

check('delete reports whether the key was there', function () use ($kv) {
    same($kv->delete('lock'), true, 'first delete');
    same($kv->delete('lock'), false, 'second delete');
    same($kv->get('lock'), null, 'gone');
    same($kv->add('lock', 'c'), true, 'add after delete');
});

check('add gives the cas token; delete with it only while unchanged', function () use ($kv) {
    same($kv->add('lease', 'mine', 0, $cas), true, 'add');
    expect(is_int($cas) && $cas !== 0, 'a cas token');
    same($kv->add('lease', 'theirs', 0, $other), false, 'add of a present key');
    same($other, null, 'no token when nothing was stored');
    $kv->set('lease', 'rewritten');
    same($kv->delete('lease', $cas), false, 'stale token');
    same($kv->get('lease'), 'rewritten', 'kept');
    $kv->delete('lease');
    same($kv->add('lease', 'again', 0, $cas2), true, 'add after delete');
    expect($cas2 !== $cas, 'a new token');
    same($kv->delete('lease', $cas), false, 'the old token does not match the new entry');
    same($kv->delete('lease', $cas2), true, 'current token');
    same($kv->delete('lease', $cas2), false, 'missing');
});

check('add with noEvict survives a full cache that evicts plain entries', function () use ($seg) {
    $name = $seg . '-full';
    $small = Shmkv::create($name, ['memory_bytes' => 2 << 20]);
    try {
        same($small->add('lock', 'held', 60000, $cas, true), true, 'add noEvict');
        $value = str_repeat('v', 200);
        for ($i = 0; $i < 40000; ++$i) {
            $small->set("fill:$i", $value);
        }
        same($small->get('lock'), 'held', 'the no-evict entry');
        $kept = 0;
        for ($i = 0; $i < 1000; ++$i) {
            $kept += $small->get("fill:$i") === null ? 0 : 1;
        }
        expect($kept < 1000, "plain entries were evicted ($kept of the first 1000 kept)");
    } finally {
        $small->close();
        Shmkv::unlink($name);
    }
});

check('incr: initial on a missing key, then delta; values are decimal', function () use ($kv) {
    same($kv->incr('n', 5, 100), 100, 'missing key gets initial, delta not applied');
    same($kv->incr('n', 5), 105);
    same($kv->incr('n', -10), 95);
    same($kv->get('n'), '95', 'stored as decimal text');
    $kv->set('m', '-7');
    same($kv->incr('m'), -6, 'incr of a value set as text');
});

check('incr errors carry the library codes', function () use ($kv) {
    $kv->set('text', 'abc');
    $e = expectError(Shmkv::ENOTNUM, fn() => $kv->incr('text'));
    expect(str_contains($e->getMessage(), 'not a decimal'), 'message says why: ' . $e->getMessage());
    $kv->set('max', (string)PHP_INT_MAX);
    expectError(Shmkv::EOVERFLOW, fn() => $kv->incr('max'));
    same($kv->get('max'), (string)PHP_INT_MAX, 'value unchanged after overflow');
});

check('errors carry code, strerror and shmkv_last_error', function () use ($kv, $seg) {
    $e = expectError(Shmkv::EINVAL, fn() => $kv->set('', 'x'));
    $msg = $e->getMessage();
    expect(str_contains($msg, 'invalid argument'), "strerror text in '$msg'");
    expect(str_contains($msg, 'key is empty'), "last_error detail in '$msg'");
    $e = expectError(Shmkv::ENOSEG, fn() => Shmkv::open($seg . '-missing'));
    expect(str_contains($e->getMessage(), $seg . '-missing'), 'message names the segment');
    expectError(Shmkv::EEXIST, fn() => Shmkv::create($seg, ['exclusive' => true]));
    expectError(Shmkv::EKEYTOOBIG, fn() => $kv->get(str_repeat('k', 5000)));
    expect(!str_contains(Shmkv::lastError(), 'key is empty'),
           'a later error replaced the message');
});

check('unknown create option is rejected', function () use ($seg) {
    try {
        Shmkv::create($seg, ['memory' => 1]);
    } catch (InvalidArgumentException $e) {
        return;
    }
    throw new Exception('no InvalidArgumentException');
});

check('ttl: reported, then the key expires', function () use ($kv) {
    same($kv->ttl('greeting'), -1, 'no expiry');
    same($kv->ttl('no-such-key'), null, 'missing');
    $kv->set('short', 'v', 200);
    $ttl = $kv->ttl('short');
    expect($ttl !== null && $ttl > 0 && $ttl <= 200, "0 < ttl <= 200, got $ttl");
    $deadline = hrtime(true) + 5_000_000_000;
    while ($kv->get('short') !== null) {
        expect(hrtime(true) < $deadline, 'expired within 5 s');
        usleep(20000);
    }
    same($kv->touch('greeting', 60000), true, 'touch');
    $ttl = $kv->ttl('greeting');
    expect($ttl > 0 && $ttl <= 60000, "ttl after touch, got $ttl");
    same($kv->touch('short', 1000), false, 'touch of an expired key');
});

check('a second handle and a read-only handle see the same data', function () use ($kv, $seg) {
    $b = Shmkv::open($seg);
    $b->set('shared', 'from b');
    same($kv->get('shared'), 'from b');
    $ro = Shmkv::open($seg, true);
    same($ro->get('shared'), 'from b', 'read-only get');
    expectError(Shmkv::EREADONLY, fn() => $ro->set('shared', 'x'));
    $ro->close();
    $b->close();
});

check('a forked child opens the segment and writes; the parent reads', function () use ($kv, $seg) {
    if (!function_exists('pcntl_fork')) {
        return; // pcntl is part of php-cli; nothing to check without it
    }
    $kv->set('from-child', 'not yet');
    $pid = pcntl_fork();
    expect($pid >= 0, 'fork');
    if ($pid === 0) {
        $ok = false;
        try {
            $c = Shmkv::open($seg);
            $c->set('from-child', 'child ' . getmypid());
            $c->incr('forked', 1, 1);
            $kv->incr('forked', 1, 1);   // the inherited handle works too
            $c->close();
            $ok = true;
        } catch (Throwable $e) {
            fwrite(STDERR, "child: $e\n");
        }
        exit($ok ? 0 : 1);
    }
    pcntl_waitpid($pid, $status);
    expect(pcntl_wifexited($status) && pcntl_wexitstatus($status) === 0, 'child exited 0');
    same($kv->get('from-child'), "child $pid");
    same($kv->get('forked'), '2', 'both increments landed');
});

check('add checks $cas is ?int before it stores anything', function () use ($kv) {
    $cas = 'abc';
    try {
        $kv->add('typed-cas', 'v', 0, $cas);
        throw new Exception('no TypeError');
    } catch (TypeError $e) {
        expect(str_contains($e->getMessage(), '?int'), 'message names the type: ' . $e->getMessage());
    }
    same($kv->get('typed-cas'), null, 'nothing stored');
    same($cas, 'abc', '$cas untouched');
});

check('a handle cannot be cloned or serialized', function () use ($kv) {
    try {
        $copy = clone $kv;
        throw new Exception('clone succeeded');
    } catch (Error $e) {
        expect(str_contains($e->getMessage(), 'clone'), 'says why: ' . $e->getMessage());
    }
    try {
        serialize($kv);
        throw new Exception('serialize succeeded');
    } catch (Exception $e) {
        same($e->getMessage(), "Serialization of 'Shmkv' is not allowed", 'message');
    }
    same($kv->get('greeting'), 'hello again', 'the handle still works');
});

check('an option given by position is rejected by name', function () use ($seg) {
    try {
        Shmkv::create($seg, [1]);
    } catch (InvalidArgumentException $e) {
        same($e->getMessage(), "Shmkv: unknown option '0'", 'message');
        return;
    }
    throw new Exception('no InvalidArgumentException');
});

check('close is idempotent and later calls throw', function () use ($kv) {
    $kv->close();
    $kv->close();
    expectError(Shmkv::EINVAL, fn() => $kv->get('greeting'));
    expectError(Shmkv::EINVAL, fn() => $kv->set('greeting', 'x'));
});

check('unlink removes the segment once', function () use ($seg) {
    same(Shmkv::unlink($seg), true, 'first unlink');
    same(Shmkv::unlink($seg), false, 'second unlink');
    expectError(Shmkv::ENOSEG, fn() => Shmkv::open($seg));
});

echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
