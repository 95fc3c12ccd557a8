/**
 * Rows left in a campaign's window with no job are noticed and queued again by the workers' reconcile, and a
 * campaign whose producer died completes once its lease ran out, though every row settled before.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Feeder } from '../../src/campaign/feeder.js';
import { CampaignLifecycle } from '../../src/campaign/lifecycle.js';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { jobId, openQueue } from '../../src/campaign/queue.js';
import { CHUNK_CONTENT_TYPE, encodeChunk, readChunk } from '../../src/campaign/record.js';
import { slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { type Config, loadConfig } from '../../src/config.js';
import { createStorage, recordKey, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxreconcile00000001';
const OPTIONS = codeOptions({ kind: 'unlimited' });
const INTERVAL_MS = 300;
const stack = useLocalStack({ [APPID]: 'reconcile-secret' });
let config: Config;
let storage: Storage;

beforeAll(() => {
  config = loadConfig(stack.env());
  storage = createStorage(config);
});

afterAll(async () => {
  await storage.close();
});

function values(name: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${name}-${i}`);
}

function enqueue(campaign: string, input: () => Iterable<string>, more: { producerLeaseMs?: number } = {}) {
  return enqueueCampaign({
    redis: stack.redis,
    prefix: stack.prefix,
    storage,
    campaign,
    appid: APPID,
    options: OPTIONS,
    input,
    chunkRows: 5,
    ...more,
  });
}

async function withWorker(work: () => Promise<void>): Promise<void> {
  const worker = await CodeWorker.start({ config, concurrency: 4, reconcileIntervalMs: INTERVAL_MS });
  try {
    await work();
  } finally {
    await worker.close();
  }
}

async function completed(campaign: string, total: number) {
  return waitFor(`campaign ${campaign} to complete ${total} rows with its manifest`, async () => {
    const s = await campaignStatus(stack.store, campaign);
    return s.state === 'completed' && s.total === total && s.manifest !== undefined && s;
  });
}

async function completedAt(campaign: string): Promise<number> {
  return Number(await stack.redis.hget(`${stack.prefix}:campaign:${campaign}`, 'completedAt'));
}

it('queues again the rows in the window whose jobs were deleted behind its back', async () => {
  const campaign = 'lost-jobs';
  stack.mock.reset();
  const rows = values('l', 20);
  await enqueue(campaign, () => rows);
  const queue = openQueue(stack.redis, stack.prefix, APPID);
  try {
    // A feeder of its own, with no worker to take the jobs it adds before some are deleted.
    const feeder = Feeder.start({
      lifecycle: new CampaignLifecycle(stack.store, storage),
      storage,
      apps: [APPID],
      queue: () => queue,
      window: 100,
      intervalMs: 60_000,
    });
    try {
      await waitFor(
        'the feeder to queue every row',
        async () => (await stack.store.get(campaign))!.queued === 20,
      );
    } finally {
      await feeder.close();
    }
    const lost = [0, 1, 7, 12, 19].map((row) => slotOf({ chunk: Math.floor(row / 5), row: row % 5 }));
    for (const slot of lost) expect(await queue.remove(jobId(campaign, slot))).toBe(1);
  } finally {
    await queue.close();
  }

  await withWorker(async () => {
    expect(await completed(campaign, 20)).toMatchObject({ done: 20, failed: 0, pending: 0 });
  });
  expect(stack.mock.stats(APPID).images).toBe(20);
});

it('queues the rows a feeder recorded in the window before it died without adding their jobs', async () => {
  const campaign = 'dead-feeder';
  stack.mock.reset();
  await enqueue(campaign, () => values('f', 15));
  const meta = (await stack.store.get(campaign))!;
  const [first] = await stack.store.chunks(campaign);
  const rows = (await readChunk(storage, meta, first!)).map((value, row) => ({
    slot: slotOf({ chunk: 0, row }),
    value,
  }));
  expect(await stack.store.feed(campaign, { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, rows)).toBe(true);

  await withWorker(async () => {
    expect(await completed(campaign, 15)).toMatchObject({ done: 15, failed: 0, pending: 0 });
  });
  expect(stack.mock.stats(APPID).images).toBe(15);
});

it('completes an interrupted enqueue with the rows it recorded once its lease ran out; the same enqueue again records the rest', async () => {
  const campaign = 'interrupted';
  stack.mock.reset();
  const rows = values('i', 20);
  const leaseMs = 1000;
  let passes = 0;
  // The validation pass reads every row; the recording pass loses its input after two chunks and a bit.
  const input = function* () {
    if (++passes === 1) return yield* rows;
    yield* rows.slice(0, 12);
    throw new Error('input lost');
  };
  const started = Date.now();
  await expect(enqueue(campaign, input, { producerLeaseMs: leaseMs })).rejects.toThrow('input lost');
  expect(await stack.store.get(campaign)).toMatchObject({ state: 'enqueuing', total: 10 });

  await withWorker(async () => {
    expect(await completed(campaign, 10)).toMatchObject({ done: 10, failed: 0, pending: 0 });
    expect(await completedAt(campaign)).toBeGreaterThanOrEqual(started + leaseMs);

    const again = await enqueue(campaign, () => rows);
    expect(again).toMatchObject({ enqueued: 10, duplicates: 10, total: 20 });
    expect(await completed(campaign, 20)).toMatchObject({ done: 20, failed: 0, pending: 0 });
  });
  expect(stack.mock.stats(APPID).images).toBe(20);
});

it('completes a campaign whose producer died once its lease ran out, though every row settled before', async () => {
  const campaign = 'dead-producer';
  const dead = { id: 'dead', ms: 2000 };
  const opened = Date.now();
  await stack.store.open(campaign, APPID, OPTIONS, dead);
  await storage.put(recordKey(APPID, campaign, 'dead-0'), encodeChunk(values('d', 3)), CHUNK_CONTENT_TYPE);
  await stack.store.addChunk(campaign, APPID, { name: 'dead-0', rows: 3 }, dead);

  await withWorker(async () => {
    expect(await completed(campaign, 3)).toMatchObject({ done: 3 });
  });
  expect(await completedAt(campaign)).toBeGreaterThanOrEqual(opened + dead.ms);
});
