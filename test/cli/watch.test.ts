/**
 * `wxacode watch` follows a campaign that other processes work on: here a CodeWorker in this test process, or
 * rows settled straight in the store as a fleet would settle them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { CampaignStore, slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { type CliResult, runCli, startCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxwatch0000000001';
const SECRET = 'watch-secret-value';
const prefix = testPrefix();

let redis: Redis;
let store: CampaignStore;
let mock: MockServer;
let dir: string;
let env: Record<string, string>;
let config: Config;
let storage: Storage;

async function enqueue(campaign: string, values: string[]): Promise<void> {
  await enqueueCampaign({
    redis,
    prefix,
    storage,
    campaign,
    appid: APPID,
    options: codeOptions({ kind: 'unlimited' }),
    input: () => values,
  });
}

/** Queue a campaign's rows (one chunk of them) as a worker's feeder would; answers each value's slot. */
async function feed(campaign: string, values: string[]): Promise<Map<string, string>> {
  const rows = values.map((value, row) => ({ slot: slotOf({ chunk: 0, row }), value }));
  expect(await store.feed(campaign, { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, rows)).toBe(true);
  return new Map(rows.map(({ slot, value }) => [value, slot]));
}

beforeAll(async () => {
  redis = connect();
  store = new CampaignStore(redis, prefix);
  mock = await startMockServer({ apps: { [APPID]: SECRET }, rateLimit: { count: 40, durationMs: 1000 } });
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-watch-'));
  env = {
    REDIS_URL: testRedisUrl(),
    WXACODE_PREFIX: prefix,
    WECHAT_APPID: APPID,
    WECHAT_SECRET: SECRET,
    WECHAT_API_BASE_URL: mock.url,
    WXACODE_RATE_LIMIT: '40/1s',
    WXACODE_STORAGE: dir,
  };
  config = loadConfig(env);
  storage = createStorage(config);
});

afterAll(async () => {
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await storage.close();
  await mock.close();
  await rm(dir, { recursive: true, force: true });
});

describe('wxacode watch', () => {
  it('shows progress while a worker generates the campaign, and exits 0 with the manifest when all is done', async () => {
    await enqueue(
      'fleet',
      Array.from({ length: 40 }, (_, i) => `w-${i}`),
    );
    const watch = startCli(['watch', 'fleet', '--interval', '1'], { env });
    // It watches before any work starts, and keeps watching until the campaign completes.
    await waitFor('the first progress line', () => watch.output.stderr.includes('campaign fleet: 0 done'));
    const worker = await CodeWorker.start({ config, concurrency: 4 });
    let result: CliResult;
    try {
      result = await watch.done;
    } finally {
      await worker.close();
    }
    const { code, stdout, stderr } = result;
    expect(code).toBe(0);
    expect(stderr).toMatch(/^campaign fleet: 0 done, 0 failed of 40 \(0%\) · ETA --:--$/m);
    expect(stderr).toMatch(/^campaign fleet: 40 done, 0 failed of 40 \(100%\) · [\d,]+\/min · completed$/m);
    expect(stdout).toContain('campaign fleet completed: 40 codes\n');
    expect(stdout).toContain(`manifest: file://${path.join(dir, APPID, 'manifests', 'fleet.csv')}\n`);
  });

  it('exits 1 when the campaign completes with failed rows', async () => {
    await enqueue('some-failed', ['f-1', 'f-2', 'f-3']);
    const slot = await feed('some-failed', ['f-1', 'f-2', 'f-3']);
    await store.markRow('some-failed', slot.get('f-1')!, { status: 'done' });
    await store.markRow('some-failed', slot.get('f-2')!, {
      status: 'failed',
      errcode: 40169,
      errmsg: 'invalid scene',
    });
    await store.markRow('some-failed', slot.get('f-3')!, { status: 'done' });
    const result = await runCli(['watch', 'some-failed'], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('campaign some-failed completed with 1 failed row of 3');
    expect(result.stderr).toContain('`wxacode retry some-failed` queues them again');
  });

  it('exits 1 with the errcode when the campaign stops', async () => {
    await enqueue('stopped', ['s-1', 's-2']);
    await store.stop('stopped', 45029, 'qrcode count out of limit');
    const result = await runCli(['watch', 'stopped'], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('WeChat answered errcode 45029 (qrcode count out of limit)');
  });

  it('exits 130 on SIGINT while the campaign is still running, and leaves it as it was', async () => {
    await enqueue('left-running', ['l-1', 'l-2']);
    const watch = startCli(['watch', 'left-running', '--interval', '1'], { env });
    await waitFor('the first progress line', () =>
      watch.output.stderr.includes('campaign left-running: 0 done'),
    );
    watch.child.kill('SIGINT');
    const { code, signal } = await watch.done;
    expect({ code, signal }).toEqual({ code: 130, signal: null });
    expect(await store.get('left-running')).toMatchObject({ state: 'active', done: 0, failed: 0 });
  });

  it('exits 2 for a campaign that does not exist', async () => {
    const result = await runCli(['watch', 'nobody-made-this'], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('campaign nobody-made-this does not exist');
  });
});
