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
// it is and left in place.
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
const cluster = require('node:cluster');
const http = require('node:http');
const { parseArgs } = require('node:util');
const express = require('express');
// In an application of your own: require('shmkv').
const { Cache } = require('../../bindings/node');

const SEGMENT_MEMORY = '16M';
const CLIENT_ID = /^[\w.:@-]{1,64}$/;

const USAGE = `usage: node app.js [--port N] [--workers N] [--segment NAME] [--rate N] [--burst N]
                   [--fixed-limit N] [--keep-segment]
(or PORT, WORKERS, SHMKV_SEGMENT, RATE_LIMIT, RATE_BURST, FIXED_LIMIT, KEEP_SEGMENT=1)`;

function integer(text, what, min) {
  const n = Number(text);
  if (!/^\d+$/.test(String(text).trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got "${text}"`);
  }
  return n;
}

function parseConfig(argv, env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      workers: { type: 'string' },
      segment: { type: 'string' },
      rate: { type: 'string' },
      burst: { type: 'string' },
      'fixed-limit': { type: 'string' },
      'keep-segment': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const rate = integer(values.rate ?? env.RATE_LIMIT ?? '10', 'rate', 1);
  const config = {
    port: integer(values.port ?? env.PORT ?? '3000', 'port', 0),
    workers: integer(values.workers ?? env.WORKERS ?? '4', 'workers', 2),
    segment: values.segment ?? env.SHMKV_SEGMENT ?? 'rate-limit',
    rate,
    burst: integer(values.burst ?? env.RATE_BURST ?? String(rate), 'burst', 1),
    fixedLimit: integer(values['fixed-limit'] ?? env.FIXED_LIMIT ?? String(rate), 'fixed-limit', 1),
    keepSegment: Boolean(values['keep-segment']) || env.KEEP_SEGMENT === '1',
  };
  if (config.port > 65535) throw new RangeError(`port must be <= 65535, got ${config.port}`);
  // shmkv_throttle takes at most one request per microsecond.
  if (config.rate > 1_000_000) throw new RangeError(`rate must be <= 1000000, got ${config.rate}`);
  return config;
}

function runPrimary(config) {
  let cache;
  let created = true;
  try {
    cache = new Cache(config.segment, { memory: SEGMENT_MEMORY, exclusive: true });
  } catch (error) {
    if (error.code !== 'SHMKV_EEXIST') throw error;
    cache = new Cache(config.segment, { create: false });
    created = false;
  }
  const removeOnExit = created && !config.keepSegment;

  const alive = new Set();
  let listening = 0;
  let stopping = false;
  let exitCode = 0;

  const finish = () => {
    const limiters = cache.keys('rl:').length;
    cache.close();
    if (removeOnExit) Cache.unlink(config.segment);
    const what = removeOnExit ? 'removed' : 'left in place';
    console.log(`rate-limit: stopped; segment "${config.segment}" ${what} (limiter keys in it: ${limiters})`);
    process.exit(exitCode);
  };

  const stop = (code) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    if (alive.size === 0) finish();
    for (const worker of Object.values(cluster.workers)) worker.kill();
    setTimeout(() => {
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
    }, 5000).unref();
  };

  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (listening === config.workers) {
      console.log(`rate-limit: http://127.0.0.1:${address.port}/ (${config.workers} workers, ` +
        `segment "${config.segment}"; /api/hello: ${config.rate}/s per client in bursts of up to ` +
        `${config.burst}; /api/fixed: ${config.fixedLimit} per second window per client)`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    alive.delete(worker.id);
    if (!stopping) {
      console.error(`rate-limit: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); stopping`);
      stop(1);
    } else if (alive.size === 0) {
      finish();
    }
  });
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));

  const env = { SHMKV_EXAMPLE_CONFIG: JSON.stringify(config) };
  for (let i = 0; i < config.workers; i += 1) alive.add(cluster.fork(env).id);
}

function runWorker(config) {
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

  const server = http.createServer(app);
  server.on('error', (error) => {
    console.error(`rate-limit: worker ${process.pid}: ${error.message}`);
    process.exit(1);
  });
  server.listen(config.port, '127.0.0.1');
  // Ctrl-C reaches the whole process group; the primary stops the workers.
  process.on('SIGINT', () => {});
}

if (cluster.isPrimary) {
  let config;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    console.error(`rate-limit: ${error.message}\n${USAGE}`);
    process.exit(2);
  }
  runPrimary(config);
} else {
  runWorker(JSON.parse(process.env.SHMKV_EXAMPLE_CONFIG));
}
