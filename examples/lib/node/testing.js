'use strict';
// The example cluster in the tests of the Node examples (test/app.test.js
// of express-sessions and rate-limit), run as users run it: app.js, the
// real cluster, on a free loopback port and a segment of its own, stopped
// with SIGTERM. Whatever happens, cleanup() leaves no process of it and no
// segment behind.
//
//   const cluster = await startCluster(APP, { workers: 4, segmentPrefix: 'shmkv-x' });
//   ... requests to cluster.url ...
//   await assertStopsCleanly(cluster);   // in a test
//   await cleanup(cluster);              // in after()
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { Cache } = require('../../../bindings/node');

let counter = 0;

/** Polls fn() until it returns a truthy value, which it returns; throws after deadlineMs. */
async function waitFor(fn, deadlineMs, what) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Starts `app` (an example's app.js) with --port 0, `workers` workers, a
 * segment no other run uses (segmentPrefix + pid + a counter), the options
 * `args` and the environment variables `env`; resolves once the primary
 * prints its URL, that is once every worker listens, to
 * {segment, workers, child, exited, output(), url}.
 */
async function startCluster(app, { workers, segmentPrefix, args = [], env = {} }) {
  counter += 1;
  const segment = `${segmentPrefix}-${process.pid}-${counter}`;
  const child = spawn(process.execPath,
    [app, '--port', '0', '--workers', String(workers), '--segment', segment, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own, so that the cleanup can reach every worker.
      detached: true,
    });
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (text) => {
      output += text;
    });
  }
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const cluster = { segment, workers, child, exited, output: () => output };
  try {
    const port = await waitFor(() => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`app.js exited:\n${output}`);
      return /http:\/\/127\.0\.0\.1:(\d+)\//.exec(output)?.[1];
    }, 20_000, 'the cluster to listen');
    cluster.url = `http://127.0.0.1:${port}/`;
    return cluster;
  } catch (error) {
    await cleanup(cluster);
    throw error;
  }
}

/** SIGTERM to the primary, as a user or a service manager would; resolves to its exit, or null after 10 s. */
async function stopCluster(cluster) {
  if (cluster.child.exitCode === null && cluster.child.signalCode === null) cluster.child.kill('SIGTERM');
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, 10_000, null);
  });
  const exit = await Promise.race([cluster.exited, timeout]);
  clearTimeout(timer);
  return exit;
}

/** Stopped by SIGTERM, the primary exits 0 and removes its segment. */
async function assertStopsCleanly(cluster) {
  const exit = await stopCluster(cluster);
  assert.deepEqual(exit, { code: 0, signal: null }, cluster.output());
  assert.match(cluster.output(), /stopped; segment "[^"]+" removed/);
  assert.equal(fs.existsSync(`/dev/shm/${cluster.segment}`), false);
}

/** Whatever happened: no process of the cluster and no segment are left behind. */
async function cleanup(cluster) {
  if (!cluster) return;
  if (!(await stopCluster(cluster))) {
    try {
      process.kill(-cluster.child.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  }
  if (fs.existsSync(`/dev/shm/${cluster.segment}`)) Cache.unlink(cluster.segment);
}

module.exports = { waitFor, startCluster, assertStopsCleanly, cleanup };
