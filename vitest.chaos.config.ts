import { defineConfig } from 'vitest/config';

/** `CHAOS_SCALE=full` runs every scenario long (see test/helpers/chaos.ts); the short version is CI's. */
const full = process.env.CHAOS_SCALE === 'full';

export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: full ? 1_200_000 : 240_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
