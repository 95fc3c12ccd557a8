/**
 * The worker's metrics and health endpoints after real runs: an in-process CodeWorker with the metrics hooks,
 * the mock WeChat server, a local storage folder and the harness Redis (a private one for /healthz).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Feeder } from '../src/campaign/feeder.js';
import { CampaignLifecycle } from '../src/campaign/lifecycle.js';
import { campaignStatus } from '../src/campaign/operations.js';
import { enqueueCampaign } from '../src/campaign/producer.js';
import { openQueue } from '../src/campaign/queue.js';
import { CHUNK_CONTENT_TYPE, encodeChunk } from '../src/campaign/record.js';
import type { CampaignStore } from '../src/campaign/store.js';
import { CodeWorker, type CodeWorkerOptions } from '../src/campaign/worker.js';
import { type Config, loadConfig } from '../src/config.js';
import { WorkerMetrics } from '../src/metrics.js';
import { type MetricsServer, startMetricsServer, type WorkerState } from '../src/metrics-server.js';
import { createStorage, recordKey, type Storage } from '../src/storage/index.js';
import { codeOptions } from '../src/wechat/params.js';
import { removeDir, startRedis } from '../test-support/redis-server.js';
import { waitFor } from '../test-support/wait.js';
import { useLocalStack } from './helpers/stack.js';

const APPID = 'wxmetrics000000001';
const OTHER = 'wxmetrics000000002';
const SECRET = 'metrics-secret';
const OPTIONS = codeOptions({ kind: 'unlimited' });

const stack = useLocalStack({ [APPID]: SECRET, [OTHER]: SECRET });
const { prefix } = stack;
let redis: Redis;
let store: CampaignStore;
let config: Config;
let storage: Storage;

beforeAll(() => {
  ({ redis, store } = stack);
  config = loadConfig(stack.env());
  storage = createStorage(config);
});

afterAll(async () => {
  await storage.close();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (label values here never hold quotes or commas). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]),
    );
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample with this name and these labels (others ignored); undefined when absent. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  expect(found.length, `samples of ${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}

async function scrape(server: MetricsServer): Promise<Sample[]> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

function settled(campaign: string) {
  return waitFor(
    `campaign ${campaign} to settle`,
    async () => {
      const s = await campaignStatus(store, campaign);
      return (s.state === 'completed' || s.state === 'stopped') && s;
    },
    { everyMs: 50 },
  );
}

/** A worker reporting to fresh metrics served on a free port of 127.0.0.1. */
async function observedWorker(options: Partial<CodeWorkerOptions> = {}) {
  const metrics = new WorkerMetrics({ redis, prefix, apps: [APPID] });
  const server = await startMetricsServer({ metrics, redis, state: () => 'running' });
  const worker = await CodeWorker.start({ config, concurrency: 4, hooks: metrics.hooks, ...options });
  return {
    server,
    async close() {
      await worker.close();
      await server.close();
      await metrics.close();
    },
  };
}

function enqueue(campaign: string, values: string[], appid = APPID) {
  return enqueueCampaign({ redis, prefix, storage, campaign, appid, options: OPTIONS, input: () => values });
}

describe('/metrics after a run', () => {
  const scenes = Array.from({ length: 6 }, (_, i) => `m-${i}`);

  it('counts each generated code, call, limiter wait, upload and token fetch', async () => {
    // No token cached by an earlier test of this file: this worker fetches its own.
    const cached = await redis.keys(`${prefix}:token:*`);
    if (cached.length > 0) await redis.del(...cached);
    const run = await observedWorker();
    try {
      await enqueue('first', scenes);
      expect(await settled('first')).toMatchObject({ state: 'completed', done: 6 });
      const samples = await scrape(run.server);
      const app = { appid: APPID };
      expect(value(samples, 'wxacode_codes_generated_total', { ...app, kind: 'unlimited' })).toBe(6);
      expect(value(samples, 'wxacode_codes_generated_total', { ...app, kind: 'code' })).toBe(0);
      expect(value(samples, 'wxacode_codes_already_stored_total', app)).toBe(0);
      expect(
        value(samples, 'wxacode_wechat_call_seconds_count', { ...app, kind: 'unlimited', outcome: 'image' }),
      ).toBe(6);
      expect(value(samples, 'wxacode_limiter_wait_seconds_count', app)).toBe(6);
      expect(value(samples, 'wxacode_upload_seconds_count')).toBe(6);
      expect(value(samples, 'wxacode_token_fetches_total', app)).toBe(1);
      expect(value(samples, 'wxacode_wechat_rate_limited_total', app)).toBe(0);
      expect(value(samples, 'wxacode_process_resident_memory_bytes')).toBeGreaterThan(0);
      // A completed campaign leaves the per-campaign gauges; the queue is empty.
      expect(samples.filter((s) => s.labels.campaign === 'first')).toEqual([]);
      expect(value(samples, 'wxacode_queue_jobs', { ...app, state: 'waiting' })).toBe(0);
      expect(value(samples, 'wxacode_redis_up')).toBe(1);
      // No label ever carries a row value.
      expect(samples.filter((s) => Object.values(s.labels).some((v) => v.startsWith('m-')))).toEqual([]);
    } finally {
      await run.close();
    }
  });

  it('counts rows found already stored on a re-run, without generating them again', async () => {
    // The codes are stored by a campaign of this test's own, so the test does not rely on another before it.
    const stored = Array.from({ length: 6 }, (_, i) => `again-${i}`);
    const seed = await observedWorker();
    try {
      await enqueue('again-seed', stored);
      expect(await settled('again-seed')).toMatchObject({ state: 'completed', done: 6 });
    } finally {
      await seed.close();
    }
    const run = await observedWorker();
    try {
      await enqueue('again', stored);
      expect(await settled('again')).toMatchObject({ state: 'completed', done: 6 });
      const samples = await scrape(run.server);
      expect(value(samples, 'wxacode_codes_already_stored_total', { appid: APPID })).toBe(6);
      expect(value(samples, 'wxacode_codes_generated_total', { appid: APPID, kind: 'unlimited' })).toBe(0);
      expect(value(samples, 'wxacode_wechat_call_seconds_count', { appid: APPID })).toBeUndefined();
    } finally {
      await run.close();
    }
  });

  it('counts a failed row by its errcode', async () => {
    const run = await observedWorker();
    try {
      // Enqueue validation would refuse a scene with a space, so the row goes in as a record written by hand.
      const rows = ['has space', 'fine'];
      await store.open('bad-scene', APPID, OPTIONS);
      await storage.put(recordKey(APPID, 'bad-scene', 'hand-0'), encodeChunk(rows), CHUNK_CONTENT_TYPE);
      await store.addChunk('bad-scene', APPID, { name: 'hand-0', rows: rows.length });
      await store.finishEnqueue('bad-scene');
      expect(await settled('bad-scene')).toMatchObject({ state: 'completed', done: 1, failed: 1 });
      const samples = await scrape(run.server);
      expect(value(samples, 'wxacode_codes_failed_total', { appid: APPID, reason: '40129' })).toBe(1);
      expect(
        value(samples, 'wxacode_wechat_call_seconds_count', { appid: APPID, outcome: 'errcode:40129' }),
      ).toBe(1);
      expect(value(samples, 'wxacode_codes_generated_total', { appid: APPID, kind: 'unlimited' })).toBe(1);
    } finally {
      await run.close();
    }
  });

  it('counts every 45009 the mock answered when its cap is lower than the limiter thinks', async () => {
    stack.mock.configure({ rateLimit: { count: 2, durationMs: 1000 } });
    stack.mock.reset();
    const run = await observedWorker({ rateLimitBackoffMs: 200 });
    try {
      await enqueue(
        'throttled',
        Array.from({ length: 8 }, (_, i) => `t-${i}`),
      );
      expect(await settled('throttled')).toMatchObject({ state: 'completed', done: 8 });
      const samples = await scrape(run.server);
      const refused = stack.mock.stats(APPID).rateLimited;
      expect(refused).toBeGreaterThan(0);
      expect(value(samples, 'wxacode_wechat_rate_limited_total', { appid: APPID })).toBe(refused);
      expect(
        value(samples, 'wxacode_wechat_call_seconds_count', { appid: APPID, outcome: 'errcode:45009' }),
      ).toBe(refused);
      expect(value(samples, 'wxacode_codes_failed_total', { appid: APPID, reason: '45009' })).toBeUndefined();
    } finally {
      await run.close();
      stack.mock.configure({ rateLimit: null });
    }
  });
});

describe('queue and campaign gauges', () => {
  it('report queued jobs per app and the rows and state of each campaign still running', async () => {
    // OTHER has no worker here, only a feeder as a worker runs: the jobs it queues wait.
    const metrics = new WorkerMetrics({ redis, prefix, apps: [APPID, OTHER], processMetrics: false });
    const server = await startMetricsServer({ metrics, redis, state: () => 'running' });
    const queue = openQueue(redis, prefix, OTHER);
    try {
      await enqueue('waiting', ['w-1', 'w-2', 'w-3'], OTHER);
      await enqueue('halted', ['h-1'], OTHER);
      await store.stop('halted', 41030, 'invalid page');
      const feeder = Feeder.start({
        lifecycle: new CampaignLifecycle(store, storage),
        storage,
        apps: [OTHER],
        queue: () => queue,
        window: 100,
      });
      try {
        await waitFor('the rows of the running campaign to be queued', async () => {
          const meta = await store.get('waiting');
          return meta?.queued === 3;
        });
      } finally {
        await feeder.close();
      }

      const samples = await scrape(server);
      expect(value(samples, 'wxacode_queue_jobs', { appid: OTHER, state: 'waiting' })).toBe(3);
      expect(value(samples, 'wxacode_queue_jobs', { appid: OTHER, state: 'active' })).toBe(0);
      expect(value(samples, 'wxacode_queue_jobs', { appid: OTHER, state: 'delayed' })).toBe(0);
      expect(value(samples, 'wxacode_campaign_rows', { campaign: 'waiting', status: 'pending' })).toBe(3);
      expect(value(samples, 'wxacode_campaign_rows', { campaign: 'waiting', status: 'done' })).toBe(0);
      expect(value(samples, 'wxacode_campaign_state', { campaign: 'waiting', state: 'active' })).toBe(1);
      expect(value(samples, 'wxacode_campaign_state', { campaign: 'halted', state: 'stopped' })).toBe(1);
      expect(value(samples, 'wxacode_campaign_rows', { campaign: 'halted', status: 'pending' })).toBe(1);
      expect(value(samples, 'wxacode_process_resident_memory_bytes')).toBeUndefined();
    } finally {
      await server.close();
      await metrics.close();
      await queue.close();
    }
  });
});

describe('/healthz', () => {
  it('is 200 while Redis answers and the worker runs, 503 when either is not', async () => {
    const own = await startRedis();
    const ownRedis = new Redis(own.url, { maxRetriesPerRequest: null });
    ownRedis.on('error', () => undefined);
    let state: WorkerState = 'running';
    const metrics = new WorkerMetrics({ redis: ownRedis, prefix, apps: [APPID], redisTimeoutMs: 300 });
    const server = await startMetricsServer({
      metrics,
      redis: ownRedis,
      state: () => state,
      pingTimeoutMs: 300,
    });
    const health = async () => {
      const res = await fetch(`${server.url}/healthz`);
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    };
    try {
      expect(server.host).toBe('127.0.0.1');
      expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
      expect(await health()).toEqual({ status: 200, body: { status: 'ok', redis: 'ok', worker: 'running' } });

      state = 'stopping';
      expect(await health()).toEqual({
        status: 503,
        body: { status: 'unavailable', redis: 'ok', worker: 'stopping' },
      });

      state = 'running';
      await own.stop();
      const down = await health();
      expect(down.status).toBe(503);
      expect(down.body).toMatchObject({ status: 'unavailable', worker: 'running' });
      expect(down.body.redis).toMatch(/^no answer to PING/);
      // The counters are still served, with Redis reported down.
      expect(value(await scrape(server), 'wxacode_redis_up')).toBe(0);
      expect((await fetch(`${server.url}/nothing`)).status).toBe(404);
    } finally {
      await server.close();
      await metrics.close();
      ownRedis.disconnect();
      await own.stop();
      removeDir(own.dir);
    }
  });
});
