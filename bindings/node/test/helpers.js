'use strict';
// Shared by the node --test files: unique segment names (so that parallel
// runs never collide) and a forked second process driven over IPC.
const { fork } = require('node:child_process');
const path = require('node:path');

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

module.exports = { uniqueSegment, waitFor, forkWorker };
