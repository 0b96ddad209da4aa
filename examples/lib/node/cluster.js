'use strict';
// The node:cluster part of the Node examples (express-sessions, rate-limit):
// the options they all have, the primary's lifecycle around one shmkv
// segment, and a worker's HTTP server. An example's app.js ends with
//
//   runExample({
//     name: 'rate-limit',                 // begins every line it prints
//     usage: USAGE,                       // for --help, and after a bad option
//     segment: 'rate-limit',              // the default of --segment
//     memory: '16M',                      // the size of a segment it creates
//     options: { rate: { type: 'string' } },      // parseArgs options of its own
//     config: (values, env) => ({ rate: 10 }),    // its settings from them (throws on a bad one)
//     about: (config) => '4 workers, ...',        // in brackets after the URL
//     keys: { prefix: 'rl:', what: 'limiter keys' },  // counted on exit
//     worker: (config) => app,            // a worker's request handler (an express app)
//   });
//
// which runs the primary in the process started by hand and a worker in
// every process it forks. The options every example has (environment
// variable in brackets):
//   --port N          [PORT] 0 picks a free port (default 3000)
//   --workers N       [WORKERS] at least 2 (default 4)
//   --segment NAME    [SHMKV_SEGMENT] (default: the example's)
//   --keep-segment    [KEEP_SEGMENT=1] leave the segment in place on exit
//   --help            prints the usage
//
// The primary creates the segment, forks the workers (the settings go to
// them as JSON in SHMKV_EXAMPLE_CONFIG), prints the URL once every worker
// listens, and on SIGINT/SIGTERM stops them and removes the segment; a
// worker that exits by itself stops the others, and the primary exits 1. A
// segment that already exists (made by shmkvd, say) is used as it is and
// left in place. Every worker serves the example's handler on 127.0.0.1.
const cluster = require('node:cluster');
const http = require('node:http');
const { parseArgs } = require('node:util');
// In an application of your own: require('shmkv').
const { Cache } = require('../../../bindings/node');

/** The integer `text` (an option's value), at least `min`; throws a RangeError naming `what`. */
function integer(text, what, min) {
  const n = Number(text);
  if (!/^\d+$/.test(String(text).trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got "${text}"`);
  }
  return n;
}

function parseConfig(example, argv, env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      workers: { type: 'string' },
      segment: { type: 'string' },
      ...example.options,
      'keep-segment': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(example.usage);
    process.exit(0);
  }
  const config = {
    port: integer(values.port ?? env.PORT ?? '3000', 'port', 0),
    workers: integer(values.workers ?? env.WORKERS ?? '4', 'workers', 2),
    segment: values.segment ?? env.SHMKV_SEGMENT ?? example.segment,
    keepSegment: Boolean(values['keep-segment']) || env.KEEP_SEGMENT === '1',
  };
  if (config.port > 65535) throw new RangeError(`port must be <= 65535, got ${config.port}`);
  return { ...config, ...example.config(values, env) };
}

function runPrimary(example, config) {
  let cache;
  let created = true;
  try {
    cache = new Cache(config.segment, { memory: example.memory, exclusive: true });
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
    const keys = cache.keys(example.keys.prefix).length;
    cache.close();
    if (removeOnExit) Cache.unlink(config.segment);
    const what = removeOnExit ? 'removed' : 'left in place';
    console.log(`${example.name}: stopped; segment "${config.segment}" ${what} (${example.keys.what} in it: ${keys})`);
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
      console.log(`${example.name}: http://127.0.0.1:${address.port}/ (${example.about(config)})`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    alive.delete(worker.id);
    if (!stopping) {
      console.error(`${example.name}: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); stopping`);
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

function runWorker(example, config) {
  const server = http.createServer(example.worker(config));
  server.on('error', (error) => {
    console.error(`${example.name}: worker ${process.pid}: ${error.message}`);
    process.exit(1);
  });
  server.listen(config.port, '127.0.0.1');
  // Ctrl-C reaches the whole process group; the primary stops the workers.
  process.on('SIGINT', () => {});
}

/** The primary (options from the command line and the environment) or a worker, as this process is. */
function runExample(example) {
  if (!cluster.isPrimary) {
    runWorker(example, JSON.parse(process.env.SHMKV_EXAMPLE_CONFIG));
    return;
  }
  let config;
  try {
    config = parseConfig(example, process.argv.slice(2), process.env);
  } catch (error) {
    console.error(`${example.name}: ${error.message}\n${example.usage}`);
    process.exit(2);
  }
  runPrimary(example, config);
}

module.exports = { integer, runExample };
