'use strict';
// ShmkvStore: an express-session store over a shmkv segment, so that every
// process of a host (cluster workers, separate servers behind one proxy)
// sees the same sessions with no session server.
//
//   const session = require('express-session');
//   const { ShmkvStore } = require('shmkv');
//   app.use(session({
//     store: new ShmkvStore({ segment: 'sessions', memory: '64M' }),
//     secret: process.env.SESSION_SECRET, resave: false, saveUninitialized: false,
//     cookie: { maxAge: 3_600_000 },
//   }));
//
// A session is one entry, key prefix + sid, value JSON, whose native TTL is
// the cookie's remaining life (cookie.expires, else cookie.maxAge), or the
// store's `ttl` for a cookie with neither (a browser-session cookie); so
// the segment expires sessions itself and no sweeper is needed. touch()
// (called by the middleware for an unmodified session) resets the TTL from
// the refreshed cookie without rewriting the value.
//
// Options:
//   cache       an open Cache (not closed by close()); otherwise
//   segment     the segment to open (default "sessions"), with any Cache
//               option (memory, maxItems, mode, ...)
//   prefix      key prefix (default "sess:"); length/all/clear see only it
//   ttl         ms for cookies without an expiry (default one day)
//   serializer  {stringify, parse} (default JSON)
//   disableTouch  if true, touch() leaves the TTL alone (sessions then
//               expire when their last save says, as connect-redis does)
//
// Every method takes an optional node-style callback, which is called
// asynchronously (process.nextTick), as the middleware expects.
const session = require('express-session');
const { Cache } = require('./cache.js');

const ONE_DAY_MS = 86_400_000;

class ShmkvStore extends session.Store {
  constructor(options = {}) {
    super();
    this.prefix = options.prefix ?? 'sess:';
    this.ttl = options.ttl ?? ONE_DAY_MS;
    this.serializer = options.serializer ?? JSON;
    this.disableTouch = Boolean(options.disableTouch);
    this.cache = options.cache ?? new Cache(options.segment ?? 'sessions', options);
    this.ownsCache = !options.cache;
  }

  get(sid, cb) {
    this.#run(cb, () => {
      const data = this.cache.getString(this.prefix + sid);
      return data === undefined ? null : this.serializer.parse(data);
    });
  }

  set(sid, sess, cb) {
    this.#run(cb, () => {
      const ttl = this.#ttlOf(sess);
      // A cookie that has already expired: the session is over.
      if (ttl <= 0) {
        this.cache.delete(this.prefix + sid);
        return undefined;
      }
      this.cache.set(this.prefix + sid, this.serializer.stringify(sess), { ttl });
      return undefined;
    });
  }

  touch(sid, sess, cb) {
    this.#run(cb, () => {
      if (this.disableTouch) return undefined;
      const ttl = this.#ttlOf(sess);
      if (ttl <= 0) this.cache.delete(this.prefix + sid);
      else this.cache.touch(this.prefix + sid, ttl);
      return undefined;
    });
  }

  destroy(sid, cb) {
    this.#run(cb, () => {
      this.cache.delete(this.prefix + sid);
      return undefined;
    });
  }

  /** The number of live sessions (a scan of the prefix). */
  length(cb) {
    this.#run(cb, () => this.cache.keys(this.prefix).length);
  }

  /** Every live session, as an object keyed by sid (as MemoryStore does). */
  all(cb) {
    this.#run(cb, () => {
      const sessions = {};
      for (const key of this.cache.scan(this.prefix)) {
        const data = this.cache.getString(key);
        if (data !== undefined) sessions[key.slice(this.prefix.length)] = this.serializer.parse(data);
      }
      return sessions;
    });
  }

  /** Deletes every session under the prefix (other keys are left alone). */
  clear(cb) {
    this.#run(cb, () => {
      for (const key of this.cache.scan(this.prefix)) this.cache.delete(key);
      return undefined;
    });
  }

  /** Detaches from the segment if this store opened it. */
  close() {
    if (this.ownsCache) this.cache.close();
  }

  // The TTL in ms that the session's cookie asks for.
  #ttlOf(sess) {
    const cookie = sess?.cookie;
    if (cookie?.expires) return new Date(cookie.expires).getTime() - Date.now();
    if (typeof cookie?.maxAge === 'number') return cookie.maxAge;
    return this.ttl;
  }

  #run(cb, fn) {
    let result;
    try {
      result = fn();
    } catch (error) {
      if (cb) process.nextTick(cb, error);
      else this.emit('error', error);
      return;
    }
    if (cb) process.nextTick(cb, null, result);
  }
}

module.exports = { ShmkvStore, default: ShmkvStore };
