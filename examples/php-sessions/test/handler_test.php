<?php
/* bindings/php/ShmkvSessionHandler.php called the way PHP's session module
   calls it, in one CLI process: the entries it writes, TTLs, validateId,
   updateTimestamp, destroy, and the lease (taken, refused to a second
   handler, released only while it is ours, a write refused once it is
   not). test.sh runs it before the HTTP tests:

     php -d ffi.enable=1 test/handler_test.php path/to/libshmkv.so

   Prints one line per failure and "N passed, N failed"; exits 1 on any
   failure. Uses its own segment, removed at exit. */

declare(strict_types=1);

putenv('SHMKV_LIB=' . ($argv[1] ?? ''));
require __DIR__ . '/../../../bindings/php/Shmkv.php';
require __DIR__ . '/../../../bindings/php/ShmkvSessionHandler.php';

$passed = 0;
$failed = 0;
$warnings = [];
set_error_handler(function (int $no, string $msg) use (&$warnings): bool {
    $warnings[] = $msg;
    return true;
}, E_USER_WARNING);

function check(string $name, callable $fn): void
{
    global $passed, $failed, $warnings;
    $warnings = [];
    try {
        $fn();
        ++$passed;
    } catch (Throwable $e) {
        ++$failed;
        echo "FAIL $name: ", $e->getMessage(), ' (', basename($e->getFile()), ':', $e->getLine(), ")\n";
    }
}

function same($actual, $expected, string $what = 'value'): void
{
    if ($actual !== $expected) {
        throw new Exception("$what: got " . var_export($actual, true) . ', want '
                            . var_export($expected, true));
    }
}

function expect(bool $cond, string $what): void
{
    if (!$cond) {
        throw new Exception("expected: $what");
    }
}

$seg = sprintf('php-sessions-handler-test-%d', getmypid());
register_shutdown_function(fn() => Shmkv::unlink($seg));
$kv = Shmkv::create($seg, ['memory_bytes' => 4 << 20, 'exclusive' => true]);
ini_set('session.gc_maxlifetime', '100');
$id = 'abcdef0123456789';

check('read of a new session is empty; write stores it with TTL gc_maxlifetime', function () use ($kv, $id) {
    $h = new ShmkvSessionHandler($kv);
    same($h->open('', 'PHPSESSID'), true, 'open');
    same($h->read($id), '', 'read');
    same($h->write($id, 'user|s:5:"alice";'), true, 'write');
    same($kv->get("sess:$id"), 'user|s:5:"alice";', 'entry');
    $ttl = $kv->ttl("sess:$id");
    expect($ttl > 99_000 && $ttl <= 100_000, "ttl near 100 s, got $ttl");
    same($h->read($id), 'user|s:5:"alice";', 'read back');
    same($h->close(), true, 'close');
    same($kv->get("sess:$id:lock"), null, 'no lease without locking');
});

check('validateId is true only for a live session', function () use ($kv, $id) {
    $h = new ShmkvSessionHandler($kv);
    same($h->validateId($id), true, 'live');
    same($h->validateId('nosuchsession0000'), false, 'unknown');
});

check('updateTimestamp refreshes the TTL, and stores a session gone meanwhile', function () use ($kv, $id) {
    $h = new ShmkvSessionHandler($kv);
    ini_set('session.gc_maxlifetime', '300');
    same($h->updateTimestamp($id, 'ignored'), true, 'update');
    same($kv->get("sess:$id"), 'user|s:5:"alice";', 'data untouched');
    $ttl = $kv->ttl("sess:$id");
    expect($ttl > 299_000, "ttl refreshed to 300 s, got $ttl");
    same($h->updateTimestamp('gone000000000000', 'cart|a:0:{}'), true, 'update of a missing one');
    same($kv->get('sess:gone000000000000'), 'cart|a:0:{}', 'written');
    ini_set('session.gc_maxlifetime', '100');
});

check('destroy deletes the entry; gc does nothing', function () use ($kv) {
    $h = new ShmkvSessionHandler($kv);
    same($h->destroy('gone000000000000'), true, 'destroy');
    same($kv->get('sess:gone000000000000'), null, 'entry gone');
    same($h->destroy('gone000000000000'), true, 'destroy of a missing one');
    same($h->gc(100), 0, 'gc');
});

check('prefix option; unknown options are rejected', function () use ($kv) {
    $h = new ShmkvSessionHandler($kv, ['prefix' => 'app1:']);
    $h->write('pfx0000000000000', 'x|i:1;');
    same($kv->get('app1:pfx0000000000000'), 'x|i:1;');
    try {
        new ShmkvSessionHandler($kv, ['locking' => true]);
        throw new Exception('no InvalidArgumentException');
    } catch (InvalidArgumentException) {
    }
});

$locked = ['locking_enabled' => true, 'lock_expire' => 10, 'lock_wait_time' => 2000,
           'lock_retries' => 3];

check('locking: read takes the lease, a second handler is refused as phpredis does', function () use ($kv, $id, $locked) {
    global $warnings;
    $a = new ShmkvSessionHandler($kv, $locked);
    $b = new ShmkvSessionHandler($kv, $locked);
    same($a->read($id), 'user|s:5:"alice";', 'a reads');
    $token = $kv->get("sess:$id:lock");
    expect($token !== null && strlen($token) === 32, 'a lease holding a token');
    $ttl = $kv->ttl("sess:$id:lock");
    expect($ttl > 9_000 && $ttl <= 10_000, "lease ttl = lock_expire, got $ttl");
    $t0 = hrtime(true);
    same($b->read($id), false, 'b cannot read while a holds the lease');
    $waitedMs = (hrtime(true) - $t0) / 1e6;
    same($warnings, ['Failed to acquire session lock'], 'warnings');
    // 3 retries, at most 1 + 2 + 2 ms apart: far less than the 10 s lease.
    expect($waitedMs < 1000, "b gave up after its retries, not at the lease's end ($waitedMs ms)");
    same($b->close(), true, 'b closes');
    same($kv->get("sess:$id:lock"), $token, 'b left the lease alone');
    same($a->write($id, 'user|s:5:"alice";n|i:1;'), true, 'a writes');
    same($a->close(), true, 'a closes');
    same($kv->get("sess:$id:lock"), null, 'the lease is released');
    same($b->read($id), 'user|s:5:"alice";n|i:1;', 'now b reads what a wrote');
    same($b->close(), true);
});

check('locking: a lease lost to another request refuses the write and is not released', function () use ($kv, $id, $locked) {
    global $warnings;
    $a = new ShmkvSessionHandler($kv, $locked);
    same($a->read($id), 'user|s:5:"alice";n|i:1;', 'a reads');
    // As if a's lease ran out and another request took the session.
    $kv->delete("sess:$id:lock");
    same($kv->add("sess:$id:lock", 'other', 10_000), true, 'another lease');
    same($a->write($id, 'user|s:5:"alice";n|i:2;'), false, 'a may not write');
    same($warnings, ['Unable to write session: session lock not held'], 'warnings');
    same($kv->get("sess:$id"), 'user|s:5:"alice";n|i:1;', 'session unchanged');
    same($a->close(), true, 'a closes');
    same($kv->get("sess:$id:lock"), 'other', "the other request's lease stays");
    $kv->delete("sess:$id:lock");
});

check('locking: a new id (session_regenerate_id) moves the lease; destroy releases it', function () use ($kv, $locked) {
    $a = new ShmkvSessionHandler($kv, $locked);
    same($a->read('old0000000000000'), '', 'read old');
    expect($kv->get('sess:old0000000000000:lock') !== null, 'lease on old');
    same($a->destroy('old0000000000000'), true, 'destroy old');
    same($kv->get('sess:old0000000000000:lock'), null, 'old lease released by destroy');
    same($a->read('new0000000000000'), '', 'read new');
    same($a->read('newer00000000000'), '', 'read another without closing');
    same($kv->get('sess:new0000000000000:lock'), null, 'lease of the previous id released');
    expect($kv->get('sess:newer00000000000:lock') !== null, 'lease on the current id');
    same($a->write('newer00000000000', 'u|i:1;'), true, 'write');
    same($a->close(), true, 'close');
    same($kv->get('sess:newer00000000000:lock'), null, 'released');
});

echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
