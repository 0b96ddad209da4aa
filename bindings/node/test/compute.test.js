'use strict';
// The rate limiter (throttle, GCRA), serve-stale reads (getStale) and
// cache-aside with stampede protection (getOrCompute): exact limiter
// decisions that no clock can make flaky (an interval of a minute), stale
// values until something reclaims them, one computation per miss with the
// C++ lease protocol, failures neither stored nor leaving a lease behind,
// serve-stale and the wait bound around a lease held by someone else, and
// several forked processes missing one key at once computing it once.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { Cache, codes } = require('../index.js');
const {
  uniqueSegment, waitFor, forkWorker, cacheOpener, assertShmkvError,
} = require('./helpers.js');

const open = cacheOpener();

/** The lease key of getOrCompute (and of the C++ Cache::GetOrCompute). */
function leaseKey(key) {
  return Buffer.concat([Buffer.from('\0lease:', 'latin1'), Buffer.isBuffer(key) ? key : Buffer.from(key)]);
}

/** Polls getStale until key has expired (a plain read would reclaim it). */
async function untilExpired(cache, key, options) {
  let item;
  await waitFor(() => {
    item = cache.getStale(key, options);
    return item !== undefined && item.expiredMs > 0;
  }, 5000, `${key} to expire`);
  return item;
}

describe('throttle', () => {
  const MINUTE = 60_000;

  it('a fresh limiter admits exactly burst at once, counting down, then denies', () => {
    const cache = open('gcra');
    // One request a minute: no clock can refill it during the test.
    for (let i = 1; i <= 5; i += 1) {
      assert.deepEqual(cache.throttle('api:alice', 1, MINUTE, 5),
        { allowed: true, retryAfterMs: 0, remaining: 5 - i });
    }
    for (let i = 0; i < 3; i += 1) {
      const denied = cache.throttle('api:alice', 1, MINUTE, 5);
      assert.equal(denied.allowed, false);
      assert.equal(denied.remaining, 0);
      assert.ok(denied.retryAfterMs > 0 && denied.retryAfterMs <= MINUTE, `retryAfterMs ${denied.retryAfterMs}`);
    }
    // The key holds the limiter until it is back to a full burst (5 minutes).
    const ttl = cache.ttl('api:alice');
    assert.ok(ttl > 4 * MINUTE && ttl <= 5 * MINUTE + 2, `ttl ${ttl}`);
    // Another key is another limiter.
    assert.deepEqual(cache.throttle('api:bob', 1, MINUTE, 5), { allowed: true, retryAfterMs: 0, remaining: 4 });
  });

  it('the interval is period / rate: 4 per minute with a burst of 2 retries within 15 s', () => {
    const cache = open('gcra-rate');
    assert.equal(cache.throttle(Buffer.from([0, 1]), 4, MINUTE, 2).remaining, 1);
    assert.equal(cache.throttle(Buffer.from([0, 1]), 4, MINUTE, 2).remaining, 0);
    const denied = cache.throttle(Buffer.from([0, 1]), 4n, BigInt(MINUTE), 2n);
    assert.equal(denied.allowed, false);
    assert.ok(denied.retryAfterMs > 0 && denied.retryAfterMs <= MINUTE / 4, `retryAfterMs ${denied.retryAfterMs}`);
  });

  it('is one limiter for every process on the segment', async () => {
    const cache = open('gcra-procs');
    const child = await forkWorker(cache.name);
    try {
      assert.equal(cache.throttle('shared', 1, MINUTE, 3).remaining, 2);
      assert.deepEqual(await child.call('throttle', 'shared', 1, MINUTE, 3),
        { allowed: true, retryAfterMs: 0, remaining: 1 });
      assert.equal(cache.throttle('shared', 1, MINUTE, 3).remaining, 0);
      assert.equal((await child.call('throttle', 'shared', 1, MINUTE, 3)).allowed, false);
    } finally {
      child.close();
    }
  });

  it('bad arguments throw SHMKV_EINVAL (the library) or a type/range error', () => {
    const cache = open('gcra-args');
    assertShmkvError(() => cache.throttle('k', 0, 1000, 1), 'SHMKV_EINVAL', /at least 1/);
    assertShmkvError(() => cache.throttle('k', 1, 0, 1), 'SHMKV_EINVAL', /at least 1/);
    assertShmkvError(() => cache.throttle('k', 1, 1000, 0), 'SHMKV_EINVAL', /at least 1/);
    assertShmkvError(() => cache.throttle('k', 2000, 1, 1), 'SHMKV_EINVAL', /one request per microsecond/);
    assertShmkvError(() => cache.throttle('k', 1, 2 ** 52, 2 ** 52), 'SHMKV_EINVAL', /too large/);
    assertShmkvError(() => cache.throttle('', 1, 1000, 1), 'SHMKV_EINVAL');
    assert.throws(() => cache.throttle('k', -1, 1000, 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cache.throttle('k', 1.5, 1000, 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cache.throttle('k', 1, 1000, 2n ** 64n), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cache.throttle('k', '10', 1000, 1), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cache.throttle('k', 1, 1000), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cache.throttle({}, 1, 1000, 1), { code: 'ERR_INVALID_ARG_TYPE' });
    // None of them wrote anything.
    assert.equal(cache.has('k'), false);
  });

  it('a key holding something else throws SHMKV_ENOTNUM and keeps its value', () => {
    const cache = open('gcra-notnum');
    cache.set('page', 'hello');
    assertShmkvError(() => cache.throttle('page', 10, 1000, 10), 'SHMKV_ENOTNUM', /rate limiter state/);
    assert.equal(cache.getString('page'), 'hello');
    cache.set('negative', -5);
    assertShmkvError(() => cache.throttle('negative', 10, 1000, 10), 'SHMKV_ENOTNUM');
    assert.equal(cache.getString('negative'), '-5');
  });
});

describe('getStale', () => {
  it('returns a fresh entry with expiredMs 0, undefined for a missing one', () => {
    const cache = open('stale-fresh');
    cache.set('k', 'v', 60_000);
    assert.deepEqual(cache.getStale('k'), { value: Buffer.from('v'), expiredMs: 0 });
    assert.deepEqual(cache.getStale('k', { string: true }), { value: 'v', expiredMs: 0 });
    assert.equal(cache.getStale('missing'), undefined);
    assertShmkvError(() => cache.getStale(''), 'SHMKV_EINVAL');
  });

  it('returns an expired value until a plain read reclaims it', async () => {
    const cache = open('stale-expired');
    const big = Buffer.alloc(10_000, 7); // more than the addon's first buffer
    cache.set('big', big, 30);
    cache.set(Buffer.from([0, 0xff]), 'café', 30);
    const item = await untilExpired(cache, 'big');
    assert.deepEqual(item.value, big);
    assert.ok(item.expiredMs >= 1, `expiredMs ${item.expiredMs}`);
    assert.equal((await untilExpired(cache, Buffer.from([0, 0xff]), { string: true })).value, 'café');
    // getStale itself removes nothing: it answers again, later.
    assert.ok(cache.getStale('big').expiredMs >= item.expiredMs);
    // A plain read misses, and reclaims the entry: nothing stale is left.
    assert.equal(cache.get('big'), undefined);
    assert.equal(cache.getStale('big'), undefined);
  });
});

describe('getOrCompute', () => {
  it('computes once per miss, stores with the TTL and releases its lease', async () => {
    const cache = open('compute');
    let calls = 0;
    let leaseSeen;
    const fn = async () => {
      calls += 1;
      leaseSeen = cache.getString(leaseKey('user:1'));
      await sleep(1);
      return `row-${calls}`;
    };
    assert.deepEqual(await cache.getOrCompute('user:1', fn, { ttl: 60_000 }), Buffer.from('row-1'));
    // The lease was the C++ one: "\0lease:" + key, holding "pid <pid>".
    assert.equal(leaseSeen, `pid ${process.pid}`);
    assert.equal(cache.get(leaseKey('user:1')), undefined);
    const ttl = cache.ttl('user:1');
    assert.ok(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
    assert.equal(await cache.getOrCompute('user:1', fn, { ttl: 60_000, string: true }), 'row-1');
    assert.equal(calls, 1);
    // Once expired, it is computed again.
    cache.set('user:1', 'row-1', 20);
    await untilExpired(cache, 'user:1');
    assert.equal(await cache.getOrCompute('user:1', fn, { string: true }), 'row-2');
    assert.equal(cache.ttl('user:1'), -1);
    assert.equal(calls, 2);
  });

  it('the stale value stays servable while the lease holder computes', async () => {
    const cache = open('compute-stale-kept');
    cache.set('feed', 'old', 20);
    await untilExpired(cache, 'feed');
    let seenDuring;
    const fn = () => {
      // What another process with serveStale would get now.
      seenDuring = cache.getStale('feed', { string: true })?.value;
      return 'new';
    };
    assert.equal(await cache.getOrCompute('feed', fn, { string: true }), 'new');
    assert.equal(seenDuring, 'old');
  });

  it('takes a plain value, a number or a Promise of binary data from fn', async () => {
    const cache = open('compute-values');
    assert.equal(await cache.getOrCompute('plain', () => 'sync', { string: true }), 'sync');
    assert.deepEqual(await cache.getOrCompute('number', () => 42), Buffer.from('42'));
    assert.equal(cache.incr('number'), 43);
    const bytes = new Uint8Array([0, 1, 2, 255]);
    assert.deepEqual(await cache.getOrCompute(Buffer.from([9, 0, 9]), async () => bytes), Buffer.from(bytes));
    assert.deepEqual(cache.get(Buffer.from([9, 0, 9])), Buffer.from(bytes));
    assert.equal(cache.get(leaseKey(Buffer.from([9, 0, 9]))), undefined);
  });

  it('a rejection or throw is not stored, releases the lease and propagates', async () => {
    const cache = open('compute-fail');
    const failure = new Error('db down');
    await assert.rejects(cache.getOrCompute('k', async () => {
      assert.notEqual(cache.get(leaseKey('k')), undefined);
      throw failure;
    }), (error) => error === failure);
    assert.equal(cache.get('k'), undefined);
    assert.equal(cache.get(leaseKey('k')), undefined);
    await assert.rejects(cache.getOrCompute('k', () => {
      throw new TypeError('sync');
    }), { name: 'TypeError', message: 'sync' });
    assert.equal(cache.get(leaseKey('k')), undefined);
    // A value that cannot be stored is an error too, and releases the lease.
    await assert.rejects(cache.getOrCompute('k', () => ({ not: 'bytes' })), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.equal(cache.get(leaseKey('k')), undefined);
    // Nothing was left behind: the next call computes.
    assert.equal(await cache.getOrCompute('k', () => 'fine', { string: true }), 'fine');
  });

  it('serves the stale value at once around a lease held by someone else', async () => {
    const cache = open('compute-stale');
    cache.set('page', 'old', 20);
    await untilExpired(cache, 'page');
    assert.equal(cache.add(leaseKey('page'), 'pid 1', 60_000), true);
    let calls = 0;
    const fn = () => {
      calls += 1;
      return 'new';
    };
    const started = performance.now();
    assert.equal(await cache.getOrCompute('page', fn, { serveStale: true, string: true }), 'old');
    assert.ok(performance.now() - started < 1000);
    assert.equal(calls, 0);
    // Without serveStale it waits, for `wait` ms, then gives up.
    const waiting = performance.now();
    await assert.rejects(cache.getOrCompute('page', fn, { wait: 100 }), (error) => {
      assert.equal(error.code, 'SHMKV_EBUSY');
      assert.equal(error.errno, codes.SHMKV_EBUSY);
      assert.match(error.message, /100 ms/);
      return true;
    });
    const waited = performance.now() - waiting;
    assert.ok(waited >= 99, `waited ${waited} ms`);
    assert.equal(calls, 0);
    assert.equal(cache.getString(leaseKey('page')), 'pid 1');
    // Once the lease is gone, the next caller computes.
    cache.delete(leaseKey('page'));
    assert.equal(await cache.getOrCompute('page', fn, { serveStale: true, string: true }), 'new');
    assert.equal(calls, 1);
  });

  it('takes over a lease that lapses (its holder died)', async () => {
    const cache = open('compute-lapse');
    cache.add(leaseKey('k'), 'pid 1', 150);
    const started = performance.now();
    assert.equal(await cache.getOrCompute('k', () => 'mine', { string: true, wait: 5000 }), 'mine');
    assert.ok(performance.now() - started >= 100, 'computed before the lease lapsed');
    assert.equal(cache.get(leaseKey('k')), undefined);
  });

  it('waiters in one process poll with timers and get the computed value', async () => {
    const cache = open('compute-waiters');
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const fn = async () => {
      calls += 1;
      await gate;
      return `v${calls}`;
    };
    const first = cache.getOrCompute('k', fn, { string: true });
    const others = [1, 2, 3].map(() => cache.getOrCompute('k', fn, { string: true }));
    let settled = 0;
    for (const p of others) p.then(() => { settled += 1; });
    // The event loop runs meanwhile: timers fire, nothing has settled.
    await sleep(30);
    assert.equal(settled, 0);
    assert.equal(calls, 1);
    release();
    assert.deepEqual(await Promise.all([first, ...others]), ['v1', 'v1', 'v1', 'v1']);
    assert.equal(calls, 1);
  });

  it('checks its arguments', async () => {
    const cache = open('compute-args');
    await assert.rejects(cache.getOrCompute('k', 'value'), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(cache.getOrCompute('k', () => 'v', { lease: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(cache.getOrCompute('k', () => 'v', { lease: Infinity }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(cache.getOrCompute('k', () => 'v', { wait: -1 }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(cache.getOrCompute('k', () => 'v', { ttl: 'soon' }), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(cache.getOrCompute('', () => 'v'), { code: 'SHMKV_EINVAL' });
    // The lease key is 7 bytes longer than the key: at most maxKeyLen - 7.
    await assert.rejects(cache.getOrCompute('x'.repeat(244), () => 'v'), { code: 'SHMKV_EKEYTOOBIG' });
    assert.equal(await cache.getOrCompute('x'.repeat(243), () => 'v', { string: true }), 'v');
    assert.equal(cache.has('k'), false);
  });

  it('several processes missing one key at once compute it once', async () => {
    const cache = open('compute-procs', { memory: '8M' });
    const n = 4;
    const children = [];
    try {
      const ready = [];
      for (let i = 0; i < n; i += 1) {
        const child = fork(path.join(__dirname, 'fixtures', 'compute-worker.js'), [cache.name, 'report', String(n)], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        children.push(child);
        ready.push(new Promise((resolve, reject) => {
          child.once('message', resolve);
          child.once('error', reject);
          child.once('exit', (code) => reject(new Error(`compute-worker exited with code ${code}`)));
        }));
      }
      await Promise.all(ready);
      const replies = children.map((child) => new Promise((resolve, reject) => {
        child.removeAllListeners('exit');
        child.once('message', resolve);
        child.once('exit', (code) => reject(new Error(`compute-worker exited with code ${code} without a reply`)));
      }));
      for (const child of children) child.send({ go: true });
      const results = await Promise.all(replies);
      for (const r of results) assert.equal(r.error, undefined, r.error?.message);
      // Every process missed the key while it was being computed...
      assert.equal(cache.getString('report:missed'), String(n));
      // ...and exactly one computed it; all got its value.
      assert.equal(cache.getString('report:computes'), '1');
      const computers = results.filter((r) => r.computed);
      assert.equal(computers.length, 1);
      assert.equal(new Set(results.map((r) => r.pid)).size, n);
      for (const r of results) assert.equal(r.value, `computed by ${computers[0].pid}`);
      assert.equal(cache.getString('report'), `computed by ${computers[0].pid}`);
      assert.ok(cache.ttl('report') > 0);
      assert.equal(cache.get(leaseKey('report')), undefined);
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill();
    }
  });
});
