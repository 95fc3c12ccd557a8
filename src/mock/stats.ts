import { SlidingWindow } from './window.js';

/** What one app of the mock server has seen since it started or was last reset. */
export interface MockStats {
  /** Calls that reached a code endpoint with a token of this app, including refused and faulted ones. */
  codeCalls: number;
  /** Images served. */
  images: number;
  /** Calls refused by the rate cap (45009 on B, 45011 on A and C). */
  rateLimited: number;
  /**
   * Most code calls in any sliding window of the cap's duration (the last one configured, else 60 s), over
   * ALL calls, refused ones included: above the cap's count means the client sent more than it was allowed.
   */
  maxInWindow: number;
  /** `/cgi-bin/token` and `/cgi-bin/stable_token` calls for this appid, refused ones included. */
  tokenCalls: number;
  /** Accepted stable-token force refreshes. */
  forcedRefreshes: number;
  /** errcode → answers given with it, on every endpoint. */
  errors: Record<string, number>;
  /** Fault kind → calls it was applied to (`slow` also counts calls that then got another fault). */
  faults: Record<string, number>;
  /** Arrival times (ms since the epoch) of code calls, oldest first; the newest MAX_CALL_TIMES are kept. */
  callTimes: number[];
  /** A + C codes counted against the lifetime total (`Num-Used`): like WeChat's, never reset. */
  acUsed: number;
}

/** About 16 MB of timestamps per app: enough for a long benchmark, bounded for a mock left running. */
export const MAX_CALL_TIMES = 2_000_000;

export class AppStats {
  readonly counts = { codeCalls: 0, images: 0, rateLimited: 0, tokenCalls: 0, forcedRefreshes: 0 };
  readonly #errors: Record<string, number> = {};
  readonly #faults: Record<string, number> = {};
  readonly #calls: SlidingWindow;
  #maxInWindow = 0;
  #callTimes: number[] = [];

  constructor(windowMs: number) {
    this.#calls = new SlidingWindow(windowMs);
  }

  set windowMs(durationMs: number) {
    this.#calls.durationMs = durationMs;
  }

  codeCall(now: number): void {
    this.counts.codeCalls++;
    if (this.#callTimes.length >= MAX_CALL_TIMES) this.#callTimes = this.#callTimes.slice(MAX_CALL_TIMES / 2);
    this.#callTimes.push(now);
    this.#maxInWindow = Math.max(this.#maxInWindow, this.#calls.add(now));
  }

  error(errcode: number): void {
    this.#errors[errcode] = (this.#errors[errcode] ?? 0) + 1;
  }

  fault(kind: string): void {
    this.#faults[kind] = (this.#faults[kind] ?? 0) + 1;
  }

  snapshot(): Omit<MockStats, 'acUsed'> {
    return {
      ...this.counts,
      maxInWindow: this.#maxInWindow,
      errors: { ...this.#errors },
      faults: { ...this.#faults },
      callTimes: this.#callTimes.slice(),
    };
  }
}
