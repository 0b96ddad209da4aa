'use strict';
// The Cache class (index.js over src/addon.cc): every method, string and
// binary keys and values, TTLs, cas tokens, batch get, scans, errors with
// the library's codes, and two processes (child_process.fork) on one
// segment: each sees the other's writes, and concurrent incr is exact.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const { Cache, unlink, version, codes, parseSize } = require('../index.js');
const {
  uniqueSegment, waitFor, forkWorker, cacheOpener, assertShmkvError,
} = require('./helpers.js');

const open = cacheOpener();

describe('opening', () => {
  it('creates a missing segment by default and reopens it with its data', () => {
    const a = open('open');
    a.set('k', 'v');
    const b = new Cache(a.name, { create: false });
    assert.equal(b.getString('k'), 'v');
    b.close();
    assert.equal(b.closed, true);
    assert.equal(a.closed, false);
  });

  it('create: false on a missing segment throws SHMKV_ENOSEG', () => {
    assertShmkvError(() => new Cache(uniqueSegment('missing'), { create: false }), 'SHMKV_ENOSEG',
      /does not exist/);
  });

  it('exclusive on an existing segment throws SHMKV_EEXIST', () => {
    const a = open('excl');
    assertShmkvError(() => new Cache(a.name, { exclusive: true }), 'SHMKV_EEXIST');
  });

  it('readonly reads but refuses writes with SHMKV_EREADONLY', () => {
    const a = open('ro');
    a.set('k', 'v');
    const ro = new Cache(a.name, { readonly: true });
    assert.equal(ro.getString('k'), 'v');
    assertShmkvError(() => ro.set('k', 'w'), 'SHMKV_EREADONLY');
    ro.close();
  });

  it('a bad name throws SHMKV_EINVAL with the reason', () => {
    assertShmkvError(() => new Cache('bad name!'), 'SHMKV_EINVAL');
    assert.throws(() => new Cache(42), { code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('takes memory as "4M" or bytes, and geometry options', () => {
    const a = open('geom', { memory: 2 * 1024 * 1024, maxItems: 1000, evictPolicy: 'volatile' });
    const s = a.stats();
    assert.equal(s.memoryBytes, 2 * 1024 * 1024);
    assert.equal(s.capacityItems, 1000);
    assert.throws(() => new Cache(uniqueSegment('x'), { evictPolicy: 'lru' }), { code: 'ERR_OUT_OF_RANGE' });
  });

  it('parseSize follows the CLI syntax', () => {
    assert.equal(parseSize('64M'), 64 * 2 ** 20);
    assert.equal(parseSize('64mib'), 64 * 2 ** 20);
    assert.equal(parseSize('2K'), 2048);
    assert.equal(parseSize('1G'), 2 ** 30);
    assert.equal(parseSize('512'), 512);
    assert.equal(parseSize(1000), 1000);
    assert.throws(() => parseSize('64X'), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => parseSize('-1'), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => parseSize(1.5), { code: 'ERR_OUT_OF_RANGE' });
  });

  it('unlink removes the name; version and codes are exported', () => {
    const name = uniqueSegment('unlink');
    new Cache(name).close();
    assert.equal(unlink(name), true);
    assert.equal(Cache.unlink(name), false);
    assert.match(version, /^\d+\.\d+\.\d+/);
    assert.equal(codes.SHMKV_ENOTFOUND, -1001);
  });
});

describe('get and set', () => {
  let cache;
  before(() => {
    cache = open('getset');
  });

  it('stores strings as UTF-8 and returns a Buffer or a string', () => {
    assert.equal(cache.set('greeting', 'héllo wörld ✓ 🎉'), true);
    assert.deepEqual(cache.get('greeting'), Buffer.from('héllo wörld ✓ 🎉', 'utf8'));
    assert.equal(cache.getString('greeting'), 'héllo wörld ✓ 🎉');
  });

  it('returns undefined for a missing key', () => {
    assert.equal(cache.get('nope'), undefined);
    assert.equal(cache.getString('nope'), undefined);
    assert.equal(cache.has('nope'), false);
  });

  it('is binary-safe for keys and values: every byte value, NUL included', () => {
    const all = Buffer.alloc(256);
    for (let i = 0; i < 256; i += 1) all[i] = i;
    const key = Buffer.from([0, 1, 0, 255, 0x80]);
    cache.set(key, all);
    assert.deepEqual(cache.get(key), all);
    assert.equal(cache.has(key), true);
    assert.equal(cache.get(Buffer.from([0, 1, 0, 255])), undefined);
  });

  it('treats a string key and a Buffer of its UTF-8 as the same key', () => {
    cache.set('ключ', 'a');
    assert.equal(cache.getString(Buffer.from('ключ')), 'a');
  });

  it('accepts Uint8Array, DataView, ArrayBuffer and subarray views', () => {
    const bytes = new Uint8Array([9, 8, 7, 6, 5]);
    cache.set('u8', bytes);
    assert.deepEqual([...cache.get('u8')], [9, 8, 7, 6, 5]);
    cache.set('dv', new DataView(bytes.buffer, 1, 3));
    assert.deepEqual([...cache.get('dv')], [8, 7, 6]);
    cache.set('ab', bytes.buffer);
    assert.deepEqual([...cache.get('ab')], [9, 8, 7, 6, 5]);
    const big = Buffer.from('xxhelloxx');
    cache.set(big.subarray(2, 7), big.subarray(2, 7));
    assert.equal(cache.getString('hello'), 'hello');
    cache.set(new Uint16Array([0x4241]), 'u16 key');
    assert.equal(cache.getString('AB'), 'u16 key');
  });

  it('stores numbers and bigints as decimal text', () => {
    cache.set('num', 42);
    cache.set('big', 2n ** 62n);
    assert.equal(cache.getString('num'), '42');
    assert.equal(cache.getString('big'), String(2n ** 62n));
  });

  it('stores an empty value', () => {
    cache.set('empty', '');
    assert.deepEqual(cache.get('empty'), Buffer.alloc(0));
    assert.equal(cache.getString('empty'), '');
    assert.equal(cache.has('empty'), true);
  });

  it('returns a copy, independent of later writes', () => {
    cache.set('copy', 'one');
    const v = cache.get('copy');
    cache.set('copy', 'two');
    assert.equal(v.toString(), 'one');
  });

  it('reads values larger than its buffer, and smaller ones after', () => {
    const big = Buffer.alloc(300 * 1024, 'z');
    big[12345] = 1;
    cache.set('big', big);
    assert.deepEqual(cache.get('big'), big);
    assert.equal(cache.getString('big').length, big.length);
    cache.set('small', 'x');
    assert.equal(cache.getString('small'), 'x');
  });

  it('rejects keys and values of other types with ERR_INVALID_ARG_TYPE', () => {
    assert.throws(() => cache.get(42), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
    assert.throws(() => cache.set('k', {}), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cache.set(undefined, 'v'), { code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('nx stores only if absent, xx only if present', () => {
    assert.equal(cache.set('cond', 'a', { nx: true }), true);
    assert.equal(cache.set('cond', 'b', { nx: true }), false);
    assert.equal(cache.getString('cond'), 'a');
    assert.equal(cache.set('cond', 'c', { xx: true }), true);
    assert.equal(cache.getString('cond'), 'c');
    assert.equal(cache.set('absent', 'c', { xx: true }), false);
    assert.equal(cache.has('absent'), false);
    assert.throws(() => cache.set('cond', 'd', { nx: true, xx: true }), { code: 'ERR_OUT_OF_RANGE' });
  });

  it('add and replace', () => {
    assert.equal(cache.add('ar', '1'), true);
    assert.equal(cache.add('ar', '2'), false);
    assert.equal(cache.replace('ar', '3'), true);
    assert.equal(cache.getString('ar'), '3');
    assert.equal(cache.replace('ar-missing', '3'), false);
    assert.equal(cache.add('ar-ttl', '1', { ttl: 60_000 }) && cache.ttl('ar-ttl') > 0, true);
  });

  it('delete returns whether the key was there', () => {
    cache.set('del', 'x');
    assert.equal(cache.delete('del'), true);
    assert.equal(cache.delete('del'), false);
    assert.equal(cache.get('del'), undefined);
  });
});

describe('errors', () => {
  let cache;
  before(() => {
    cache = open('errors', { memory: '2M', maxKeyLen: 16, maxValueLen: 1024 });
  });

  it('a key above max_key_len: SHMKV_EKEYTOOBIG with the limit in the message', () => {
    assertShmkvError(() => cache.set('k'.repeat(17), 'v'), 'SHMKV_EKEYTOOBIG', /max_key_len 16/);
    assertShmkvError(() => cache.get('k'.repeat(17)), 'SHMKV_EKEYTOOBIG');
  });

  it('a value above max_value_len: SHMKV_EVALTOOBIG', () => {
    assertShmkvError(() => cache.set('k', Buffer.alloc(1025)), 'SHMKV_EVALTOOBIG');
  });

  it('an empty key: SHMKV_EINVAL', () => {
    assertShmkvError(() => cache.get(''), 'SHMKV_EINVAL', /empty/);
    assertShmkvError(() => cache.set(Buffer.alloc(0), 'v'), 'SHMKV_EINVAL');
  });

  it('errors are Error instances with the operation in the message', () => {
    try {
      cache.set('k'.repeat(17), 'v');
      assert.fail('no throw');
    } catch (error) {
      assert.ok(error instanceof Error);
      assert.match(error.message, /^set: key too long \(/);
    }
  });

  it('a closed cache throws SHMKV_ECLOSED; close is idempotent', () => {
    const c = new Cache(cache.name);
    c.close();
    c.close();
    assert.throws(() => c.get('k'), { code: 'SHMKV_ECLOSED' });
    assert.throws(() => c.set('k', 'v'), { code: 'SHMKV_ECLOSED' });
  });
});

describe('TTL', () => {
  let cache;
  before(() => {
    cache = open('ttl');
  });

  it('ttl() is -1 without expiry, undefined when missing, the remaining ms otherwise', () => {
    cache.set('forever', 'v');
    assert.equal(cache.ttl('forever'), -1);
    assert.equal(cache.ttl('missing'), undefined);
    cache.set('timed', 'v', { ttl: 60_000 });
    const ttl = cache.ttl('timed');
    assert.ok(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
    cache.set('short', 'v', 30_000);
    assert.ok(cache.ttl('short') <= 30_000);
  });

  it('an entry expires by itself', async () => {
    cache.set('expiring', 'v', { ttl: 50 });
    assert.equal(cache.getString('expiring'), 'v');
    await waitFor(() => cache.get('expiring') === undefined, 5000, 'expiry');
    assert.equal(cache.ttl('expiring'), undefined);
    assert.equal(cache.has('expiring'), false);
  });

  it('touch sets a new TTL, 0 removes it, false for a missing key', () => {
    cache.set('t', 'v', { ttl: 1000 });
    assert.equal(cache.touch('t', 120_000), true);
    assert.ok(cache.ttl('t') > 100_000);
    assert.equal(cache.touch('t', 0), true);
    assert.equal(cache.ttl('t'), -1);
    assert.equal(cache.touch('t-missing', 1000), false);
  });

  it('keepTtl keeps the TTL across a write; a plain set replaces it', () => {
    cache.set('kt', 'a', { ttl: 90_000 });
    cache.set('kt', 'b', { keepTtl: true });
    assert.ok(cache.ttl('kt') > 80_000);
    cache.set('kt', 'c');
    assert.equal(cache.ttl('kt'), -1);
  });

  it('0, undefined and Infinity mean no expiry; fractions round up; negatives throw', () => {
    for (const ttl of [0, undefined, Infinity]) {
      cache.set('n', 'v', { ttl });
      assert.equal(cache.ttl('n'), -1);
    }
    cache.set('frac', 'v', { ttl: 0.25 });
    assert.notEqual(cache.ttl('frac'), -1);
    assert.throws(() => cache.set('n', 'v', { ttl: -1 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cache.touch('n', 'soon'), { code: 'ERR_INVALID_ARG_TYPE' });
    assertShmkvError(() => cache.set('n', 'v', { ttl: 2 ** 41 }), 'SHMKV_EINVAL', /2\^40/);
  });
});

describe('incr', () => {
  let cache;
  before(() => {
    cache = open('incr');
  });

  it('counts a missing key as initial (default 0), as Redis\'s INCRBY does', () => {
    assert.equal(cache.incr('c'), 1);
    assert.equal(cache.incr('c'), 2);
    assert.equal(cache.incr('c', 10), 12);
    assert.equal(cache.getString('c'), '12');
    assert.equal(cache.incr('c2', 5, { initial: 100 }), 105);
    assert.equal(cache.incr('c2', 5, { initial: 100 }), 110);
    assert.equal(cache.decr('c3'), -1);
    assert.equal(cache.incr('c4', 0), 0);
  });

  it('decr and negative deltas', () => {
    cache.set('d', '10');
    assert.equal(cache.decr('d'), 9);
    assert.equal(cache.decr('d', 4), 5);
    assert.equal(cache.incr('d', -10), -5);
  });

  it('works on a value set as a decimal string or number', () => {
    cache.set('s', '41');
    assert.equal(cache.incr('s'), 42);
    cache.set('n', -7);
    assert.equal(cache.incr('n'), -6);
  });

  it('a ttl applies to a key it creates; an existing key keeps its own', () => {
    cache.incr('ct', 1, { ttl: 60_000 });
    assert.ok(cache.ttl('ct') > 0);
    cache.set('ck', '1');
    cache.incr('ck', 1, { ttl: 60_000 });
    assert.equal(cache.ttl('ck'), -1);
  });

  it('returns a BigInt for BigInt arguments or a result beyond 2^53', () => {
    assert.equal(cache.incr('b', 1n), 1n);
    assert.equal(cache.incr('b', 2n ** 60n), 2n ** 60n + 1n);
    cache.set('edge', String(Number.MAX_SAFE_INTEGER));
    assert.equal(cache.incr('edge', 1), BigInt(Number.MAX_SAFE_INTEGER) + 1n);
    cache.set('edge2', String(Number.MAX_SAFE_INTEGER - 1));
    assert.equal(cache.incr('edge2', 1), Number.MAX_SAFE_INTEGER);
    assert.throws(() => cache.incr('b', 1.5), { code: 'ERR_OUT_OF_RANGE' });
  });

  it('SHMKV_ENOTNUM on a non-integer value, SHMKV_EOVERFLOW past int64', () => {
    cache.set('text', 'abc');
    assertShmkvError(() => cache.incr('text'), 'SHMKV_ENOTNUM');
    cache.set('max', String(2n ** 63n - 1n));
    assertShmkvError(() => cache.incr('max'), 'SHMKV_EOVERFLOW');
    assert.equal(cache.getString('max'), String(2n ** 63n - 1n));
    assert.throws(() => cache.incr('fresh', 1n, { initial: 2n ** 63n - 1n }), { code: 'SHMKV_EOVERFLOW' });
    assert.equal(cache.has('fresh'), false);
  });
});

describe('gets and cas', () => {
  let cache;
  before(() => {
    cache = open('cas');
  });

  it('gets returns value, cas token, ttl and flags', () => {
    cache.set('g', 'v', { ttl: 60_000, flags: 0xdeadbeef });
    const item = cache.gets('g');
    assert.deepEqual(item.value, Buffer.from('v'));
    assert.equal(typeof item.cas, 'bigint');
    assert.ok(item.ttl > 0);
    assert.equal(item.flags, 0xdeadbeef);
    assert.equal(cache.gets('g', { string: true }).value, 'v');
    assert.equal(cache.gets('g-missing'), undefined);
    assert.throws(() => cache.set('g', 'v', { flags: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  });

  it('cas stores only while the token is current', () => {
    cache.set('c', 'v1');
    const { cas } = cache.gets('c');
    assert.equal(cache.cas('c', 'v2', cas), true);
    assert.equal(cache.getString('c'), 'v2');
    assert.equal(cache.cas('c', 'v3', cas), false);
    assert.equal(cache.getString('c'), 'v2');
  });

  it('every write changes the token, touch and incr included', () => {
    cache.set('w', '1');
    const tokens = [cache.gets('w').cas];
    cache.touch('w', 1000);
    tokens.push(cache.gets('w').cas);
    cache.incr('w');
    tokens.push(cache.gets('w').cas);
    cache.set('w', '5');
    tokens.push(cache.gets('w').cas);
    assert.equal(new Set(tokens).size, 4);
  });

  it('cas on a deleted key is false; a bad token throws', () => {
    cache.set('x', '1');
    const { cas } = cache.gets('x');
    cache.delete('x');
    assert.equal(cache.cas('x', '2', cas), false);
    assert.equal(cache.has('x'), false);
    assert.throws(() => cache.cas('x', '2', 5), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cache.cas('x', '2', 0n), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe('mget', () => {
  let cache;
  before(() => {
    cache = open('mget', { memory: '8M' });
  });

  it('returns values in key order, undefined for missing ones', () => {
    cache.set('a', '1');
    cache.set(Buffer.from([0, 1]), Buffer.from([2, 3]));
    const got = cache.mget(['a', 'missing', Buffer.from([0, 1])]);
    assert.deepEqual(got, [Buffer.from('1'), undefined, Buffer.from([2, 3])]);
    assert.deepEqual(cache.mget(['a', 'missing'], { string: true }), ['1', undefined]);
    assert.deepEqual(cache.mget([]), []);
  });

  it('handles many keys and values larger than its slots', () => {
    const keys = [];
    const expected = [];
    for (let i = 0; i < 300; i += 1) {
      const key = `key:${i}:${'é'.repeat(i % 7)}`;
      const value = i % 50 === 0 ? 'L'.repeat(100_000 + i) : `value-${i}`;
      keys.push(key);
      if (i % 3 === 0) {
        expected.push(undefined);
      } else {
        cache.set(key, value);
        expected.push(value);
      }
    }
    assert.deepEqual(cache.mget(keys, { string: true }), expected);
    // A second call, after the slots grew, must agree.
    assert.deepEqual(cache.mget(keys, { string: true }), expected);
  });

  it('mgetItems returns each value with its user flags', () => {
    cache.set('f:1', 'one', { flags: 7 });
    cache.set('f:2', 'L'.repeat(200_000), { flags: 9 }); // beyond the slots: read alone
    const got = cache.mgetItems(['f:1', 'f:missing', 'f:2']);
    assert.equal(got.length, 3);
    assert.deepEqual(got[0], { value: Buffer.from('one'), flags: 7 });
    assert.equal(got[1], undefined);
    assert.equal(got[2].flags, 9);
    assert.equal(got[2].value.length, 200_000);
  });

  it('a bad key throws; a non-array throws TypeError', () => {
    assertShmkvError(() => cache.mget(['a', '']), 'SHMKV_EINVAL');
    assert.throws(() => cache.mget('a'), { name: 'TypeError' });
    assert.throws(() => cache.mget([1]), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe('scan, keys, clear, stats', () => {
  let cache;
  before(() => {
    cache = open('scan', { memory: '8M' });
  });

  it('keys(prefix) finds exactly the keys under the prefix', () => {
    cache.clear();
    for (let i = 0; i < 500; i += 1) cache.set(`user:${i}`, 'x');
    for (let i = 0; i < 50; i += 1) cache.set(`order:${i}`, 'x');
    const users = cache.keys('user:');
    assert.equal(users.length, 500);
    assert.equal(new Set(users).size, 500);
    assert.ok(users.every((k) => k.startsWith('user:')));
    assert.equal(cache.keys().length, 550);
    assert.equal(cache.keys('nothing:').length, 0);
  });

  it('scan is a lazy generator that pages with count and allows deletes', () => {
    const seen = new Set();
    const it = cache.scan('order:', { count: 8 });
    assert.equal(typeof it.next, 'function');
    for (const key of it) {
      seen.add(key);
      cache.delete(key);
    }
    assert.equal(seen.size, 50);
    assert.equal(cache.keys('order:').length, 0);
    assert.throws(() => [...cache.scan('', { count: 0 })], { code: 'ERR_OUT_OF_RANGE' });
  });

  it('buffer: true yields Buffers (binary keys survive)', () => {
    cache.set(Buffer.from([0x62, 0xff, 0x00]), 'v');
    const keys = cache.keys(Buffer.from([0x62, 0xff]), { buffer: true });
    assert.deepEqual(keys, [Buffer.from([0x62, 0xff, 0x00])]);
  });

  it('stats counts items, hits and misses', () => {
    cache.clear();
    const before = cache.stats();
    cache.set('s1', 'v');
    cache.get('s1');
    cache.get('s2');
    const s = cache.stats();
    assert.equal(s.items, 1);
    assert.equal(s.hits - before.hits, 1);
    assert.equal(s.misses - before.misses, 1);
    assert.ok(s.sets > before.sets);
    assert.ok(s.attachedProcesses >= 1);
    for (const name of ['memoryBytes', 'memoryUsed', 'capacityItems', 'evictions', 'expirations']) {
      assert.equal(typeof s[name], 'number', name);
    }
    assert.equal(typeof cache.recover(), 'number');
  });

  it('clear empties the segment', () => {
    cache.set('c', 'v');
    cache.clear();
    assert.equal(cache.keys().length, 0);
    assert.equal(cache.get('c'), undefined);
  });
});

describe('threads', () => {
  it('a worker thread opens the segment and sees the main thread\'s writes', async () => {
    const cache = open('thread');
    cache.set('from-main', 'hello');
    const worker = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      const { Cache } = require(workerData.index);
      const c = new Cache(workerData.name, { create: false });
      const seen = c.getString('from-main');
      c.set('from-worker', 'hi');
      c.close();
      parentPort.postMessage(seen);
    `, { eval: true, workerData: { index: require.resolve('../index.js'), name: cache.name } });
    const [seen] = await new Promise((resolve, reject) => {
      worker.once('message', (m) => resolve([m]));
      worker.once('error', reject);
    });
    await new Promise((resolve) => worker.once('exit', resolve));
    assert.equal(seen, 'hello');
    assert.equal(cache.getString('from-worker'), 'hi');
  });
});

describe('two processes', () => {
  let cache;
  let a;
  let b;
  before(async () => {
    cache = open('procs', { memory: '8M' });
    [a, b] = await Promise.all([forkWorker(cache.name), forkWorker(cache.name)]);
  });
  after(() => {
    a?.close();
    b?.close();
  });

  it('runs in separate processes', async () => {
    const pids = new Set([process.pid, await a.call('pid'), await b.call('pid')]);
    assert.equal(pids.size, 3);
  });

  it('each sees the others\' writes, deletes and TTLs', async () => {
    cache.set('from-parent', 'p');
    assert.equal(await a.call('getString', 'from-parent'), 'p');
    await a.call('set', 'from-a', Buffer.from([0, 0xff]), { ttl: 60_000 });
    assert.deepEqual(cache.get('from-a'), Buffer.from([0, 0xff]));
    assert.deepEqual(Buffer.from(await b.call('get', 'from-a')), Buffer.from([0, 0xff]));
    assert.ok((await b.call('ttl', 'from-a')) > 0);
    await b.call('delete', 'from-parent');
    assert.equal(cache.get('from-parent'), undefined);
    assert.equal(await a.call('get', 'from-parent'), undefined);
  });

  it('add is won by exactly one process', async () => {
    const results = await Promise.all([
      a.call('add', 'lock', 'a'),
      b.call('add', 'lock', 'b'),
    ]);
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(cache.getString('lock'), results[0] ? 'a' : 'b');
  });

  it('concurrent incr from two processes and this one is exact, creation included', async () => {
    const n = 20_000;
    cache.delete('counter');
    const running = Promise.all([a.call('incrLoop', 'counter', n), b.call('incrLoop', 'counter', n)]);
    for (let i = 0; i < 2000; i += 1) cache.incr('counter');
    await running;
    assert.equal(cache.getString('counter'), String(2 * n + 2000));
    assert.equal(await a.call('getString', 'counter'), String(2 * n + 2000));
  });

  it('errors carry their code across processes too', async () => {
    await assert.rejects(a.call('incr', 'lock'), { code: 'SHMKV_ENOTNUM' });
  });
});
