// KeyvShmkv beyond @keyv/test-suite: the suite's TTL test freezes
// Date.now() and so passes even if a store ignores the TTL; these check that
// the TTL reaches the segment, plus namespaces next to non-Keyv keys, the
// iterator wiring (the keyv 5 quirk), URL forms, raw values, and a second
// process reading what Keyv wrote.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Keyv } from 'keyv';
import shmkv from '../index.js';

const { Cache, KeyvShmkv } = shmkv;
const require = createRequire(import.meta.url);

const segment = `shmkv-keyv-native-${process.pid}`;
let cache;
beforeAll(() => {
  cache = new Cache(segment, { memory: '4M' });
});
afterAll(() => {
  cache.close();
  Cache.unlink(segment);
});

async function waitFor(fn, deadlineMs) {
  const end = Date.now() + deadlineMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('KeyvShmkv', () => {
  it('passes the TTL to the segment as the entry\'s native TTL', async () => {
    const keyv = new Keyv({ store: new KeyvShmkv({ cache }) });
    await keyv.set('with-ttl', 'v', 60_000);
    const ttl = cache.ttl('keyv:with-ttl');
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await keyv.set('no-ttl', 'v');
    expect(cache.ttl('keyv:no-ttl')).toBe(-1);
    const withDefault = new Keyv({ store: new KeyvShmkv({ cache }), ttl: 30_000, namespace: 'd' });
    await withDefault.set('k', 'v');
    expect(cache.ttl('d:k')).toBeGreaterThan(20_000);
  });

  it('the segment drops an expired entry by itself (no Keyv read needed)', async () => {
    const keyv = new Keyv({ store: new KeyvShmkv({ cache }) });
    await keyv.set('short', 'v', 50);
    expect(cache.has('keyv:short')).toBe(true);
    await waitFor(() => !cache.has('keyv:short'), 5000);
    expect(await keyv.get('short')).toBeUndefined();
  });

  it('clear() removes only its namespace, not other users of the segment', async () => {
    cache.set('not-keyv', 'x');
    const one = new Keyv({ store: new KeyvShmkv({ cache }), namespace: 'one' });
    const two = new Keyv({ store: new KeyvShmkv({ cache }), namespace: 'two' });
    await one.set('a', 1);
    await two.set('a', 2);
    await one.clear();
    expect(await one.get('a')).toBeUndefined();
    expect(await two.get('a')).toBe(2);
    expect(cache.getString('not-keyv')).toBe('x');
  });

  it('keyv.iterator() is wired only with keyvIterator: true; store.iterator() always works', async () => {
    const plain = new KeyvShmkv({ cache });
    expect(plain.opts.dialect).toBe('shmkv');
    expect(plain.opts.url).toBe(`shmkv://${segment}`);
    const keyv = new Keyv({ store: plain, namespace: 'it' });
    expect(keyv.iterator).toBeUndefined();
    await keyv.set('x', 'y');
    const entries = [];
    for await (const entry of plain.iterator('it')) entries.push(entry);
    expect(entries).toEqual([['it:x', JSON.stringify({ value: 'y' })]]);

    const wired = new Keyv({ store: new KeyvShmkv({ cache, keyvIterator: true }), namespace: 'it' });
    const pairs = [];
    for await (const pair of wired.iterator()) pairs.push(pair);
    expect(pairs).toEqual([['x', 'y']]);
  });

  it('opens its own segment from a URL, and disconnect() closes it', async () => {
    const name = `shmkv-keyv-url-${process.pid}`;
    try {
      const store = new KeyvShmkv(`shmkv://${name}`, { memory: '2M' });
      expect(store.opts.url).toBe(`shmkv://${name}`);
      expect(store.cache.stats().memoryBytes).toBe(2 * 2 ** 20);
      const keyv = new Keyv({ store });
      await keyv.set('k', 'v');
      const again = new KeyvShmkv({ url: `shmkv://${name}` });
      expect(await new Keyv({ store: again }).get('k')).toBe('v');
      const bare = new KeyvShmkv(name);
      expect(await bare.has('keyv:k')).toBe(true);
      await keyv.disconnect();
      expect(store.cache.closed).toBe(true);
      await again.disconnect();
      await bare.disconnect();
      const shared = new KeyvShmkv({ cache });
      await shared.disconnect();
      expect(cache.closed).toBe(false);
    } finally {
      Cache.unlink(name);
    }
  });

  it('keeps non-string values with their type when Keyv does not serialize', async () => {
    const store = new KeyvShmkv({ cache });
    await store.set('raw:buf', Buffer.from([0, 1, 255]));
    await store.set('raw:obj', { a: [1, 'two'] });
    await store.set('raw:str', 'text');
    expect(await store.get('raw:buf')).toEqual(Buffer.from([0, 1, 255]));
    expect(await store.get('raw:obj')).toEqual({ a: [1, 'two'] });
    expect(await store.get('raw:str')).toBe('text');
    expect(await store.getMany(['raw:buf', 'raw:none', 'raw:str'])).toEqual([
      Buffer.from([0, 1, 255]), undefined, 'text']);
    expect(await store.setMany([{ key: 'raw:m1', value: 'a' }, { key: 'raw:m2', value: 'b', ttl: 60_000 }]))
      .toEqual([true, true]);
    expect(cache.ttl('raw:m2')).toBeGreaterThan(0);
    expect(await store.hasMany(['raw:m1', 'raw:none'])).toEqual([true, false]);
    expect(await store.deleteMany(['raw:m1', 'raw:m2'])).toBe(true);
    expect(await store.deleteMany(['raw:m1', 'raw:m2'])).toBe(false);
  });

  it('a value Keyv wrote is read by another process', async () => {
    const keyv = new Keyv({ store: new KeyvShmkv({ cache }), namespace: 'proc' });
    await keyv.set('shared', { from: process.pid });
    const script = `
      const { Keyv } = require('keyv');
      const { KeyvShmkv } = require(process.argv[1]);
      const keyv = new Keyv({ store: new KeyvShmkv(process.argv[2]), namespace: 'proc' });
      keyv.get('shared').then(async (v) => {
        await keyv.set('reply', { pid: process.pid, saw: v.from });
        process.stdout.write(String(process.pid));
      });`;
    const childPid = Number(execFileSync(process.execPath,
      ['-e', script, require.resolve('../index.js'), `shmkv://${segment}`], { cwd: process.cwd() }));
    expect(childPid).not.toBe(process.pid);
    expect(await keyv.get('reply')).toEqual({ pid: childPid, saw: process.pid });
  });
});
