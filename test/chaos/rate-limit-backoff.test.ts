/**
 * The back-off after 45009 holds for the whole fleet: two `wxacode worker` processes, a mock whose cap is far
 * below what the workers' limiter allows, and the calls the mock saw after its first refusal.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { byScale, CHAOS_APPID, ChaosRig, report, WorkerFleet } from '../helpers/chaos.js';

/** The workers' cap: calls about 300 ms apart, and a back-off of a tenth of the window, 3 s. */
const WORKER_RATE = { count: 100, durationMs: 30_000 };
const BACKOFF_MS = 3000;
/** Calls already past their last check when the refusal arrived may still leave; later ones may not. */
const GRACE_MS = 500;

let rig: ChaosRig;

beforeAll(async () => {
  // The mock serves 3 codes a minute, so the 4th call is refused with 45009.
  rig = await ChaosRig.start({ rate: WORKER_RATE, mock: { rateLimit: { count: 3, durationMs: 60_000 } } });
});

afterAll(async () => {
  await rig.close();
});

it('pauses every worker process of the app after one of them receives 45009', async () => {
  const prefix = rig.prefix();
  const options = codeOptions({ kind: 'unlimited' });
  const scenes = Array.from({ length: byScale(30, 200) }, (_, i) => `backoff-${i}`);
  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '4', '--metrics-port', '0']);
  await fleet.start(2);
  const times = await fleet.during(async () => {
    rig.mock.reset();
    await rig.enqueue(prefix, 'backoff', options, scenes);
    // The first refusal, and a call after the back-off it started: the pause is a pause, not a stop.
    return waitFor(
      'a call after the back-off that followed the first 45009',
      () => {
        const { callTimes } = rig.mock.stats(CHAOS_APPID);
        const refusedAt = callTimes[3];
        return refusedAt !== undefined && callTimes.some((t) => t >= refusedAt + BACKOFF_MS - GRACE_MS)
          ? callTimes
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
  });
  const refusedAt = times[3]!;
  expect(rig.mock.stats(CHAOS_APPID).errors['45009']).toBeGreaterThan(0);
  const duringBackoff = times.filter(
    (t) => t > refusedAt + GRACE_MS && t < refusedAt + BACKOFF_MS - GRACE_MS,
  );
  expect(
    duringBackoff.map((t) => t - refusedAt),
    'calls (ms after the first 45009) made by either process while the app was backed off',
  ).toEqual([]);
  const resumedAt = times.find((t) => t > refusedAt + GRACE_MS)!;
  report('rate-limit-backoff', {
    workers: 2,
    backoffMs: BACKOFF_MS,
    callsInGrace: times.filter((t) => t > refusedAt && t <= refusedAt + GRACE_MS).length,
    callsDuringBackoff: duringBackoff.length,
    pauseSeenMs: resumedAt - refusedAt,
  });
});
