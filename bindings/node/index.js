'use strict';
// shmkv for Node.js: the Cache (cache.js), the Keyv store (keyv.js) and the
// express-session store (session-store.js), which loads on first use
// because it needs express-session.
//
//   const { Cache, KeyvShmkv, ShmkvStore } = require('shmkv');
const cache = require('./cache.js');
const { KeyvShmkv } = require('./keyv.js');

module.exports = { ...cache, KeyvShmkv };
Object.defineProperty(module.exports, 'ShmkvStore', {
  enumerable: true,
  get: () => require('./session-store.js').ShmkvStore,
});
