import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AppQuota } from '../../src/mock/quota.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { AppStats } from '../../src/mock/stats.js';
import { SlidingWindow } from '../../src/mock/window.js';
import { classicToken, code, errorOf } from './calls.js';

const servers: MockServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

describe('SlidingWindow', () => {
  it('counts the events in (now - duration, now]', () => {
    const window = new SlidingWindow(500);
    expect([0, 100, 499, 500, 600, 1099, 1100].map((t) => window.add(t))).toEqual([1, 2, 3, 3, 3, 2, 2]);
    expect(window.count(1599)).toBe(1);
    expect(window.count(1600)).toBe(0);
  });

  it('keeps counting right across many evictions', () => {
    const window = new SlidingWindow(10);
    for (let t = 0; t < 5000; t++) expect(window.add(t)).toBe(Math.min(t + 1, 10));
  });
});

describe('maxInWindow', () => {
  it('is the exact maximum over every sliding window, whichever calls it includes', () => {
    const stats = new AppStats(1000);
    // Five calls within 1000 ms, split across two fixed one-second buckets.
    for (const t of [100, 900, 1050, 1080, 1099, 2500, 3600]) stats.codeCall(t);
    expect(stats.snapshot().maxInWindow).toBe(5);
    expect(stats.snapshot().callTimes).toEqual([100, 900, 1050, 1080, 1099, 2500, 3600]);
  });
});

describe('the rate cap (AppQuota.admit)', () => {
  it('admits count calls per window, leaving refused calls out of the window', () => {
    const quota = new AppQuota();
    const rate = { count: 2, durationMs: 1000 };
    const admitted = [0, 1, 2, 999, 1000, 1001, 1002].map((t) => quota.admit(rate, t));
    // At 1000 the call at 0 has left the window and the refused calls at 2 and 999 never held a place in it;
    // at 1001 the call at 1 leaves too; at 1002 the window holds 1000 and 1001.
    expect(admitted).toEqual([true, true, false, false, true, true, false]);
  });
});

describe('the rate cap over HTTP', () => {
  it('answers 45009 on B past 5 a window, counts it, and reveals the overrun in maxInWindow', async () => {
    // A window long enough that the eight calls and the A call fall in it however busy the machine is.
    const windowMs = 8000;
    const server = await startMockServer({ rateLimit: { count: 5, durationMs: windowMs } });
    servers.push(server);
    const token = await classicToken(server.url);
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => code(server.url, 'unlimited', token, { scene: `r${i}` })),
    );
    const images = answers.filter((a) => a.type === 'image/jpeg');
    const refused = answers
      .filter((a) => a.type.startsWith('application/json'))
      .map((a) => errorOf(a).errcode);
    expect(images).toHaveLength(5);
    expect(refused).toEqual([45009, 45009, 45009]);
    const stats = server.stats();
    expect(stats).toMatchObject({ codeCalls: 8, images: 5, rateLimited: 3, maxInWindow: 8 });
    expect(stats.errors).toEqual({ '45009': 3 });

    // A and C get the minute-quota errcode: their 45009 would mean the daily limit.
    expect(errorOf(await code(server.url, 'code', token, { path: 'pages/index/index' })).errcode).toBe(45011);

    await sleep(windowMs + 50);
    const later = await code(server.url, 'unlimited', token, { scene: 'later' });
    expect(later.type).toBe('image/jpeg');
  });

  it('never refuses with no cap, and measures maxInWindow over the last configured duration', async () => {
    const server = await startMockServer({ rateLimit: { count: 2, durationMs: 60_000 } });
    servers.push(server);
    server.configure({ rateLimit: null });
    const token = await classicToken(server.url);
    for (let i = 0; i < 6; i++) {
      expect((await code(server.url, 'unlimited', token, { scene: `n${i}` })).type).toBe('image/jpeg');
    }
    expect(server.stats()).toMatchObject({ rateLimited: 0, maxInWindow: 6, images: 6 });
  });
});
