'use strict';
// Per-client rate limits shared by the workers of a Node cluster through
// one shmkv segment: express 5, no Redis. Whichever worker a request lands
// on, it counts against the same limit, because every worker decides in the
// same shared memory.
//
//   bash examples/rate-limit/run.sh [options]   # builds, then runs this
//
// Options (environment variable in brackets):
//   --port N          [PORT] 0 picks a free port (default 3000)
//   --workers N       [WORKERS] at least 2 (default 4)
//   --segment NAME    [SHMKV_SEGMENT] (default rate-limit)
//   --rate N          [RATE_LIMIT] requests per second per client on
//                     /api/hello (default 10)
//   --burst N         [RATE_BURST] how many of them may come at once
//                     (default: the rate)
//   --fixed-limit N   [FIXED_LIMIT] requests per one-second window per
//                     client on /api/fixed (default: the rate)
//   --keep-segment    [KEEP_SEGMENT=1] leave the segment in place on exit
//
// The primary creates the segment, forks the workers, prints the URL once
// every worker listens, and on SIGINT/SIGTERM stops them and removes the
// segment. A segment that already exists (made by shmkvd, say) is used as
// it is and left in place. That part, and the options every Node example
// has, are in ../lib/node/cluster.js; this file has the options of its own
// and a worker's express app.
//
//   GET /api/hello   limited with cache.throttle (GCRA): `rate` per second
//                    on average, at most `burst` at once
//   GET /api/fixed   limited with a fixed window: incr of a per-second
//                    counter with a TTL (simpler, but see the boundary burst)
//   GET /            what this is
//
// The client is the X-Client-Id header if there is one, else the IP
// address. Behind a reverse proxy, set express's "trust proxy" so that
// req.ip is the client's and not the proxy's. Every response names its
// worker in an X-Worker-Pid header; a denied request gets 429 with
// Retry-After (whole seconds, as HTTP wants; the body has retryAfterMs)
// and the RateLimit-* headers of the IETF draft (RateLimit-Policy,
// RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) plus the older
// X-RateLimit-Limit and X-RateLimit-Remaining, which allowed requests get
// too.
const express = require('express');
// In an application of your own: require('shmkv').
const { Cache } = require('../../bindings/node');
const { integer, runExample } = require('../lib/node/cluster');

const SEGMENT_MEMORY = '16M';
const CLIENT_ID = /^[\w.:@-]{1,64}$/;

const USAGE = `usage: node app.js [--port N] [--workers N] [--segment NAME] [--rate N] [--burst N]
                   [--fixed-limit N] [--keep-segment]
(or PORT, WORKERS, SHMKV_SEGMENT, RATE_LIMIT, RATE_BURST, FIXED_LIMIT, KEEP_SEGMENT=1)`;

function createApp(config) {
  const cache = new Cache(config.segment, { create: false });
  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    res.set('X-Worker-Pid', String(process.pid));
    next();
  });

  // Who is asking: X-Client-Id (an API key, say) or the IP address.
  const identify = (req, res, next) => {
    const id = req.get('X-Client-Id');
    if (id !== undefined && !CLIENT_ID.test(id)) {
      return res.status(400).json({ error: 'X-Client-Id must be 1-64 characters of [A-Za-z0-9_.:@-]' });
    }
    req.clientId = id ?? req.ip;
    return next();
  };

  const limitHeaders = (res, { limit, windowS, remaining, resetS }) => {
    res.set({
      'RateLimit-Policy': `${limit};w=${windowS}`,
      'RateLimit-Limit': String(limit),
      'RateLimit-Remaining': String(remaining),
      'RateLimit-Reset': String(resetS),
      'X-RateLimit-Limit': String(limit),
      'X-RateLimit-Remaining': String(remaining),
    });
  };

  const tooMany = (res, retryAfterMs, extra = {}) => {
    res.set('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    res.status(429).json({ error: 'Too Many Requests', retryAfterMs, ...extra });
  };

  // GCRA (the generic cell rate algorithm) in one shared-memory step per
  // request: `burst` requests may come at once, then one every 1000/rate
  // ms; over any stretch of time T a client gets at most burst + rate x T.
  // The key holds one timestamp and expires when the client is back to a
  // full burst. A denied request changes nothing.
  const intervalMs = 1000 / config.rate;
  const gcra = (req, res, next) => {
    const d = cache.throttle(`rl:gcra:${req.clientId}`, config.rate, 1000, config.burst);
    // RateLimit-Reset: seconds until the full burst is there again, or
    // until the next request is allowed.
    const resetMs = d.allowed ? (config.burst - d.remaining) * intervalMs : d.retryAfterMs;
    limitHeaders(res, {
      limit: config.burst,
      windowS: Math.ceil(config.burst / config.rate),
      remaining: d.remaining,
      resetS: Math.ceil(resetMs / 1000),
    });
    if (!d.allowed) return tooMany(res, d.retryAfterMs);
    res.locals.remaining = d.remaining;
    return next();
  };

  // The simple alternative: a counter per client and per one-second window
  // of the wall clock (every worker agrees on it: one host, one clock),
  // created by incr with a TTL that outlives its window. Easy to explain,
  // but with an edge: a client may spend its whole limit in the last
  // moment of one window and again in the first moment of the next, that
  // is 2 x limit within a few milliseconds. GCRA has no such edge.
  const fixedWindow = (req, res, next) => {
    const now = Date.now();
    const window = Math.floor(now / 1000);
    const count = cache.incr(`rl:fixed:${req.clientId}:${window}`, 1, { ttl: 2000 });
    const resetMs = (window + 1) * 1000 - now;
    const remaining = Math.max(0, config.fixedLimit - count);
    limitHeaders(res, { limit: config.fixedLimit, windowS: 1, remaining, resetS: Math.ceil(resetMs / 1000) });
    res.locals.window = window;
    if (count > config.fixedLimit) return tooMany(res, resetMs, { window });
    res.locals.remaining = remaining;
    return next();
  };

  app.get('/', (req, res) => {
    res.type('text/plain').send(`shmkv rate limits, shared by ${config.workers} workers (this is ${process.pid}):
  GET /api/hello   ${config.rate} requests per second per client, bursts of up to ${config.burst} (cache.throttle)
  GET /api/fixed   ${config.fixedLimit} requests per one-second window per client (incr + TTL)
The client is the X-Client-Id header, else the IP address.
`);
  });

  app.get('/api/hello', identify, gcra, (req, res) => {
    res.json({ message: 'hello', client: req.clientId, worker: process.pid, remaining: res.locals.remaining });
  });

  app.get('/api/fixed', identify, fixedWindow, (req, res) => {
    res.json({
      message: 'hello',
      client: req.clientId,
      worker: process.pid,
      remaining: res.locals.remaining,
      window: res.locals.window,
    });
  });

  return app;
}

runExample({
  name: 'rate-limit',
  usage: USAGE,
  segment: 'rate-limit',
  memory: SEGMENT_MEMORY,
  options: {
    rate: { type: 'string' },
    burst: { type: 'string' },
    'fixed-limit': { type: 'string' },
  },
  config: (values, env) => {
    const rate = integer(values.rate ?? env.RATE_LIMIT ?? '10', 'rate', 1);
    // shmkv_throttle takes at most one request per microsecond.
    if (rate > 1_000_000) throw new RangeError(`rate must be <= 1000000, got ${rate}`);
    return {
      rate,
      burst: integer(values.burst ?? env.RATE_BURST ?? String(rate), 'burst', 1),
      fixedLimit: integer(values['fixed-limit'] ?? env.FIXED_LIMIT ?? String(rate), 'fixed-limit', 1),
    };
  },
  about: (config) => `${config.workers} workers, segment "${config.segment}"; ` +
    `/api/hello: ${config.rate}/s per client in bursts of up to ${config.burst}; ` +
    `/api/fixed: ${config.fixedLimit} per second window per client`,
  keys: { prefix: 'rl:', what: 'limiter keys' },
  worker: createApp,
});
