/**
 * `wxacode run` end to end as a user runs it: a child process on the harness's Redis (REDIS_URL), a local folder
 * for storage, and the mock WeChat API of this test process, whose counters prove how many calls were made.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { runCli, startCli } from '../../test-support/cli.js';
import { freePort } from '../../test-support/redis-server.js';
import { waitFor } from '../../test-support/wait.js';
import { decodeImage } from '../helpers/qr.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxrun000000000001';
const SECRET = 'run-secret-value';

let redis: Redis;
let mock: MockServer;
let dir: string;
const prefix = testPrefix();
// Its own namespace, so that no access token cached by the other tests stands in for the wrong secret.
const refusedPrefix = testPrefix();
// Tests that leave rows queued work under prefixes of their own, out of the other runs' way.
const ownPrefixes: string[] = [];

function env(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    REDIS_URL: testRedisUrl(),
    WXACODE_PREFIX: prefix,
    WECHAT_APPID: APPID,
    WECHAT_SECRET: SECRET,
    WECHAT_APPS: undefined,
    WECHAT_APPS_FILE: undefined,
    WECHAT_API_BASE_URL: mock.url,
    WXACODE_RATE_LIMIT: '50/1s',
    WXACODE_STORAGE: path.join(dir, 'out'),
    ...extra,
  };
}

async function scenesFile(name: string, scenes: string[]): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `scene\n${scenes.join('\n')}\n`);
  return file;
}

/** Every stored image of the campaign's folder decodes to the code of its own scene. */
async function expectCodes(page: string | undefined, scenes: string[]): Promise<void> {
  const variants = path.join(dir, 'out', APPID, 'unlimited');
  const [variant, ...others] = await readdir(variants);
  expect(others).toEqual([]);
  const files = (await readdir(path.join(variants, variant!))).sort();
  expect(files).toEqual(scenes.map((scene) => `${scene}.jpg`).sort());
  for (const scene of scenes) {
    const image = await readFile(path.join(variants, variant!, `${scene}.jpg`));
    expect(decodeImage(image)).toBe(
      `wxacode|${APPID}|unlimited|page=${page ?? ''}|scene=${scene}|env=release`,
    );
  }
}

beforeAll(async () => {
  redis = connect();
  mock = await startMockServer({
    apps: { [APPID]: SECRET },
    rateLimit: { count: 50, durationMs: 1000 },
    publishedPages: ['pages/index/index', 'pages/item/detail'],
  });
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-run-'));
});

afterAll(async () => {
  await deletePrefix(redis, prefix);
  await deletePrefix(redis, refusedPrefix);
  for (const own of ownPrefixes) await deletePrefix(redis, own);
  redis.disconnect();
  await mock.close();
  await rm(dir, { recursive: true, force: true });
});

describe('wxacode run', () => {
  it('enqueues, generates every code, stores and writes the manifest, and exits 0; run again, it has nothing to do', async () => {
    const scenes = Array.from({ length: 30 }, (_, i) => `run-${i}`);
    const file = await scenesFile('done.csv', scenes);
    const output = path.join(dir, 'done-manifest.csv');
    const args = ['run', file, '--campaign', 'all-done', '--page', 'pages/item/detail', '--output', output];
    mock.reset();

    const result = await runCli(args, { env: env() });
    expect(result.stderr).toMatch(/campaign all-done: 30 done, 0 failed of 30 \(100%\).* · completed\n/);
    expect(result.code).toBe(0);
    const manifestUrl = `file://${path.join(dir, 'out', APPID, 'manifests', 'all-done.csv')}`;
    expect(result.stdout).toContain('campaign all-done completed: 30 codes\n');
    expect(result.stdout).toContain(`manifest: ${manifestUrl}\n`);
    expect(mock.stats(APPID).images).toBe(30);
    await expectCodes('pages/item/detail', scenes);

    const written = (await readFile(output, 'utf8')).trim().split('\n');
    expect(written[0]).toBe('scene,status,url,key,errcode,errmsg');
    expect(written.slice(1).map((line) => line.split(',').slice(0, 2).join(','))).toEqual(
      scenes.map((scene) => `${scene},done`),
    );
    expect(await readFile(new URL(manifestUrl), 'utf8')).toBe(await readFile(output, 'utf8'));

    const again = await runCli(args, { env: env() });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('enqueued 0, duplicates 30');
    expect(again.stdout).toContain('campaign all-done completed: 30 codes');
    expect(mock.stats(APPID).codeCalls).toBe(30);
  }, 60_000);

  it('exits 1 with the errcode when WeChat stops the campaign, and says how to resume', async () => {
    const file = await scenesFile('stopped.csv', ['s-1', 's-2', 's-3']);
    const result = await runCli(['run', file, '--campaign', 'no-page', '--page', 'pages/gone/away'], {
      env: env(),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('campaign no-page stopped: WeChat answered errcode 41030 (invalid page');
    expect(result.stderr).toContain('0 done, 3 not generated.');
    expect(result.stderr).toContain('`wxacode retry no-page` and run the same command again');
  });

  it('exits 1 when WeChat refuses the app, leaving its rows queued', async () => {
    const file = await scenesFile('refused.csv', ['r-1', 'r-2']);
    const result = await runCli(['run', file, '--campaign', 'refused'], {
      env: env({ WECHAT_SECRET: 'not-the-secret', WXACODE_PREFIX: refusedPrefix }),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`WeChat refused app ${APPID} (errcode 40125: invalid appsecret`);
    expect(result.stderr).toContain('2 rows stay queued');
    expect(result.stderr).not.toContain('not-the-secret');
  });

  it('on SIGINT finishes the codes in flight, exits 130, and the same command resumes with each code made once', async () => {
    const scenes = Array.from({ length: 60 }, (_, i) => `int-${i}`);
    const file = await scenesFile('interrupted.csv', scenes);
    const args = ['run', file, '--campaign', 'interrupted', '--concurrency', '4'];
    const slow = env({ WXACODE_RATE_LIMIT: '20/1s', WXACODE_STORAGE: path.join(dir, 'int-out') });
    mock.reset();
    const store = new CampaignStore(redis, prefix);

    const running = startCli(args, { env: slow });
    for (;;) {
      const status = (await store.get('interrupted')) && (await campaignStatus(store, 'interrupted'));
      if (status && status.done >= 10) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    running.child.kill('SIGINT');
    const { code, stderr } = await running.done;
    expect(code).toBe(130);
    expect(stderr).toContain('SIGINT: finishing the codes in flight');
    expect(stderr).toContain('Run the same command again to resume.');
    const interrupted = await campaignStatus(store, 'interrupted');
    expect(interrupted.state).toBe('active');
    expect(interrupted.pending).toBeGreaterThan(0);
    expect(mock.stats(APPID).images).toBe(interrupted.done);

    const resumed = await runCli(args, { env: slow });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain('enqueued 0, duplicates 60');
    expect(await campaignStatus(store, 'interrupted')).toMatchObject({ state: 'completed', done: 60 });
    expect(mock.stats(APPID).images).toBe(60);
  }, 60_000);

  it('on SIGTERM finishes the codes in flight and exits 143', async () => {
    const own = testPrefix();
    ownPrefixes.push(own);
    const store = new CampaignStore(redis, own);
    const file = await scenesFile(
      'terminated.csv',
      Array.from({ length: 60 }, (_, i) => `term-${i}`),
    );
    const running = startCli(['run', file, '--campaign', 'terminated', '--concurrency', '4'], {
      env: env({
        WXACODE_PREFIX: own,
        WXACODE_RATE_LIMIT: '20/1s',
        WXACODE_STORAGE: path.join(dir, 'term-out'),
      }),
    });
    await waitFor('some codes', async () => ((await store.get('terminated'))?.done ?? 0) >= 5);
    running.child.kill('SIGTERM');
    const { code, signal, stderr } = await running.done;
    expect({ code, signal }).toEqual({ code: 143, signal: null });
    expect(stderr).toContain('SIGTERM: finishing the codes in flight');
    expect(stderr).toContain('Run the same command again to resume.');
    const status = await campaignStatus(store, 'terminated');
    expect(status).toMatchObject({ state: 'active', failed: 0 });
    expect(status.pending).toBeGreaterThan(0);
    expect(status.done + status.pending).toBe(60);
  }, 60_000);

  it('quits at once on a second signal, and the jobs it held go back to the queue', async () => {
    const own = testPrefix();
    ownPrefixes.push(own);
    const store = new CampaignStore(redis, own);
    const scenes = Array.from({ length: 6 }, (_, i) => `twice-${i}`);
    const file = await scenesFile('twice.csv', scenes);
    const settings = env({ WXACODE_PREFIX: own, WXACODE_STORAGE: path.join(dir, 'twice-out') });
    // Every call takes a minute: the first signal's graceful wait could not end before the test's timeout.
    mock.configure({ faults: { slow: 1, slowMs: 60_000 } });
    mock.reset();
    try {
      const running = startCli(['run', file, '--campaign', 'twice', '--concurrency', '2'], { env: settings });
      await waitFor('calls in flight', () => mock.stats(APPID).codeCalls >= 2);
      running.child.kill('SIGTERM');
      await waitFor('the first signal', () =>
        running.output.stderr.includes('finishing the codes in flight'),
      );
      running.child.kill('SIGTERM');
      const { code, signal } = await running.done;
      // The default disposition of the second SIGTERM ends the process.
      expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
      expect(mock.stats(APPID).images).toBe(0);
    } finally {
      mock.configure({ faults: {} });
    }
    expect(await campaignStatus(store, 'twice')).toMatchObject({ state: 'active', done: 0, pending: 6 });
    // Their locks run out and BullMQ's stalled-job check hands them to the next worker (a second's check here).
    const worker = await CodeWorker.start({ config: loadConfig(settings), stalledIntervalMs: 1000 });
    try {
      await waitFor('the campaign', async () => (await campaignStatus(store, 'twice')).state === 'completed');
    } finally {
      await worker.close();
    }
    expect(await campaignStatus(store, 'twice')).toMatchObject({ done: 6, failed: 0 });
  }, 60_000);

  it('without REDIS_URL, nothing on the default address and no redis-server on PATH, says how to install it and exits 2', async () => {
    const cwd = await mkdtemp(path.join(dir, 'no-redis-'));
    const file = await scenesFile('no-redis.csv', ['x-1']);
    const result = await runCli(['run', file, '--campaign', 'no-redis'], {
      cwd,
      env: env({
        REDIS_URL: undefined,
        WXACODE_DEFAULT_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
        PATH: path.join(cwd, 'empty'),
      }),
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(
      /REDIS_URL: is not set, nothing answers at redis:\/\/127\.0\.0\.1:\d+\/?, and redis-server is not on PATH/,
    );
    expect(result.stderr).toContain('`sudo apt-get install -y redis-server`');
    expect(result.stderr).toContain('`brew install redis`');
    expect(result.stderr).toContain('`docker compose up -d redis`');
  });
});
