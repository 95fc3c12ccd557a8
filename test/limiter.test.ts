import { afterAll, describe, expect, it } from 'vitest';
import { AppLimiter, limiterSpacingMs } from '../src/limiter.js';
import { WindowLog } from '../src/window-log.js';
import { busiestWindow } from '../test-support/windows.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from './helpers/redis.js';

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
    expect(busiestWindow(times, 500).calls).toBeLessThanOrEqual(10);
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
    expect(busiestWindow(times, 500).calls).toBeGreaterThan(10);
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

  it('applies its own spacing to state another limiter left with other settings', async () => {
    const old = new AppLimiter({
      redisUrl: testRedisUrl(),
      prefix,
      appid: 'wxretuned',
      rate: { count: 5, durationMs: 1000 },
    });
    await old.schedule(async () => undefined);
    await old.close();
    const retuned = limiter('wxretuned');
    await retuned.schedule(async () => undefined);
    const minTime = Number(await redis.hget(`${prefix}:b_limiter-wxretuned_settings`, 'minTime'));
    expect(minTime).toBeCloseTo(limiterSpacingMs({ count: 10, durationMs: 500 }), 5);
  });

  it('passes the task error through', async () => {
    const l = limiter('wxerr');
    await expect(l.schedule(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });
});

describe('WindowLog', () => {
  const redis = connect();
  const prefix = testPrefix();

  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('lets no more than the cap start in any window, holding the rest until the oldest leaves', async () => {
    const a = new WindowLog(redis, `${prefix}:window:wxw`, { count: 3, durationMs: 250 }, 50);
    const other = connect();
    const b = new WindowLog(other, `${prefix}:window:wxw`, { count: 3, durationMs: 250 }, 50);
    const times: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? a : b).acquire().then(() => {
          times.push(Date.now());
        }),
      ),
    );
    expect(times).toHaveLength(8);
    // The window is duration + slack long: 3 calls in any 300 ms, so 8 calls span at least two windows.
    expect(busiestWindow(times, 300).calls).toBeLessThanOrEqual(3);
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(2 * 300 - 20);
    other.disconnect();
  });
});
