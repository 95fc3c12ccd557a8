import { afterAll, expect, it } from 'vitest';
import { CampaignStore, type ProducerLease, SETTLE_RESULT } from '../../src/campaign/store.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

const redis = connect();
const prefix = testPrefix();
const store = new CampaignStore(redis, prefix);
const options = codeOptions({ kind: 'unlimited' });

afterAll(async () => {
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

/** Register a chunk of one row for `lease`'s producer and feed it, as a feeder would: answers its slot. */
async function addRow(id: string, value: string, lease: ProducerLease): Promise<string> {
  const index = await store.addChunk(id, 'wx1', { name: `${lease.id}-${value}`, rows: 1 }, lease);
  const slot = `${index}:0`;
  const { cursor } = (await store.get(id))!;
  expect(await store.feed(id, cursor, { chunk: index + 1, row: 0 }, [{ slot, value }])).toBe(true);
  return slot;
}

it('stays open until every producer finished', async () => {
  const first = { id: 'p1', ms: 30_000 };
  const second = { id: 'p2', ms: 30_000 };
  await store.open('c1', 'wx1', options, first);
  await store.open('c1', 'wx1', options, second);
  const a = await addRow('c1', 'a', first);
  const b = await addRow('c1', 'b', second);
  expect(await store.finishEnqueue('c1', second.id)).toBe(SETTLE_RESULT.open);
  expect(await store.markRow('c1', a, { status: 'done' })).toBe(SETTLE_RESULT.open);
  expect(await store.markRow('c1', b, { status: 'done' })).toBe(SETTLE_RESULT.open);
  expect(await store.state('c1')).toBe('enqueuing');
  expect(await store.finishEnqueue('c1', first.id)).toBe(SETTLE_RESULT.completed);
  expect(await store.finishEnqueue('c1', first.id)).toBe(SETTLE_RESULT.open);
});

it('is held open by a producer that died no longer than its lease', async () => {
  const dead = { id: 'dead', ms: 1000 };
  await store.open('c2', 'wx1', options, dead);
  const a = await addRow('c2', 'a', dead);
  expect(await store.markRow('c2', a, { status: 'done' })).toBe(SETTLE_RESULT.open);
  expect(await store.state('c2')).toBe('enqueuing');
  await waitFor(
    'the lease to run out',
    async () => (await store.finishEnqueue('c2')) === SETTLE_RESULT.completed,
  );
  expect(await store.get('c2')).toMatchObject({ state: 'completed', total: 1, done: 1, queued: 0 });
});

it('reopens a campaign completed while a producer whose lease ran out was still adding rows', async () => {
  const late = { id: 'late', ms: 1 };
  await store.open('c3', 'wx1', options, late);
  const a = await addRow('c3', 'a', late);
  await store.markRow('c3', a, { status: 'done' });
  await waitFor('the lease to run out', async () => {
    await store.finishEnqueue('c3');
    return (await store.state('c3')) === 'completed';
  });
  // A feeder saw it completed and took it off the app's feeding set: the late rows must be fed all the same.
  await store.doneFeeding('wx1', 'c3');
  expect(await store.feeding('wx1')).not.toContain('c3');
  await store.addChunk('c3', 'wx1', { name: 'late-b', rows: 1 }, late);
  expect(await store.feeding('wx1')).toContain('c3');
  expect(await store.state('c3')).toBe('enqueuing');
  expect(await store.finishEnqueue('c3', late.id)).toBe(SETTLE_RESULT.open);
  expect(await store.get('c3')).toMatchObject({
    state: 'active',
    total: 2,
    done: 1,
    cursor: { chunk: 1, row: 0 },
  });
  expect(await store.chunks('c3', 1)).toEqual([{ name: 'late-b', rows: 1 }]);
});
