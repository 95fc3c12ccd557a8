/**
 * Campaigns fed from their record a window at a time (campaign/feeder.ts): Redis holds a window of each, the
 * manifest follows the input, repeated rows are generated once, and campaigns of one app share its cap.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { queueName } from '../../src/campaign/queue.js';
import { CampaignStore, PRIORITIES } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, manifestKey, recordKey, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxwindows000000001';
const SECRET = 'windows-secret-value';
const WINDOW = 100;
// The mock's cheapest image (a 280 px transparent PNG), so that on a busy machine the pace is the limiter's.
const OPTIONS = codeOptions({ kind: 'unlimited', page: 'pages/index/index', width: 280, isHyaline: true });

let redis: Redis;
let s3: TestS3;
let mock: MockServer;
const prefixes: string[] = [];

function configFor(prefix: string, extra: Record<string, string> = {}): Config {
  return loadConfig({
    REDIS_URL: testRedisUrl(),
    WXACODE_PREFIX: prefix,
    WECHAT_APPID: APPID,
    WECHAT_SECRET: SECRET,
    WECHAT_API_BASE_URL: mock.url,
    WXACODE_RATE_LIMIT: '100/1s',
    WXACODE_WINDOW: String(WINDOW),
    WXACODE_STORAGE: `s3://${s3.bucket}/${prefix}`,
    ...s3.env,
    ...extra,
  });
}

interface Ctx {
  prefix: string;
  config: Config;
  store: CampaignStore;
  storage: Storage;
}

function setup(extra: Record<string, string> = {}): Ctx {
  const prefix = testPrefix();
  prefixes.push(prefix);
  const config = configFor(prefix, extra);
  return { prefix, config, store: new CampaignStore(redis, prefix), storage: createStorage(config) };
}

async function enqueue(ctx: Ctx, campaign: string, values: string[], priority?: number) {
  return enqueueCampaign({
    redis,
    prefix: ctx.prefix,
    storage: ctx.storage,
    campaign,
    appid: APPID,
    options: OPTIONS,
    input: () => values,
    chunkRows: 70,
    priority,
  });
}

async function completed(ctx: Ctx, campaign: string, timeoutMs = 100_000) {
  return waitFor(
    `campaign ${campaign} to complete with its manifest`,
    async () => {
      const s = await campaignStatus(ctx.store, campaign);
      return s.state === 'completed' && s.manifest !== undefined && s;
    },
    { timeoutMs },
  );
}

/** The manifest's rows: value and status, in file order. */
async function manifest(ctx: Ctx, campaign: string): Promise<[string, string][]> {
  const body = await ctx.storage.get(manifestKey(APPID, campaign, 'csv'));
  const lines = body!.toString('utf8').trimEnd().split('\n').slice(1);
  return lines.map((line) => line.split(',').slice(0, 2) as [string, string]);
}

beforeAll(async () => {
  redis = connect();
  s3 = await startS3();
  mock = await startMockServer({
    apps: { [APPID]: SECRET },
    rateLimit: { count: 100, durationMs: 1000 },
    publishedPages: ['pages/index/index'],
  });
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(redis, prefix);
  redis.disconnect();
  await mock.close();
  await s3.stop();
});

// Each test waits for a campaign at the cap; on a machine busy with other work that takes several times longer.
describe('windowed feeding', { timeout: 240_000 }, () => {
  it('a campaign of several windows completes in input order, never more than a window queued, repeats generated once', async () => {
    const ctx = setup();
    const distinct = Array.from({ length: 450 }, (_, i) => `w${i}`);
    // Repeats far apart, so that they fall in other windows and other chunks than their first occurrence.
    const input = [...distinct, ...distinct.slice(0, 60), 'w449', 'w0'];
    mock.reset();
    const result = await enqueue(ctx, 'several', input);
    expect(result).toMatchObject({ enqueued: 450, duplicates: 62, invalid: 0, total: 450, state: 'active' });
    // Nothing is queued before a worker feeds it: the rows are in the record, in storage.
    expect(await redis.llen(`${ctx.prefix}:${queueName(APPID)}:wait`)).toBe(0);
    const chunks = await ctx.store.chunks('several');
    expect(chunks.map((c) => c.rows)).toEqual([70, 70, 70, 70, 70, 70, 30]);
    expect(await ctx.storage.exists(recordKey(APPID, 'several', chunks[0]!.name))).toBe(true);

    let mostQueued = 0;
    let mostJobs = 0;
    const worker = await CodeWorker.start({ config: ctx.config, concurrency: 8 });
    try {
      await waitFor(
        'the campaign to settle while watching its window',
        async () => {
          const meta = (await ctx.store.get('several'))!;
          mostQueued = Math.max(mostQueued, meta.queued);
          const jobs = await redis.zcard(`${ctx.prefix}:${queueName(APPID)}:prioritized`);
          mostJobs = Math.max(mostJobs, jobs);
          return meta.done + meta.failed === meta.total;
        },
        { timeoutMs: 100_000, everyMs: 20 },
      );
      const status = await completed(ctx, 'several');
      expect(status).toMatchObject({ total: 450, done: 450, failed: 0, pending: 0 });
    } finally {
      await worker.close();
    }
    expect(mostQueued).toBeGreaterThan(0);
    expect(mostQueued).toBeLessThanOrEqual(WINDOW);
    expect(mostJobs).toBeLessThanOrEqual(WINDOW);
    expect(mock.stats(APPID).images).toBe(450);
    const rows = await manifest(ctx, 'several');
    expect(rows.map(([value]) => value)).toEqual(distinct);
    expect(new Set(rows.map(([, status]) => status))).toEqual(new Set(['done']));
    // What is left of a completed campaign in Redis: its summary and its chunk list.
    const keys = await redis.keys(`${ctx.prefix}:campaign:several*`);
    expect(keys.sort()).toEqual([`${ctx.prefix}:campaign:several`, `${ctx.prefix}:campaign:several:chunks`]);
  });

  it('an enqueue into an existing campaign records only the rows it does not hold yet', async () => {
    const ctx = setup();
    const first = Array.from({ length: 120 }, (_, i) => `a${i}`);
    await enqueue(ctx, 'again', first);
    const second = await enqueue(ctx, 'again', [...first.slice(50), 'b1', 'b2']);
    expect(second).toMatchObject({ enqueued: 2, duplicates: 70, total: 122 });
  });

  it('a high-priority campaign enqueued behind a big one goes first; two of one level share the cap', async () => {
    const ctx = setup();
    const rows = (name: string, n: number) => Array.from({ length: n }, (_, i) => `${name}${i}`);
    const bigDone = async () => (await ctx.store.get('big'))!.done;
    const worker = await CodeWorker.start({ config: ctx.config, concurrency: 8 });
    try {
      await enqueue(ctx, 'big', rows('big', 5000));
      await waitFor('the big campaign to be under way', async () => (await bigDone()) >= 100);
      // Measured in rows of the big campaign done meanwhile, not in seconds: a busy machine slows both alike.
      // Counted from when the enqueue returns: the feeders queue nothing of a campaign before that.
      await enqueue(ctx, 'urgent', rows('urgent', 100), PRIORITIES.high);
      const atUrgent = await bigDone();
      await completed(ctx, 'urgent');
      const duringUrgent = (await bigDone()) - atUrgent;
      await enqueue(ctx, 'fair', rows('fair', 100));
      const atFair = await bigDone();
      await completed(ctx, 'fair');
      const duringFair = (await bigDone()) - atFair;
      // Ahead of the urgent rows were only the big one's jobs already taken (concurrency 8, and those waiting
      // for the limiter); first in, first out, it would have waited for the big one's 4900 rows left.
      expect(duringUrgent, 'rows of the big campaign done while the urgent one ran').toBeLessThan(40);
      // The fair one waits behind at most one window of the big one, then they take turns: about as many big
      // rows as its own 100 go meanwhile, not the 4800 or so left.
      expect(duringFair, 'rows of the big campaign done while the fair one ran').toBeLessThanOrEqual(
        WINDOW + 150,
      );
      expect(duringFair, 'the big one kept its share').toBeGreaterThan(25);
      expect((await ctx.store.get('big'))!.state).not.toBe('completed');
    } finally {
      await worker.close();
    }
  });
});
