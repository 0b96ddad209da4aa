'use strict';
// ShmkvStore (session-store.js): first its Store methods directly, then the
// real middleware, express 5 + express-session, in TWO separate server
// processes (fixtures/session-server.js) on one segment, driven with
// supertest: a session started through A is seen by B, touch extends it,
// destroy logs out everywhere, and the cookie's expiry expires it.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { promisify } = require('node:util');
const request = require('supertest');
const { Cache, ShmkvStore } = require('../index.js');
const { uniqueSegment, waitFor } = require('./helpers.js');

function promised(store) {
  const p = {};
  for (const name of ['get', 'set', 'touch', 'destroy', 'length', 'all', 'clear']) {
    p[name] = promisify(store[name].bind(store));
  }
  return p;
}

const cookie = (extra) => ({ originalMaxAge: null, httpOnly: true, path: '/', ...extra });

describe('ShmkvStore methods', () => {
  let cache;
  let store;
  let s;
  before(() => {
    cache = new Cache(uniqueSegment('store'), { memory: '4M' });
    store = new ShmkvStore({ cache, ttl: 5 * 60_000 });
    s = promised(store);
  });
  after(() => {
    cache.close();
    Cache.unlink(cache.name);
  });

  it('is an express-session Store (an EventEmitter with load/regenerate)', () => {
    const session = require('express-session');
    assert.ok(store instanceof session.Store);
    assert.equal(typeof store.on, 'function');
    assert.equal(typeof store.load, 'function');
    assert.equal(typeof store.regenerate, 'function');
  });

  it('set then get returns the session; a missing sid gives null', async () => {
    const sess = { cookie: cookie({ expires: null }), user: 'alice', n: 1 };
    await s.set('sid1', sess);
    assert.deepEqual(await s.get('sid1'), sess);
    assert.equal(await s.get('nope'), null);
    assert.equal(cache.getString('sess:sid1'), JSON.stringify(sess));
  });

  it('the TTL comes from cookie.expires (Date or ISO string), else maxAge, else the default', async () => {
    await s.set('exp-date', { cookie: cookie({ expires: new Date(Date.now() + 120_000) }) });
    let ttl = cache.ttl('sess:exp-date');
    assert.ok(ttl > 110_000 && ttl <= 120_000, `ttl ${ttl}`);
    await s.set('exp-iso', { cookie: cookie({ expires: new Date(Date.now() + 90_000).toISOString() }) });
    ttl = cache.ttl('sess:exp-iso');
    assert.ok(ttl > 80_000 && ttl <= 90_000, `ttl ${ttl}`);
    await s.set('max-age', { cookie: { maxAge: 30_000 } });
    ttl = cache.ttl('sess:max-age');
    assert.ok(ttl > 25_000 && ttl <= 30_000, `ttl ${ttl}`);
    await s.set('default', { cookie: cookie({ expires: null }) });
    ttl = cache.ttl('sess:default');
    assert.ok(ttl > 4 * 60_000 && ttl <= 5 * 60_000, `ttl ${ttl}`);
    await s.set('no-cookie', { user: 'x' });
    assert.ok(cache.ttl('sess:no-cookie') > 4 * 60_000);
  });

  it('a default TTL of one day when none is configured', async () => {
    const plain = promised(new ShmkvStore({ cache }));
    await plain.set('day', { cookie: cookie({ expires: null }) });
    assert.ok(cache.ttl('sess:day') > 86_000_000);
  });

  it('saving a session whose cookie has expired deletes it', async () => {
    await s.set('old', { cookie: cookie({ expires: null }) });
    await s.set('old', { cookie: cookie({ expires: new Date(Date.now() - 1000) }) });
    assert.equal(await s.get('old'), null);
  });

  it('touch resets the TTL from the cookie without rewriting the value', async () => {
    await s.set('t', { cookie: { maxAge: 10_000 }, user: 'bob' });
    cache.set('sess:t', cache.get('sess:t'), { ttl: 1000 });
    await s.touch('t', { cookie: { maxAge: 200_000 }, user: 'ignored' });
    assert.ok(cache.ttl('sess:t') > 190_000);
    assert.equal((await s.get('t')).user, 'bob');
    const fixed = promised(new ShmkvStore({ cache, disableTouch: true }));
    await fixed.touch('t', { cookie: { maxAge: 5000 } });
    assert.ok(cache.ttl('sess:t') > 190_000);
  });

  it('destroy removes the session', async () => {
    await s.set('d', { cookie: cookie({ expires: null }) });
    await s.destroy('d');
    assert.equal(await s.get('d'), null);
    await s.destroy('d');
  });

  it('length, all and clear see only the prefix', async () => {
    await s.clear();
    cache.set('other:key', 'not a session');
    await s.set('a', { cookie: cookie({ expires: null }), user: 'a' });
    await s.set('b', { cookie: cookie({ expires: null }), user: 'b' });
    assert.equal(await s.length(), 2);
    const all = await s.all();
    assert.deepEqual(Object.keys(all).sort(), ['a', 'b']);
    assert.equal(all.a.user, 'a');
    await s.clear();
    assert.equal(await s.length(), 0);
    assert.equal(cache.getString('other:key'), 'not a session');
  });

  it('a custom prefix and serializer', async () => {
    const custom = promised(new ShmkvStore({
      cache,
      prefix: 'app1:',
      serializer: { stringify: (v) => `X${JSON.stringify(v)}`, parse: (t) => JSON.parse(t.slice(1)) },
    }));
    await custom.set('z', { cookie: cookie({ expires: null }), v: 3 });
    assert.equal(cache.getString('app1:z')[0], 'X');
    assert.equal((await custom.get('z')).v, 3);
  });

  it('errors reach the callback, asynchronously', async () => {
    let sync = true;
    const error = await new Promise((resolve) => {
      store.set('x'.repeat(300), { cookie: cookie({ expires: null }) }, resolve);
      sync = false;
    });
    assert.equal(sync, false);
    assert.equal(error.code, 'SHMKV_EKEYTOOBIG');
  });
});

// A session server process on the segment; resolves to {url, pid, close()}.
function startServer(segment) {
  const child = fork(path.join(__dirname, 'fixtures', 'session-server.js'), [segment], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`session server exited with ${code}`)));
    child.once('message', ({ port, pid }) => {
      resolve({
        url: `http://127.0.0.1:${port}`,
        pid,
        close() {
          child.removeAllListeners('exit');
          child.kill();
        },
      });
    });
  });
}

// "connect.sid=s%3A<sid>.<signature>; Path=/; ..." -> {header, sid}
function sessionCookie(res) {
  const raw = res.headers['set-cookie']?.find((c) => c.startsWith('connect.sid='));
  assert.ok(raw, 'the response sets the session cookie');
  const header = raw.split(';')[0];
  const value = decodeURIComponent(header.slice('connect.sid='.length));
  return { header, sid: value.slice(2, value.lastIndexOf('.')) };
}

describe('express-session in two processes on one segment', () => {
  let cache;
  let a;
  let b;
  before(async () => {
    cache = new Cache(uniqueSegment('web'), { memory: '4M' });
    [a, b] = await Promise.all([startServer(cache.name), startServer(cache.name)]);
  });
  after(() => {
    a?.close();
    b?.close();
    cache.close();
    Cache.unlink(cache.name);
  });

  it('the servers are two other processes', () => {
    assert.equal(new Set([process.pid, a.pid, b.pid]).size, 3);
  });

  it('a session started through A is seen by B', async () => {
    const login = await request(a.url).post('/login?user=alice').expect(200);
    assert.equal(login.body.pid, a.pid);
    const { header, sid } = sessionCookie(login);
    const me = await request(b.url).get('/me').set('Cookie', header).expect(200);
    assert.deepEqual(me.body, { user: 'alice', pid: b.pid });
    assert.equal(JSON.parse(cache.getString(`sess:${sid}`)).user, 'alice');
    const anonymous = await request(b.url).get('/me').expect(200);
    assert.equal(anonymous.body.user, null);
  });

  it('the entry\'s TTL is the cookie\'s maxAge, and a request through B extends it (touch)', async () => {
    const login = await request(a.url).post('/login?user=carol').expect(200);
    const { header, sid } = sessionCookie(login);
    const key = `sess:${sid}`;
    const ttl = cache.ttl(key);
    assert.ok(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
    // Stand in for time passing: leave the session 10 s to live.
    assert.equal(cache.touch(key, 10_000), true);
    const stored = cache.getString(key);
    await request(b.url).get('/me').set('Cookie', header).expect(200);
    const extended = cache.ttl(key);
    assert.ok(extended > 50_000, `ttl after the request through B: ${extended}`);
    // Extended by store.touch, not by a save: the value was not rewritten.
    assert.equal(cache.getString(key), stored);
  });

  it('logging out through B logs out everywhere', async () => {
    const login = await request(a.url).post('/login?user=dave').expect(200);
    const { header, sid } = sessionCookie(login);
    assert.equal((await request(b.url).get('/me').set('Cookie', header)).body.user, 'dave');
    await request(b.url).post('/logout').set('Cookie', header).expect(200);
    assert.equal(cache.get(`sess:${sid}`), undefined);
    assert.equal((await request(a.url).get('/me').set('Cookie', header)).body.user, null);
    assert.equal((await request(b.url).get('/me').set('Cookie', header)).body.user, null);
  });

  it('a session expires with its cookie, in both processes', async () => {
    const maxAge = 3000;
    const started = Date.now();
    const login = await request(a.url).post(`/login?user=erin&maxAge=${maxAge}`).expect(200);
    const { header, sid } = sessionCookie(login);
    const ttl = cache.ttl(`sess:${sid}`);
    assert.ok(ttl > 0 && ttl <= maxAge, `ttl ${ttl}`);
    // Seen by B (whose touch restarts the 3 s), then no more requests:
    // poll the segment until the entry is gone, then ask both servers.
    assert.equal((await request(b.url).get('/me').set('Cookie', header)).body.user, 'erin');
    await waitFor(() => cache.get(`sess:${sid}`) === undefined, 15_000, 'the session to expire');
    // Not before the cookie said, to the clock's resolution: the segment
    // judges expiry on CLOCK_MONOTONIC_COARSE (one jiffy: up to 4 ms at
    // HZ=250, 10 ms at HZ=100), and the login may land within a jiffy of
    // `started`.
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= maxAge - 10, `gone after ${elapsed} ms, not before the cookie said`);
    assert.equal((await request(b.url).get('/me').set('Cookie', header)).body.user, null);
    assert.equal((await request(a.url).get('/me').set('Cookie', header)).body.user, null);
  });
});
