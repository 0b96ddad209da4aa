'use strict';
// The example as users run it: app.js, the real cluster, on a free loopback
// port, driven (1) by plain HTTP requests with a cookie jar, each on a new
// connection so that they land on different workers, and (2) by a headless
// Chromium through playwright-core. A session must follow its user from
// worker to worker; logout and expiry must take its key out of the segment,
// which is checked directly with the binding's Cache.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { Cache } = require('../../../bindings/node');
const { waitFor, startCluster, assertStopsCleanly, cleanup } = require('../../lib/node/testing');

const APP = path.join(__dirname, '..', 'app.js');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.SHMKV_TEST_ARTIFACTS || path.join(__dirname, '..', 'build');
const PRODUCTS = { apple: 'Apple', bread: 'Bread', cheese: 'Cheese', coffee: 'Coffee' };

/** app.js with `workers` workers and the given idle timeout, on a new segment; resolves once every worker listens. */
function startExample({ workers, maxAgeMs }) {
  return startCluster(APP, {
    workers,
    segmentPrefix: `shmkv-express-w${workers}`,
    env: { SESSION_MAX_AGE_MS: String(maxAgeMs), SESSION_SECRET: 'shmkv-test-secret' },
  });
}

/** The key of a session in the segment: "sess:" + the sid in the signed cookie value "s:<sid>.<signature>". */
function sessionKey(cookieValue) {
  const signed = decodeURIComponent(cookieValue);
  assert.match(signed, /^s:.+\..+$/);
  return `sess:${signed.slice(2, signed.lastIndexOf('.'))}`;
}

/** The cookies of one client; Set-Cookie with an empty value or a past expiry removes one. */
class CookieJar {
  #cookies = new Map();

  update(setCookies = []) {
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';').map((s) => s.trim());
      const name = pair.slice(0, pair.indexOf('='));
      const value = pair.slice(pair.indexOf('=') + 1);
      const expires = attributes.find((a) => /^expires=/i.test(a))?.slice('expires='.length);
      if (value === '' || (expires && Date.parse(expires) <= Date.now())) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  get header() {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  /** A copy, to replay a cookie after its owner has dropped it. */
  clone() {
    const copy = new CookieJar();
    copy.update([...this.#cookies].map(([name, value]) => `${name}=${value}`));
    return copy;
  }

  /** The segment key of the session of the "sid" cookie, if any. */
  get sessionKey() {
    const value = this.#cookies.get('sid');
    return value === undefined ? undefined : sessionKey(value);
  }
}

/** One request on a new connection (so the cluster may hand it to any worker). */
function request(cluster, method, urlPath, { jar, form } = {}) {
  return new Promise((resolve, reject) => {
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const headers = {};
    if (jar?.header) headers.cookie = jar.header;
    if (body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = http.request(new URL(urlPath, cluster.url), { method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => {
        jar?.update(res.headers['set-cookie']);
        const header = res.headers['x-worker-pid'];
        const pid = Number(header);
        if (!(Number.isInteger(pid) && pid > 0)) reject(new Error(`${method} ${urlPath}: X-Worker-Pid "${header}"`));
        else resolve({ status: res.statusCode, location: res.headers.location, pid, body: text });
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${urlPath}: no answer within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** What a page of the app shows: its worker, the user, the cart, a login form. */
function parsePage(html) {
  const cart = {};
  for (const m of html.matchAll(/<li data-product="(\w+)" data-quantity="(\d+)">/g)) cart[m[1]] = Number(m[2]);
  return {
    pid: Number(/<strong id="pid">(\d+)<\/strong>/.exec(html)?.[1]),
    user: /<strong id="user">([^<]*)<\/strong>/.exec(html)?.[1],
    cart,
    loginForm: html.includes('<form method="post" action="/login">'),
  };
}

/** A page that must be the cart of `user`, served by the worker its header names. */
function cartOf(response, user) {
  assert.equal(response.status, 200);
  const shown = parsePage(response.body);
  assert.equal(shown.pid, response.pid, 'the page names the worker of the X-Worker-Pid header');
  assert.equal(shown.user, user);
  return shown.cart;
}

describe('the example cluster (4 workers)', () => {
  let cluster;
  let cache;
  const jar = new CookieJar();
  const pidsSeen = new Set();

  before(async () => {
    cluster = await startExample({ workers: 4, maxAgeMs: 60_000 });
    cache = new Cache(cluster.segment, { create: false });
  });
  after(async () => {
    cache?.close();
    await cleanup(cluster);
  });

  it('answers from several workers, each naming itself, and stores nothing for a visitor', async () => {
    await waitFor(async () => {
      const res = await request(cluster, 'GET', '/');
      assert.equal(res.status, 200);
      const shown = parsePage(res.body);
      assert.equal(shown.pid, res.pid);
      assert.notEqual(res.pid, cluster.child.pid, 'a worker answers, not the primary');
      assert.ok(shown.loginForm);
      pidsSeen.add(res.pid);
      return pidsSeen.size >= 2;
    }, 10_000, 'two workers to answer');
    assert.deepEqual(cache.keys('sess:'), []);
  });

  it('a session started on one worker follows the user to the others', async (t) => {
    const login = await request(cluster, 'POST', '/login', { jar, form: { username: 'alice' } });
    assert.equal(login.status, 303);
    assert.equal(login.location, '/cart');
    const key = jar.sessionKey;
    assert.ok(key, 'login sets the session cookie');
    assert.equal(JSON.parse(cache.getString(key)).user, 'alice');

    const model = {};
    const pids = new Set([login.pid]);
    let requests = 1;
    let crossWorker = 0;
    const end = Date.now() + 15_000;
    for (let i = 0; ; i += 1) {
      const product = Object.keys(PRODUCTS)[i % 3];
      const add = await request(cluster, 'POST', '/cart', { jar, form: { product } });
      assert.equal(add.status, 303);
      model[product] = (model[product] ?? 0) + 1;
      const view = await request(cluster, 'GET', '/cart', { jar });
      assert.deepEqual(cartOf(view, 'alice'), model, `the cart after ${i + 1} adds`);
      requests += 2;
      pids.add(add.pid).add(view.pid);
      if (view.pid !== add.pid) crossWorker += 1;
      const enough = pids.size === cluster.workers && crossWorker >= 2 && i >= 3;
      if (enough || i >= 40 || Date.now() > end) break;
    }
    assert.ok(pids.size >= 2, `one session served by ${pids.size} worker(s) in ${requests} requests`);
    assert.ok(crossWorker >= 1, 'a cart written on one worker was read on another');
    assert.deepEqual(JSON.parse(cache.getString(key)).cart, model, 'the segment holds the cart');
    for (const pid of pids) pidsSeen.add(pid);
    t.diagnostic(`HTTP: one session served by ${pids.size} worker pids in ${requests} requests; ` +
      `${crossWorker} carts read on another worker than the one that wrote them`);
  });

  it('rejects an unknown product and an empty username', async () => {
    const before = JSON.parse(cache.getString(jar.sessionKey)).cart;
    const bad = await request(cluster, 'POST', '/cart', { jar, form: { product: 'caviar' } });
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(cache.getString(jar.sessionKey)).cart, before);
    const empty = await request(cluster, 'POST', '/login', { form: { username: '  ' } });
    assert.equal(empty.status, 400);
    assert.ok(parsePage(empty.body).loginForm);
  });

  it('logout destroys the session: its key leaves the segment, and its cookie is worth nothing', async () => {
    const key = jar.sessionKey;
    const stolen = jar.clone();
    assert.ok(cache.has(key));
    const logout = await request(cluster, 'POST', '/logout', { jar });
    assert.equal(logout.status, 303);
    assert.equal(logout.location, '/');
    assert.equal(jar.sessionKey, undefined, 'the cookie is cleared');
    assert.equal(cache.has(key), false, 'the session key is gone from the segment');
    assert.ok(parsePage((await request(cluster, 'GET', '/', { jar })).body).loginForm);

    // The old cookie, replayed, is logged out on every worker it reaches.
    const pids = new Set();
    await waitFor(async () => {
      const res = await request(cluster, 'GET', '/cart', { jar: stolen });
      assert.equal(res.status, 302);
      assert.equal(res.location, '/');
      pids.add(res.pid);
      return pids.size >= 2;
    }, 10_000, 'two workers to answer the old cookie');
    assert.equal(cache.has(key), false);
  });

  it('Chromium: a browser session keeps its cart across page loads served by several workers', {
    skip: !fs.existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM} (apt-get install chromium)`,
    timeout: 60_000,
  }, async (t) => {
    const { chromium } = require('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: process.getuid() === 0 ? ['--no-sandbox'] : [],
      timeout: 30_000,
    });
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(10_000);
      const loads = [];
      // The worker of a page load: its X-Worker-Pid header, which the page shows too.
      const served = async (response) => {
        assert.equal(response.status(), 200);
        const pid = Number(response.headers()['x-worker-pid']);
        assert.equal(Number(await page.locator('#pid').textContent()), pid);
        loads.push(pid);
        return pid;
      };
      const navigation = async (action) => (await Promise.all([page.waitForNavigation(), action()]))[0];
      const cartShown = () => page.locator('#cart li').evaluateAll((items) =>
        Object.fromEntries(items.map((li) => [li.dataset.product, Number(li.dataset.quantity)])));

      await served(await page.goto(cluster.url));
      await page.getByLabel('Username').fill('dora');
      await served(await navigation(() => page.getByRole('button', { name: 'Log in' }).click()));
      assert.equal(await page.locator('#user').textContent(), 'dora');
      const sessionLoads = loads.length;

      const model = {};
      const end = Date.now() + 20_000;
      for (let i = 0; ; i += 1) {
        const product = Object.keys(PRODUCTS)[i % 4];
        await served(await navigation(() => page.getByRole('button', { name: `Add ${PRODUCTS[product]}` }).click()));
        model[product] = (model[product] ?? 0) + 1;
        assert.deepEqual(await cartShown(), model, `the cart after ${i + 1} adds`);
        if (i % 2 === 1) {
          await served(await page.reload());
          assert.deepEqual(await cartShown(), model, 'the cart after a reload');
        }
        const pids = new Set(loads.slice(sessionLoads - 1));
        if ((pids.size >= 2 && i >= 5) || i >= 30 || Date.now() > end) break;
      }
      const pids = new Set(loads.slice(sessionLoads - 1));
      assert.ok(pids.size >= 2, `the browser's session was served by ${pids.size} worker(s)`);
      for (const pid of pids) pidsSeen.add(pid);

      fs.mkdirSync(ARTIFACTS, { recursive: true });
      const screenshot = path.join(ARTIFACTS, 'express-sessions-cart.png');
      await page.screenshot({ path: screenshot, fullPage: true });
      assert.ok(fs.statSync(screenshot).size > 0);
      t.diagnostic(`Chromium: ${loads.length - sessionLoads + 1} page loads of one session by ${pids.size} ` +
        `worker pids; screenshot: ${screenshot}`);

      const key = sessionKey((await page.context().cookies()).find((c) => c.name === 'sid').value);
      assert.deepEqual(JSON.parse(cache.getString(key)).cart, model);
      await served(await navigation(() => page.getByRole('button', { name: 'Log out' }).click()));
      assert.equal(await page.getByLabel('Username').count(), 1, 'back at the login form');
      assert.equal((await page.context().cookies()).some((c) => c.name === 'sid'), false);
      assert.equal(cache.has(key), false, 'the session key is gone from the segment');
    } finally {
      await browser.close();
    }
  });

  it('SIGTERM stops the workers and removes the segment', async (t) => {
    t.diagnostic(`worker pids seen: ${pidsSeen.size} of ${cluster.workers}`);
    await assertStopsCleanly(cluster);
    for (const pid of pidsSeen) {
      assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
    }
  });
});

describe('session expiry (2 workers, maxAge 1500 ms)', () => {
  const maxAgeMs = 1500;
  let cluster;
  let cache;

  before(async () => {
    cluster = await startExample({ workers: 2, maxAgeMs });
    cache = new Cache(cluster.segment, { create: false });
  });
  after(async () => {
    cache?.close();
    await cleanup(cluster);
  });

  it('a session ends maxAge after its last request, and a request before that renews it', async () => {
    const jar = new CookieJar();
    const login = await request(cluster, 'POST', '/login', { jar, form: { username: 'carol' } });
    assert.equal(login.status, 303);
    const key = jar.sessionKey;
    const ttl = cache.ttl(key);
    assert.ok(ttl > 0 && ttl <= maxAgeMs, `ttl ${ttl}`);

    // Half way through, a visit (on either worker) renews the entry.
    await waitFor(() => cache.ttl(key) < maxAgeMs / 2, 5000, 'the session to age');
    const aged = cache.ttl(key);
    const visited = Date.now();
    cartOf(await request(cluster, 'GET', '/cart', { jar }), 'carol');
    const renewed = cache.ttl(key);
    assert.ok(renewed > maxAgeMs / 2 && renewed > aged, `ttl ${aged} ms before a visit, ${renewed} ms after`);

    // Then, left alone, it expires: not before maxAge has passed.
    await waitFor(() => !cache.has(key), 10_000, 'the session to expire');
    const idle = Date.now() - visited;
    assert.ok(idle >= maxAgeMs - 100, `gone after ${idle} ms idle`);
    const after = await request(cluster, 'GET', '/cart', { jar });
    assert.equal(after.status, 302, 'the expired session is logged out');
    assert.equal(after.location, '/');
    assert.ok(parsePage((await request(cluster, 'GET', '/', { jar })).body).loginForm);
    assert.equal(cache.has(key), false);
  });
});
