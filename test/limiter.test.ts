import { afterAll, describe, expect, it } from 'vitest';
import { AppLimiter } from '../src/limiter.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from './helpers/redis.js';

/** The largest number of timestamps inside any half-open window [t, t + windowMs). */
function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    max = Math.max(max, end - start + 1);
  }
  return max;
}

describe('AppLimiter', () => {
  const redis = connect();
  const prefix = testPrefix();
  const limiters: AppLimiter[] = [];
  const limiter = (appid: string) => {
    const l = new AppLimiter({
      redisUrl: testRedisUrl(),
      prefix,
      appid,
      rate: { count: 10, durationMs: 500 },
    });
    limiters.push(l);
    return l;
  };

  afterAll(async () => {
    await Promise.all(limiters.map((l) => l.close()));
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('shares one cap between limiters of the same app, in any sliding window', async () => {
    const a = limiter('wxshared');
    const b = limiter('wxshared');
    const times: number[] = [];
    const call = async () => {
      times.push(Date.now());
    };
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).schedule(call)));
    expect(times).toHaveLength(40);
    expect(maxInWindow(times, 500)).toBeLessThanOrEqual(10);
    // Both limiters spent from the same reservoir, so its state lives under our prefix.
    expect(await redis.exists(`${prefix}:b_limiter-wxshared_settings`)).toBe(1);
  });

  it('keeps apps independent', async () => {
    const first = limiter('wxone');
    const second = limiter('wxtwo');
    const times: number[] = [];
    const call = async () => {
      times.push(Date.now());
    };
    await Promise.all([
      ...Array.from({ length: 10 }, () => first.schedule(call)),
      ...Array.from({ length: 10 }, () => second.schedule(call)),
    ]);
    // Two apps with a cap of 10 each may together make 20 calls in one window; one app could not.
    expect(maxInWindow(times, 500)).toBeGreaterThan(10);
  });

  it('recovers when its Redis keys vanish, without running a task twice', async () => {
    const l = limiter('wxlost');
    let runs = 0;
    await l.schedule(async () => runs++);
    const keys = await redis.keys(`${prefix}:b_limiter-wxlost*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis.del(...keys);
    const results = await Promise.all(Array.from({ length: 5 }, () => l.schedule(async () => ++runs)));
    expect(results.sort()).toEqual([2, 3, 4, 5, 6]);
    expect(runs).toBe(6);
    expect(await redis.exists(`${prefix}:b_limiter-wxlost_settings`)).toBe(1);
  });

  it('passes the task error through', async () => {
    const l = limiter('wxerr');
    await expect(l.schedule(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });
});
