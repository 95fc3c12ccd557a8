/**
 * The quota ledger through workers and the CLI, against the mock WeChat API, which counts A + C codes as the
 * contract says WeChat does (identical parameters once): the ledger must agree with it.
 */
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppUsage, QuotaLedger } from '../../src/campaign/ledger.js';
import { type CampaignStatus, campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { WorkerMetrics } from '../../src/metrics.js';
import { mockAdmin } from '../../src/mock/admin.js';
import { createStorage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli, spawnCli } from '../../test-support/cli.js';
import { wxacodeEnv } from '../../test-support/env.js';
import { waitFor } from '../../test-support/wait.js';
import { deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxquotaledger00001';
const SECRET = 'quota-ledger-secret';
const stack = useLocalStack({ [APPID]: SECRET });
const prefixes: string[] = [];
let inputs: string;

beforeAll(async () => {
  inputs = await mkdtemp(path.join(tmpdir(), 'wxacode-quota-'));
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(stack.redis, prefix);
  await rm(inputs, { recursive: true, force: true });
});

async function input(name: string, rows: string[]): Promise<string> {
  const file = path.join(inputs, name);
  await writeFile(file, `${rows.join('\n')}\n`);
  return file;
}

const paths = (tag: string, n: number) =>
  Array.from({ length: n }, (_, i) => `pages/item/detail?${tag}=${i}`);

function settled(store: CampaignStore, campaign: string): Promise<CampaignStatus> {
  return waitFor(`campaign ${campaign} to settle`, async () => {
    const status = await campaignStatus(store, campaign);
    return (status.state === 'completed' || status.state === 'stopped') && status;
  });
}

async function quotaJson(env: Record<string, string>): Promise<AppUsage> {
  const result = await runCli(['quota', '--json'], { env });
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as AppUsage[])[0]!;
}

describe('the ledger with workers and the CLI', () => {
  // The tests of this block build on each other's codes, in order, on one app of the shared mock.
  const prefix = testPrefix();
  prefixes.push(prefix);
  const env = () => ({ ...stack.env(), WXACODE_PREFIX: prefix });
  const store = () => new CampaignStore(stack.redis, prefix);
  const rows = paths('race', 20);

  it('counts each code once when two workers race on the same rows, as WeChat does', async () => {
    const config = loadConfig(env());
    const file = await input('race.txt', rows);
    // The same rows in two campaigns, enqueued before any worker starts: both workers find most codes not yet
    // stored and ask WeChat for them.
    const storage = createStorage(config);
    try {
      for (const campaign of ['race-1', 'race-2']) {
        await enqueueCampaign({
          redis: stack.redis,
          prefix,
          storage,
          campaign,
          appid: APPID,
          options: codeOptions({ kind: 'code' }),
          input: file,
        });
      }
    } finally {
      await storage.close();
    }
    const workers = await Promise.all([1, 2].map(() => CodeWorker.start({ config, concurrency: 20 })));
    try {
      for (const campaign of ['race-1', 'race-2']) {
        expect(await settled(store(), campaign)).toMatchObject({ state: 'completed', done: 20 });
      }
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
    const mock = stack.mock.stats(APPID);
    // The race happened: some codes were generated twice, so a count per image would be wrong.
    expect(mock.images).toBeGreaterThan(20);
    expect(mock.acUsed).toBe(20);
    expect((await new QuotaLedger(stack.redis, prefix).usage(APPID)).ac).toMatchObject({
      counted: 20,
      used: 20,
    });

    const metrics = new WorkerMetrics({ redis: stack.redis, prefix, apps: [APPID], processMetrics: false });
    try {
      expect(await metrics.metrics()).toContain(`wxacode_ac_codes_used{appid="${APPID}"} 20`);
    } finally {
      await metrics.close();
    }
  }, 120_000);

  it('adds nothing for a re-run of stored codes, nor for codes generated again after their objects were deleted', async () => {
    const enqueue = await runCli(
      ['enqueue', await input('again.txt', rows), '--campaign', 'again', '--kind', 'code'],
      {
        env: env(),
      },
    );
    expect(enqueue.code, enqueue.stderr).toBe(0);
    expect(enqueue.stdout).toContain(
      'A + C codes: needs 0, 99 980 left of 100 000 (20 counted here + 0 declared)',
    );
    const before = stack.mock.stats(APPID);
    const config = loadConfig(env());
    const worker = await CodeWorker.start({ config, concurrency: 4 });
    const storage = createStorage(config);
    try {
      expect(await settled(store(), 'again')).toMatchObject({ state: 'completed', done: 20 });
      expect(stack.mock.stats(APPID).codeCalls).toBe(before.codeCalls);

      // Objects deleted: the codes are generated again, and WeChat does not count identical parameters twice.
      const folder = path.join(stack.dir, APPID, 'code');
      await rm(folder, { recursive: true, force: true });
      const file = await input('deleted.txt', rows);
      await enqueueCampaign({
        redis: stack.redis,
        prefix,
        storage,
        campaign: 'deleted',
        appid: APPID,
        options: codeOptions({ kind: 'code' }),
        input: file,
      });
      expect(await settled(store(), 'deleted')).toMatchObject({ state: 'completed', done: 20 });
    } finally {
      await Promise.all([worker.close(), storage.close()]);
    }
    expect((await readdir(path.join(stack.dir, APPID, 'code'), { recursive: true })).length).toBeGreaterThan(
      20,
    );
    const after = stack.mock.stats(APPID);
    expect(after.images).toBe(before.images + 20);
    expect(after.acUsed).toBe(20);
    expect((await quotaJson(env())).ac).toMatchObject({ counted: 20, used: 20 });
  }, 120_000);

  it('adds the codes counted here to a figure set with `quota set`', async () => {
    const set = await runCli(['quota', 'set', '--app', APPID, '--ac-used', '8820'], { env: env() });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('8 820 used of 100 000, 91 180 left');
    expect(set.stdout).toContain('8 800 declared');

    const file = await input('more.txt', paths('more', 5));
    const run = await runCli(['run', file, '--campaign', 'more', '--kind', 'qrcode'], { env: env() });
    expect(run.code, run.stderr).toBe(0);
    expect(await quotaJson(env())).toMatchObject({
      ac: { counted: 25, declared: 8800, used: 8825, left: 91_175 },
    });

    const below = await runCli(['quota', 'set', '--ac-used', '24'], { env: env() });
    expect(below.code).toBe(2);
    expect(below.stderr).toBe(
      `wxacode: --ac-used 24 is below the 25 A + C codes this deployment counted for app ${APPID}\n`,
    );
  }, 120_000);

  it('refuses to enqueue an A or C campaign over what is left, with the numbers, unless --allow-over-quota', async () => {
    const set = await runCli(['quota', 'set', '--ac-used', String(100_000 - 25)], { env: env() });
    expect(set.code, set.stderr).toBe(0);
    // 30 rows, 20 of them codes counted already (the race's): 10 new would fit in 25; 30 new would not.
    const fits = await input('fits.txt', [...rows, ...paths('fits', 10)]);
    const over = await input('over.txt', paths('over', 30));
    const fine = await runCli(['enqueue', fits, '--campaign', 'fits', '--kind', 'code'], { env: env() });
    expect(fine.code, fine.stderr).toBe(0);
    expect(fine.stdout).toContain('needs 10, 25 left of 100 000 (25 counted here + 99 950 declared)');

    const refused = await runCli(['enqueue', over, '--campaign', 'over', '--kind', 'code'], { env: env() });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `campaign over for app ${APPID} needs 30, 25 left of 100 000 (25 counted here + 99 950 declared): nothing was enqueued`,
    );
    expect(refused.stderr).toContain('--allow-over-quota');
    expect(await stack.redis.exists(`${prefix}:campaign:over`)).toBe(0);

    const allowed = await runCli(
      ['enqueue', over, '--campaign', 'over', '--kind', 'code', '--allow-over-quota'],
      {
        env: env(),
      },
    );
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('enqueued 30');
    expect(allowed.stderr).toContain('warning: campaign over needs 30, 25 left of 100 000');
  }, 120_000);

  it('prints how long a B campaign takes at the cap, given what is queued for the app', async () => {
    const file = await input(
      'scenes.txt',
      Array.from({ length: 300 }, (_, i) => `s${i}`),
    );
    const result = await runCli(['enqueue', file, '--campaign', 'scenes', '--page', 'pages/index/index'], {
      env: { ...env(), WXACODE_RATE_LIMIT: '100/60s' },
    });
    expect(result.code, result.stderr).toBe(0);
    // 300 scenes and the 60 rows of `fits` and `over` still to go (no worker runs), at 100 a minute.
    expect(result.stdout).toContain(
      `app ${APPID}: 360 codes to go, about 4 min at 100/60s (codes already stored take no call)`,
    );
  }, 120_000);
});

describe('the ledger and WeChat agree at the A + C limit', () => {
  it('counts what the mock counted when a campaign runs into 45029, and says how many rows were left', async () => {
    const appid = 'wxquotalimit000001';
    const prefix = testPrefix();
    prefixes.push(prefix);
    const mockProcess = spawnCli([
      'mock-server',
      '--apps',
      `${appid}:limit-secret`,
      '--rate',
      'none',
      '--ac-total',
      '12',
    ]);
    try {
      const [line] = (await once(createInterface({ input: mockProcess.stdout! }), 'line')) as [string];
      const { url } = JSON.parse(line) as { url: string };
      const env = wxacodeEnv({
        redisUrl: testRedisUrl(),
        prefix,
        apps: { [appid]: 'limit-secret' },
        wechatUrl: url,
        rate: '100/1s',
        storage: await mkdtemp(path.join(inputs, 'limit-')),
      });
      const file = await input('limit.txt', paths('limit', 20));
      // The ledger does not know this app's history: 20 of 100 000 fits, and WeChat answers 45029 after 12.
      const run = await runCli(['run', file, '--campaign', 'limit', '--kind', 'code', '--concurrency', '1'], {
        env,
      });
      expect(run.code, run.stderr).toBe(1);
      const status = await runCli(['status', 'limit'], { env });
      expect(status.stdout).toContain('stopped by errcode 45029');
      expect(status.stdout).toContain("the app's lifetime A + C codes ran out with 8 of its 20 rows left");

      const mock = await mockAdmin(url).stats(appid);
      const usage = await quotaJson(env);
      expect(usage.ac.counted).toBe(12);
      expect(usage.ac.counted).toBe(mock.acUsed);
      expect(usage.ac).toMatchObject({ left: 0, seen45029: { at: expect.any(String) } });
      const text = await runCli(['quota'], { env });
      expect(text.stdout).toContain(`app ${appid}\n  A + C codes: 12 used of 100 000, 0 left`);
      expect(text.stdout).toContain('a worker was answered 45029');

      // Once seen, 45029 refuses the next A or C campaign before it is queued.
      const next = await runCli(
        ['enqueue', await input('next.txt', ['pages/x?y=1']), '--campaign', 'next', '--kind', 'qrcode'],
        {
          env,
        },
      );
      expect(next.code).toBe(2);
      expect(next.stderr).toContain('needs 1, 0 left of 100 000 (WeChat answered 45029 at ');
    } finally {
      mockProcess.kill('SIGTERM');
    }
  }, 120_000);
});
