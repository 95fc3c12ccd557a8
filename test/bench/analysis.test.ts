/** The arithmetic behind the benchmark's cap figures: windows as the mock counts them, steady state, buckets. */
import { describe, expect, it } from 'vitest';
import { limiterCeiling, perSecond, steadyState, windowCounts } from '../../scripts/bench/analysis.js';
import { busiestWindow } from '../../test-support/windows.js';

/** `count` calls `spacingMs` apart from `start`. */
function evenly(count: number, spacingMs: number, start = 0): number[] {
  return Array.from({ length: count }, (_, i) => start + i * spacingMs);
}

describe('busiestWindow', () => {
  it('counts the calls in (t - duration, t], so calls exactly a duration apart never share a window', () => {
    expect(busiestWindow([0, 1000, 2000], 1000)).toEqual({ calls: 1, endsAt: 0 });
    expect(busiestWindow([0, 999, 1000], 1000)).toEqual({ calls: 2, endsAt: 999 });
  });

  it('finds a burst anywhere in the run, and when its window ends', () => {
    const times = [...evenly(50, 100), 5000, 5001, 5002, 5003, ...evenly(20, 100, 5100)];
    expect(busiestWindow(times, 1000)).toEqual({ calls: 13, endsAt: 5003 });
  });

  it('is zero for no calls', () => {
    expect(busiestWindow([], 1000)).toEqual({ calls: 0, endsAt: 0 });
  });
});

describe('windowCounts', () => {
  it('counts the calls in the window ending at each given time', () => {
    expect(windowCounts(evenly(10, 100), 300, [0, 250, 300, 900, 2000])).toEqual([1, 3, 3, 3, 0]);
  });
});

describe('steadyState', () => {
  const rate = { count: 100, durationMs: 1000 };

  it('measures calls per window as a fraction of the cap after the first window', () => {
    const steady = steadyState(evenly(500, 10.5), rate)!;
    expect(steady.fromMs).toBe(1000);
    expect(steady.meanOfCap).toBeCloseTo(1000 / 10.5 / 100, 2);
    expect(steady.minOfCap).toBeGreaterThanOrEqual(0.95);
  });

  it('leaves a slow start out of the figure but not a stall once running', () => {
    const slowStart = [0, 500, ...evenly(400, 10, 1000)];
    expect(steadyState(slowStart, rate)!.minOfCap).toBe(1);
    const stall = [...evenly(200, 10), ...evenly(200, 10, 2500)];
    expect(steadyState(stall, rate)!.minOfCap).toBeLessThan(0.6);
  });

  it('is undefined for a run shorter than two windows', () => {
    expect(steadyState(evenly(150, 10), rate)).toBeUndefined();
    expect(steadyState([], rate)).toBeUndefined();
  });
});

describe('perSecond', () => {
  it('buckets calls into whole seconds after the origin, empty seconds included', () => {
    expect(perSecond([1000, 1500, 1999, 2000, 4200], 1000)).toEqual([3, 1, 0, 1]);
  });
});

describe('limiterCeiling', () => {
  it('is duration / (duration + slack): the share of the cap the limiter spacing allows', () => {
    expect(limiterCeiling({ count: 1000, durationMs: 10_000 })).toBeCloseTo(10_000 / 10_100, 10);
    expect(limiterCeiling({ count: 5000, durationMs: 60_000 })).toBeCloseTo(60_000 / 60_600, 10);
  });
});
