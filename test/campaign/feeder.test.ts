/**
 * The feeders (campaign/feeder.ts) against a real Redis and BullMQ, with the record in a storage folder: a
 * window at a time, in input order, once however many feeders race, and what they do with campaigns that
 * stop, complete, lose a chunk or are still being written. Rows are settled here as a worker would, without
 * WeChat.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Feeder } from '../../src/campaign/feeder.js';
import { CampaignLifecycle } from '../../src/campaign/lifecycle.js';
import { LOCAL_ERRCODE } from '../../src/campaign/policy.js';
import { enqueueCampaign, type RowSource } from '../../src/campaign/producer.js';
import { type CodeJobData, jobId, jobsFor, openQueue } from '../../src/campaign/queue.js';
import { Reconciler } from '../../src/campaign/reconcile.js';
import { readChunk } from '../../src/campaign/record.js';
import { CampaignStore, PRIORITIES, type SlotRow } from '../../src/campaign/store.js';
import { LocalStorage, recordKey } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

const WINDOW = 20;
const CHUNK_ROWS = 7;
const OPTIONS = codeOptions({ kind: 'unlimited' });
/** Feeders here tick only when a test calls `tick()`, beside the one tick `Feeder.start` runs at once. */
const NEVER_MS = 3_600_000;

let redis: Redis;
let dir: string;
let storage: LocalStorage;
let store: CampaignStore;
let lifecycle: CampaignLifecycle;
const prefix = testPrefix();
const queues = new Map<string, Queue<CodeJobData>>();
const running: { close(): Promise<void> }[] = [];
let apps = 0;

beforeAll(async () => {
  redis = connect();
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-feeder-'));
  storage = new LocalStorage(dir);
  store = new CampaignStore(redis, prefix);
  lifecycle = new CampaignLifecycle(store, storage);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await Promise.all([...queues.values()].map((queue) => queue.close()));
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

/** An app of each test's own, so that no feeder lease or reconcile lock carries over from another test. */
function newApp(): string {
  return `wxfeeder${String(++apps).padStart(10, '0')}`;
}

function queueOf(appid: string): Queue<CodeJobData> {
  let queue = queues.get(appid);
  if (!queue) {
    queue = openQueue(redis, prefix, appid);
    queues.set(appid, queue);
  }
  return queue;
}

/**
 * A feeder of `appid` that has run its first tick, the one `Feeder.start` runs at once: that tick took the
 * app's lease and then read the app's campaigns on this same connection, before any test campaign exists, so
 * it feeds nothing and cannot overlap the ticks the test runs.
 */
async function feederOf(
  appid: string,
  queue: (appid: string) => Queue<CodeJobData> = queueOf,
): Promise<Feeder> {
  const feeder = Feeder.start({
    lifecycle,
    storage,
    apps: [appid],
    queue,
    window: WINDOW,
    intervalMs: NEVER_MS,
  });
  running.push(feeder);
  await waitFor(
    'the feeder to take the lease',
    async () => (await redis.exists(`${prefix}:feeder:${appid}`)) === 1,
  );
  return feeder;
}

function valuesOf(campaign: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${campaign}-${i}`);
}

async function enqueue(appid: string, campaign: string, input: string[] | RowSource, priority?: number) {
  return enqueueCampaign({
    redis,
    prefix,
    storage,
    campaign,
    appid,
    options: OPTIONS,
    input: Array.isArray(input) ? () => input : input,
    chunkRows: CHUNK_ROWS,
    priority,
  });
}

/** Where the row at input position `i` sits in a record of CHUNK_ROWS-row chunks. */
function slotAt(i: number): string {
  return `${Math.floor(i / CHUNK_ROWS)}:${i % CHUNK_ROWS}`;
}

async function windowOf(campaign: string): Promise<Record<string, string>> {
  return redis.hgetall(`${prefix}:campaign:${campaign}:window`);
}

/** The campaign's jobs in the order workers would take them. */
async function jobsOf(appid: string, campaign: string): Promise<Job<CodeJobData>[]> {
  const jobs = (await queueOf(appid).getJobs(['prioritized', 'wait'], 0, -1, true)) as Job<CodeJobData>[];
  return jobs.filter((job) => job.data.c === campaign);
}

/**
 * What must hold after any tick: the window holds what the counter says and at most WINDOW rows, one job per
 * queued row and none for any other, and every fed row is queued or settled.
 */
async function expectWhole(appid: string, campaign: string): Promise<Record<string, string>> {
  const meta = (await store.get(campaign))!;
  const window = await windowOf(campaign);
  const slots = Object.keys(window).sort();
  expect(slots.length).toBe(meta.queued);
  expect(meta.queued).toBeLessThanOrEqual(WINDOW);
  const jobs = await jobsOf(appid, campaign);
  expect(jobs.map((job) => job.data.s).sort()).toEqual(slots);
  for (const job of jobs) {
    expect(job.id).toBe(jobId(campaign, job.data.s));
    expect(job.data.v).toBe(window[job.data.s]);
    expect(job.opts.priority).toBe(meta.priority);
  }
  const before = (await store.chunks(campaign)).slice(0, meta.cursor.chunk);
  const fed = before.reduce((rows, chunk) => rows + chunk.rows, 0) + meta.cursor.row;
  expect(meta.done + meta.failed + meta.queued).toBe(fed);
  return window;
}

/** Do as a worker does with the first `n` jobs of the campaign: settle the row, then the job goes. */
async function work(appid: string, campaign: string, n: number): Promise<SlotRow[]> {
  const jobs = (await jobsOf(appid, campaign)).slice(0, n);
  for (const job of jobs) {
    await store.markRow(campaign, job.data.s, { status: 'done' });
    await job.remove();
  }
  return jobs.map((job) => ({ slot: job.data.s, value: job.data.v }));
}

describe('Feeder', () => {
  it('queues at most a window, across chunks in input order, with the campaign priority', async () => {
    const app = newApp();
    const feeder = await feederOf(app);
    const input = valuesOf('walk', 45);
    await enqueue(app, 'walk', input, PRIORITIES.high);
    await enqueue(app, 'low', valuesOf('low', 3), PRIORITIES.low);
    expect(await store.get('walk')).toMatchObject({ state: 'active', total: 45, queued: 0 });
    expect(await jobsOf(app, 'walk')).toEqual([]);

    await feeder.tick();
    const first = await expectWhole(app, 'walk');
    expect(await queueOf(app).getJobCounts('prioritized', 'wait')).toEqual({
      prioritized: WINDOW + 3,
      wait: 0,
    });
    expect(first).toEqual(Object.fromEntries(input.slice(0, WINDOW).map((v, i) => [slotAt(i), v])));
    expect((await store.get('walk'))!.cursor).toEqual({ chunk: 2, row: 6 });
    const jobs = await jobsOf(app, 'walk');
    expect(jobs.map((job) => job.data)).toEqual(
      input.slice(0, WINDOW).map((v, i) => ({ c: 'walk', s: slotAt(i), v })),
    );
    expect(jobs.every((job) => job.opts.priority === PRIORITIES.high)).toBe(true);
    expect((await jobsOf(app, 'low')).map((job) => [job.data.v, job.opts.priority])).toEqual(
      valuesOf('low', 3).map((v) => [v, PRIORITIES.low]),
    );

    // Rows reach the queue in input order, each once, however the window is topped up.
    const queued: SlotRow[] = jobs.map((job) => ({ slot: job.data.s, value: job.data.v }));
    for (const n of [1, 5, 13, 20]) {
      const settled = await work(app, 'walk', n);
      expect(settled).toEqual(queued.slice(0, n));
      queued.splice(0, n);
      await feeder.tick();
      const window = await expectWhole(app, 'walk');
      expect(await queueOf(app).getPrioritizedCount()).toBe(Object.keys(window).length + 3);
      const now = (await jobsOf(app, 'walk')).map((job) => ({ slot: job.data.s, value: job.data.v }));
      expect(now.slice(0, queued.length)).toEqual(queued);
      queued.push(...now.slice(queued.length));
    }
    // Fed to its end: six chunks of 7 rows and one of 3.
    expect(await store.get('walk')).toMatchObject({ done: 39, queued: 6, cursor: { chunk: 7, row: 0 } });
    expect(queued.map((row) => row.value)).toEqual(input.slice(39));

    await work(app, 'walk', WINDOW);
    expect(await store.get('walk')).toMatchObject({ state: 'completed', done: 45, queued: 0 });
    expect(await store.feeding(app)).toContain('walk');
    await feeder.tick();
    expect(await store.feeding(app)).toEqual(['low']);
  });

  it('tops up a window only once a quarter of it has room', async () => {
    const app = newApp();
    const feeder = await feederOf(app);
    await enqueue(app, 'quarter', valuesOf('quarter', 40));
    await feeder.tick();
    await work(app, 'quarter', WINDOW / 4 - 1);
    await feeder.tick();
    expect(await store.get('quarter')).toMatchObject({
      queued: WINDOW - (WINDOW / 4 - 1),
      cursor: { chunk: 2, row: 6 },
    });
    await work(app, 'quarter', 1);
    await feeder.tick();
    expect(await store.get('quarter')).toMatchObject({ queued: WINDOW, cursor: { chunk: 3, row: 4 } });
    await expectWhole(app, 'quarter');
  });

  it('lets one feeder of an app feed, no row queued twice, hands over when the leader stops', async () => {
    const app = newApp();
    const calls = { a: 0, b: 0 };
    const counted = (who: 'a' | 'b') => (appid: string) => {
      calls[who]++;
      return queueOf(appid);
    };
    const a = await feederOf(app, counted('a'));
    const b = Feeder.start({
      lifecycle,
      storage,
      apps: [app],
      queue: counted('b'),
      window: WINDOW,
      intervalMs: NEVER_MS,
    });
    running.push(b);
    await enqueue(app, 'shared', valuesOf('shared', 60));

    // Each feeder ticking twice at once: the leader's two ticks race each other on the cursor.
    await Promise.all([a.tick(), b.tick(), a.tick(), b.tick()]);
    await expectWhole(app, 'shared');
    expect(await store.get('shared')).toMatchObject({ queued: WINDOW, cursor: { chunk: 2, row: 6 } });
    expect(calls.a > 0 !== calls.b > 0).toBe(true);
    const [leader, follower, other] = calls.a > 0 ? [a, b, 'b' as const] : [b, a, 'a' as const];

    // The window has room, but the lease is the leader's for a few seconds from its last tick.
    await work(app, 'shared', 10);
    await follower.tick();
    expect(calls[other]).toBe(0);
    expect(await store.get('shared')).toMatchObject({ queued: WINDOW - 10, cursor: { chunk: 2, row: 6 } });

    await leader.close();
    await waitFor('the other feeder to take over once the lease ran out', async () => {
      await follower.tick();
      return calls[other] > 0;
    });
    await expectWhole(app, 'shared');
    expect(await store.get('shared')).toMatchObject({
      done: 10,
      queued: WINDOW,
      cursor: { chunk: 4, row: 2 },
    });
    const window = await windowOf('shared');
    expect(window).toEqual(
      Object.fromEntries(
        valuesOf('shared', 30)
          .map((v, i) => [slotAt(i), v])
          .slice(10),
      ),
    );
  });

  it('leaves rows fed without their jobs (a feeder that died) for the reconcile to queue again', async () => {
    const app = newApp();
    const input = valuesOf('orphans', 21);
    await enqueue(app, 'orphans', input, PRIORITIES.low);
    const meta = (await store.get('orphans'))!;
    const [chunk] = await store.chunks('orphans');
    const rows = (await readChunk(storage, meta, chunk!)).map((value, row) => ({ slot: `0:${row}`, value }));
    // What a feeder does before its addBulk: the rows are in the window and the cursor moved, no job yet. One
    // row's job got in, and one row was settled since (its job gone).
    expect(await store.feed('orphans', { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, rows)).toBe(true);
    await queueOf(app).addBulk(jobsFor('orphans', meta.priority, rows.slice(0, 1)));
    await store.markRow('orphans', '0:1', { status: 'done' });

    const reconciler = Reconciler.start({ lifecycle, apps: [app], queue: queueOf, intervalMs: NEVER_MS });
    running.push(reconciler);
    await waitFor('the rows to be queued again', async () => (await jobsOf(app, 'orphans')).length === 6);
    await reconciler.close();
    const jobs = await jobsOf(app, 'orphans');
    expect(jobs.map((job) => job.data).sort((x, y) => x.s.localeCompare(y.s))).toEqual(
      [0, 2, 3, 4, 5, 6].map((row) => ({ c: 'orphans', s: `0:${row}`, v: input[row] })),
    );
    expect(jobs.every((job) => job.opts.priority === PRIORITIES.low)).toBe(true);
    await expectWhole(app, 'orphans');
    expect((await store.get('orphans'))!.cursor).toEqual({ chunk: 1, row: 0 });
  });

  it('stops a campaign whose record lost a chunk, with a local error naming it', async () => {
    const app = newApp();
    const feeder = await feederOf(app);
    await enqueue(app, 'lost', valuesOf('lost', 21));
    const chunks = await store.chunks('lost');
    const lost = recordKey(app, 'lost', chunks[1]!.name);
    await storage.delete([lost]);

    await feeder.tick();
    const meta = (await store.get('lost'))!;
    expect(meta).toMatchObject({
      state: 'stopped',
      stop: { errcode: LOCAL_ERRCODE },
      cursor: { chunk: 1, row: 0 },
    });
    expect(meta.stop!.errmsg).toContain(lost);
    // The rows before the lost chunk were queued and stay so; nothing after it is.
    expect(Object.keys(await windowOf('lost')).sort()).toEqual(
      [0, 1, 2, 3, 4, 5, 6].map((row) => `0:${row}`),
    );
    await expectWhole(app, 'lost');

    await feeder.tick();
    expect(await store.feeding(app)).toEqual([]);
    expect(await store.get('lost')).toMatchObject({
      state: 'stopped',
      cursor: { chunk: 1, row: 0 },
      queued: 7,
    });
  });

  it('waits for a chunk its producer has not registered yet', async () => {
    const app = newApp();
    const feeder = await feederOf(app);
    const input = valuesOf('slow', 10);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let passes = 0;
    // The producer reads its input twice: on the second read, it stalls after the first chunk.
    const source: RowSource = async function* () {
      const writing = ++passes === 2;
      for (const [i, value] of input.entries()) {
        if (writing && i === CHUNK_ROWS) await gate;
        yield value;
      }
    };
    const enqueuing = enqueue(app, 'slow', source);
    await waitFor('the first chunk to be registered', async () => (await store.chunks('slow')).length === 1);

    await feeder.tick();
    expect(await store.get('slow')).toMatchObject({
      state: 'enqueuing',
      queued: CHUNK_ROWS,
      cursor: { chunk: 1, row: 0 },
    });
    await work(app, 'slow', CHUNK_ROWS);
    await feeder.tick();
    expect(await store.get('slow')).toMatchObject({
      state: 'enqueuing',
      done: CHUNK_ROWS,
      queued: 0,
      cursor: { chunk: 1, row: 0 },
    });
    expect(await store.feeding(app)).toEqual(['slow']);

    release();
    expect(await enqueuing).toMatchObject({ enqueued: 10, total: 10, state: 'active' });
    await feeder.tick();
    expect(await windowOf('slow')).toEqual({ '1:0': 'slow-7', '1:1': 'slow-8', '1:2': 'slow-9' });
    await expectWhole(app, 'slow');
    await work(app, 'slow', 3);
    expect(await store.state('slow')).toBe('completed');
    await feeder.tick();
    expect(await store.feeding(app)).toEqual([]);
  });

  it('feeds no stopped campaign, and takes stopped and completed ones off the feeding set', async () => {
    const app = newApp();
    const feeder = await feederOf(app);
    await enqueue(app, 'halted', valuesOf('halted', 10));
    await store.stop('halted', 41030, 'invalid page');
    await enqueue(app, 'short', valuesOf('short', 3));

    await feeder.tick();
    expect(await store.get('halted')).toMatchObject({
      state: 'stopped',
      queued: 0,
      cursor: { chunk: 0, row: 0 },
    });
    expect(await jobsOf(app, 'halted')).toEqual([]);
    expect(await store.feeding(app)).toEqual(['short']);
    await work(app, 'short', 3);
    expect(await store.state('short')).toBe('completed');
    await feeder.tick();
    expect(await store.feeding(app)).toEqual([]);

    // A resume puts it back, and the feeders go on from where it stopped.
    await lifecycle.resume({ id: 'halted', appid: app }, { id: 'resume', ms: 30_000 });
    await feeder.tick();
    expect(await store.get('halted')).toMatchObject({
      state: 'enqueuing',
      queued: 10,
      cursor: { chunk: 2, row: 0 },
    });
    await expectWhole(app, 'halted');
  });
});
