import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

export function testRedisUrl(): string {
  return inject('redisUrl');
}

/** A key namespace of its own for one test file, so tests never see each other's keys. */
export function testPrefix(): string {
  return `test-${randomUUID().slice(0, 8)}`;
}

export function connect(url = testRedisUrl()): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

/** Delete every key under `prefix` (never FLUSHDB: TEST_REDIS_URL may be a Redis others use). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}
