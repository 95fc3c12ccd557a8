import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/chaos/**', 'node_modules/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Vitest's default is one worker fewer than the cores: one on CI's two. Most files wait on processes, caps and
    // timers rather than use a core, so two at once cut the run by a third; every test must hold on a busy machine.
    maxWorkers: 2,
  },
});
