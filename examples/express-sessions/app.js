'use strict';
// Web sessions shared by the workers of a Node cluster through one shmkv
// segment: express 5 + express-session with ShmkvStore, no session server.
// Every request opens a new connection (the server answers with
// "Connection: close"), so the cluster's round-robin spreads the pages of
// one browser over the workers; each response names its worker in an
// X-Worker-Pid header and on the page, and the session follows along.
//
//   bash examples/express-sessions/run.sh [options]   # builds, then runs this
//
// Options (environment variable in brackets):
//   --port N          [PORT] 0 picks a free port (default 3000)
//   --workers N       [WORKERS] at least 2 (default 4)
//   --segment NAME    [SHMKV_SEGMENT] (default express-sessions)
//   --max-age MS      [SESSION_MAX_AGE_MS] a session ends after this long
//                     without a request (default 30 min)
//   --keep-segment    [KEEP_SEGMENT=1] leave the segment in place on exit
//   [SESSION_SECRET]  cookie signing secret (default: random for each run)
//
// The primary creates the segment, forks the workers, prints the URL once
// every worker listens, and on SIGINT/SIGTERM stops them and removes the
// segment. A segment that already exists (made by shmkvd, say) is used as
// it is and left in place. That part, and the options every Node example
// has, are in ../lib/node/cluster.js; this file has the options of its own
// and a worker's express app.
//
//   GET  /          the login form (or the cart when logged in)
//   POST /login     username=NAME: starts a session
//   GET  /cart      the cart and the products
//   POST /cart      product=ID: one more of it in the cart
//   POST /logout    destroys the session: its key leaves the segment
const crypto = require('node:crypto');
const express = require('express');
const session = require('express-session');
// In an application of your own: require('shmkv').
const { ShmkvStore } = require('../../bindings/node');
const { integer, runExample } = require('../lib/node/cluster');

const SEGMENT_MEMORY = '16M';
const PRODUCTS = { apple: 'Apple', bread: 'Bread', cheese: 'Cheese', coffee: 'Coffee' };

const USAGE = `usage: node app.js [--port N] [--workers N] [--segment NAME] [--max-age MS] [--keep-segment]
(or PORT, WORKERS, SHMKV_SEGMENT, SESSION_MAX_AGE_MS, KEEP_SEGMENT=1, SESSION_SECRET)`;

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${title} · shmkv sessions</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
  button { font: inherit; margin: 0 .25rem .25rem 0; }
  .worker { margin-top: 2rem; color: #555; border-top: 1px solid #ddd; padding-top: .5rem; }
  .error { color: #b00; }
</style>
</head>
<body>
<h1>${title}</h1>
${body}
<p class="worker">Served by worker <strong id="pid">${process.pid}</strong>.</p>
</body>
</html>
`;
}

function loginPage(error) {
  const message = error ? `<p class="error">${escapeHtml(error)}</p>\n` : '';
  return page('Log in', `${message}<form method="post" action="/login">
<label>Username <input name="username" required maxlength="40" autofocus></label>
<button>Log in</button>
</form>`);
}

function cartPage(sess, maxAgeMs) {
  const lines = Object.entries(sess.cart).map(([id, n]) =>
    `<li data-product="${id}" data-quantity="${n}">${PRODUCTS[id]} × ${n}</li>`);
  const cart = lines.length ? `<ul id="cart">\n${lines.join('\n')}\n</ul>` : '<p id="cart">Empty.</p>';
  const buttons = Object.entries(PRODUCTS).map(([id, name]) =>
    `<button name="product" value="${id}">Add ${name}</button>`);
  return page('Cart', `<p>Logged in as <strong id="user">${escapeHtml(sess.user)}</strong>; the session ends after
${Math.round(maxAgeMs / 1000)} s without a request.</p>
<h2>In the cart</h2>
${cart}
<h2>Products</h2>
<form method="post" action="/cart">
${buttons.join('\n')}
</form>
<form method="post" action="/logout"><button>Log out</button></form>`);
}

function createApp(config) {
  const store = new ShmkvStore({ segment: config.segment, create: false });
  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    res.set('X-Worker-Pid', String(process.pid));
    res.set('Connection', 'close');
    next();
  });
  app.get('/favicon.ico', (req, res) => res.status(204).end());
  app.use(session({
    store,
    name: 'sid',
    secret: config.secret,
    resave: false,
    saveUninitialized: false,
    // Every response renews the cookie, as every request renews the entry
    // in the segment (the store's touch): both end after maxAge idle.
    rolling: true,
    cookie: { maxAge: config.maxAgeMs, httpOnly: true, sameSite: 'lax' },
  }));
  app.use(express.urlencoded({ extended: false }));

  app.get('/', (req, res) => {
    if (req.session.user) return res.redirect('/cart');
    return res.send(loginPage());
  });

  app.post('/login', (req, res, next) => {
    const username = String(req.body?.username ?? '').trim();
    if (!username || username.length > 40) {
      return res.status(400).send(loginPage('Enter a username (up to 40 characters).'));
    }
    // A new session id on login, so that an id handed out before is worth nothing.
    return req.session.regenerate((error) => {
      if (error) return next(error);
      req.session.user = username;
      req.session.cart = {};
      return res.redirect(303, '/cart');
    });
  });

  app.get('/cart', (req, res) => {
    if (!req.session.user) return res.redirect('/');
    return res.send(cartPage(req.session, config.maxAgeMs));
  });

  app.post('/cart', (req, res) => {
    if (!req.session.user) return res.redirect(303, '/');
    const product = String(req.body?.product ?? '');
    if (!Object.hasOwn(PRODUCTS, product)) {
      return res.status(400).send(page('Unknown product', '<p><a href="/cart">Back to the cart</a></p>'));
    }
    req.session.cart[product] = (req.session.cart[product] ?? 0) + 1;
    return res.redirect(303, '/cart');
  });

  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => {
      if (error) return next(error);
      res.clearCookie('sid', { path: '/', httpOnly: true, sameSite: 'lax' });
      return res.redirect(303, '/');
    });
  });

  return app;
}

runExample({
  name: 'express-sessions',
  usage: USAGE,
  segment: 'express-sessions',
  memory: SEGMENT_MEMORY,
  options: { 'max-age': { type: 'string' } },
  config: (values, env) => ({
    maxAgeMs: integer(values['max-age'] ?? env.SESSION_MAX_AGE_MS ?? '1800000', 'max-age', 1),
    // Every worker must sign cookies with the same secret.
    secret: env.SESSION_SECRET || crypto.randomBytes(32).toString('hex'),
  }),
  about: (config) => `${config.workers} workers, segment "${config.segment}", ` +
    `sessions end after ${config.maxAgeMs} ms idle`,
  keys: { prefix: 'sess:', what: 'sessions' },
  worker: createApp,
});
