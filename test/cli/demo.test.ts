/**
 * `wxacode demo` as a newcomer runs it: a fresh folder, no REDIS_URL (the default address is a free port here, so
 * the demo starts its own redis-server), and WECHAT_* pointing at an app the demo must never call.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { demoScenes } from '../../src/cli/demo.js';
import { redisAnswers } from '../../src/local-redis.js';
import { DEFAULT_MOCK_APPS } from '../../src/mock/options.js';
import { runCli, startCli } from '../../test-support/cli.js';
import { freePort } from '../../test-support/redis-server.js';
import { decodeImage } from '../helpers/qr.js';

const MOCK_APPID = Object.keys(DEFAULT_MOCK_APPS)[0]!;
const folders: string[] = [];

async function freshFolder(): Promise<string> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'wxacode-demo-'));
  folders.push(cwd);
  return cwd;
}

/** A newcomer's shell, plus real-app settings that the demo must ignore. */
async function env(extra: Record<string, string> = {}): Promise<Record<string, string | undefined>> {
  return {
    REDIS_URL: undefined,
    WXACODE_PREFIX: undefined,
    WXACODE_STORAGE: undefined,
    WXACODE_RATE_LIMIT: undefined,
    WXACODE_DEFAULT_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    WECHAT_APPID: 'wxreal00000000001',
    WECHAT_SECRET: 'a-real-secret',
    WECHAT_APPS: 'wxreal00000000002:another-secret',
    WECHAT_API_BASE_URL: 'http://127.0.0.1:9',
    ...extra,
  };
}

function generated(stdout: string): number {
  return Number(/the mock WeChat API generated (\d+) in/.exec(stdout)?.[1]);
}

/** Where the private server listens, as its message says (the password masked). */
function privateRedisUrl(stderr: string): string {
  return /private redis-server on (redis:\/\/\S*127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
}

/** The private server's URL with its password, from the server.json of the folder it runs in. */
function privateRedisLogin(cwd: string): string {
  const record = path.join(cwd, '.wxacode', 'redis', 'server.json');
  const { port, password } = JSON.parse(readFileSync(record, 'utf8')) as { port: number; password: string };
  return `redis://:${password}@127.0.0.1:${port}`;
}

/** Every scene has its code in ./wxacode-out, decoding to that scene on the mock's app. */
async function expectCodes(cwd: string, count: number): Promise<void> {
  const variants = path.join(cwd, 'wxacode-out', MOCK_APPID, 'unlimited');
  const [variant] = await readdir(variants);
  const folder = path.join(variants, variant!);
  const scenes = demoScenes(count);
  expect((await readdir(folder)).sort()).toEqual(scenes.map((scene) => `${scene}.jpg`));
  for (const scene of scenes) {
    const image = await readFile(path.join(folder, `${scene}.jpg`));
    expect(decodeImage(image)).toBe(`wxacode|${MOCK_APPID}|unlimited|page=|scene=${scene}|env=release`);
  }
}

beforeAll(() => {
  expect(MOCK_APPID).toMatch(/^wxmock/);
});

afterAll(async () => {
  for (const cwd of folders) {
    // A test that failed half-way may leave the private server running.
    const record = path.join(cwd, '.wxacode', 'redis', 'server.json');
    if (existsSync(record)) {
      const { pid } = JSON.parse(await readFile(record, 'utf8')) as { pid: number };
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
    }
    await rm(cwd, { recursive: true, force: true });
  }
});

describe('wxacode demo', () => {
  it('generates the codes into ./wxacode-out with a private Redis, and never calls the configured app', async () => {
    const cwd = await freshFolder();
    const result = await runCli(['demo', '--scenes', '20'], { cwd, env: await env() });
    expect(result.code).toBe(0);
    expect(generated(result.stdout)).toBe(20);
    expect(result.stdout).toMatch(/campaign demo-\d{8}-\d{6} completed: 20 codes/);
    expect(result.stdout).toContain(`codes: ${path.join(cwd, 'wxacode-out', MOCK_APPID, 'unlimited')}/`);
    const manifest = /manifest: (file:\S+)/.exec(result.stdout)![1]!;
    expect((await readFile(new URL(manifest), 'utf8')).trim().split('\n')).toHaveLength(21);
    await expectCodes(cwd, 20);
    expect(result.stderr).not.toContain('wxreal');

    // Its data stays in the state folder; the server itself was shut down.
    expect(existsSync(path.join(cwd, '.wxacode', 'redis', 'appendonlydir'))).toBe(true);
    expect(existsSync(path.join(cwd, '.wxacode', 'redis', 'server.json'))).toBe(false);
    expect(await redisAnswers(privateRedisUrl(result.stderr), 500)).toBe(false);
  }, 60_000);

  it('interrupted, resumes its campaign from the private Redis data, each code made once; finished, the next demo is new and costs no call', async () => {
    const cwd = await freshFolder();
    const slow = await env({ WXACODE_RATE_LIMIT: '20/1s' });
    const running = startCli(['demo', '--scenes', '60', '--concurrency', '4'], { cwd, env: slow });
    const { output } = running;
    while (!/private redis-server on/.test(output.stderr)) await new Promise((r) => setTimeout(r, 50));
    const redis = new Redis(privateRedisLogin(cwd), { maxRetriesPerRequest: 1 });
    const store = new CampaignStore(redis, 'wxacode');
    let campaign: string | undefined;
    for (;;) {
      [campaign] = await store.list();
      if (campaign && (await campaignStatus(store, campaign)).done >= 10) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    redis.disconnect();
    running.child.kill('SIGINT');
    const interrupted = await running.done;
    expect(interrupted.code).toBe(130);
    const first = generated(interrupted.stdout);
    expect(first).toBeGreaterThanOrEqual(10);
    expect(first).toBeLessThan(60);
    expect(await redisAnswers(privateRedisUrl(interrupted.stderr), 500)).toBe(false);

    const resumed = await runCli(['demo', '--scenes', '60'], { cwd, env: slow });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`campaign ${campaign} completed: 60 codes`);
    expect(resumed.stdout).toContain('enqueued 0, duplicates 60');
    expect(first + generated(resumed.stdout)).toBe(60);
    await expectCodes(cwd, 60);

    const again = await runCli(['demo', '--scenes', '60'], { cwd, env: slow });
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain(`campaign ${campaign}`);
    expect(again.stdout).toMatch(/completed: 60 codes/);
    expect(generated(again.stdout)).toBe(0);
  }, 60_000);
});
