/**
 * What the mock's call times say about a capped run. Windows follow the mock's cap: the window ending at `t`
 * holds the calls in (t - duration, t].
 */
import type { RateLimit } from '../../src/config.js';
import { limiterSpacingMs } from '../../src/limiter.js';

/** Calls per window at the limiter's spacing, as a fraction of the cap: duration / (duration + slack). */
export function limiterCeiling(rate: RateLimit): number {
  return rate.durationMs / limiterSpacingMs(rate) / rate.count;
}

/** Calls in the window ending at each of `ends` (ascending), for sorted `times`. */
export function windowCounts(times: readonly number[], windowMs: number, ends: readonly number[]): number[] {
  const counts: number[] = [];
  let oldest = 0;
  let newest = 0;
  for (const end of ends) {
    while (newest < times.length && times[newest]! <= end) newest++;
    while (oldest < newest && times[oldest]! <= end - windowMs) oldest++;
    counts.push(newest - oldest);
  }
  return counts;
}

export interface SteadyState {
  /** The span measured, in ms after the first call: the first window (start-up) is left out. */
  fromMs: number;
  toMs: number;
  /** Calls per window as a fraction of the cap: the mean and the least over windows ending every 100 ms. */
  meanOfCap: number;
  minOfCap: number;
}

const STEP_MS = 100;

/**
 * The cap's use once running: windows that start after the first full window (workers starting, the limiter's
 * reservoir settling) and end by the last call (the queue ran dry after it), stepped every 100 ms.
 * Undefined when the run is shorter than two windows.
 */
export function steadyState(times: readonly number[], rate: RateLimit): SteadyState | undefined {
  if (times.length === 0) return undefined;
  const first = times[0]!;
  const last = times[times.length - 1]!;
  const ends: number[] = [];
  for (let end = first + 2 * rate.durationMs; end <= last; end += STEP_MS) ends.push(end);
  if (ends.length === 0) return undefined;
  const fractions = windowCounts(times, rate.durationMs, ends).map((count) => count / rate.count);
  return {
    fromMs: rate.durationMs,
    toMs: last - first,
    meanOfCap: fractions.reduce((sum, f) => sum + f, 0) / fractions.length,
    minOfCap: Math.min(...fractions),
  };
}

/** Calls in each whole second after `origin`: bucket k holds [origin + k s, origin + (k+1) s). */
export function perSecond(times: readonly number[], origin: number): number[] {
  const buckets: number[] = [];
  for (const t of times) {
    const k = Math.floor((t - origin) / 1000);
    while (buckets.length <= k) buckets.push(0);
    buckets[k]!++;
  }
  return buckets;
}
