/**
 * Storage that reads but refuses writes (a role without PutObject, a full disk, a bucket quota) for 20 s
 * mid-campaign, in front of a fleet of two workers. The first refused write stops new WeChat calls in each
 * process until a probe write succeeds; what was generated meanwhile waits in a bounded stash and is uploaded
 * first when storage heals; then work resumes by itself.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { stashBytes } from '../../src/campaign/stash.js';
import { codeOptions } from '../../src/wechat/params.js';
import {
  byScale,
  CHAOS_APPID,
  ChaosRig,
  doneAtLeast,
  report,
  settled,
  WorkerFleet,
} from '../helpers/chaos.js';
import { type RefusingProxy, refusingProxy } from '../helpers/s3-proxy.js';

const RATE = { count: 40, durationMs: 1000 };
const ROWS = byScale(400, 2000);
const OUTAGE_MS = 20_000;
const WORKERS = 2;
const CONCURRENCY = 8;
const STASH_MAX_MB = 1;

let rig: ChaosRig;
let proxy: RefusingProxy;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: RATE });
  proxy = await refusingProxy(rig.s3.endpoint);
});

afterAll(async () => {
  await proxy?.close();
  await rig?.close();
});

async function usedMemory(): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await rig.redis.info('memory'))![1]);
}

it('spends no more calls than the jobs in flight while writes are refused for 20 s, and loses nothing', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const values = Array.from({ length: ROWS }, (_, i) => `denied-${i}`);
  await rig.enqueue(prefix, 'denied', options, values);
  rig.mock.reset();

  const env = rig.env(prefix, { S3_ENDPOINT: proxy.url, WXACODE_STASH_MAX_MB: String(STASH_MAX_MB) });
  const fleet = new WorkerFleet(env, ['worker', '--concurrency', String(CONCURRENCY)]);
  const seen = { stashBytes: 0, memoryGrowth: 0, waitingShown: false };
  let watching = false;
  let watcher: Promise<void> | undefined;
  await fleet.start(WORKERS);
  const run = await fleet.during(async () => {
    await doneAtLeast(store, 'denied', ROWS * 0.3);
    const baseline = await usedMemory();
    watching = true;
    watcher = (async () => {
      while (watching) {
        seen.stashBytes = Math.max(seen.stashBytes, await stashBytes(rig.redis, prefix));
        seen.memoryGrowth = Math.max(seen.memoryGrowth, (await usedMemory()) - baseline);
        seen.waitingShown ||= (await campaignStatus(store, 'denied')).waitingOnStorage !== undefined;
        await sleep(200);
      }
    })();
    const callsBefore = rig.mock.stats(CHAOS_APPID).codeCalls;
    proxy.refuse.add('PUT');
    await sleep(OUTAGE_MS);
    const callsDuring = rig.mock.stats(CHAOS_APPID).codeCalls - callsBefore;
    const doneAtHeal = (await store.get('denied'))!.done;
    proxy.refuse.clear();
    const resumeMs = await doneAtLeast(store, 'denied', doneAtHeal + 1);
    await settled(store, 'denied');
    watching = false;
    await watcher;
    return { callsDuring, doneAtHeal, resumeMs, account: await rig.audit(prefix, 'denied', options, values) };
  });

  expect(run.account).toMatchObject({ rows: ROWS, done: ROWS, failed: 0, lost: 0 });
  expect(proxy.refused, 'the outage reached the workers').toBeGreaterThan(0);
  expect(run.doneAtHeal, 'rows were still left when storage healed').toBeLessThan(ROWS);
  expect(run.callsDuring, 'WeChat calls while writes were refused').toBeLessThanOrEqual(
    WORKERS * CONCURRENCY,
  );
  // No image paid for twice: what was generated during the outage came out of the stash.
  expect(rig.mock.stats(CHAOS_APPID).images).toBe(ROWS);
  expect(seen.stashBytes).toBeGreaterThan(0);
  expect(seen.stashBytes).toBeLessThanOrEqual(STASH_MAX_MB * 1024 * 1024);
  expect(seen.waitingShown, 'status showed the campaign waiting on storage').toBe(true);
  expect(await stashBytes(rig.redis, prefix)).toBe(0);
  report('storage-refuses-writes', {
    ...run.account,
    outageMs: OUTAGE_MS,
    callsDuringOutage: run.callsDuring,
    jobsInFlight: WORKERS * CONCURRENCY,
    maxStashBytes: seen.stashBytes,
    redisGrowthBytes: seen.memoryGrowth,
    resumeMs: run.resumeMs,
  });
});
