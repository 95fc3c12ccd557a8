/**
 * Whole campaigns on real Redis, s3rver and the mock WeChat server: enqueue → BullMQ → limiter → client →
 * storage → manifest.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus, retryCampaign } from '../../src/campaign/operations.js';
import { EnqueueError, enqueueCampaign } from '../../src/campaign/producer.js';
import { jobsFor, queueName } from '../../src/campaign/queue.js';
import { recordKeys, recordRows } from '../../src/campaign/record.js';
import { CampaignStore, slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, objectKey, type Storage } from '../../src/storage/index.js';
import { type CodeOptions, codeOptions } from '../../src/wechat/params.js';
import { runCli, spawnCli } from '../../test-support/cli.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { waitFor } from '../../test-support/wait.js';
import { busiestWindow } from '../../test-support/windows.js';
import { s3Keys, WorkerFleet } from '../helpers/chaos.js';
import { decodeImage, expectedCodeText } from '../helpers/qr.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxe2e0000000000001';
const SECRET = 'e2e-secret-value';

let redis: Redis;
let s3: TestS3;
let mock: MockServer;
let dir: string;
const prefixes: string[] = [];
const storages: Storage[] = [];

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

interface Ctx {
  prefix: string;
  config: Config;
  store: CampaignStore;
  storage: Storage;
}

function setup(extra: Record<string, string> = {}): Ctx {
  const prefix = testPrefix();
  prefixes.push(prefix);
  const config = loadConfig(env(prefix, extra));
  const storage = createStorage(config);
  storages.push(storage);
  return { prefix, config, store: new CampaignStore(redis, prefix), storage };
}

async function inputFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

async function settled(store: CampaignStore, campaign: string) {
  return waitFor(
    `campaign ${campaign} to settle`,
    async () => {
      const s = await campaignStatus(store, campaign);
      // A completed campaign is settled once its manifest is stored, as README tells users to wait for it.
      return (s.state === 'stopped' || (s.state === 'completed' && s.manifest !== undefined)) && s;
    },
    { timeoutMs: 90_000 },
  );
}

/** Codes each `wxacode worker` of a fleet generated, read from the /metrics it serves on `--metrics-port 0`. */
async function generatedPerWorker(output: string): Promise<number[]> {
  const urls = output
    .split('\n')
    .filter((line) => line.includes('"msg":"metrics server listening"'))
    .map((line) => (JSON.parse(line) as { url: string }).url);
  return Promise.all(
    urls.map(async (url) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const sample = new RegExp(
        `^wxacode_codes_generated_total\\{appid="${APPID}",kind="unlimited"\\} (\\d+)$`,
        'm',
      );
      return Number(sample.exec(text)?.[1] ?? 0);
    }),
  );
}

/** Calls in each second from the first. */
function perSecond(times: number[]): number[] {
  const counts: number[] = [];
  for (const at of times) {
    const second = Math.floor((at - times[0]!) / 1000);
    counts[second] = (counts[second] ?? 0) + 1;
  }
  return Array.from(counts, (count) => count ?? 0);
}

/** The stored image of a row decodes to the code of that row. */
async function expectStoredCode(config: Config, options: CodeOptions, value: string): Promise<void> {
  const storage = createStorage(config);
  const body = await storage.get(objectKey({ appid: APPID, options, value }));
  expect(body, `stored image for ${value}`).toBeDefined();
  expect(decodeImage(body!)).toBe(expectedCodeText(APPID, options, value));
  await storage.close();
}

/** The rows of a campaign's record, in input order, with their status. */
async function rowsOf(ctx: Ctx, campaign: string) {
  const meta = (await ctx.store.get(campaign))!;
  const rows = [];
  for await (const batch of recordRows(ctx.store, ctx.storage, meta)) rows.push(...batch);
  return rows;
}

async function enqueue(
  ctx: Ctx,
  campaign: string,
  file: string,
  options: CodeOptions,
  extra: Partial<Parameters<typeof enqueueCampaign>[0]> = {},
) {
  return enqueueCampaign({
    redis,
    prefix: ctx.prefix,
    storage: ctx.storage,
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
  await Promise.all(storages.map((storage) => storage.close()));
  redis.disconnect();
  await mock.close();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a campaign end to end', () => {
  it('two worker processes drain a campaign at the cap without exceeding it, both take part, and every image is its own scene', async () => {
    const ctx = setup();
    const rows = 150;
    const scenes = Array.from({ length: rows }, (_, i) => `id=${i}&src=e2e`);
    const file = await inputFile('two-workers.csv', `scene\n${scenes.join('\n')}\n`);
    // The mock's cheapest image (a 280 px transparent PNG), so that on a busy machine the pace is the limiter's.
    const options = codeOptions({
      kind: 'unlimited',
      page: 'pages/item/detail',
      width: 280,
      isHyaline: true,
    });
    // The time the cap itself imposes on the campaign (env(): 40 calls a second); a limiter spacing calls
    // several times too far apart, or a pipeline that cannot keep up with it, takes longer than three times that.
    const rate = loadConfig(env(ctx.prefix)).rateLimit;
    const capLimitedMs = (rows / rate.count) * rate.durationMs;

    mock.reset();
    // Both workers are running before the campaign exists, so each can take part from the first job, and the
    // clock starts with the campaign rather than with the processes.
    const fleet = new WorkerFleet(env(ctx.prefix), ['worker', '--concurrency', '6', '--metrics-port', '0']);
    await fleet.start(2);
    const { elapsedMs, generated } = await fleet.during(async () => {
      const started = Date.now();
      const result = await enqueue(ctx, 'two-workers', file, options);
      expect(result).toMatchObject({ enqueued: rows, duplicates: 0, invalid: 0, total: rows });
      const status = await settled(ctx.store, 'two-workers');
      const elapsedMs = Date.now() - started;
      expect(status).toMatchObject({ state: 'completed', total: rows, done: rows, failed: 0, pending: 0 });
      return { elapsedMs, generated: await generatedPerWorker(fleet.output) };
    });

    // Both processes took part, and between them generated each code once.
    expect(generated).toHaveLength(2);
    for (const count of generated) expect(count).toBeGreaterThan(0);
    expect(generated[0]! + generated[1]!).toBe(rows);

    const stats = mock.stats(APPID);
    expect(stats.images).toBe(rows);
    // Throughput: from the first call WeChat saw to the last, the pace the limiter sets, within three times
    // what the cap allows (the process start-up and the final bookkeeping are not the limiter's to answer for).
    const callSpanMs = stats.callTimes.at(-1)! - stats.callTimes[0]!;
    const gaps = stats.callTimes.slice(1).map((at, i) => at - stats.callTimes[i]!);
    expect(
      callSpanMs,
      `${rows} calls at ${rate.count}/${rate.durationMs} ms take ${capLimitedMs} ms at the cap; enqueue to completed took ${elapsedMs} ms, longest gap between calls ${Math.max(...gaps)} ms, calls per second ${JSON.stringify(perSecond(stats.callTimes))}`,
    ).toBeLessThanOrEqual(3 * capLimitedMs);
    // The cap held in every window after the first: the first calls of freshly started processes may bunch on a
    // loaded machine (README, Reliability), and WeChat's own window has more slack than this scaled one.
    const firstWindowEnds = stats.callTimes[0]! + rate.durationMs;
    expect(busiestWindow(stats.callTimes, rate.durationMs, firstWindowEnds).calls).toBeLessThanOrEqual(
      rate.count,
    );
    for (const scene of scenes) await expectStoredCode(ctx.config, options, scene);

    const manifest = await ctx.storage.get(`${APPID}/manifests/two-workers.csv`);
    const lines = manifest!.toString().trim().split('\n');
    expect(lines[0]).toBe('scene,status,url,key,errcode,errmsg');
    expect(lines).toHaveLength(rows + 1);
    expect(lines[1]).toContain('id=0&src=e2e,done,');
    // In input order, however the two workers interleaved the rows.
    expect(lines.slice(1).map((line) => line.split(',').slice(0, 2))).toEqual(scenes.map((s) => [s, 'done']));
  }, 120_000);

  it('loses nothing when a worker is killed with SIGKILL mid-run', async () => {
    const ctx = setup();
    const scenes = Array.from({ length: 80 }, (_, i) => `kill-${i}`);
    const file = await inputFile('kill.txt', `${scenes.join('\n')}\n`);
    const options = codeOptions({ kind: 'unlimited' });
    await enqueue(ctx, 'killed', file, options);
    const victim = spawnCli(['worker', '--concurrency', '8'], { env: env(ctx.prefix) });
    const victimClosed = new Promise((r) => victim.on('close', r));
    try {
      await waitFor('some codes', async () => (await campaignStatus(ctx.store, 'killed')).done >= 20);
    } finally {
      // Killed whatever happens, so that a failure here does not leave it calling WeChat in later tests.
      victim.kill('SIGKILL');
      await victimClosed;
    }
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
  }, 120_000);

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
    // `export` lists a stopped campaign's rows too, in input order, each still to do.
    const exported = await runCli(['export', 'bad-page', '--format', 'jsonl'], { env: env(ctx.prefix) });
    expect(exported.code, exported.stderr).toBe(0);
    const listed = exported.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { scene: string; status: string });
    expect(listed.map(({ scene, status }) => [scene, status])).toEqual(rows.map((r) => [r, 'pending']));

    // Once the page is published, retry resumes the campaign and it completes.
    mock.configure({ publishedPages: null });
    const retried = await retryCampaign(ctx.store, redis, 'bad-page', ctx.storage);
    expect(retried.requeued).toBe(60);
    const worker2 = await CodeWorker.start({ config: ctx.config, concurrency: 4 });
    try {
      expect(await settled(ctx.store, 'bad-page')).toMatchObject({ state: 'completed', done: 60 });
    } finally {
      await worker2.close();
      mock.configure({ publishedPages: ['pages/index/index', 'pages/item/detail'] });
    }
  }, 120_000);

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
      expect(status.done).toBe(5);
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
      storage: ctx.storage,
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

  it('fails a row with its last reason once BullMQ has used up its attempts on transient errors, and retry does it again', async () => {
    const ctx = setup();
    const file = await inputFile('busy.txt', 'always-busy\n');
    await enqueue(ctx, 'busy', file, codeOptions({ kind: 'unlimited' }));
    // Fed here as a feeder would, with a short retry schedule, so the test does not wait minutes for BullMQ's
    // backoff; the workers' feeders find the cursor past the row.
    const meta = (await ctx.store.get('busy'))!;
    const rows = [{ slot: slotOf({ chunk: 0, row: 0 }), value: 'always-busy' }];
    expect(await ctx.store.feed('busy', meta.cursor, { chunk: 1, row: 0 }, rows)).toBe(true);
    const queue = new Queue(queueName(APPID), { connection: redis, prefix: ctx.prefix });
    await queue.addBulk(
      jobsFor('busy', meta.priority, rows).map((job) => ({
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
      expect(await rowsOf(ctx, 'busy')).toEqual([
        {
          value: 'always-busy',
          row: {
            status: 'failed',
            errcode: -1,
            errmsg: expect.stringMatching(/system error.*\(after 3 attempts\)$/),
          },
        },
      ]);
    } finally {
      await worker.close();
      mock.configure({ faults: {} });
    }

    // The failed row goes back to the window, its job is added again, and this time it is done.
    const retried = await retryCampaign(ctx.store, redis, 'busy', ctx.storage);
    expect(retried.requeued).toBe(1);
    expect(await ctx.store.get('busy')).toMatchObject({ state: 'active', failed: 0, queued: 1 });
    const worker2 = await CodeWorker.start({ config: ctx.config });
    try {
      expect(await settled(ctx.store, 'busy')).toMatchObject({ state: 'completed', done: 1, failed: 0 });
    } finally {
      await worker2.close();
    }
    expect(await rowsOf(ctx, 'busy')).toEqual([{ value: 'always-busy', row: { status: 'done' } }]);
    const failedLeft = [];
    for await (const batch of ctx.store.failedRows('busy')) failedLeft.push(...batch);
    expect(failedLeft).toEqual([]);
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
    // The whole bucket: an object that left the prefix would not carry it in its key. Every test of this file
    // stores under a prefix of its own, and nothing else writes to this S3 server.
    const all = await s3Keys(s3, '');
    expect(all.filter((key) => !prefixes.some((p) => key.startsWith(`${p}/`)))).toEqual([]);
    const keys = all.filter((key) => key.startsWith(`${ctx.prefix}/`));
    const record = await recordKeys(ctx.store, { id: 's3-prefix', appid: APPID });
    expect(record).toHaveLength(1);
    // Two codes, the campaign's record, the manifest, and the worker's write-check probe.
    expect(keys.sort()).toEqual(
      [
        `${ctx.prefix}/.wxacode-write-check`,
        `${ctx.prefix}/${APPID}/manifests/s3-prefix.csv`,
        `${ctx.prefix}/${record[0]}`,
        ...['../escape', 'plain'].map(
          (v) => `${ctx.prefix}/${objectKey({ appid: APPID, options, value: v })}`,
        ),
      ].sort(),
    );
  });
});
