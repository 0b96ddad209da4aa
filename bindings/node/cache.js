'use strict';
// The Cache class, over the addon; index.js re-exports it with the adapters.
//
// shmkv is a key-value cache in one shared-memory segment that
// every local process can open and use directly (no server, no socket).
//
//   const { Cache } = require('shmkv');
//   const cache = new Cache('sessions', { memory: '64M' });
//   cache.set('user:42', 'alice', { ttl: 30_000 });  // ms
//   cache.getString('user:42');                      // 'alice'
//   cache.incr('hits');                              // 1, then 2, 3, ...
//   cache.close();
//
// Every call is synchronous: it reads or writes shared memory in
// microseconds (see src/addon.cc for why there is no async variant). The
// one exception is getOrCompute(), which awaits the caller's own function
// (a database query, say) and waits for other processes with timers.
// Keys and values are strings (stored as UTF-8), Buffers, other
// ArrayBufferViews or ArrayBuffers; numbers and bigints are stored as their
// decimal text (so incr works on them). get() returns a Buffer,
// getString() a string. TTLs are milliseconds; 0, undefined or Infinity
// mean no expiry.
//
// Missing keys and failed conditions are answers (undefined, false); real
// failures throw an Error with .code = the library's symbolic name (e.g.
// 'SHMKV_EKEYTOOBIG', 'SHMKV_ENOTNUM'), .errno = its numeric code, and the
// library's own explanation in the message.

const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

const addon = loadAddon();
const { constants } = addon;

function loadAddon() {
  // SHMKV_NODE_ADDON names another build of the addon (tests of a build
  // made elsewhere); the default is cmake-js's output beside this file.
  const file = process.env.SHMKV_NODE_ADDON || path.join(__dirname, 'build', 'Release', 'shmkv.node');
  try {
    return require(file);
  } catch (error) {
    if (error.code === 'MODULE_NOT_FOUND') {
      error.message += '\nshmkv: the addon is not built; run `npx cmake-js compile` in ' +
        `${__dirname} (bindings/node/test.sh shows the whole build)`;
    }
    throw error;
  }
}

function rangeError(message) {
  const error = new RangeError(message);
  error.code = 'ERR_OUT_OF_RANGE';
  return error;
}

function typeError(message) {
  const error = new TypeError(message);
  error.code = 'ERR_INVALID_ARG_TYPE';
  return error;
}

const SIZE_UNITS = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

// "64K", "64M", "1G", "1T" (binary multiples; "MB" and "MiB" mean the same),
// or a number of bytes: the syntax of the shmkv CLI and shmkvd.
function parseSize(value, what = 'size') {
  if (typeof value === 'number' || typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) throw rangeError(`${what} must be a non-negative integer, got ${value}`);
    return n;
  }
  if (typeof value !== 'string') throw typeError(`${what} must be a number or a string like "64M"`);
  const m = /^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$/i.exec(value);
  if (!m || (m[3] && !m[2] && m[3].toLowerCase() !== 'b')) {
    throw rangeError(`${what}: cannot parse "${value}" (use a byte count or 64K, 64M, 1G, 1T)`);
  }
  const n = Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()];
  if (!Number.isSafeInteger(n)) throw rangeError(`${what}: "${value}" is too large`);
  return n;
}

// A TTL in ms for the library: 0 means no expiry; fractions round up, so a
// positive TTL never becomes "forever".
function ttlArg(ttl, what = 'ttl') {
  if (ttl === undefined || ttl === null || ttl === Infinity) return 0;
  if (typeof ttl === 'bigint') ttl = Number(ttl);
  if (typeof ttl !== 'number' || Number.isNaN(ttl)) throw typeError(`${what} must be a number of milliseconds`);
  if (ttl < 0) throw rangeError(`${what} must be >= 0 ms, got ${ttl}`);
  return Math.ceil(ttl);
}

function valueArg(value) {
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return value;
}

// A whole number of ms (fractions round up) of at least min; Infinity only
// where allowed.
function msArg(value, what, min, infinite = false) {
  if (typeof value === 'bigint') value = Number(value);
  if (typeof value !== 'number' || Number.isNaN(value)) throw typeError(`${what} must be a number of milliseconds`);
  if (value === Infinity && infinite) return value;
  if (value < min || !Number.isFinite(value)) {
    throw rangeError(`${what} must be a finite number of ms >= ${min}, got ${value}`);
  }
  return Math.ceil(value);
}

// A count for throttle(): a non-negative integer, as a number or a BigInt.
// Zero and too large values go through: the library answers SHMKV_EINVAL.
function countArg(value, what) {
  if (typeof value === 'bigint') {
    if (value < 0n || value > UINT64_MAX) {
      throw rangeError(`${what} must be a non-negative 64-bit integer, got ${value}`);
    }
    return value;
  }
  if (typeof value !== 'number') throw typeError(`${what} must be an integer`);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw rangeError(`${what} must be a non-negative integer, got ${value}`);
  }
  return value;
}

// The bytes of a key or value as a Buffer (a view, no copy, for binary
// data), as the addon reads them.
function bytesOf(value, what) {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  throw typeError(`The "${what}" argument must be a string, Buffer, TypedArray, DataView or ArrayBuffer`);
}

// getOrCompute's lease on key is the key "\0lease:" + key, as in the C++
// Cache::GetOrCompute and the other bindings, so that processes in every
// language share one lease per key.
const LEASE_PREFIX = Buffer.from('\0lease:', 'latin1');

function int64Arg(value, what) {
  if (typeof value === 'bigint') return value;
  if (!Number.isSafeInteger(value)) throw rangeError(`${what} must be a safe integer or a BigInt, got ${value}`);
  return BigInt(value);
}

const EVICT_POLICIES = {
  allkeys: constants.EVICT_ALLKEYS,
  volatile: constants.EVICT_VOLATILE,
  none: constants.EVICT_NONE,
};

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

class Cache {
  #native;
  #name;

  /**
   * Opens (by default creating if missing) the segment `name`: a POSIX shm
   * name ("sessions") or a file path on tmpfs/hugetlbfs ("/dev/shm/x").
   * An existing segment keeps its own geometry: memory, maxItems etc. only
   * shape a new one.
   *
   * options: create (default true, false when readonly), exclusive (fail
   * with SHMKV_EEXIST if it exists), readonly, memory ("64M" or bytes),
   * maxItems, maxKeyLen, maxValueLen, mode (file mode, e.g. 0o600),
   * evictPolicy ('allkeys' | 'volatile' | 'none'), preciseClock.
   */
  constructor(name, options = {}) {
    if (typeof name !== 'string') throw typeError('The "name" argument must be a string');
    const o = options ?? {};
    const readonly = Boolean(o.readonly);
    const create = o.create ?? !readonly;
    let flags = 0;
    if (create) flags |= constants.OPEN_CREATE;
    if (o.exclusive) flags |= constants.OPEN_EXCL;
    if (readonly) flags |= constants.OPEN_READONLY;
    if (o.preciseClock) flags |= constants.OPEN_PRECISE_CLOCK;
    const native = { flags };
    if (o.memory !== undefined) native.memoryBytes = parseSize(o.memory, 'memory');
    if (o.maxItems !== undefined) native.maxItems = parseSize(o.maxItems, 'maxItems');
    if (o.maxKeyLen !== undefined) native.maxKeyLen = parseSize(o.maxKeyLen, 'maxKeyLen');
    if (o.maxValueLen !== undefined) native.maxValueLen = parseSize(o.maxValueLen, 'maxValueLen');
    if (o.mode !== undefined) native.mode = o.mode;
    if (o.evictPolicy !== undefined) {
      if (!(o.evictPolicy in EVICT_POLICIES)) {
        throw rangeError(`evictPolicy must be one of ${Object.keys(EVICT_POLICIES).join(', ')}`);
      }
      native.evictPolicy = EVICT_POLICIES[o.evictPolicy];
    }
    this.#native = new addon.Cache(name, native);
    this.#name = name;
  }

  /** Removes the segment's name; processes that have it open keep using it. */
  static unlink(name) {
    return addon.unlink(name);
  }

  get name() {
    return this.#name;
  }

  get closed() {
    return this.#native.closed;
  }

  /** The value as a Buffer (a copy), or undefined if missing or expired. */
  get(key) {
    return this.#native.get(key, false);
  }

  /** The value decoded as UTF-8, or undefined. */
  getString(key) {
    return this.#native.get(key, true);
  }

  /** True if the key is present (no copy of the value is made). */
  has(key) {
    return this.#native.ttl(key) !== undefined;
  }

  /**
   * Stores value. options: a TTL in ms as a number, or {ttl, nx (only if
   * absent), xx (only if present), keepTtl (keep the current TTL), flags
   * (32 user bits, see gets), noEvict}. Returns true if stored, false if
   * nx/xx said no.
   */
  set(key, value, options) {
    const o = typeof options === 'number' ? { ttl: options } : (options ?? {});
    if (o.nx && o.xx) throw rangeError('set: nx and xx exclude each other');
    const mode = o.nx ? constants.ADD : o.xx ? constants.REPLACE : constants.SET;
    return this.#store(key, value, mode, o, 0n) !== null;
  }

  /** set with nx: stores only if the key is absent. */
  add(key, value, options) {
    const o = typeof options === 'number' ? { ttl: options } : (options ?? {});
    return this.#store(key, value, constants.ADD, o, 0n) !== null;
  }

  /** set with xx: stores only if the key is present. */
  replace(key, value, options) {
    const o = typeof options === 'number' ? { ttl: options } : (options ?? {});
    return this.#store(key, value, constants.REPLACE, o, 0n) !== null;
  }

  /**
   * {value: Buffer, cas: bigint, ttl: ms | -1, flags} or undefined. cas is a
   * version token that changes on every write of the key; pass it to cas().
   * options.string: value as a string instead of a Buffer.
   */
  gets(key, options) {
    return this.#native.gets(key, Boolean(options?.string));
  }

  /**
   * Serve-stale read: {value: Buffer, expiredMs} or undefined. Unlike get,
   * it also returns an entry whose TTL has passed but that is still in
   * memory, with expiredMs = how long ago it expired (0: not expired). Such
   * an entry stays readable until something reclaims it: a plain get, ttl,
   * has or write of the key, the janitor (shmkvd) or eviction; getStale
   * itself never removes it. options.string: value as a string.
   */
  getStale(key, options) {
    return this.#native.getStale(key, Boolean(options?.string));
  }

  /**
   * Stores value only if the key's cas token is still `token` (from gets).
   * False if the key changed or vanished since. options as for set (nx/xx
   * excepted).
   */
  cas(key, value, token, options) {
    if (typeof token !== 'bigint' || token <= 0n) throw typeError('cas: token must be the BigInt from gets()');
    const o = typeof options === 'number' ? { ttl: options } : (options ?? {});
    return this.#store(key, value, constants.SET, o, token) !== null;
  }

  #store(key, value, mode, o, expectCas) {
    let writeFlags = 0;
    if (o.keepTtl) writeFlags |= constants.WRITE_KEEPTTL;
    if (o.noEvict) writeFlags |= constants.WRITE_NOEVICT;
    const userFlags = o.flags ?? 0;
    if (!Number.isInteger(userFlags) || userFlags < 0 || userFlags > 0xffffffff) {
      throw rangeError('flags must be a 32-bit unsigned integer');
    }
    return this.#native.store(key, valueArg(value), mode, ttlArg(o.ttl), expectCas, userFlags, writeFlags);
  }

  /** Deletes the key; false if it was missing. */
  delete(key) {
    return this.#native.delete(key, 0n);
  }

  /**
   * Atomically adds `by` (may be negative) to a decimal integer value and
   * returns the result. A missing (or expired) key counts as
   * options.initial (default 0): the first incr stores and returns
   * initial + by, with options.ttl, as Redis's INCRBY does (and the Python
   * binding; the C shmkv_incr itself stores `initial` unchanged, so this
   * passes it initial + by). An existing key keeps its TTL. Values are
   * signed 64-bit: the result is a number, or a BigInt when `by` or
   * `initial` is a BigInt or the result is beyond Number.MAX_SAFE_INTEGER
   * (never a rounded number). Throws SHMKV_ENOTNUM on a value that is not a
   * decimal integer, SHMKV_EOVERFLOW past int64.
   */
  incr(key, by = 1, options) {
    const initial = options?.initial ?? 0;
    const delta = int64Arg(by, 'by');
    const start = int64Arg(initial, 'initial') + delta;
    if (start < INT64_MIN || start > INT64_MAX) {
      const error = new Error('incr: integer overflow (initial + by does not fit in 64 bits)');
      error.code = 'SHMKV_EOVERFLOW';
      error.errno = addon.codes.SHMKV_EOVERFLOW;
      throw error;
    }
    const result = this.#native.incr(key, delta, start, ttlArg(options?.ttl));
    if (typeof by === 'bigint' || typeof initial === 'bigint') return result;
    return result >= MIN_SAFE && result <= MAX_SAFE ? Number(result) : result;
  }

  /** incr by -by. */
  decr(key, by = 1, options) {
    return this.incr(key, -by, options);
  }

  /** Sets a new TTL in ms (0 = no expiry); false if the key is missing. */
  touch(key, ttl) {
    return this.#native.touch(key, ttlArg(ttl));
  }

  /**
   * Rate limiter (GCRA) on key, shared by every process on the segment:
   * allows bursts of up to `burst` requests, then `rate` per `periodMs`,
   * decided and recorded in one atomic step. Returns {allowed, retryAfterMs
   * (0 when allowed, else ms until one request would be, rounded up),
   * remaining (how many more would be allowed right now)}. A denied request
   * records nothing. The key expires once the limiter is back to a full
   * burst. rate, periodMs and burst must be at least 1, at most one request
   * per microsecond (else SHMKV_EINVAL); a key holding anything else than
   * a limiter throws SHMKV_ENOTNUM.
   *
   *   const { allowed, retryAfterMs } = cache.throttle(`rl:${user}`, 10, 1000, 20);
   */
  throttle(key, rate, periodMs, burst) {
    return this.#native.throttle(key, countArg(rate, 'rate'), countArg(periodMs, 'periodMs'),
      countArg(burst, 'burst'));
  }

  /**
   * Cache-aside with stampede protection, across every process on the
   * segment (in any language): resolves to the value of key; on a miss
   * exactly one caller runs `await fn()` and stores its result with
   * options.ttl, while the others (in this process or any other) wait for
   * it. fn returns (or resolves to) a value as set takes it. The caller
   * that computes holds a lease, the key "\0lease:" + key added with a TTL
   * of options.lease; the others poll with a backoff of 1 ms doubling to
   * 50 ms (timers: the event loop is never blocked) until the value is
   * there, or until the lease lapses (its holder died or hung) and one of
   * them takes over. After options.wait ms they reject with SHMKV_EBUSY;
   * with options.serveStale, a caller that finds an expired value still in
   * memory (see getStale) gets it at once instead of waiting. If fn throws
   * or rejects, nothing is stored, the lease is released and the error
   * propagates. The key may be at most maxKeyLen - 7 bytes.
   *
   * options: ttl (of the computed value; default none), lease (default
   * 10000 ms), wait (default 10000 ms; Infinity waits as long as it
   * takes), serveStale (default false), string (resolve to a string
   * instead of a Buffer).
   *
   *   const row = await cache.getOrCompute(`user:${id}`, async () => JSON.stringify(await db.user(id)),
   *     { ttl: 60_000, string: true });
   */
  async getOrCompute(key, fn, options) {
    if (typeof fn !== 'function') throw typeError('getOrCompute: fn must be a function');
    const o = options ?? {};
    const ttl = ttlArg(o.ttl);
    const lease = msArg(o.lease ?? 10_000, 'lease', 1);
    const wait = msArg(o.wait ?? 10_000, 'wait', 0, true);
    const asString = Boolean(o.string);
    const native = this.#native;
    const leaseKey = Buffer.concat([LEASE_PREFIX, bytesOf(key, 'key')]);
    const holder = `pid ${process.pid}`;
    const deadline = performance.now() + wait;
    let backoff = 1;
    for (;;) {
      const stale = native.getStale(key, asString);
      if (stale !== undefined && stale.expiredMs === 0) return stale.value;
      const cas = native.store(leaseKey, holder, constants.ADD, lease, 0n, 0, constants.WRITE_NOEVICT);
      if (cas !== null) {
        try {
          // The value may have been stored between the read and the lease.
          // A serve-stale read, not get: get would reclaim an expired value
          // that the other callers are being served meanwhile.
          const current = native.getStale(key, asString);
          if (current !== undefined && current.expiredMs === 0) return current.value;
          const computed = valueArg(await fn());
          native.store(key, computed, constants.SET, ttl, 0n, 0, 0);
          const bytes = bytesOf(computed, 'value');
          if (asString) return typeof computed === 'string' ? computed : bytes.toString('utf8');
          return typeof computed === 'string' ? bytes : Buffer.from(bytes);
        } finally {
          // Only our own lease (expect its cas): if it lapsed and another
          // caller took it, this deletes nothing. A failure here (the cache
          // closed meanwhile) leaves the lease to its TTL.
          try {
            native.delete(leaseKey, cas);
          } catch {
            // the lease lapses by itself
          }
        }
      }
      if (stale !== undefined && o.serveStale) return stale.value;
      const left = deadline - performance.now();
      if (left <= 0) {
        const error = new Error(`getOrCompute: not computed within ${wait} ms by the holder of the lease ` +
          '(contention bound hit; retry)');
        error.code = 'SHMKV_EBUSY';
        error.errno = addon.codes.SHMKV_EBUSY;
        throw error;
      }
      await sleep(Math.min(backoff, left));
      backoff = Math.min(backoff * 2, 50);
    }
  }

  /** Remaining TTL in ms, -1 for a key with no expiry, undefined if missing. */
  ttl(key) {
    return this.#native.ttl(key);
  }

  /**
   * The values of many keys in one batch (shmkv_mget, faster per key than
   * single gets): Buffers, or undefined for missing keys.
   * options.string: strings instead of Buffers.
   */
  mget(keys, options) {
    return this.#native.mget(keys, Boolean(options?.string));
  }

  /**
   * mget with each entry's user flags: {value: Buffer, flags} or undefined
   * for missing keys (one shmkv_mget call, as mget).
   */
  mgetItems(keys) {
    return this.#native.mget(keys, false, true);
  }

  /**
   * Generator over the keys that start with prefix (strings; Buffers with
   * options.buffer). Every key present for the whole scan is seen at least
   * once; keys written meanwhile may or may not be. Writers are never
   * blocked, and the scan may be paused between steps: each step examines
   * options.count index slots (default 1024).
   */
  *scan(prefix = '', options) {
    const count = options?.count ?? 1024;
    if (!Number.isInteger(count) || count < 1 || count > 0xffffffff) throw rangeError('count must be a positive integer');
    const asString = !options?.buffer;
    let cursor = 0;
    do {
      const [next, keys] = this.#native.scanStep(cursor, prefix, count, asString);
      yield* keys;
      cursor = next;
    } while (cursor !== 0);
  }

  /** All keys that start with prefix, as an array (see scan). */
  keys(prefix = '', options) {
    return [...this.scan(prefix, options)];
  }

  /** Removes every entry of the segment (for every process). */
  clear() {
    this.#native.clear();
  }

  /** Counters and sizes of the segment (shmkv_stats), as numbers. */
  stats() {
    return this.#native.stats();
  }

  /** Frees what dead processes held; returns how many were recovered. */
  recover() {
    return this.#native.recover();
  }

  /** Detaches; idempotent. Any later call throws SHMKV_ECLOSED. */
  close() {
    this.#native.close();
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Cache.prototype[Symbol.dispose] = Cache.prototype.close;
}

module.exports = {
  Cache,
  unlink: addon.unlink,
  version: addon.version,
  codes: addon.codes,
  parseSize,
};
