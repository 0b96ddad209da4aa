'use strict';
// The example as users run it: app.js, the real cluster (4 workers) on a
// free loopback port, hammered for a few seconds by several client
// processes (test/hammer.js) over keep-alive connections, which the cluster
// spreads over its workers. Whichever worker answers, one client's
// admitted requests must keep to its limit: per one-second window within
// rate ± burst, in total within burst + rate x elapsed; two clients must
// not share a limit; the fixed window must admit at most its limit per
// window. The measured numbers are printed as diagnostics.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const { waitFor, startCluster, assertStopsCleanly, cleanup } = require('../../lib/node/testing');

const APP = path.join(__dirname, '..', 'app.js');
const HAMMER = path.join(__dirname, 'hammer.js');
const WORKERS = 4;
const RATE = 25; // per second, /api/hello
const BURST = 10;
const FIXED_LIMIT = 25; // per one-second window, /api/fixed
const HAMMER_MS = 4000;

const now = () => performance.timeOrigin + performance.now();

/** One GET on a new connection: {status, headers, body}. */
function request(cluster, urlPath, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(urlPath, cluster.url), { agent: false, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => {
        const json = /json/.test(res.headers['content-type'] ?? '');
        resolve({ status: res.statusCode, headers: res.headers, body: json ? JSON.parse(text) : text });
      });
    });
    req.on('error', reject);
  });
}

/** Forks a hammer.js client process; resolves once it is loaded, to {go(endAt) -> its result, kill()}. */
function forkHammer(cluster, endpoint, clientId, concurrency) {
  const child = fork(HAMMER, [new URL(endpoint, cluster.url).href, clientId, String(concurrency)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(`hammer.js exited (${signal ?? `code ${code}`})`));
  });
  const next = () => Promise.race([
    new Promise((resolve) => child.once('message', resolve)),
    exited.then((why) => {
      throw new Error(why);
    }),
  ]);
  return next().then(() => ({
    endpoint,
    clientId,
    concurrency,
    go(endAt) {
      child.send({ endAt });
      return next().then((result) => {
        if (result.error) throw new Error(`hammer.js: ${result.error}`);
        return result;
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  }));
}

/** The admitted (200) responses per one-second window from start, for the windows that end by endAt. */
function perWindow(responses, start, endAt) {
  const windows = [];
  for (let k = 0; start + (k + 1) * 1000 <= endAt; k += 1) windows.push(0);
  for (const [t, status] of responses) {
    const k = Math.floor((t - start) / 1000);
    if (status === 200 && k >= 0 && k < windows.length) windows[k] += 1;
  }
  return windows;
}

describe('the rate-limit example', () => {
  let cluster;
  before(async () => {
    cluster = await startCluster(APP, {
      workers: WORKERS,
      segmentPrefix: 'shmkv-rate-limit',
      args: ['--rate', String(RATE), '--burst', String(BURST), '--fixed-limit', String(FIXED_LIMIT)],
    });
  });
  after(async () => {
    if (!cluster) return;
    try {
      // Stopped by SIGTERM as a user would: it exits 0 and removes its segment.
      await assertStopsCleanly(cluster);
    } finally {
      await cleanup(cluster);
    }
  });

  it('identifies a client by X-Client-Id or by IP, and sends the limit headers', async () => {
    const res = await request(cluster, '/api/hello', { 'X-Client-Id': `fresh-${process.pid}` });
    assert.equal(res.status, 200);
    assert.equal(res.body.client, `fresh-${process.pid}`);
    // A fresh client has its whole burst: this request took one.
    assert.equal(res.headers['ratelimit-limit'], String(BURST));
    assert.equal(res.headers['ratelimit-remaining'], String(BURST - 1));
    assert.equal(res.headers['x-ratelimit-remaining'], String(BURST - 1));
    assert.equal(res.headers['ratelimit-policy'], `${BURST};w=${Math.ceil(BURST / RATE)}`);
    assert.equal(res.headers['x-worker-pid'], String(res.body.worker));
    assert.notEqual(res.body.worker, cluster.child.pid);
    const anonymous = await request(cluster, '/api/hello');
    assert.equal(anonymous.body.client, '127.0.0.1');
    const bad = await request(cluster, '/api/hello', { 'X-Client-Id': 'x'.repeat(65) });
    assert.equal(bad.status, 400);
    const sent = Date.now();
    const fixed = await request(cluster, '/api/fixed', { 'X-Client-Id': `fresh-${process.pid}` });
    const received = Date.now();
    assert.equal(fixed.status, 200);
    assert.equal(fixed.headers['ratelimit-limit'], String(FIXED_LIMIT));
    assert.equal(fixed.headers['ratelimit-remaining'], String(FIXED_LIMIT - 1));
    // The window is the second of the wall clock in which the worker counted it.
    assert.ok(fixed.body.window >= Math.floor(sent / 1000) && fixed.body.window <= Math.floor(received / 1000));
  });

  describe(`hammered by client processes for ${HAMMER_MS / 1000} s`, () => {
    // alpha: two processes on /api/hello; beta: one; gamma: one on /api/fixed.
    const plan = [
      ['/api/hello', 'alpha', 4],
      ['/api/hello', 'alpha', 4],
      ['/api/hello', 'beta', 4],
      ['/api/fixed', 'gamma', 4],
    ];
    const results = {};
    let endAt;
    before(async () => {
      const hammers = [];
      try {
        for (const [endpoint, clientId, concurrency] of plan) {
          hammers.push(await forkHammer(cluster, endpoint, clientId, concurrency));
        }
        // All of them start within moments of {go}; the windows are counted
        // from each client's first request.
        endAt = now() + HAMMER_MS + 200;
        const done = await Promise.all(hammers.map((h) => h.go(endAt)));
        for (const [i, h] of hammers.entries()) {
          const r = (results[h.clientId] ??= { start: Infinity, end: 0, responses: [], processes: 0, connections: 0 });
          r.start = Math.min(r.start, done[i].start);
          r.end = Math.max(r.end, done[i].end);
          r.responses.push(...done[i].responses);
          r.processes += 1;
          r.connections += h.concurrency;
        }
      } finally {
        for (const h of hammers) h.kill();
      }
    });

    for (const clientId of ['alpha', 'beta']) {
      it(`${clientId}: admitted per window within rate ± burst, in total within burst + rate × elapsed`, (t) => {
        const r = results[clientId];
        const windows = perWindow(r.responses, r.start, endAt);
        const admitted = r.responses.filter(([, status]) => status === 200).length;
        const elapsed = (r.end - r.start) / 1000;
        const bound = BURST + RATE * elapsed;
        t.diagnostic(`${clientId} (${r.processes} process(es), ${r.connections} connections): ` +
          `${r.responses.length} requests; ` +
          `admitted per 1 s window [${windows.join(', ')}] vs limit ${RATE} ± burst ${BURST}; ` +
          `total ${admitted} in ${elapsed.toFixed(3)} s vs burst + rate × elapsed = ${bound.toFixed(1)}`);
        assert.equal(windows.length, HAMMER_MS / 1000, `${windows.length} whole windows`);
        // Far more was asked than admitted: the limit was what held them back.
        assert.ok(r.responses.length > 2 * bound, `only ${r.responses.length} requests`);
        for (const n of windows) {
          assert.ok(n >= RATE - BURST && n <= RATE + BURST, `window admitted ${n}, limit ${RATE} ± ${BURST}`);
        }
        assert.ok(admitted <= bound, `admitted ${admitted} > ${bound}`);
        for (const [, status, , remaining, retryAfter] of r.responses) {
          assert.ok(status === 200 || status === 429, `status ${status}`);
          if (status === 200) {
            assert.ok(remaining >= 0 && remaining < BURST, `remaining ${remaining}`);
          } else {
            assert.equal(remaining, 0);
            // At most one interval (1000 / RATE ms) away, in whole seconds.
            assert.equal(retryAfter, Math.ceil(1 / RATE), `Retry-After ${retryAfter}`);
          }
        }
      });
    }

    it('two clients have limits of their own', (t) => {
      const alpha = results.alpha.responses.filter(([, s]) => s === 200).length;
      const beta = results.beta.responses.filter(([, s]) => s === 200).length;
      t.diagnostic(`admitted: alpha ${alpha} (asked ${results.alpha.responses.length}), ` +
        `beta ${beta} (asked ${results.beta.responses.length})`);
      // Each got about a full limit, though alpha asked about twice as often
      // as beta: neither took the other's share.
      for (const n of [alpha, beta]) assert.ok(n >= (RATE - BURST) * 3, `admitted ${n}`);
      assert.ok(results.alpha.responses.length > results.beta.responses.length);
    });

    it('the responses came from several workers, one limit for all of them', (t) => {
      const all = new Set();
      for (const [clientId, r] of Object.entries(results)) {
        const pids = new Set(r.responses.filter(([, s]) => s === 200).map(([, , pid]) => pid));
        t.diagnostic(`${clientId}: admitted by workers ${[...pids].sort().join(', ')}`);
        // The limit held while several workers admitted this client.
        if (clientId !== 'gamma') assert.ok(pids.size >= 2, `${clientId} admitted by ${pids.size} worker(s)`);
        for (const [, , pid] of r.responses) all.add(pid);
      }
      t.diagnostic(`responses from ${all.size} worker pids: ${[...all].sort().join(', ')}`);
      assert.ok(all.size >= 2);
      assert.ok(all.size <= WORKERS);
      assert.equal(all.has(cluster.child.pid), false);
    });

    it('the fixed window admits at most its limit per window', (t) => {
      const r = results.gamma;
      const admitted = new Map();
      for (const [, status, , , , window] of r.responses) {
        assert.ok(Number.isInteger(window) && window > 0, `window ${window}`);
        if (status === 200) admitted.set(window, (admitted.get(window) ?? 0) + 1);
      }
      const counts = [...admitted.entries()].sort(([a], [b]) => a - b).map(([, n]) => n);
      t.diagnostic(`gamma (/api/fixed, ${r.responses.length} requests): admitted per server window ` +
        `[${counts.join(', ')}] vs limit ${FIXED_LIMIT}`);
      assert.ok(admitted.size >= HAMMER_MS / 1000, `only ${admitted.size} windows`);
      for (const n of counts) assert.ok(n <= FIXED_LIMIT, `window admitted ${n} > ${FIXED_LIMIT}`);
      // Hammered, the windows inside the run were used up to the limit.
      assert.ok(counts.slice(1, -1).some((n) => n === FIXED_LIMIT), `no window reached ${FIXED_LIMIT}`);
    });
  });

  it('around a window boundary the fixed window lets 2 × limit through; GCRA does not', async (t) => {
    const burst = async (clientId, endpoint, n) => {
      const replies = Array.from({ length: n }, () => request(cluster, endpoint, { 'X-Client-Id': clientId })
        .then((r) => ({ ...r, at: now() })));
      return Promise.all(replies);
    };
    // Late in a window, a full window's worth; as soon as the next window
    // starts, another. If the first batch spills over into the next window
    // (a stalled machine), the measurement is void: try again.
    for (let attempt = 1; ; attempt += 1) {
      const clientId = `edge-${process.pid}-${attempt}`;
      await waitFor(() => Date.now() % 1000 >= 600 && Date.now() % 1000 < 700, 2000, 'late in a window');
      const first = await burst(clientId, '/api/fixed', FIXED_LIMIT);
      const firstWindow = first[0].body.window;
      if (first.some((r) => r.body.window !== firstWindow)) {
        if (attempt < 3) continue;
        assert.fail('the first batch never fit in one window');
      }
      await waitFor(() => Math.floor(Date.now() / 1000) > firstWindow, 2000, 'the next window');
      const second = await burst(clientId, '/api/fixed', FIXED_LIMIT);
      const all = [...first, ...second];
      const ok = all.filter((r) => r.status === 200);
      const span = Math.max(...ok.map((r) => r.at)) - Math.min(...ok.map((r) => r.at));
      // The same pattern against GCRA: at most burst + rate × span.
      const gcraId = `edge-gcra-${process.pid}-${attempt}`;
      const gcraStart = now();
      const gcra = await burst(gcraId, '/api/hello', FIXED_LIMIT);
      gcra.push(...await burst(gcraId, '/api/hello', FIXED_LIMIT));
      const gcraSpan = (now() - gcraStart) / 1000;
      const gcraOk = gcra.filter((r) => r.status === 200).length;
      t.diagnostic(`fixed window: ${ok.length} of ${all.length} admitted within ${span.toFixed(0)} ms ` +
        `(limit ${FIXED_LIMIT} per window); GCRA: ${gcraOk} of ${gcra.length} within ` +
        `${(gcraSpan * 1000).toFixed(0)} ms (burst ${BURST} + ${RATE}/s)`);
      assert.equal(ok.length, 2 * FIXED_LIMIT);
      assert.ok(span < 1000, `span ${span} ms`);
      assert.ok(second.every((r) => r.body.window === firstWindow + 1));
      assert.ok(gcraOk <= BURST + RATE * gcraSpan, `GCRA admitted ${gcraOk}`);
      break;
    }
  });
});
