'use strict';
// KeyvShmkv: a Keyv 5 storage adapter over a shmkv segment, so that every
// process of a host shares one Keyv cache (and so do cache-manager 7 and
// cacheable, which take Keyv stores).
//
//   const { Keyv } = require('keyv');
//   const { KeyvShmkv } = require('shmkv');
//   const keyv = new Keyv({ store: new KeyvShmkv('shmkv://app-cache'), namespace: 'users' });
//   await keyv.set('42', { name: 'alice' }, 60_000);  // ms
//
// The store is given keys already prefixed by Keyv ("users:42") and the
// values Keyv serialized (strings). A TTL becomes the entry's native TTL,
// so the segment drops expired entries itself; Keyv's own "expires" inside
// the value stays authoritative for Keyv (it is wall-clock, shmkv's TTL is
// monotonic; they agree to within a millisecond).
//
// Constructor: new KeyvShmkv(url?, options?) or new KeyvShmkv(options).
//   url      "shmkv://NAME" (a POSIX shm segment, "keyv" by default) or
//            "shmkv:///dev/shm/file" (a file mapping); "NAME" alone works.
//   cache    an open Cache to use instead of opening one (not closed by
//            disconnect(); several adapters may share it).
//   memory, maxItems, maxKeyLen, maxValueLen, mode, evictPolicy, readonly:
//            as for Cache, when the adapter opens the segment itself.
//   keyvIterator  see iterator() below.
//
// Values that are not strings (when Keyv's serializer is turned off) are
// kept with a type tag in the entry's user flags: Buffers and Uint8Arrays
// come back as Buffers, anything else goes through JSON.
const { EventEmitter } = require('node:events');
const { Cache } = require('./cache.js');

const FLAG_BINARY = 1;
const FLAG_JSON = 2;

// keyv 5.6.0 attaches keyv.iterator() only to stores whose opts.dialect (or
// opts.url) names one of its built-in adapters (its iterableAdapters list:
// sqlite, postgres, mysql, mongo, redis, valkey, etcd), and reads
// opts.dialect for nothing else. With keyvIterator: true the adapter
// reports this dialect so that Keyv wires its iterator() to ours; without
// it the dialect is "shmkv" and store.iterator(namespace) is still there to
// call directly.
const KEYV_ITERABLE_DIALECT = 'etcd';

function parseUrl(url) {
  const m = /^shmkv:\/\/([^?#]*)/.exec(url);
  const name = m ? m[1] : url;
  if (!name) throw new TypeError(`KeyvShmkv: no segment name in "${url}"`);
  return name;
}

function encode(value) {
  if (typeof value === 'string') return [value, 0];
  if (value instanceof Uint8Array) return [value, FLAG_BINARY];
  return [JSON.stringify(value), FLAG_JSON];
}

function decode(item) {
  if (item.flags === FLAG_BINARY) return item.value;
  const text = item.value.toString('utf8');
  return item.flags === FLAG_JSON ? JSON.parse(text) : text;
}

class KeyvShmkv extends EventEmitter {
  /** Set by Keyv; keys arrive already prefixed with it. */
  namespace;

  constructor(url, options) {
    super();
    if (typeof url === 'object' && url !== null) {
      options = url;
      url = options.url;
    }
    const o = { ...options };
    let segment;
    if (o.cache) {
      segment = o.cache.name;
    } else {
      segment = url ? parseUrl(url) : (o.segment ?? 'keyv');
    }
    this.opts = {
      ...o,
      url: url ?? `shmkv://${segment}`,
      dialect: o.keyvIterator ? KEYV_ITERABLE_DIALECT : 'shmkv',
      segment,
    };
    delete this.opts.cache;
    this.cache = o.cache ?? new Cache(segment, o);
    this.ownsCache = !o.cache;
  }

  async get(key) {
    return this.#read(key);
  }

  async getMany(keys) {
    // One batched read (shmkv_mget) that returns each entry's flags too.
    return this.cache.mgetItems(keys).map((item) => (item === undefined ? undefined : decode(item)));
  }

  async set(key, value, ttl) {
    const [data, flags] = encode(value);
    this.cache.set(key, data, { ttl: ttl > 0 ? ttl : 0, flags });
    return true;
  }

  async setMany(entries) {
    return entries.map(({ key, value, ttl }) => {
      const [data, flags] = encode(value);
      return this.cache.set(key, data, { ttl: ttl > 0 ? ttl : 0, flags });
    });
  }

  async delete(key) {
    return this.cache.delete(key);
  }

  /** True if any of the keys was deleted. */
  async deleteMany(keys) {
    let deleted = false;
    for (const key of keys) deleted = this.cache.delete(key) || deleted;
    return deleted;
  }

  async has(key) {
    return this.cache.has(key);
  }

  async hasMany(keys) {
    return keys.map((key) => this.cache.has(key));
  }

  /**
   * Deletes the entries of this namespace only ("ns:*"): other adapters,
   * namespaces and non-Keyv users may share the segment. Without a
   * namespace it clears the whole segment.
   */
  async clear() {
    if (!this.namespace) {
      this.cache.clear();
      return;
    }
    for (const key of this.cache.scan(`${this.namespace}:`)) this.cache.delete(key);
  }

  /**
   * Yields [key, value] for the entries of `namespace` (all entries if none),
   * by a cursor scan of the segment: an entry present for the whole
   * iteration is yielded at least once, and writers are never blocked.
   */
  async *iterator(namespace) {
    for (const key of this.cache.scan(namespace ? `${namespace}:` : '')) {
      const value = this.#read(key);
      if (value !== undefined) yield [key, value];
    }
  }

  /** Closes the segment if this adapter opened it. */
  async disconnect() {
    if (this.ownsCache) this.cache.close();
  }

  #read(key) {
    const item = this.cache.gets(key);
    return item === undefined ? undefined : decode(item);
  }
}

module.exports = { KeyvShmkv, default: KeyvShmkv };
