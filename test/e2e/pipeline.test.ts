/**
 * Whole campaigns on real Redis, s3rver and the mock WeChat server: enqueue → BullMQ → limiter → client →
 * storage → manifest.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus, retryCampaign } from '../../src/campaign/operations.js';
import { EnqueueError, enqueueCampaign } from '../../src/campaign/producer.js';
import { jobsFor, queueName } from '../../src/campaign/queue.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { type Config, loadConfig } from '../../src/config.js';
import { codeContent } from '../../src/mock/content.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, objectKey } from '../../src/storage/index.js';
import { type CodeOptions, codeOptions, requestBody } from '../../src/wechat/params.js';
import { spawnCli } from '../../test-support/cli.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { waitFor } from '../../test-support/wait.js';
import { decodeImage } from '../helpers/qr.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxe2e0000000000001';
const SECRET = 'e2e-secret-value';

let redis: Redis;
let s3: TestS3;
let mock: MockServer;
let dir: string;
const prefixes: string[] = [];

function env(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: testRedisUrl(),
    WXACODE_PREFIX: prefix,
    WECHAT_APPID: APPID,
    WECHAT_SECRET: SECRET,
    WECHAT_API_BASE_URL: mock.url,
    WXACODE_RATE_LIMIT: '40/1s',
    WXACODE_STORAGE: `s3://${s3.bucket}/${prefix}`,
    ...s3.env,
    ...extra,
  };
}

function setup(extra: Record<string, string> = {}): { prefix: string; config: Config; store: CampaignStore } {
  const prefix = testPrefix();
  prefixes.push(prefix);
  const config = loadConfig(env(prefix, extra));
  return { prefix, config, store: new CampaignStore(redis, prefix) };
}

async function inputFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

async function settled(store: CampaignStore, campaign: string) {
  return waitFor(`campaign ${campaign} to settle`, async () => {
    const s = await campaignStatus(store, campaign);
    return (s.state === 'completed' || s.state === 'stopped') && s;
  });
}

/** The stored image of a row decodes to the code of that row. */
async function expectStoredCode(config: Config, options: CodeOptions, value: string): Promise<void> {
  const storage = createStorage(config);
  const body = await storage.get(objectKey({ appid: APPID, options, value }));
  expect(body, `stored image for ${value}`).toBeDefined();
  expect(decodeImage(body!)).toBe(codeContent(APPID, options.kind, requestBody(options, value)));
  await storage.close();
}

async function enqueue(
  ctx: ReturnType<typeof setup>,
  campaign: string,
  file: string,
  options: CodeOptions,
  extra: Partial<Parameters<typeof enqueueCampaign>[0]> = {},
) {
  return enqueueCampaign({
    redis,
    prefix: ctx.prefix,
    campaign,
    appid: APPID,
    options,
    input: file,
    ...extra,
  });
}

beforeAll(async () => {
  redis = connect();
  s3 = await startS3();
  mock = await startMockServer({
    apps: { [APPID]: SECRET },
    rateLimit: { count: 40, durationMs: 1000 },
    publishedPages: ['pages/index/index', 'pages/item/detail'],
  });
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-e2e-'));
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(redis, prefix);
  redis.disconnect();
  await mock.close();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a campaign end to end', () => {
  it('two worker processes drain a campaign at the cap without exceeding it, and every image is its own scene', async () => {
    const ctx = setup();
    const scenes = Array.from({ length: 150 }, (_, i) => `id=${i}&src=e2e`);
    const file = await inputFile('two-workers.csv', `scene\n${scenes.join('\n')}\n`);
    const options = codeOptions({ kind: 'unlimited', page: 'pages/item/detail' });
    const result = await enqueue(ctx, 'two-workers', file, options);
    expect(result).toMatchObject({ enqueued: 150, duplicates: 0, invalid: 0, total: 150 });

    mock.reset();
    const workers = [0, 1].map(() => spawnCli(['worker', '--concurrency', '6'], { env: env(ctx.prefix) }));
    try {
      const status = await settled(ctx.store, 'two-workers');
      expect(status).toMatchObject({ state: 'completed', total: 150, done: 150, failed: 0, pending: 0 });
    } finally {
      for (const w of workers) w.kill('SIGTERM');
      await Promise.all(workers.map((w) => new Promise((r) => w.on('close', r))));
    }
    expect(workers.map((w) => w.exitCode)).toEqual([0, 0]);

    const stats = mock.stats(APPID);
    expect(stats.images).toBe(150);
    expect(stats.rateLimited).toBe(0);
    expect(stats.maxInWindow).toBeLessThanOrEqual(40);
    // Both processes took part: the rate would not be reached by one idle process otherwise.
    for (const scene of scenes) await expectStoredCode(ctx.config, options, scene);

    const manifest = await createStorage(ctx.config).get(`${APPID}/manifests/two-workers.csv`);
    const lines = manifest!.toString().trim().split('\n');
    expect(lines[0]).toBe('scene,status,url,key,errcode,errmsg');
    expect(lines).toHaveLength(151);
    expect(lines[1]).toContain('id=0&src=e2e,done,');
  });

  it('loses nothing when a worker is killed with SIGKILL mid-run', async () => {
    const ctx = setup();
    const scenes = Array.from({ length: 80 }, (_, i) => `kill-${i}`);
    const file = await inputFile('kill.txt', `${scenes.join('\n')}\n`);
    const options = codeOptions({ kind: 'unlimited' });
    await enqueue(ctx, 'killed', file, options);
    const victim = spawnCli(['worker', '--concurrency', '8'], { env: env(ctx.prefix) });
    await waitFor('some codes', async () => (await campaignStatus(ctx.store, 'killed')).done >= 20);
    victim.kill('SIGKILL');
    await new Promise((r) => victim.on('close', r));
    expect((await campaignStatus(ctx.store, 'killed')).state).toBe('active');

    const survivor = spawnCli(['worker'], { env: env(ctx.prefix) });
    try {
      const status = await settled(ctx.store, 'killed');
      expect(status).toMatchObject({ state: 'completed', total: 80, done: 80, failed: 0, pending: 0 });
    } finally {
      survivor.kill('SIGTERM');
      await new Promise((r) => survivor.on('close', r));
    }
    for (const scene of scenes) await expectStoredCode(ctx.config, options, scene);
  });

  it('costs no calls to re-run the same scenes as a new campaign', async () => {
    const ctx = setup();
    const file = await inputFile('rerun.txt', 'r1\nr2\nr3\n');
    const options = codeOptions({ kind: 'unlimited', page: 'pages/index/index' });
    const worker = await CodeWorker.start({ config: ctx.config });
    try {
      await enqueue(ctx, 'first-run', file, options);
      await settled(ctx.store, 'first-run');
      const calls = mock.stats(APPID).codeCalls;
      await enqueue(ctx, 'second-run', file, options);
      const status = await settled(ctx.store, 'second-run');
      expect(status).toMatchObject({ state: 'completed', done: 3 });
      expect(mock.stats(APPID).codeCalls).toBe(calls);
    } finally {
      await worker.close();
    }
  });

  it('counts duplicates and refuses a file with invalid rows unless told to skip them', async () => {
    const ctx = setup();
    const options = codeOptions({ kind: 'unlimited' });
    const file = await inputFile(
      'mixed.csv',
      'scene\nok-1\nok-2\nok-1\nhas space\n\nwayyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyytoolong\n',
    );
    const invalid: { line: number; problem: string }[] = [];
    await expect(enqueue(ctx, 'mixed', file, options, { onInvalid: (r) => invalid.push(r) })).rejects.toThrow(
      EnqueueError,
    );
    expect(invalid.map((r) => r.line)).toEqual([5, 7]);
    expect(invalid[0]!.problem).toContain('a space');
    expect(await ctx.store.get('mixed')).toBeUndefined();

    const result = await enqueue(ctx, 'mixed', file, options, { skipInvalid: true });
    expect(result).toMatchObject({ enqueued: 2, duplicates: 1, invalid: 2, total: 2 });
    const again = await enqueue(ctx, 'mixed', file, options, { skipInvalid: true });
    expect(again).toMatchObject({ enqueued: 0, duplicates: 3, total: 2 });
  });

  it('refuses to enqueue into an existing campaign with other options', async () => {
    const ctx = setup();
    const file = await inputFile('conflict.txt', 'c1\n');
    await enqueue(ctx, 'conflict', file, codeOptions({ kind: 'unlimited', width: 430 }));
    await expect(
      enqueue(ctx, 'conflict', file, codeOptions({ kind: 'unlimited', width: 600 })),
    ).rejects.toThrow(/already exists .*"width":430/);
  });

  it('stops a campaign on 41030 within a few calls while a healthy campaign beside it completes', async () => {
    const ctx = setup();
    const rows = Array.from({ length: 60 }, (_, i) => `row-${i}`);
    const file = await inputFile('pages.txt', `${rows.join('\n')}\n`);
    await enqueue(ctx, 'bad-page', file, codeOptions({ kind: 'unlimited', page: 'pages/missing/index' }));
    await enqueue(ctx, 'good-page', file, codeOptions({ kind: 'unlimited', page: 'pages/index/index' }));
    mock.reset();
    const worker = await CodeWorker.start({ config: ctx.config, concurrency: 4 });
    try {
      const bad = await settled(ctx.store, 'bad-page');
      expect(bad.state).toBe('stopped');
      expect(bad.stopped).toMatchObject({ errcode: 41030 });
      expect(bad.pending).toBe(60);
      const good = await settled(ctx.store, 'good-page');
      expect(good).toMatchObject({ state: 'completed', done: 60 });
    } finally {
      await worker.close();
    }
    // Only calls already waiting for the limiter when the first 41030 came back could be spent.
    expect(mock.stats(APPID).errors['41030']).toBeLessThanOrEqual(4);

    // Once the page is published, retry resumes the campaign and it completes.
    mock.configure({ publishedPages: null });
    const retried = await retryCampaign(ctx.store, redis, 'bad-page');
    expect(retried.requeued).toBe(60);
    const worker2 = await CodeWorker.start({ config: ctx.config, concurrency: 4 });
    try {
      expect(await settled(ctx.store, 'bad-page')).toMatchObject({ state: 'completed', done: 60 });
    } finally {
      await worker2.close();
      mock.configure({ publishedPages: ['pages/index/index', 'pages/item/detail'] });
    }
  });

  it('stops A/C work for the app when the lifetime quota is spent (45029)', async () => {
    const ctx = setup();
    // No A or C code was made before this test: the app has 5 left.
    mock.configure({ acTotalLimit: 5 });
    const paths = Array.from({ length: 12 }, (_, i) => `pages/item/detail?id=${i}`);
    const file = await inputFile('paths.txt', `${paths.join('\n')}\n`);
    await enqueue(ctx, 'quota-a', file, codeOptions({ kind: 'code' }));
    const worker = await CodeWorker.start({ config: ctx.config, concurrency: 1 });
    try {
      const status = await settled(ctx.store, 'quota-a');
      expect(status.state).toBe('stopped');
      expect(status.stopped?.errcode).toBe(45029);
      expect(status.done).toBeGreaterThanOrEqual(5);
      const calls = mock.stats(APPID).codeCalls;
      // Another A/C campaign of the same app stops without calling WeChat.
      await enqueue(ctx, 'quota-c', file, codeOptions({ kind: 'qrcode' }));
      const other = await settled(ctx.store, 'quota-c');
      expect(other.stopped?.errcode).toBe(45029);
      expect(mock.stats(APPID).codeCalls).toBe(calls);
    } finally {
      await worker.close();
      mock.configure({ acTotalLimit: 100_000 });
    }
  });

  it('keeps apps apart: one app refused by WeChat (40013) never stalls another', async () => {
    const other = 'wxe2e0000000000002';
    const ctx = setup({ WECHAT_APPS: `${other}:not-the-secret` });
    const file = await inputFile('apps.txt', 'app-1\napp-2\napp-3\n');
    const options = codeOptions({ kind: 'unlimited' });
    await enqueue(ctx, 'good-app', file, options);
    await enqueueCampaign({
      redis,
      prefix: ctx.prefix,
      campaign: 'bad-app',
      appid: other,
      options,
      input: file,
    });
    const worker = await CodeWorker.start({ config: ctx.config });
    try {
      expect(await settled(ctx.store, 'good-app')).toMatchObject({ state: 'completed', done: 3 });
      const bad = await waitFor('the refused app to be recorded', async () => {
        const s = await campaignStatus(ctx.store, 'bad-app');
        return s.appStopped && s;
      });
      // The refused app's rows wait untouched for its credentials to be fixed.
      expect(bad).toMatchObject({
        state: 'active',
        done: 0,
        failed: 0,
        pending: 3,
        appStopped: { errcode: 40013 },
      });
    } finally {
      await worker.close();
    }
  });

  it('fails a row with its last reason once BullMQ has used up its attempts on transient errors', async () => {
    const ctx = setup();
    const file = await inputFile('busy.txt', 'always-busy\n');
    await enqueue(ctx, 'busy', file, codeOptions({ kind: 'unlimited' }));
    // The same job with a short retry schedule, so the test does not wait minutes for BullMQ's backoff.
    const queue = new Queue(queueName(APPID), { connection: redis, prefix: ctx.prefix });
    await queue.obliterate({ force: true });
    await queue.addBulk(
      jobsFor('busy', ['always-busy']).map((job) => ({
        ...job,
        opts: { ...job.opts, attempts: 3, backoff: { type: 'fixed', delay: 10 } },
      })),
    );
    await queue.close();
    mock.configure({ faults: { busy: 1 } });
    const worker = await CodeWorker.start({ config: ctx.config });
    try {
      const status = await settled(ctx.store, 'busy');
      expect(status).toMatchObject({ state: 'completed', done: 0, failed: 1, pending: 0 });
      expect(await ctx.store.rowStatus('busy', 'always-busy')).toEqual({
        status: 'failed',
        errcode: -1,
        errmsg: expect.stringMatching(/system error.*\(after 3 attempts\)$/),
      });
    } finally {
      await worker.close();
      mock.configure({ faults: {} });
    }
  });

  it('keeps hostile scenes inside the storage prefix', async () => {
    const folder = await mkdtemp(path.join(dir, 'local-'));
    const ctx = setup({ WXACODE_STORAGE: path.join(folder, 'codes') });
    const hostile = ['../x', '..', '.', '/', '?', '#', 'a/../../b', '~', '../../../../etc/passwd'];
    const file = await inputFile('hostile.txt', `${hostile.join('\n')}\n`);
    const options = codeOptions({ kind: 'unlimited' });
    await enqueue(ctx, 'hostile', file, options);
    const worker = await CodeWorker.start({ config: ctx.config });
    try {
      expect(await settled(ctx.store, 'hostile')).toMatchObject({ state: 'completed', done: hostile.length });
    } finally {
      await worker.close();
    }
    expect(readdirSync(folder)).toEqual(['codes']);
    const files = readdirSync(path.join(folder, 'codes'), { recursive: true }) as string[];
    const images = files.filter((f) => f.endsWith('.jpg'));
    expect(images).toHaveLength(hostile.length);
    for (const scene of hostile) await expectStoredCode(ctx.config, options, scene);
  });
});

describe('with S3 listing', () => {
  it('stores every object under the configured key prefix', async () => {
    const ctx = setup();
    const file = await inputFile('s3-prefix.txt', '../escape\nplain\n');
    const options = codeOptions({ kind: 'unlimited' });
    await enqueue(ctx, 's3-prefix', file, options);
    const worker = await CodeWorker.start({ config: ctx.config });
    try {
      await settled(ctx.store, 's3-prefix');
    } finally {
      await worker.close();
    }
    const client = s3.client();
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!).filter((k) => k.includes(ctx.prefix));
    // Two codes, the manifest, and the worker's write-check probe: all under the prefix, none elsewhere.
    expect(keys.sort()).toEqual(
      [
        `${ctx.prefix}/.wxacode-write-check`,
        `${ctx.prefix}/${APPID}/manifests/s3-prefix.csv`,
        ...['../escape', 'plain'].map(
          (v) => `${ctx.prefix}/${objectKey({ appid: APPID, options, value: v })}`,
        ),
      ].sort(),
    );
    client.destroy();
  });
});
