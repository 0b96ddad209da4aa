'use strict';
// Shared by the node --test files: unique segment names (so that parallel
// runs never collide) and a forked second process driven over IPC.
const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { after } = require('node:test');
const { Cache, codes } = require('../index.js');

let counter = 0;

/** A segment name no other run uses: pid + a counter. */
function uniqueSegment(tag) {
  counter += 1;
  return `shmkv-node-${tag}-${process.pid}-${counter}`;
}

/** Polls fn() until it returns true; throws after deadlineMs. */
async function waitFor(fn, deadlineMs, what) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Forks fixtures/worker.js on `segment`; resolves to {call(op, ...args),
 * pid, close()} once it has opened the segment.
 */
function forkWorker(segment) {
  const child = fork(path.join(__dirname, 'fixtures', 'worker.js'), [segment], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map();
  let nextId = 0;
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const error = new Error(`worker exited with code ${code}`);
      reject(error);
      for (const { reject: fail } of pending.values()) fail(error);
    });
    child.on('message', (message) => {
      if (message.ready) {
        resolve({
          pid: child.pid,
          call(op, ...args) {
            nextId += 1;
            const id = nextId;
            return new Promise((ok, fail) => {
              pending.set(id, { ok, reject: fail });
              child.send({ id, op, args });
            });
          },
          close() {
            child.removeAllListeners('exit');
            child.kill();
          },
        });
        return;
      }
      const entry = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) {
        const error = new Error(message.error.message);
        error.code = message.error.code;
        entry.reject(error);
      } else {
        entry.ok(message.result);
      }
    });
  });
}

/**
 * open(tag, options) for a test file: a Cache on a unique segment (4 MiB by
 * default), closed and unlinked after the file's tests.
 */
function cacheOpener() {
  const opened = [];
  after(() => {
    for (const cache of opened) {
      cache.close();
      Cache.unlink(cache.name);
    }
  });
  return (tag, options = { memory: '4M' }) => {
    const cache = new Cache(uniqueSegment(tag), options);
    opened.push(cache);
    return cache;
  };
}

/** Asserts that fn throws the library's error `code` (message matching detail). */
function assertShmkvError(fn, code, detail) {
  assert.throws(fn, (error) => {
    assert.equal(error.code, code);
    assert.equal(error.errno, codes[code]);
    if (detail) assert.match(error.message, detail);
    return true;
  });
}

module.exports = { uniqueSegment, waitFor, forkWorker, cacheOpener, assertShmkvError };
