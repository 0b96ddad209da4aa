<?php
/* shmkv from PHP through FFI: a thin wrapper over the C API of
   lib/include/shmkv/shmkv.h (libshmkv.so).

     require 'bindings/php/Shmkv.php';
     $kv = Shmkv::create('sessions', ['memory_bytes' => 64 << 20]);
     $kv->set('user:42', 'alice', 30000);      // TTL in milliseconds, 0 = none
     $v  = $kv->get('user:42');                // string, or null when missing
     $m  = $kv->getMulti(['user:42', 'x']);    // ['user:42' => 'alice']: hits only
     $v  = $kv->get('user:42', $tok);          // with its cas token, then
     $kv->cas('user:42', 'bob', $tok);         // false if written since
     $kv->add('lock:42', '1', 5000, $cas);     // false if the key exists
     $n  = $kv->incr('hits');                  // int
     $kv->delete('user:42');                   // false if it was missing
     $kv->delete('lock:42', $cas);             // only if unchanged since add
     $kv->close();

   The library is loaded from $SHMKV_LIB, else from the build tree
   (build/lib/libshmkv.so beside this repository), else as libshmkv.so.1
   from the loader's search path. FFI must be allowed: the CLI allows it by
   default (ffi.enable=preload lets the CLI call FFI::cdef); FPM and the
   cli-server need ffi.enable=1 or the preload route: ffi.preload names a
   header that declares FFI_SCOPE "SHMKV", FFI_LIB and CDEF below, and
   opcache.preload compiles this file, whose code then takes the
   declarations with FFI::scope() (examples/php-sessions does this).

   Errors are ShmkvException with the library's code (a negative SHMKV_E*
   value, or a positive errno) as getCode() and a message made of
   shmkv_strerror() and shmkv_last_error(). "Not found" and "exists" are not
   errors: get() returns null, add() and delete() return false.

   Keys and values are PHP strings, binary-safe (NUL bytes included). get()
   copies into one preallocated buffer per handle and makes the PHP string
   from it with FFI::string(), so a hit costs one FFI call and one string
   allocation; the buffer grows (and stays grown) for a larger value.

   With the native extension loaded (extension=shmkv.so, bindings/php-ext)
   this file declares nothing: the extension's Shmkv class has the same
   methods and needs no FFI.

   A handle may be used by a child after pcntl_fork() (the library registers
   the child on its first call); opening a handle in each child works too. */

declare(strict_types=1);

// The native extension (bindings/php-ext) declares these two classes, with
// the same methods: then this file declares nothing, and code written for
// it runs on the extension's class.
if (extension_loaded('shmkv')) {
    return;
}

final class ShmkvException extends RuntimeException
{
}

final class Shmkv
{
    /* Copied from lib/include/shmkv/shmkv.h, without comments and the
       SHMKV_EXPORT macro, which FFI cannot parse (it takes plain
       declarations only). tests/php checks every line against the header. */
    public const CDEF = <<<'CDEF'
typedef struct shmkv_handle shmkv_t;
typedef struct shmkv_options {
  uint32_t struct_size;
  uint64_t memory_bytes;
  uint64_t max_items;
  uint32_t max_key_len;
  uint32_t max_value_len;
  uint32_t mode;
  uint32_t flags;
  uint32_t evict_policy;
} shmkv_options_t;
void shmkv_options_init(shmkv_options_t *opts);
int shmkv_open(const char *name, const shmkv_options_t *opts, shmkv_t **out);
int shmkv_close(shmkv_t *kv);
int shmkv_unlink(const char *name);
typedef struct shmkv_item_info {
  uint32_t struct_size;
  uint64_t cas;
  int64_t ttl_ms;
  uint32_t user_flags;
  uint64_t value_len;
  uint32_t write_flags;
} shmkv_item_info_t;
int shmkv_get(shmkv_t *kv, const void *key, size_t key_len, void *buf, size_t buf_len, size_t *val_len, shmkv_item_info_t *info);
int64_t shmkv_get_into(shmkv_t *kv, const void *key, size_t key_len, void *buf, size_t buf_len);
typedef struct shmkv_write_opts {
  uint32_t struct_size;
  uint32_t mode;
  uint64_t ttl_ms;
  uint64_t expect_cas;
  uint32_t user_flags;
  uint32_t flags;
} shmkv_write_opts_t;
void shmkv_write_opts_init(shmkv_write_opts_t *opts);
int shmkv_set(shmkv_t *kv, const void *key, size_t key_len, const void *val, size_t val_len, uint64_t ttl_ms);
int shmkv_store(shmkv_t *kv, const void *key, size_t key_len, const void *val, size_t val_len, const shmkv_write_opts_t *opts, uint64_t *new_cas);
int shmkv_delete(shmkv_t *kv, const void *key, size_t key_len, uint64_t expect_cas);
int shmkv_incr(shmkv_t *kv, const void *key, size_t key_len, int64_t delta, int64_t initial, uint64_t ttl_ms, int64_t *result);
int shmkv_touch(shmkv_t *kv, const void *key, size_t key_len, uint64_t ttl_ms);
int shmkv_ttl(shmkv_t *kv, const void *key, size_t key_len, int64_t *ttl_ms);
int shmkv_clear(shmkv_t *kv);
const char *shmkv_strerror(int code);
const char *shmkv_version(void);
const char *shmkv_last_error(void);
CDEF;

    /* Open flags, eviction policies, write modes and error codes (shmkv.h). */
    public const OPEN_CREATE = 1;
    public const OPEN_EXCL = 2;
    public const OPEN_READONLY = 4;
    public const OPEN_PRECISE_CLOCK = 8;
    public const EVICT_ALLKEYS = 0;
    public const EVICT_VOLATILE = 1;
    public const EVICT_NONE = 2;
    public const MODE_SET = 0;
    public const MODE_ADD = 1;
    public const MODE_REPLACE = 2;
    public const WRITE_NOEVICT = 2;
    public const ENOTFOUND = -1001;
    public const EEXIST = -1002;
    public const ECAS = -1003;
    public const ETOOSMALL = -1004;
    public const EINVAL = -1005;
    public const EKEYTOOBIG = -1006;
    public const EVALTOOBIG = -1007;
    public const ENOSPC = -1008;
    public const ENOTNUM = -1009;
    public const EOVERFLOW = -1010;
    public const ENOSEG = -1011;
    public const EACCES = -1012;
    public const EBADSEG = -1013;
    public const EREADONLY = -1014;
    public const EBUSY = -1015;

    /** The FFI scope a preloaded header declares (ffi.preload). */
    public const SCOPE = 'SHMKV';

    /** Initial size of the get() buffer; it grows on demand. */
    public const INITIAL_BUFFER = 65536;

    private static ?FFI $lib = null;

    private FFI $ffi;
    /** @var FFI\CData|null shmkv_t*; null once closed */
    private ?FFI\CData $h;
    private FFI\CData $buf;      // char[bufLen], reused by every get()
    private int $bufLen;
    private FFI\CData $num;      // int64_t[1]: incr() and ttl() results
    private FFI\CData $cas;      // uint64_t[1]: add()'s new cas token
    private FFI\CData $addOpts;  // shmkv_write_opts_t for add()

    /** The loaded library (one FFI::cdef per process, or the preloaded scope). */
    public static function ffi(): FFI
    {
        return self::$lib ??= self::load();
    }

    private static function load(): FFI
    {
        if ((string)ini_get('ffi.preload') !== '') {
            try {
                return FFI::scope(self::SCOPE);
            } catch (FFI\Exception) {
                // Another header was preloaded: declare ours as usual.
            }
        }
        return FFI::cdef(self::CDEF, self::libraryPath());
    }

    public static function libraryPath(): string
    {
        $env = getenv('SHMKV_LIB');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $built = dirname(__DIR__, 2) . '/build/lib/libshmkv.so';
        return is_file($built) ? $built : 'libshmkv.so.1';
    }

    public static function version(): string
    {
        return self::ffi()->shmkv_version();
    }

    /** The calling thread's last error detail (shmkv_last_error()). */
    public static function lastError(): string
    {
        return self::ffi()->shmkv_last_error();
    }

    /** Opens an existing segment. */
    public static function open(string $name, bool $readonly = false): self
    {
        return self::openWith($name, ['readonly' => $readonly], false);
    }

    /**
     * Creates a segment, or opens it as it is if it exists (its own geometry
     * wins) unless 'exclusive' is set. Options: memory_bytes, max_items,
     * max_key_len, max_value_len, mode, evict_policy (int), exclusive,
     * precise_clock (bool).
     */
    public static function create(string $name, array $options = []): self
    {
        return self::openWith($name, $options, true);
    }

    /** Removes a segment's name; false if there was none. */
    public static function unlink(string $name): bool
    {
        $ffi = self::ffi();
        $rc = $ffi->shmkv_unlink($name);
        if ($rc === self::ENOSEG) {
            return false;
        }
        if ($rc !== 0) {
            throw self::error($ffi, $rc, "unlink($name)");
        }
        return true;
    }

    private static function openWith(string $name, array $options, bool $create): self
    {
        $ffi = self::ffi();
        $opts = $ffi->new('shmkv_options_t');
        $ffi->shmkv_options_init(FFI::addr($opts));
        $flags = $create ? self::OPEN_CREATE : 0;
        foreach ($options as $k => $v) {
            switch ($k) {
                case 'memory_bytes':
                case 'max_items':
                case 'max_key_len':
                case 'max_value_len':
                case 'mode':
                case 'evict_policy':
                    $opts->$k = (int)$v;
                    break;
                case 'exclusive':
                    $flags |= $v ? self::OPEN_EXCL : 0;
                    break;
                case 'readonly':
                    $flags |= $v ? self::OPEN_READONLY : 0;
                    break;
                case 'precise_clock':
                    $flags |= $v ? self::OPEN_PRECISE_CLOCK : 0;
                    break;
                default:
                    throw new InvalidArgumentException("Shmkv: unknown option '$k'");
            }
        }
        $opts->flags = $flags;
        $h = $ffi->new('shmkv_t*');
        $rc = $ffi->shmkv_open($name, FFI::addr($opts), FFI::addr($h));
        if ($rc !== 0) {
            throw self::error($ffi, $rc, "open($name)");
        }
        return new self($ffi, $h);
    }

    private function __construct(FFI $ffi, FFI\CData $h)
    {
        $this->ffi = $ffi;
        $this->h = $h;
        $this->bufLen = self::INITIAL_BUFFER;
        $this->buf = $ffi->new('char[' . self::INITIAL_BUFFER . ']');
        $this->num = $ffi->new('int64_t[1]');
        $this->cas = $ffi->new('uint64_t[1]');
        $this->addOpts = $ffi->new('shmkv_write_opts_t');
        $ffi->shmkv_write_opts_init(FFI::addr($this->addOpts));
        $this->addOpts->mode = self::MODE_ADD;
    }

    public function __destruct()
    {
        if ($this->h !== null) {
            $this->ffi->shmkv_close($this->h);
            $this->h = null;
        }
    }

    /** One handle, one close: a copy would close the handle twice. Private,
        so `clone` fails before any copy exists. */
    private function __clone()
    {
    }

    /** A handle is this process's attachment: it cannot be serialized. */
    public function __serialize(): array
    {
        throw new Exception("Serialization of 'Shmkv' is not allowed");
    }

    public function __unserialize(array $data): void
    {
        throw new Exception("Unserialization of 'Shmkv' is not allowed");
    }

    /** Detaches (idempotent). Later calls on this object throw. */
    public function close(): void
    {
        if ($this->h !== null) {
            $h = $this->h;
            $this->h = null;
            $rc = $this->ffi->shmkv_close($h);
            if ($rc !== 0) {
                throw self::error($this->ffi, $rc, 'close');
            }
        }
    }

    /**
     * The value, or null when the key is missing or expired. $cas, when
     * passed, receives the entry's cas token on a hit (for cas()).
     */
    public function get(string $key, ?int &$cas = null): ?string
    {
        if (\func_num_args() > 1) {
            return $this->getWithCas($key, $cas);
        }
        // The hot path: one FFI call of five arguments (each costs) into the
        // reused buffer, which returns the length; one copy out.
        $n = $this->ffi->shmkv_get_into($this->h ?? $this->closed(), $key, \strlen($key),
                                        $this->buf, $this->bufLen);
        if ($n >= 0 && $n <= $this->bufLen) {
            return FFI::string($this->buf, $n);
        }
        return $this->getSlow($key, $n);
    }

    private function getWithCas(string $key, ?int &$cas): ?string
    {
        $ffi = $this->ffi;
        $h = $this->h ?? $this->closed();
        $info = $ffi->new('shmkv_item_info_t');
        $info->struct_size = FFI::sizeOf($info);
        $len = $ffi->new('size_t[1]');
        $rc = $ffi->shmkv_get($h, $key, \strlen($key), $this->buf, $this->bufLen, $len,
                              FFI::addr($info));
        while ($rc === self::ETOOSMALL) {  // larger than the buffer: grow it, read again
            $this->growBuffer($len[0]);
            $rc = $ffi->shmkv_get($h, $key, \strlen($key), $this->buf, $this->bufLen, $len,
                                  FFI::addr($info));
        }
        if ($rc === 0) {
            $cas = $info->cas;
            return FFI::string($this->buf, $len[0]);
        }
        if ($rc === self::ENOTFOUND) {
            return null;
        }
        throw self::error($ffi, $rc, 'get');
    }

    /** The get buffer, grown to hold $need bytes (at least doubled); it stays grown. */
    private function growBuffer(int $need): void
    {
        $size = max($need, 2 * $this->bufLen);
        $this->buf = $this->ffi->new("char[$size]");
        $this->bufLen = $size;
    }

    private function getSlow(string $key, int $n): ?string
    {
        // A value larger than the buffer: grow it to the size the library
        // reported and retry (the value may have grown again meanwhile).
        while ($n > $this->bufLen) {
            $this->growBuffer($n);
            $n = $this->ffi->shmkv_get_into($this->h, $key, \strlen($key), $this->buf, $this->bufLen);
        }
        if ($n >= 0) {
            return FFI::string($this->buf, $n);
        }
        if ($n === self::ENOTFOUND) {
            return null;
        }
        throw self::error($this->ffi, $n, 'get');
    }

    /**
     * [key => value] of the keys present, in the order given (as apcu_fetch()
     * of an array); missing and expired keys are left out. The extension
     * overlaps the lookups (shmkv_mget); here it is one get() per key.
     */
    public function getMulti(array $keys): array
    {
        foreach ($keys as $key) {
            if (!\is_string($key)) {
                throw new TypeError('Shmkv::getMulti(): Argument #1 ($keys) must contain only '
                                    . 'strings, ' . get_debug_type($key) . ' given');
            }
        }
        $out = [];
        foreach ($keys as $key) {
            $v = $this->get($key);
            if ($v !== null) {
                $out[$key] = $v;
            }
        }
        return $out;
    }

    /** Upsert. $ttlMs: milliseconds, 0 = no expiry. */
    public function set(string $key, string $value, int $ttlMs = 0): void
    {
        $rc = $this->ffi->shmkv_set($this->h ?? $this->closed(), $key, \strlen($key),
                                    $value, \strlen($value), $ttlMs);
        if ($rc !== 0) {
            throw self::error($this->ffi, $rc, 'set');
        }
    }

    /**
     * Stores only if the key is absent; false if it is present. $cas receives
     * the new entry's cas token (for delete($key, $cas): "only if unchanged").
     * $noEvict: never evicted (it still expires), e.g. for a lock.
     */
    public function add(string $key, string $value, int $ttlMs = 0, ?int &$cas = null,
                        bool $noEvict = false): bool
    {
        $this->addOpts->ttl_ms = $ttlMs;
        $this->addOpts->flags = $noEvict ? self::WRITE_NOEVICT : 0;
        $rc = $this->ffi->shmkv_store($this->h ?? $this->closed(), $key, \strlen($key),
                                      $value, \strlen($value), FFI::addr($this->addOpts), $this->cas);
        if ($rc === 0) {
            $cas = $this->cas[0];
            return true;
        }
        if ($rc === self::EEXIST) {
            return false;
        }
        throw self::error($this->ffi, $rc, 'add');
    }

    /**
     * True if the key was deleted, false if it was missing or, with
     * $expectCas (a token from add(); 0 = any), written since.
     */
    public function delete(string $key, int $expectCas = 0): bool
    {
        $rc = $this->ffi->shmkv_delete($this->h ?? $this->closed(), $key, \strlen($key), $expectCas);
        if ($rc === 0) {
            return true;
        }
        if ($rc === self::ENOTFOUND || $rc === self::ECAS) {
            return false;
        }
        throw self::error($this->ffi, $rc, 'delete');
    }

    /** Stores only if the key is present; false if it is missing. */
    public function replace(string $key, string $value, int $ttlMs = 0): bool
    {
        return $this->storeIf(self::MODE_REPLACE, $key, $value, 0, $ttlMs, 'replace');
    }

    /**
     * Stores only if the entry is still the one whose token get() or add()
     * gave ($cas); false if it was written or removed since.
     */
    public function cas(string $key, string $value, int $cas, int $ttlMs = 0): bool
    {
        if ($cas === 0) {
            throw new ValueError('Shmkv::cas(): Argument #3 ($cas) must be a cas token (not 0)');
        }
        return $this->storeIf(self::MODE_SET, $key, $value, $cas, $ttlMs, 'cas');
    }

    private function storeIf(int $mode, string $key, string $value, int $cas, int $ttlMs,
                             string $what): bool
    {
        $o = $this->ffi->new('shmkv_write_opts_t');
        $this->ffi->shmkv_write_opts_init(FFI::addr($o));
        $o->mode = $mode;
        $o->expect_cas = $cas;
        $o->ttl_ms = $ttlMs;
        $rc = $this->ffi->shmkv_store($this->h ?? $this->closed(), $key, \strlen($key),
                                      $value, \strlen($value), FFI::addr($o), null);
        if ($rc === 0) {
            return true;
        }
        if ($rc === self::ENOTFOUND || $rc === self::ECAS) {
            return false;
        }
        throw self::error($this->ffi, $rc, $what);
    }

    /** True if the key is present and not expired (copies nothing). */
    public function exists(string $key): bool
    {
        $len = $this->ffi->new('size_t[1]');
        $rc = $this->ffi->shmkv_get($this->h ?? $this->closed(), $key, \strlen($key), null, 0,
                                    $len, null);
        if ($rc === 0 || $rc === self::ETOOSMALL) {
            return true;
        }
        if ($rc === self::ENOTFOUND) {
            return false;
        }
        throw self::error($this->ffi, $rc, 'exists');
    }

    /** Removes every entry of the segment. */
    public function clear(): void
    {
        $rc = $this->ffi->shmkv_clear($this->h ?? $this->closed());
        if ($rc !== 0) {
            throw self::error($this->ffi, $rc, 'clear');
        }
    }

    /**
     * Atomic add; returns the new value. A missing key is created holding
     * $initial (delta not applied) with $ttlMs; an existing one keeps its TTL.
     */
    public function incr(string $key, int $delta = 1, int $initial = 0, int $ttlMs = 0): int
    {
        $rc = $this->ffi->shmkv_incr($this->h ?? $this->closed(), $key, \strlen($key),
                                     $delta, $initial, $ttlMs, $this->num);
        if ($rc !== 0) {
            throw self::error($this->ffi, $rc, 'incr');
        }
        return $this->num[0];
    }

    /** Remaining TTL in ms, -1 for no expiry, null when the key is missing. */
    public function ttl(string $key): ?int
    {
        $rc = $this->ffi->shmkv_ttl($this->h ?? $this->closed(), $key, \strlen($key), $this->num);
        if ($rc === 0) {
            return $this->num[0];
        }
        if ($rc === self::ENOTFOUND) {
            return null;
        }
        throw self::error($this->ffi, $rc, 'ttl');
    }

    /** Sets a new TTL (0 = persist); false when the key is missing. */
    public function touch(string $key, int $ttlMs): bool
    {
        $rc = $this->ffi->shmkv_touch($this->h ?? $this->closed(), $key, \strlen($key), $ttlMs);
        if ($rc === 0) {
            return true;
        }
        if ($rc === self::ENOTFOUND) {
            return false;
        }
        throw self::error($this->ffi, $rc, 'touch');
    }

    private function closed(): never
    {
        throw new ShmkvException('shmkv: handle is closed', self::EINVAL);
    }

    private static function error(FFI $ffi, int $rc, string $what): ShmkvException
    {
        // Read the thread's last error first: no other shmkv call in between.
        $detail = $ffi->shmkv_last_error();
        $name = $ffi->shmkv_strerror($rc);
        $msg = "shmkv $what: $name";
        if ($detail !== '' && $detail !== $name) {
            $msg .= ": $detail";
        }
        return new ShmkvException($msg, $rc);
    }
}
