<?php
/* PHP sessions in a shmkv segment: every PHP process on the host (FPM
   workers, cli-server workers, CLI jobs) sees the same sessions.

     $kv = Shmkv::open('sessions');
     session_set_save_handler(new ShmkvSessionHandler($kv, ['locking_enabled' => true]), true);
     session_start();

   Each session is one entry, PREFIX . id, holding the serialized session
   with a TTL of session.gc_maxlifetime, refreshed on every write and, with
   session.lazy_write, by updateTimestamp() (a touch) when the data did not
   change. Expiry belongs to the cache, so gc() does nothing; validateId()
   answers session.use_strict_mode (an id is valid while its entry lives).

   Locking (off by default, as in phpredis, whose settings the options
   mirror): PHP's files handler holds an flock on the session for the whole
   request, but a custom handler locks nothing, so two concurrent requests
   of one session both read it and the second write loses the first one's
   changes. With 'locking_enabled', read() takes a lease first: an ADD of
   PREFIX . id . ':lock' holding a random token, with a TTL of lock_expire
   (so a lease of a crashed request runs out). A request that finds the
   lease taken retries, sleeping between attempts; the sleep starts at 1 ms
   and doubles up to lock_wait_time (jittered), for at most lock_retries
   retries (-1: no limit), so the wait is bounded by about lock_retries *
   lock_wait_time. Then it fails as phpredis fails: a warning "Failed to
   acquire session lock", read() returns false and session_start() returns
   false (PHP adds "Failed to read session data"). write() first checks that
   the lease is still ours (its token); if it ran out and another request
   took it, the write is refused with a warning "Unable to write session:
   session lock not held", as phpredis does. close() and destroy() release
   the lease with a delete that expects the cas the ADD returned, so a lease
   that is no longer ours is never removed.

   Options: prefix ('sess:'), locking_enabled (false), lock_expire (seconds;
   0: max_execution_time, and when that is 0 too, as in the CLI and the
   cli-server, 30: unlike phpredis, a lease always expires), lock_wait_time
   (microseconds, 20000), lock_retries (100; -1: no limit). A zero
   lock_wait_time or lock_retries means the default, as in phpredis.

   Errors of the library (ShmkvException) become warnings and a false
   return, which PHP reports as a failed session operation. */

declare(strict_types=1);

final class ShmkvSessionHandler implements SessionHandlerInterface, SessionUpdateTimestampHandlerInterface
{
    private Shmkv $kv;
    private string $prefix = 'sess:';
    private bool $locking = false;
    private int $lockExpireMs;
    private int $lockWaitUs = 20000;
    private int $lockRetries = 100;

    private ?string $lockKey = null;  // the lease this request holds, if any
    private string $lockToken = '';
    private int $lockCas = 0;

    public function __construct(Shmkv $kv, array $options = [])
    {
        $this->kv = $kv;
        $expire = 0;
        foreach ($options as $k => $v) {
            switch ($k) {
                case 'prefix':
                    $this->prefix = (string)$v;
                    break;
                case 'locking_enabled':
                    $this->locking = (bool)$v;
                    break;
                case 'lock_expire':
                    $expire = (int)$v;
                    break;
                case 'lock_wait_time':
                    $this->lockWaitUs = (int)$v > 0 ? (int)$v : 20000;
                    break;
                case 'lock_retries':
                    $this->lockRetries = (int)$v !== 0 ? (int)$v : 100;
                    break;
                default:
                    throw new InvalidArgumentException("ShmkvSessionHandler: unknown option '$k'");
            }
        }
        if ($expire <= 0) {
            $expire = (int)ini_get('max_execution_time');
        }
        $this->lockExpireMs = ($expire > 0 ? $expire : 30) * 1000;
    }

    /** The entry that holds session $id. */
    public function key(string $id): string
    {
        return $this->prefix . $id;
    }

    /** The entry that holds the lease of session $id. */
    public function lockKey(string $id): string
    {
        return $this->prefix . $id . ':lock';
    }

    public function open(string $path, string $name): bool
    {
        return true;
    }

    public function close(): bool
    {
        return $this->releaseLock();
    }

    public function read(string $id): string|false
    {
        try {
            if ($this->locking) {
                if ($this->lockKey !== null && $this->lockKey !== $this->lockKey($id)) {
                    $this->releaseLock();  // session_regenerate_id() moved on
                }
                if ($this->lockKey === null && !$this->acquireLock($id)) {
                    trigger_error('Failed to acquire session lock', E_USER_WARNING);
                    return false;
                }
            }
            return $this->kv->get($this->key($id)) ?? '';
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
    }

    public function write(string $id, string $data): bool
    {
        try {
            if ($this->locking && !$this->holdsLock($id)) {
                trigger_error('Unable to write session: session lock not held', E_USER_WARNING);
                return false;
            }
            $this->kv->set($this->key($id), $data, self::ttlMs());
            return true;
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
    }

    public function destroy(string $id): bool
    {
        try {
            $this->kv->delete($this->key($id));
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
        // After the delete: a request waiting for the lease must not read
        // the session that is being destroyed.
        return $this->lockKey === $this->lockKey($id) ? $this->releaseLock() : true;
    }

    /** Entries expire on their own (TTL = session.gc_maxlifetime). */
    public function gc(int $max_lifetime): int|false
    {
        return 0;
    }

    /** session.use_strict_mode: only ids of live sessions are accepted. */
    public function validateId(string $id): bool
    {
        try {
            return $this->kv->ttl($this->key($id)) !== null;
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
    }

    /** session.lazy_write, data unchanged: refresh the TTL only. */
    public function updateTimestamp(string $id, string $data): bool
    {
        try {
            if ($this->kv->touch($this->key($id), self::ttlMs())) {
                return true;
            }
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
        return $this->write($id, $data);  // expired meanwhile: store it again
    }

    private static function ttlMs(): int
    {
        return max(1, (int)ini_get('session.gc_maxlifetime')) * 1000;
    }

    private function acquireLock(string $id): bool
    {
        $key = $this->lockKey($id);
        $token = bin2hex(random_bytes(16));
        $sleepUs = min(1000, $this->lockWaitUs);
        for ($retry = 0; ; ++$retry) {
            if ($this->kv->add($key, $token, $this->lockExpireMs, $cas, true)) {
                $this->lockKey = $key;
                $this->lockToken = $token;
                $this->lockCas = $cas;
                return true;
            }
            if ($this->lockRetries >= 0 && $retry >= $this->lockRetries) {
                return false;
            }
            usleep(random_int(intdiv($sleepUs, 2), $sleepUs));
            $sleepUs = min($this->lockWaitUs, 2 * $sleepUs);
        }
    }

    private function holdsLock(string $id): bool
    {
        return $this->lockKey === $this->lockKey($id)
            && $this->kv->get($this->lockKey) === $this->lockToken;
    }

    private function releaseLock(): bool
    {
        if ($this->lockKey === null) {
            return true;
        }
        $key = $this->lockKey;
        $this->lockKey = null;
        try {
            // Only the entry our ADD created: if the lease ran out and
            // another request holds it now, its cas differs and it stays.
            $this->kv->delete($key, $this->lockCas);
            return true;
        } catch (ShmkvException $e) {
            return $this->failed($e);
        }
    }

    private function failed(ShmkvException $e): bool
    {
        trigger_error($e->getMessage(), E_USER_WARNING);
        return false;
    }
}
