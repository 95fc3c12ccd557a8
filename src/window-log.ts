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
import { defineScripts, luaScript, type ScriptedRedis } from './lua.js';

const SCRIPTS = { wxWindowAcquire: luaScript('acquireWindow', 1) };

export class WindowLog {
  readonly #redis: ScriptedRedis<keyof typeof SCRIPTS>;
  #sequence = 0;
  readonly #id = Math.random().toString(36).slice(2);

  constructor(
    redis: Redis,
    readonly key: string,
    /** The cap; the window is `durationMs + slackMs` long, so calls stay under it by that margin. */
    readonly rate: RateLimit,
    readonly slackMs: number,
  ) {
    this.#redis = defineScripts(redis, SCRIPTS);
  }

  /** Resolves when one more call fits in the window; the call is then logged as started. */
  async acquire(): Promise<void> {
    const member = `${this.#id}:${++this.#sequence}`;
    for (;;) {
      const waitMs = (await this.#redis.wxWindowAcquire(
        this.key,
        this.rate.durationMs + this.slackMs,
        this.rate.count,
        member,
      )) as number;
      if (waitMs === 0) return;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}
