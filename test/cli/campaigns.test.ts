/**
 * `wxacode campaigns` and `wxacode delete` through the CLI, against the harness Redis, the mock WeChat server and
 * a storage folder: what the list shows, what a delete removes (records in Redis and in storage, queued jobs) and
 * keeps (codes, manifest), and what it refuses.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { jobId, jobsFor, openQueue } from '../../src/campaign/queue.js';
import { CampaignStore, PRIORITIES, slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { createStorage, objectKey, recordKey, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { testPrefix } from '../helpers/redis.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxclicampaigns0001';
const OPTIONS = codeOptions({ kind: 'unlimited' });
const stack = useLocalStack({ [APPID]: 'cli-campaigns-secret' });
const DAY_MS = 86_400_000;
let storage: Storage;

beforeAll(() => {
  storage = createStorage(loadConfig(stack.env()));
});

/** A prefix of the test's own (the stack removes every key under its own prefix only: this one is inside it). */
function setup() {
  const prefix = `${stack.prefix}-${testPrefix()}`;
  const env = { ...stack.env(), WXACODE_PREFIX: prefix };
  const store = new CampaignStore(stack.redis, prefix);
  const cli = (...args: string[]) => runCli(args, { env });
  const enqueue = (campaign: string, values: string[]) =>
    enqueueCampaign({
      redis: stack.redis,
      prefix,
      campaign,
      appid: APPID,
      options: OPTIONS,
      input: () => values,
      storage,
    });
  /**
   * Queue a campaign's rows (one chunk of them) as a worker's feeder would, without a worker to work them off;
   * answers their jobs' ids.
   */
  const feed = async (campaign: string, values: string[]) => {
    const rows = values.map((value, row) => ({ slot: slotOf({ chunk: 0, row }), value }));
    expect(await store.feed(campaign, { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, rows)).toBe(true);
    const queue = openQueue(stack.redis, prefix, APPID);
    await queue.addBulk(jobsFor(campaign, PRIORITIES.normal, rows));
    await queue.close();
    return rows.map(({ slot }) => jobId(campaign, slot));
  };
  const keysOf = (campaign: string) => stack.redis.keys(`${prefix}:campaign:${campaign}*`);
  /** The storage keys of the campaign's record, from its chunk list. */
  const recordOf = async (campaign: string) =>
    (await store.chunks(campaign)).map((chunk) => recordKey(APPID, campaign, chunk.name));
  return { prefix, env, store, cli, enqueue, feed, keysOf, recordOf };
}

function values(name: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${name}-${i}`);
}

describe('wxacode campaigns', () => {
  it('lists each campaign with its state, counts and age, as a table and as JSON', async () => {
    const { prefix, store, cli, enqueue } = setup();
    await enqueue('old-active', values('a', 3));
    await stack.redis.hset(`${prefix}:campaign:old-active`, 'createdAt', Date.now() - 3 * DAY_MS - 5000);
    await enqueue('stopped', values('s', 2));
    await store.stop('stopped', 41030, 'invalid page');
    await stack.redis.hset(`${prefix}:campaign:stopped`, 'createdAt', Date.now() - 2 * 3_600_000);
    await enqueue('empty', []);
    await stack.redis.hset(`${prefix}:campaign:empty`, 'createdAt', Date.now() - 10 * 60_000);

    const text = await cli('campaigns');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n')).toEqual([
      'campaign    state      total  done  failed  pending  age',
      'old-active  active         3     0       0        3   3d',
      'stopped     stopped        2     0       0        2   2h',
      'empty       completed      0     0       0        0  10m',
      '',
    ]);

    const json = await cli('campaigns', '--json');
    expect(json.code, json.stderr).toBe(0);
    const list = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(list.map((c) => c.campaign)).toEqual(['old-active', 'stopped', 'empty']);
    expect(list[0]).toMatchObject({
      appid: APPID,
      kind: 'unlimited',
      state: 'active',
      total: 3,
      done: 0,
      failed: 0,
      pending: 3,
      ageSeconds: expect.any(Number),
    });
    expect(list[0]!.ageSeconds).toBeGreaterThanOrEqual(3 * 86_400);
    expect(list[0]!.completedAt).toBeUndefined();
    expect(list[2]).toMatchObject({ state: 'completed', completedAt: expect.any(String) });
  });

  it('says so when there is none', async () => {
    const { prefix, cli } = setup();
    const result = await cli('campaigns');
    expect(result).toMatchObject({ code: 0, stdout: `no campaigns under prefix ${prefix}\n` });
    expect(JSON.parse((await cli('campaigns', '--json')).stdout)).toEqual([]);
  });
});

describe('wxacode delete', () => {
  it("removes a completed campaign's records, in Redis and in storage, and keeps its codes and manifest", async () => {
    const { env, store, cli, enqueue, keysOf, recordOf } = setup();
    const rows = values('d', 5);
    await enqueue('finished', rows);
    const worker = await CodeWorker.start({ config: loadConfig(env), concurrency: 2 });
    let manifest: string;
    try {
      manifest = await waitFor('the campaign to complete with its manifest', async () => {
        const s = await campaignStatus(store, 'finished');
        return s.state === 'completed' && s.manifest;
      });
    } finally {
      await worker.close();
    }
    await enqueue('neighbour', ['n-1']);
    expect(await keysOf('finished')).not.toEqual([]);
    const record = await recordOf('finished');
    expect(record).toHaveLength(1);
    const neighbourRecord = await recordOf('neighbour');
    for (const key of [...record, ...neighbourRecord]) expect(await storage.exists(key), key).toBe(true);

    const result = await cli('delete', 'finished', '--yes');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      `campaign finished deleted: completed, 5 rows, 0 queued jobs removed; its codes and manifest stay in ${stack.dir}\n`,
    );
    expect(await keysOf('finished')).toEqual([]);
    expect(await store.list()).toEqual(['neighbour']);
    for (const key of record) expect(await storage.exists(key), key).toBe(false);
    for (const key of neighbourRecord) expect(await storage.exists(key), key).toBe(true);
    expect(existsSync(path.join(stack.dir, manifest))).toBe(true);
    for (const value of rows) {
      expect(existsSync(path.join(stack.dir, objectKey({ appid: APPID, options: OPTIONS, value })))).toBe(
        true,
      );
    }
    const again = await cli('delete', 'finished', '--yes');
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/campaign finished does not exist/);
  });

  it('removes the jobs a stopped campaign still has queued, and no other campaign’s', async () => {
    const { prefix, store, cli, enqueue, feed, keysOf, recordOf } = setup();
    await enqueue('halted', values('h', 4));
    await enqueue('other', values('o', 2));
    const haltedJobs = await feed('halted', values('h', 4));
    const otherJobs = await feed('other', values('o', 2));
    await store.stop('halted', 41030, 'invalid page');
    const record = await recordOf('halted');
    expect(record).toHaveLength(1);
    const queue = openQueue(stack.redis, prefix, APPID);
    try {
      expect(await queue.getJob(haltedJobs[0]!)).toBeDefined();
      const result = await cli('delete', 'halted', '--yes');
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^campaign halted deleted: stopped, 4 rows, 4 queued jobs removed;/);
      for (const id of haltedJobs) expect(await queue.getJob(id)).toBeUndefined();
      for (const id of otherJobs) expect(await queue.getJob(id)).toBeDefined();
      expect(await queue.getPrioritizedCount()).toBe(2);
      expect(await keysOf('halted')).toEqual([]);
      expect(await keysOf('other')).not.toEqual([]);
      for (const key of record) expect(await storage.exists(key), key).toBe(false);
    } finally {
      await queue.close();
    }
  });

  it('refuses without --yes, and an active campaign without --force, leaving everything in place', async () => {
    const { prefix, store, cli, enqueue, feed, keysOf, recordOf } = setup();
    await enqueue('running', values('r', 3));
    await feed('running', values('r', 3));
    const keys = (await keysOf('running')).sort();
    const record = await recordOf('running');
    expect(record).toHaveLength(1);

    const unconfirmed = await cli('delete', 'running');
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toBe(
      "wxacode: delete removes campaign running's records for good, in Redis and its record in storage (codes and manifest stay): pass --yes to confirm\n",
    );
    const busy = await cli('delete', 'running', '--yes');
    expect(busy.code).toBe(2);
    expect(busy.stderr).toBe(
      'wxacode: campaign running is active: wait until it completes or stops (`wxacode status running`), or pass --force\n',
    );
    expect((await keysOf('running')).sort()).toEqual(keys);
    expect(await store.list()).toEqual(['running']);
    for (const key of record) expect(await storage.exists(key), key).toBe(true);
    const queue = openQueue(stack.redis, prefix, APPID);
    try {
      expect(await queue.getPrioritizedCount()).toBe(3);
      const forced = await cli('delete', 'running', '--yes', '--force');
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toMatch(/^campaign running deleted: active, 3 rows, 3 queued jobs removed;/);
      expect(await queue.getPrioritizedCount()).toBe(0);
    } finally {
      await queue.close();
    }
    expect(await keysOf('running')).toEqual([]);
    expect(await store.list()).toEqual([]);
    for (const key of record) expect(await storage.exists(key), key).toBe(false);
  });

  it('refuses an unknown campaign with exit 2', async () => {
    const { cli } = setup();
    const result = await cli('delete', 'nope', '--yes');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^wxacode: campaign nope does not exist/);
  });
});
