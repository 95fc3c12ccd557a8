/**
 * Several producers of one campaign: each records its rows in chunks of its own, the campaign completes only once
 * none of them is adding rows, and its manifest lists every row once, in the order the chunks were recorded.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { createStorage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxproducers00000001';
const OPTIONS = codeOptions({ kind: 'unlimited' });
const stack = useLocalStack({ [APPID]: 'producers-secret' });
let worker: CodeWorker;

beforeAll(async () => {
  worker = await CodeWorker.start({ config: loadConfig(stack.env()), concurrency: 4 });
});

afterAll(async () => {
  await worker.close();
});

function values(name: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${name}-${i}`);
}

async function manifestRows(campaign: string): Promise<string[]> {
  const meta = await waitFor(`the manifest of ${campaign}`, async () => {
    const m = await stack.store.get(campaign);
    return m?.manifestKey !== undefined && m;
  });
  const storage = createStorage(loadConfig(stack.env()));
  try {
    const csv = (await storage.get(meta.manifestKey!))!.toString('utf8');
    return csv
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(',')[0]!);
  } finally {
    await storage.close();
  }
}

it('completes a campaign two producers fill at once only after both finished, every row in its manifest once', async () => {
  const campaign = 'two-producers';
  const first = values('a', 10);
  const second = values('b', 10);
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let passes = 0;
  // The first producer stops halfway through its second pass (the one that enqueues) until released.
  async function* slowSource() {
    const enqueuing = ++passes === 2;
    for (const [i, value] of first.entries()) {
      if (enqueuing && i === 5) await released;
      yield value;
    }
  }
  const enqueue = (input: () => AsyncIterable<string> | Iterable<string>) =>
    enqueueCampaign({
      redis: stack.redis,
      prefix: stack.prefix,
      campaign,
      appid: APPID,
      options: OPTIONS,
      input,
      chunkRows: 5,
      storage: worker.storage,
    });

  const slow = enqueue(slowSource);
  await waitFor(
    'the first producer to add its first chunk',
    async () => (await stack.store.get(campaign))?.total === 5,
  );
  // A row repeated in its own input and one the first producer recorded already are recorded once.
  expect(await enqueue(() => [...second, 'b-3', 'a-0'])).toMatchObject({ enqueued: 10, duplicates: 2 });
  await waitFor('every row added so far to be done', async () => {
    const s = await campaignStatus(stack.store, campaign);
    return s.done === 15 && s;
  });
  expect((await stack.store.get(campaign))?.state).toBe('enqueuing');

  release();
  expect(await slow).toMatchObject({ enqueued: 10, duplicates: 0 });
  const chunks = await stack.store.chunks(campaign);
  expect(chunks.map((c) => c.rows)).toEqual([5, 5, 5, 5]);
  expect(new Set(chunks.map((c) => c.name)).size).toBe(4);
  expect(await manifestRows(campaign)).toEqual([...first.slice(0, 5), ...second, ...first.slice(5)]);
  expect(await campaignStatus(stack.store, campaign)).toMatchObject({
    state: 'completed',
    total: 20,
    done: 20,
    pending: 0,
  });
});
