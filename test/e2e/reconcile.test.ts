/**
 * Rows left pending with no job are noticed and queued again by the workers' reconcile, and a campaign whose
 * producer died completes once its lease ran out, though every row settled before.
 */
import { expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { jobId, jobsFor, openQueue } from '../../src/campaign/queue.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxreconcile00000001';
const OPTIONS = codeOptions({ kind: 'unlimited' });
const INTERVAL_MS = 300;
const stack = useLocalStack({ [APPID]: 'reconcile-secret' });

function values(name: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${name}-${i}`);
}

async function withWorker(work: () => Promise<void>): Promise<void> {
  const worker = await CodeWorker.start({
    config: loadConfig(stack.env()),
    concurrency: 4,
    reconcileIntervalMs: INTERVAL_MS,
  });
  try {
    await work();
  } finally {
    await worker.close();
  }
}

async function completed(campaign: string) {
  return waitFor(`campaign ${campaign} to complete with its manifest`, async () => {
    const s = await campaignStatus(stack.store, campaign);
    return s.state === 'completed' && s.manifest !== undefined && s;
  });
}

it('queues again the pending rows whose jobs were deleted behind its back', async () => {
  const campaign = 'lost-jobs';
  stack.mock.reset();
  const rows = values('l', 20);
  await enqueueCampaign({
    redis: stack.redis,
    prefix: stack.prefix,
    campaign,
    appid: APPID,
    options: OPTIONS,
    input: () => rows,
  });
  const queue = openQueue(stack.redis, stack.prefix, APPID);
  const lost = rows.slice(0, 5);
  for (const value of lost) expect(await queue.remove(jobId(campaign, value))).toBe(1);
  await queue.close();

  await withWorker(async () => {
    expect(await completed(campaign)).toMatchObject({ total: 20, done: 20, failed: 0, pending: 0 });
  });
  expect(stack.mock.stats(APPID).images).toBe(20);
});

it('queues the rows of an interrupted enqueue that another enqueue of other rows did not queue', async () => {
  const campaign = 'interrupted';
  // The interrupted producer recorded its rows and died before queueing them.
  const dead = { id: 'dead', ms: 500 };
  await stack.store.open(campaign, APPID, OPTIONS, dead);
  await stack.store.addRows(campaign, values('i', 3), dead);
  await enqueueCampaign({
    redis: stack.redis,
    prefix: stack.prefix,
    campaign,
    appid: APPID,
    options: OPTIONS,
    input: () => values('j', 3),
  });

  await withWorker(async () => {
    expect(await completed(campaign)).toMatchObject({ total: 6, done: 6, pending: 0 });
  });
});

it('completes a campaign whose producer died once its lease ran out, though every row settled before', async () => {
  const campaign = 'dead-producer';
  const dead = { id: 'dead', ms: 2000 };
  const opened = Date.now();
  await stack.store.open(campaign, APPID, OPTIONS, dead);
  await stack.store.addRows(campaign, values('d', 3), dead);
  const queue = openQueue(stack.redis, stack.prefix, APPID);
  await queue.addBulk(jobsFor(campaign, values('d', 3)));
  await queue.close();

  await withWorker(async () => {
    expect(await completed(campaign)).toMatchObject({ total: 3, done: 3 });
  });
  const completedAt = Number(await stack.redis.hget(`${stack.prefix}:campaign:${campaign}`, 'completedAt'));
  expect(completedAt).toBeGreaterThanOrEqual(opened + dead.ms);
});
