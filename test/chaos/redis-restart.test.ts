/**
 * Redis going away mid-campaign. With AOF on, a restart keeps every key: the workers' connections, BullMQ and
 * the clustered Bottleneck limiter reconnect and carry on. When the limiter's keys are lost (a restart without
 * persistence, an operator's DEL), AppLimiter rebuilds the Bottleneck state. Either way the cap holds.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { codeOptions } from '../../src/wechat/params.js';
import { removeDir, startRedis, type TestRedis } from '../../test-support/redis-server.js';
import { busiestWindow } from '../../test-support/windows.js';
import {
  byScale,
  CHAOS_APPID,
  ChaosRig,
  doneAtLeast,
  report,
  settled,
  WorkerFleet,
} from '../helpers/chaos.js';

const RATE = { count: 40, durationMs: 1000 };
const ROWS = byScale(400, 2500);
/** How long Redis stays down during the restart. */
const DOWN_MS = byScale(2000, 8000);

let server: TestRedis;
let rig: ChaosRig;

beforeAll(async () => {
  server = await startRedis({ appendonly: true });
  rig = await ChaosRig.start({ rate: RATE, redisUrl: server.url });
});

afterAll(async () => {
  await rig?.close();
  await server?.stop();
  if (server) removeDir(server.dir);
});

/**
 * Enqueue `campaign`, start two workers, run `incident` once a quarter is done, and check the whole run: every
 * row accounted for, and the cap held from the incident on (WeChat refused no call, no window over the cap).
 */
async function campaignThrough(campaign: string, incident: (prefix: string) => Promise<void>) {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const values = Array.from({ length: ROWS }, (_, i) => `${campaign}-${i}`);
  await rig.enqueue(prefix, campaign, options, values);
  rig.mock.reset();
  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '8']);
  await fleet.start(2);
  let incidentAt = 0;
  let refusedBefore = 0;
  const run = await fleet.during(async () => {
    await doneAtLeast(store, campaign, ROWS / 4);
    incidentAt = Date.now();
    refusedBefore = rig.mock.stats(CHAOS_APPID).rateLimited;
    await incident(prefix);
    const after = (await store.get(campaign))!.done;
    expect(after).toBeLessThan(ROWS);
    const resumeMs = await doneAtLeast(store, campaign, after + 1);
    await settled(store, campaign);
    return { resumeMs, account: await rig.audit(prefix, campaign, options, values) };
  });
  expect(run.account).toMatchObject({ rows: ROWS, done: ROWS, failed: 0, lost: 0 });
  const stats = rig.mock.stats(CHAOS_APPID);
  const maxInWindowAfter = busiestWindow(stats.callTimes, RATE.durationMs, incidentAt).calls;
  expect(stats.rateLimited - refusedBefore).toBe(0);
  expect(maxInWindowAfter).toBeLessThanOrEqual(RATE.count);
  const figures = { ...run.account, resumeMs: run.resumeMs, maxInWindowAfter, cap: RATE.count };
  return { figures, output: fleet.output };
}

it('carries on after a Redis restart with AOF, within the cap', async () => {
  const run = await campaignThrough('restart', async () => {
    await server.stop();
    await sleep(DOWN_MS);
    await server.restart();
  });
  report('redis-restart', { ...run.figures, downMs: DOWN_MS });
});

it('rebuilds the limiter when its keys are lost, within the cap', async () => {
  let deleted = 0;
  const run = await campaignThrough('lost-limiter', async (prefix) => {
    const keys = await rig.redis.keys(`${prefix}:b_*`);
    deleted = keys.length > 0 ? await rig.redis.del(...keys) : 0;
  });
  expect(deleted).toBeGreaterThan(0);
  expect(run.output).toContain('rate limiter state vanished from Redis; rebuilding it');
  report('limiter-keys-lost', { ...run.figures, keysDeleted: deleted });
});
