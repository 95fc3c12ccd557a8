/**
 * The S3 server stops answering for 10 s mid-campaign. A lookup or an upload that fails (after the SDK's own
 * retries) stops new calls in its process until a probe write succeeds, and puts its job back for later without
 * spending one of its attempts; an image generated before the outage is kept in Redis and uploaded first when
 * storage is back, instead of being paid for again.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openQueue } from '../../src/campaign/queue.js';
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

const RATE = { count: 40, durationMs: 1000 };
const ROWS = byScale(300, 1500);
const OUTAGE_MS = 10_000;

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: RATE });
});

afterAll(async () => {
  await rig?.close();
});

it('fails no row, regenerates no image and spends no attempt while storage is down for 10 s', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const values = Array.from({ length: ROWS }, (_, i) => `outage-${i}`);
  await rig.enqueue(prefix, 'outage', options, values);
  rig.mock.reset();

  // Watch what the outage does to the jobs and the stash while it lasts.
  const queue = openQueue(rig.redis, prefix, CHAOS_APPID);
  const seen = { attemptsSpent: 0, stashed: 0 };
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const jobs = await queue.getJobs(['wait', 'delayed', 'active', 'prioritized']);
      seen.attemptsSpent = Math.max(seen.attemptsSpent, ...jobs.map((job) => job.attemptsMade));
      seen.stashed = Math.max(seen.stashed, await stashBytes(rig.redis, prefix));
      await sleep(250);
    }
  })();

  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '8']);
  let run: { resumeMs: number; account: Awaited<ReturnType<ChaosRig['audit']>> };
  try {
    await fleet.start(2);
    run = await fleet.during(async () => {
      await doneAtLeast(store, 'outage', ROWS * 0.3);
      await rig.s3.pause();
      await sleep(OUTAGE_MS);
      await rig.s3.resume();
      const resumed = (await store.get('outage'))!.done;
      expect(resumed).toBeLessThan(ROWS);
      const resumeMs = await doneAtLeast(store, 'outage', resumed + 1);
      await settled(store, 'outage');
      return { resumeMs, account: await rig.audit(prefix, 'outage', options, values) };
    });
  } finally {
    watching = false;
    await watcher;
    await queue.close();
  }

  expect(run.account).toMatchObject({ rows: ROWS, done: ROWS, failed: 0, lost: 0 });
  const stats = rig.mock.stats(CHAOS_APPID);
  // One image per row: the ones generated while storage was down came out of the stash.
  expect(stats.images).toBe(ROWS);
  expect(seen.stashed).toBeGreaterThan(0);
  expect(await stashBytes(rig.redis, prefix)).toBe(0);
  expect(await rig.redis.hlen(`${prefix}:stash`)).toBe(0);
  expect(seen.attemptsSpent).toBe(0);
  report('storage-outage', {
    ...run.account,
    outageMs: OUTAGE_MS,
    resumeMs: run.resumeMs,
    stashBytes: seen.stashed,
    images: stats.images,
    attemptsSpent: seen.attemptsSpent,
  });
});
