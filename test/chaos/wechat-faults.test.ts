/**
 * WeChat misbehaving on every kind of fault the mock has, all at once: `-1` busy answers, HTML 502 pages,
 * dropped connections, answers slower than the client's timeout, 200s with an empty or a truncated JPEG, and
 * every token revoked mid-run (another server fetched one). The campaign completes and only valid images are
 * stored; a row whose attempts all met faults fails with the last reason.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CodeWorker } from '../../src/campaign/worker.js';
import { codeOptions } from '../../src/wechat/params.js';
import { busiestWindow } from '../../test-support/windows.js';
import { byScale, CHAOS_APPID, ChaosRig, doneAtLeast, report, settled } from '../helpers/chaos.js';

const RATE = { count: 50, durationMs: 1000 };
const ROWS = byScale(300, 1500);
/** The client's timeout in this scenario; slow answers take twice as long. */
const TIMEOUT_MS = 1500;
const FAULTS = {
  busy: 0.1,
  html502: 0.04,
  drop: 0.04,
  slow: 0.03,
  slowMs: 2 * TIMEOUT_MS,
  empty: 0.03,
  truncated: 0.03,
};

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: RATE });
});

afterAll(async () => {
  await rig?.close();
});

it('completes with valid images through busy answers, 502 pages, drops, timeouts, bad images and a revoked token', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', page: 'pages/item/detail', width: 280 });
  const values = Array.from({ length: ROWS }, (_, i) => `id=${i}&f=1`);
  await rig.enqueue(prefix, 'faults', options, values);
  rig.mock.reset();
  rig.mock.configure({ faults: { ...FAULTS, seed: 7 } });

  const config = rig.config(prefix);
  const workers = await Promise.all(
    [0, 1].map(() => CodeWorker.start({ config, concurrency: 8, wechatTimeoutMs: TIMEOUT_MS })),
  );
  let account: Awaited<ReturnType<ChaosRig['audit']>>;
  let revokedAt = 0;
  try {
    await doneAtLeast(store, 'faults', ROWS / 2);
    revokedAt = Date.now();
    rig.mock.revokeTokens(CHAOS_APPID);
    await settled(store, 'faults');
    account = await rig.audit(prefix, 'faults', options, values);
  } finally {
    rig.mock.configure({ faults: {} });
    await Promise.all(workers.map((worker) => worker.close()));
  }

  expect(account.lost).toBe(0);
  expect(account.done + account.failed).toBe(ROWS);
  // Failing a row takes every attempt meeting a fault (about 1 in 4 calls): rare, and then said so.
  expect(account.failed).toBeLessThanOrEqual(ROWS / 100);
  for (const { row } of await rig.rows(prefix, 'faults')) {
    if (row.status === 'failed') expect(row.errmsg).toMatch(/\(after 8 attempts\)$/);
  }
  const stats = rig.mock.stats(CHAOS_APPID);
  for (const kind of ['busy', 'html502', 'drop', 'slow', 'empty', 'truncated']) {
    expect(stats.faults[kind], `${kind} faults injected`).toBeGreaterThan(0);
  }
  // The revoked token was answered 40001, a new one fetched once for both workers, and the calls went on.
  expect(stats.errors['40001']).toBeGreaterThan(0);
  expect(stats.tokenCalls).toBe(2);
  // The calls made again with the new token wait for the limiter like any other.
  const maxInWindowAfter = busiestWindow(stats.callTimes, RATE.durationMs, revokedAt).calls;
  expect(maxInWindowAfter).toBeLessThanOrEqual(RATE.count);
  report('wechat-faults', {
    ...account,
    faultsInjected: Object.values(stats.faults).reduce((sum, n) => sum + n, 0) + stats.errors['40001']!,
    faults: stats.faults,
    revokedTokenAnswers: stats.errors['40001'],
    tokenFetches: stats.tokenCalls,
    codeCalls: stats.codeCalls,
    images: stats.images,
    rateLimited: stats.rateLimited,
    maxInWindow: stats.maxInWindow,
    maxInWindowAfter,
    cap: RATE.count,
  });
});
