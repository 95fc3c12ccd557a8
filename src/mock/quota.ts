/**
 * What WeChat counts per app on the code endpoints: the minute rate cap, the lifetime A + C total and the
 * daily A limit (docs/wechat-api.md, "Endpoints").
 */
import type { RateLimit } from '../config.js';
import { beijingDay } from './tokens.js';
import { SlidingWindow } from './window.js';

export class AppQuota {
  /**
   * Calls the cap let through. Refused calls are left out (the contract does not say; this choice refuses a
   * client only while it overruns); `MockStats.maxInWindow` counts every call, so overruns still show.
   */
  readonly #accepted = new SlidingWindow(60_000);
  /** Distinct A and C parameter sets: the same parameters are reported to count as one code. */
  readonly #acCodes = new Set<string>();
  #aDay = { day: -1, count: 0 };

  /** Let a call through the cap (and count it) or refuse it. */
  admit(rate: RateLimit, now: number): boolean {
    this.#accepted.durationMs = rate.durationMs;
    if (this.#accepted.count(now) >= rate.count) return false;
    this.#accepted.add(now);
    return true;
  }

  /** Codes counted against the A + C total so far (the `Num-Used` header). */
  get acUsed(): number {
    return this.#acCodes.size;
  }

  /**
   * Whether an A or C code with parameters `key` may be served: 45029 when it would be a new code past the
   * total, 45009 when A's daily limit is spent (every A image counts toward it, repeats included).
   */
  acRefusal(
    kind: 'code' | 'qrcode',
    key: string,
    limits: { total: number; daily: number },
    now: number,
  ): 45029 | 45009 | undefined {
    if (!this.#acCodes.has(key) && this.#acCodes.size >= limits.total) return 45029;
    if (kind === 'code' && this.#aToday(now) >= limits.daily) return 45009;
    return undefined;
  }

  /** Count a served A or C code. */
  acServed(kind: 'code' | 'qrcode', key: string, now: number): void {
    this.#acCodes.add(key);
    if (kind === 'code') this.#aDay = { day: beijingDay(now), count: this.#aToday(now) + 1 };
  }

  #aToday(now: number): number {
    return this.#aDay.day === beijingDay(now) ? this.#aDay.count : 0;
  }
}
