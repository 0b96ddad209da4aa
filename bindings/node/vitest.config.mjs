import { defineConfig } from 'vitest/config';

// The vitest files: @keyv/test-suite (test/keyv.test.mjs) and KeyvShmkv's
// own tests. The *.test.js files are node --test's (see test.sh).
export default defineConfig({
  test: {
    include: ['test/**/*.test.mjs'],
    // A child process per file (vitest's default, stated): each file opens
    // its own segment, named after its pid.
    pool: 'forks',
  },
});
