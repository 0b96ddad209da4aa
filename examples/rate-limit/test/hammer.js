'use strict';
// A client process for test/app.test.js: `concurrency` request loops over
// as many keep-alive connections, all as one client (X-Client-Id), on one
// endpoint, from the {go} message until its end time. It says {ready} once
// loaded, and replies {start, end, responses}: the wall-clock ms before
// its first request and after its last response, and for every response
// [received (wall-clock ms), status, X-Worker-Pid, X-RateLimit-Remaining,
// Retry-After, window (from the body: /api/fixed only) or -1].
const http = require('node:http');

const [url, clientId, concurrencyText] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const now = () => performance.timeOrigin + performance.now();

function get() {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { 'X-Client-Id': clientId } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => {
        const window = JSON.parse(body).window;
        resolve([
          now(),
          res.statusCode,
          Number(res.headers['x-worker-pid']),
          Number(res.headers['x-ratelimit-remaining']),
          res.headers['retry-after'] === undefined ? -1 : Number(res.headers['retry-after']),
          window === undefined ? -1 : window,
        ]);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

process.once('message', async ({ endAt }) => {
  const responses = [];
  const start = now();
  const loop = async () => {
    while (now() < endAt) responses.push(await get());
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, loop));
    process.send({ start, end: now(), responses });
  } catch (error) {
    process.send({ error: error.message });
  } finally {
    agent.destroy();
    process.disconnect();
  }
});
process.send({ ready: true });
