import type { Redis } from 'ioredis';
import { afterAll, afterEach } from 'vitest';
import { deletePrefix, testPrefix } from '../helpers/redis.js';

/** The smallest bodies that pass for complete images: the right magic bytes at the start and at the end. */
export const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0xff, 0xd9]);
export const PNG = Buffer.from([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 0,
  0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
]);

/** The error `fn` throws or rejects with; fails the test when it does not. */
export async function caught(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, got none');
}

/**
 * Per-file bookkeeping: `prefix()` hands out a fresh key prefix (all deleted, and `redis` disconnected, after
 * the file), `cleanup(fn)` registers a teardown run after the current test, newest first.
 */
export function resources(redis: Redis) {
  const prefixes: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    for (const prefix of prefixes) await deletePrefix(redis, prefix);
    redis.disconnect();
  });
  return {
    prefix(): string {
      const prefix = testPrefix();
      prefixes.push(prefix);
      return prefix;
    },
    cleanup(fn: () => Promise<void>): void {
      cleanups.push(fn);
    },
  };
}
