/**
 * A campaign record that cannot be read back (edited by hand, written by an incompatible version) must not take
 * the worker down: before, the rejected lookup was an unhandled rejection that exited the process with every
 * app's jobs in flight, and a crash loop across the fleet. Now that campaign stops with the reason, and the
 * worker goes on with the others.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { byScale, ChaosRig, report, WorkerFleet } from '../helpers/chaos.js';

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: { count: 40, durationMs: 1000 } });
});

afterAll(async () => {
  await rig?.close();
});

it('stops a campaign whose record is corrupt, names why, and keeps working for the others', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const rows = byScale(20, 200);
  const healthy = Array.from({ length: rows }, (_, i) => `healthy-${i}`);
  await rig.enqueue(prefix, 'broken', options, ['broken-1', 'broken-2', 'broken-3']);
  await rig.enqueue(prefix, 'healthy', options, healthy);
  await rig.redis.hset(`${prefix}:campaign:broken`, 'options', '{"kind":"unlimited",');

  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '2']);
  await fleet.start(1);
  await fleet.during(async () => {
    await waitFor('the healthy campaign to complete', async () => {
      return (await campaignStatus(store, 'healthy')).state === 'completed';
    });
    await waitFor('the broken campaign to stop', async () => {
      return (await store.state('broken')) === 'stopped';
    });
  });
  const meta = await rig.redis.hgetall(`${prefix}:campaign:broken`);
  expect(meta.stopErrcode).toBe('-2');
  expect(meta.stopErrmsg).toMatch(/^the record of campaign broken is corrupt \(.+\); delete it/);
  expect(fleet.output).not.toContain('unexpected error');
  const account = await rig.audit(prefix, 'healthy', options, healthy);
  expect(account).toMatchObject({ rows, done: rows, failed: 0, lost: 0 });
  report('corrupt-record', { ...account, brokenStoppedWith: meta.stopErrcode });
}, 90_000);
