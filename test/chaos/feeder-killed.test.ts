/**
 * The worker feeding an app killed with SIGKILL mid-campaign, then the worker that took over, and so on (twice in
 * CI, six times at full scale), in a campaign many windows long (WXACODE_WINDOW=100). One worker of the fleet
 * feeds an app's campaigns at a time, under a lease (`<prefix>:feeder:<appid>`, 5 s, renewed every tick); when its
 * holder dies, the lease runs out and another worker takes it and feeds on from the cursor. The lease names a
 * random holder, not a process, so the workers are killed one at a time, oldest first: a kill after which the
 * lease is renewed under the same holder hit a worker that was not feeding (its jobs come back through BullMQ's
 * stalled check), one after which another holder takes the lease hit the feeder.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openQueue } from '../../src/campaign/queue.js';
import { type FeedCursor, slotOf } from '../../src/campaign/store.js';
import { createStorage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import {
  between,
  byScale,
  CHAOS_APPID,
  ChaosRig,
  fleetWorkerName,
  report,
  WorkerFleet,
} from '../helpers/chaos.js';

const RATE = { count: 50, durationMs: 1000 };
/** WXACODE_WINDOW: two seconds of the cap, so the campaign is many windows long. */
const WINDOW = 100;
const ROWS = byScale(1000, 6000);
/** Several chunks, so that feeders cross chunk boundaries and a new feeder reads the record afresh. */
const CHUNK_ROWS = 250;
const WORKERS = 3;
const FEEDER_KILLS = byScale(2, 6);
/** The feeders' lease (LEASE_MS in campaign/feeder.ts). */
const FEEDER_LEASE_MS = 5000;
/**
 * A lease whose expiry moved this far past where the killed worker could have left it was renewed by a live
 * holder: covers a renewal the victim had sent just before it died.
 */
const RENEWAL_MARGIN_MS = 500;

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: RATE });
});

afterAll(async () => {
  await rig?.close();
});

/** One atomic look at the app's feeder lease and at the campaign's cursor and window. */
interface Look {
  /** Date.now() before the look was sent: `sentAt + leaseLeftMs` is no later than the lease's expiry. */
  sentAt: number;
  seenAt: number;
  holder: string | null;
  leaseLeftMs: number;
  cursor: string;
  queued: number;
  windowRows: number;
  done: number;
  failed: number;
  state: string | null;
}

interface Kill {
  pid: number;
  /** Whether it held the feeder lease. */
  feeder: boolean;
  /** Jobs it held when it died. */
  heldJobs: number;
  /** What was left of the lease just before the kill. */
  leaseLeftMs: number;
  /** From the kill until another worker held the lease, and until the cursor moved again. */
  takeoverMs?: number;
  resumeMs?: number;
}

it('another worker takes over feeding each time the feeder is killed; no row fed twice, the window held', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const campaign = 'feeder';
  const leaseKey = `${prefix}:feeder:${CHAOS_APPID}`;
  const metaKey = `${prefix}:campaign:${campaign}`;
  const options = codeOptions({ kind: 'unlimited', width: 280, isHyaline: true });
  const values = Array.from({ length: ROWS }, (_, i) => `feeder-${i}`);

  async function look(): Promise<Look> {
    const sentAt = Date.now();
    const replies = await rig.redis
      .multi()
      .get(leaseKey)
      .pttl(leaseKey)
      .hmget(metaKey, 'fedChunk', 'fedRow', 'queued', 'done', 'failed', 'state')
      .hlen(`${metaKey}:window`)
      .exec();
    const [holder, leaseLeftMs, fields, windowRows] = replies!.map(([err, reply]) => {
      if (err) throw err;
      return reply;
    }) as [string | null, number, (string | null)[], number];
    const [fedChunk, fedRow, queued, done, failed, state] = fields;
    const cursor: FeedCursor = { chunk: Number(fedChunk ?? 0), row: Number(fedRow ?? 0) };
    return {
      sentAt,
      seenAt: Date.now(),
      holder,
      leaseLeftMs,
      cursor: slotOf(cursor),
      queued: Number(queued ?? 0),
      windowRows,
      done: Number(done ?? 0),
      failed: Number(failed ?? 0),
      state: state ?? null,
    };
  }

  const window = { samples: 0, maxQueued: 0, maxRows: 0, mismatches: [] as string[] };
  function sample(s: Look): Look {
    window.samples++;
    window.maxQueued = Math.max(window.maxQueued, s.queued);
    window.maxRows = Math.max(window.maxRows, s.windowRows);
    // Both change together in one script (feed.lua, markRow.lua): a look between them would be a bug.
    if (s.queued !== s.windowRows) window.mismatches.push(`queued ${s.queued}, window ${s.windowRows}`);
    return s;
  }

  const queue = openQueue(rig.redis, prefix, CHAOS_APPID);
  const fleet = new WorkerFleet(
    rig.env(prefix, { WXACODE_WINDOW: String(WINDOW) }),
    ['worker', '--concurrency', '8'],
    { named: true },
  );
  const kills: Kill[] = [];
  let stopSampling = false;

  await fleet.start(WORKERS);
  const run = await fleet.during(async () => {
    // Enqueued once every worker runs, so that the kills, not the fleet's start, use up the campaign.
    rig.mock.reset();
    await rig.enqueue(prefix, campaign, options, values, { chunkRows: CHUNK_ROWS });
    const enqueuedAt = Date.now();
    // Watches the window for the whole campaign, kills and takeovers included.
    const sampling = waitFor(
      'the campaign to complete, watching its window',
      async () => {
        const s = sample(await look());
        return stopSampling || s.state === 'completed' || s.state === 'stopped' ? s : undefined;
      },
      { timeoutMs: byScale(180_000, 900_000), everyMs: 20 },
    );
    sampling.catch(() => undefined);
    try {
      let doneAtKill = 0;
      while (kills.filter((kill) => kill.feeder).length < FEEDER_KILLS) {
        // A random moment once the current feeder has been at work for a while.
        const target = doneAtKill + between(WINDOW / 4, (3 * WINDOW) / 4);
        await waitFor('the campaign to move on since the last takeover', async () => {
          const s = sample(await look());
          return s.done >= target && s;
        });
        for (let found = false; !found; ) {
          const before = sample(await look());
          const unfed = ROWS - (before.done + before.failed + before.queued);
          expect(unfed, `rows left to feed at kill ${kills.length + 1}`).toBeGreaterThanOrEqual(2 * WINDOW);
          expect(before.holder, 'a feeder holds the lease').not.toBeNull();
          const victim = await fleet.killOldest();
          const killedAt = Date.now();
          const replacement = fleet.spawn();
          // A dead worker neither takes nor settles a job: the active jobs it took are exactly those it held.
          const heldJobs = (await queue.getActive()).filter(
            (job) => job.processedBy === fleetWorkerName(victim),
          ).length;
          const atKill = sample(await look());
          doneAtKill = atKill.done;
          const seen: Look[] = [];
          const outcome = await waitFor(
            'the lease to be renewed by its holder or taken over by another',
            async () => {
              const s = sample(await look());
              seen.push(s);
              if (s.holder !== null && s.holder !== before.holder) return { feeder: true, s };
              const renewedAfterKill =
                s.sentAt + s.leaseLeftMs > killedAt + FEEDER_LEASE_MS + RENEWAL_MARGIN_MS;
              return s.holder === before.holder && renewedAfterKill && { feeder: false, s };
            },
            { timeoutMs: 4 * FEEDER_LEASE_MS, everyMs: 20 },
          );
          const kill: Kill = {
            pid: victim,
            feeder: outcome.feeder,
            heldJobs,
            leaseLeftMs: before.leaseLeftMs,
          };
          kills.push(kill);
          if (outcome.feeder) {
            found = true;
            kill.takeoverMs = outcome.s.seenAt - killedAt;
            // The lease was not taken before it ran out, and nobody fed while it was the dead feeder's or no one's.
            expect(outcome.s.seenAt, 'when another worker took the lease').toBeGreaterThanOrEqual(
              before.sentAt + before.leaseLeftMs,
            );
            const fedWithoutLease = seen.filter(
              (s) => (s.holder === before.holder || s.holder === null) && s.cursor !== atKill.cursor,
            );
            expect(fedWithoutLease, `rows fed after the kill, the cursor at ${atKill.cursor}`).toEqual([]);
            const resumed = await waitFor(
              'the new feeder to queue rows',
              async () => {
                const s = sample(await look());
                return s.cursor !== atKill.cursor && s;
              },
              { timeoutMs: 4 * FEEDER_LEASE_MS, everyMs: 20 },
            );
            expect(resumed.holder, 'the holder when the cursor moved').not.toBe(before.holder);
            expect(resumed.holder, 'the holder when the cursor moved').not.toBeNull();
            kill.resumeMs = resumed.seenAt - killedAt;
          }
          await replacement;
        }
      }
      await sampling;
    } finally {
      stopSampling = true;
    }
    const completed = await waitFor('the manifest', async () => {
      const meta = await store.get(campaign);
      return meta?.manifestKey !== undefined && meta;
    });
    const campaignMs = Date.now() - enqueuedAt;
    return { completed, campaignMs, account: await rig.audit(prefix, campaign, options, values) };
  });
  await queue.close();

  expect(run.completed).toMatchObject({ state: 'completed', total: ROWS, done: ROWS, failed: 0, queued: 0 });
  expect(run.account).toMatchObject({ rows: ROWS, done: ROWS, failed: 0, lost: 0, objects: ROWS });
  // Every row once, done, in input order.
  const storage = createStorage(rig.config(prefix));
  try {
    const manifest = (await storage.get(run.completed.manifestKey!))!.toString('utf8');
    const lines = manifest.trimEnd().split('\n').slice(1);
    expect(lines.map((line) => line.split(',')[0])).toEqual(values);
    expect(new Set(lines.map((line) => line.split(',')[1]))).toEqual(new Set(['done']));
  } finally {
    await storage.close();
  }

  const feederKills = kills.filter((kill) => kill.feeder);
  expect(feederKills).toHaveLength(FEEDER_KILLS);
  for (const kill of feederKills) {
    // A lease, then a tick of a surviving worker; as much again for a busy machine.
    expect(kill.takeoverMs).toBeLessThanOrEqual(2 * FEEDER_LEASE_MS);
  }
  expect(window.mismatches.slice(0, 10), `${window.mismatches.length} looks`).toEqual([]);
  expect(window.maxQueued).toBeLessThanOrEqual(WINDOW);
  expect(window.maxRows).toBeLessThanOrEqual(WINDOW);
  expect(window.maxQueued, 'the feeders filled the window').toBeGreaterThan(WINDOW / 2);

  // No row was fed twice: a code is generated again only for a job a killed worker held between its call and
  // its upload, which comes back through the stalled check.
  const stats = rig.mock.stats(CHAOS_APPID);
  const heldJobs = kills.reduce((sum, kill) => sum + kill.heldJobs, 0);
  expect(stats.images).toBeGreaterThanOrEqual(ROWS);
  expect(stats.images - ROWS).toBeLessThanOrEqual(heldJobs);
  report('feeder-killed', {
    ...run.account,
    campaignMs: run.campaignMs,
    workers: WORKERS,
    window: WINDOW,
    kills: kills.length,
    feederKills: feederKills.length,
    leaseLeftAtKillMs: feederKills.map((kill) => kill.leaseLeftMs),
    takeoverMs: feederKills.map((kill) => kill.takeoverMs),
    resumeMs: feederKills.map((kill) => kill.resumeMs),
    jobsOfKilledWorkers: kills.map((kill) => kill.heldJobs),
    maxQueued: window.maxQueued,
    maxWindowRows: window.maxRows,
    windowLooks: window.samples,
    codeCalls: stats.codeCalls,
    images: stats.images,
    regenerated: stats.images - ROWS,
    rateLimited: stats.rateLimited,
    orphansRequeued: fleet.output.split('queued again rows that were in the window with no job').length - 1,
  });
});
