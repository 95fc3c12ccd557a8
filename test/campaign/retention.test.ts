/**
 * WXACODE_RETENTION: the workers' periodic reconcile drops the Redis records of their apps' campaigns that
 * completed longer ago than the retention, and nothing else (active, stopped, recent, other apps' campaigns);
 * storage keeps the codes and manifests, and loses the dropped campaigns' records.
 */
import { expect, it } from 'vitest';
import { CampaignLifecycle } from '../../src/campaign/lifecycle.js';
import { openQueue } from '../../src/campaign/queue.js';
import { Reconciler } from '../../src/campaign/reconcile.js';
import { CHUNK_CONTENT_TYPE, encodeChunk } from '../../src/campaign/record.js';
import { producerLease } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { LocalStorage, recordKey } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxretention0000001';
const OTHER_APP = 'wxretention0000002';
const OPTIONS = codeOptions({ kind: 'unlimited' });
const HOUR_MS = 3_600_000;
const stack = useLocalStack({ [APPID]: 'retention-secret' });

/** A campaign of two rows, recorded and fed, in `state`, created (and completed, if it is) `agoMs` ago. */
async function campaign(id: string, state: 'completed' | 'active' | 'stopped', agoMs: number, appid = APPID) {
  const { store } = stack;
  const lease = producerLease();
  const values = [`${id}-1`, `${id}-2`];
  await store.open(id, appid, OPTIONS, lease);
  await storage().put(recordKey(appid, id, 'c0'), encodeChunk(values), CHUNK_CONTENT_TYPE);
  await store.addChunk(id, appid, { name: 'c0', rows: values.length }, lease);
  const rows = values.map((value, row) => ({ slot: `0:${row}`, value }));
  expect(await store.feed(id, { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, rows)).toBe(true);
  if (state === 'completed') {
    await store.markRow(id, '0:0', { status: 'done' });
    await store.markRow(id, '0:1', { status: 'failed', errcode: 40169, errmsg: 'invalid scene' });
  }
  await store.finishEnqueue(id, lease.id);
  if (state === 'stopped') await store.stop(id, 41030, 'invalid page');
  expect(await store.state(id)).toBe(state);
  const at = Date.now() - agoMs;
  await stack.redis.hset(`${stack.prefix}:campaign:${id}`, 'createdAt', at);
  if (state === 'completed') await stack.redis.hset(`${stack.prefix}:campaign:${id}`, 'completedAt', at);
}

/** The folder the stack's workers store in. */
function storage(): LocalStorage {
  return new LocalStorage(stack.dir);
}

async function recorded(id: string, appid = APPID): Promise<boolean> {
  return storage().exists(recordKey(appid, id, 'c0'));
}

/**
 * Wait for two passes to start after now: the first has then finished, since one reconciler runs its passes one
 * after another. A pass starts by taking the app's lead lock, so the lock is cleared and watched for.
 */
async function twoPasses(): Promise<void> {
  const lock = `${stack.prefix}:reconcile:${APPID}`;
  for (const pass of [1, 2]) {
    await stack.redis.del(lock);
    await waitFor(`reconcile pass ${pass}`, async () => (await stack.redis.exists(lock)) === 1, {
      everyMs: 20,
    });
  }
}

async function keysOf(id: string): Promise<string[]> {
  return stack.redis.keys(`${stack.prefix}:campaign:${id}*`);
}

it('drops completed campaigns older than the retention on the next pass, and keeps the rest', async () => {
  await campaign('old-done', 'completed', 2 * HOUR_MS);
  await campaign('new-done', 'completed', 10_000);
  await campaign('old-active', 'active', 48 * HOUR_MS);
  await campaign('old-stopped', 'stopped', 48 * HOUR_MS);
  await campaign('other-app-done', 'completed', 48 * HOUR_MS, OTHER_APP);
  // Completed before completedAt was recorded: counted from its creation.
  await campaign('legacy-done', 'completed', 2 * HOUR_MS);
  await stack.redis.hdel(`${stack.prefix}:campaign:legacy-done`, 'completedAt');
  // Its hash, its chunk list and its failed row; the window emptied as its rows settled.
  expect((await keysOf('old-done')).sort()).toEqual(
    ['', ':chunks', ':failed'].map((part) => `${stack.prefix}:campaign:old-done${part}`),
  );

  const queue = openQueue(stack.redis, stack.prefix, APPID);
  const reconciler = Reconciler.start({
    lifecycle: new CampaignLifecycle(stack.store, storage()),
    queue: () => queue,
    apps: [APPID],
    intervalMs: 200,
    retentionMs: HOUR_MS,
  });
  try {
    await waitFor('the old completed campaigns to be dropped', async () => {
      const ids = await stack.store.list();
      return !ids.includes('old-done') && !ids.includes('legacy-done') && ids;
    });
    // What stays has been looked at in a whole pass since.
    await twoPasses();
  } finally {
    await reconciler.close();
    await queue.close();
  }
  expect(await stack.store.list()).toEqual(['new-done', 'old-active', 'old-stopped', 'other-app-done']);
  expect(await keysOf('old-done')).toEqual([]);
  expect(await keysOf('legacy-done')).toEqual([]);
  expect(await recorded('old-done')).toBe(false);
  expect(await recorded('legacy-done')).toBe(false);
  for (const id of ['new-done', 'old-active', 'old-stopped']) expect(await recorded(id), id).toBe(true);
  expect(await recorded('other-app-done', OTHER_APP)).toBe(true);
  expect(await keysOf('old-active')).toHaveLength(3);
  expect(await stack.store.state('old-active')).toBe('active');
});

it('is read from WXACODE_RETENTION by workers, and forever without it', async () => {
  await campaign('worker-old-done', 'completed', 2 * HOUR_MS);
  const forever = await CodeWorker.start({
    config: loadConfig(stack.env()),
    concurrency: 1,
    reconcileIntervalMs: 200,
  });
  try {
    await twoPasses();
  } finally {
    await forever.close();
  }
  expect(await stack.store.list()).toContain('worker-old-done');

  const config = loadConfig({ ...stack.env(), WXACODE_RETENTION: '1h' });
  expect(config.retentionMs).toBe(HOUR_MS);
  const worker = await CodeWorker.start({ config, concurrency: 1, reconcileIntervalMs: 200 });
  try {
    await waitFor(
      'the worker to drop it',
      async () => !(await stack.store.list()).includes('worker-old-done'),
    );
  } finally {
    await worker.close();
  }
  expect(await keysOf('worker-old-done')).toEqual([]);
  expect(await recorded('worker-old-done')).toBe(false);
});
