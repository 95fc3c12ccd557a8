/**
 * The last fence before a call leaves: a sliding-window log of an app's calls in Redis, checked at the moment
 * each call starts.
 *
 * Bottleneck hands out evenly spaced slots, but a slot is kept by a timer in the process that reserved it: a
 * process whose event loop stalls (GC, a busy machine) fires its call late, right before the next process's
 * punctual one, and a window that starts at the late call can then hold one call too many. Bottleneck's
 * reservoir cannot catch that (it refills per fixed interval, not per sliding window), and it counts with each
 * machine's own clock. This log counts the calls that actually started, by Redis's clock, in the window that
 * ends now; a call that would make it too full waits until the oldest call leaves the window.
 */
import type { Redis } from 'ioredis';
import type { RateLimit } from './config.js';

// KEYS: the log. ARGV: window (ms), count, member. Returns 0 when the call may start (and logs it), else the
// milliseconds until the oldest logged call leaves the window.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
`;

type WindowRedis = Redis & {
  wxWindowAcquire(key: string, window: number, count: number, member: string): Promise<number>;
};

export class WindowLog {
  readonly #redis: WindowRedis;
  #sequence = 0;
  readonly #id = Math.random().toString(36).slice(2);

  constructor(
    redis: Redis,
    readonly key: string,
    /** The cap; the window is `durationMs + slackMs` long, so calls stay under it by that margin. */
    readonly rate: RateLimit,
    readonly slackMs: number,
  ) {
    if (!('wxWindowAcquire' in redis))
      redis.defineCommand('wxWindowAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    this.#redis = redis as WindowRedis;
  }

  /** Resolves when one more call fits in the window; the call is then logged as started. */
  async acquire(): Promise<void> {
    const member = `${this.#id}:${++this.#sequence}`;
    for (;;) {
      const waitMs = await this.#redis.wxWindowAcquire(
        this.key,
        this.rate.durationMs + this.slackMs,
        this.rate.count,
        member,
      );
      if (waitMs === 0) return;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}
