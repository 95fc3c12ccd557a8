import { afterAll, describe, expect, it } from 'vitest';
import { connect, deletePrefix, testPrefix } from './helpers/redis.js';

describe('test harness', () => {
  const redis = connect();
  const prefix = testPrefix();
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('talks to a real redis-server that the tests own', async () => {
    const info = await redis.info('server');
    expect(info).toMatch(/redis_version:\d+/);
    await redis.set(`${prefix}:probe`, '1');
    await deletePrefix(redis, prefix);
    expect(await redis.exists(`${prefix}:probe`)).toBe(0);
  });
});
