// @keyv/test-suite 2.1.2, the suite keyv's own adapters run, against
// KeyvShmkv: keyvTestSuite (API, values, namespaces) unmodified, and
// keyvIteratorTests with the one store option Keyv needs before it will
// wire keyv.iterator() to the adapter's (keyvIterator: true; keyv.js says
// why). Every adapter that store() makes is a new KeyvShmkv over the same
// segment, as the suite expects (its namespace test relies on that).
import * as test from 'vitest';
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite';
import { Keyv } from 'keyv';
import shmkv from '../index.js';

const { Cache, KeyvShmkv } = shmkv;

const segment = `shmkv-keyv-suite-${process.pid}`;
const cache = new Cache(segment, { memory: '8M' });
test.afterAll(() => {
  cache.close();
  Cache.unlink(segment);
});

const store = () => new KeyvShmkv({ cache, keyvIterator: true });

keyvTestSuite(test, Keyv, store);
keyvIteratorTests(test, Keyv, store);
