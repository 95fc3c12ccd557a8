import { SlidingWindow } from '../src/mock/window.js';

/**
 * The most calls in any window of `windowMs` over `times` (ascending), and when that window ends, counted as
 * the mock counts its cap: the window ending at `t` holds the calls in (t - windowMs, t]. Only windows ending
 * at or after `since` count, to judge the cap from an incident on apart from the bunching before it.
 */
export function busiestWindow(
  times: readonly number[],
  windowMs: number,
  since = Number.NEGATIVE_INFINITY,
): { calls: number; endsAt: number } {
  const window = new SlidingWindow(windowMs);
  const busiest = { calls: 0, endsAt: 0 };
  for (const at of times) {
    const calls = window.add(at);
    if (at >= since && calls > busiest.calls) {
      busiest.calls = calls;
      busiest.endsAt = at;
    }
  }
  return busiest;
}
