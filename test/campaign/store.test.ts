import { afterAll, describe, expect, it } from 'vitest';
import { ADD_RESULT, CampaignStore, ROW_STATUS, SETTLE_RESULT } from '../../src/campaign/store.js';
import { codeOptions } from '../../src/wechat/params.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

describe('CampaignStore', () => {
  const redis = connect();
  const prefix = testPrefix();
  const store = new CampaignStore(redis, prefix);
  const options = codeOptions({ kind: 'unlimited' });

  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('dedupes rows, keeps input order and counts exactly', async () => {
    expect(await store.open('c1', 'wx1', options)).toEqual({ outcome: 'created', resumed: false });
    expect(await store.addRows('c1', ['a', 'b', 'a'])).toEqual([1, 1, 0]);
    expect(await store.markRow('c1', 'a', { status: 'done' })).toBe('open');
    expect(await store.addRows('c1', ['a', 'c'])).toEqual([2, 1]);
    expect(await store.finishEnqueue('c1')).toBe('open');
    const rows = [];
    for await (const batch of store.rows('c1', 2)) rows.push(...batch);
    expect(rows.map((r) => [r.value, r.row.status])).toEqual([
      ['a', 'done'],
      ['b', 'pending'],
      ['c', 'pending'],
    ]);
    expect(await store.get('c1')).toMatchObject({ state: 'active', total: 3, done: 1, failed: 0 });
  });

  it('completes exactly once, and never turns a done row back', async () => {
    await store.open('c2', 'wx1', options);
    await store.addRows('c2', ['x', 'y']);
    await store.finishEnqueue('c2');
    expect(
      await store.markRow('c2', 'x', { status: 'failed', errcode: 40129, errmsg: 'invalid scene' }),
    ).toBe('open');
    expect(await store.markRow('c2', 'y', { status: 'done' })).toBe('completed');
    expect(await store.markRow('c2', 'y', { status: 'failed', errcode: -1, errmsg: 'late failure' })).toBe(
      'open',
    );
    expect(await store.rowStatus('c2', 'y')).toEqual({ status: 'done' });
    expect(await store.rowStatus('c2', 'x')).toEqual({
      status: 'failed',
      errcode: 40129,
      errmsg: 'invalid scene',
    });
    expect(await store.get('c2')).toMatchObject({ state: 'completed', total: 2, done: 1, failed: 1 });
    expect(await store.markRow('c2', 'nope', { status: 'done' })).toBe('unknown');
  });

  it('reports a conflict for other options and a stop for stopped campaigns', async () => {
    await store.open('c3', 'wx1', options);
    await store.addRows('c3', ['s']);
    await store.finishEnqueue('c3');
    const other = await store.open('c3', 'wx1', codeOptions({ kind: 'unlimited', width: 600 }));
    expect(other.outcome).toBe('conflict');
    expect(await store.stop('c3', 41030, 'invalid page')).toBe(true);
    expect(await store.stop('c3', 41030, 'invalid page')).toBe(false);
    const stopped = await store.open('c3', 'wx1', options);
    expect(stopped).toMatchObject({
      outcome: 'stopped',
      existing: { stop: { errcode: 41030, errmsg: 'invalid page' } },
    });
  });

  it('marks an interrupted enqueue as resumed', async () => {
    await store.open('c4', 'wx1', options);
    await store.addRows('c4', ['r']);
    expect(await store.open('c4', 'wx1', options)).toEqual({ outcome: 'exists', resumed: true });
  });

  it('stores and answers the values its constants name, moving a retried failure to done', async () => {
    const rows = `${prefix}:campaign:c5:rows`;
    await store.open('c5', 'wx1', options);
    expect(await store.addRows('c5', ['a', 'b'])).toEqual([ADD_RESULT.added, ADD_RESULT.added]);
    expect(await redis.hget(rows, 'a')).toBe(ROW_STATUS.pending);
    expect(await store.finishEnqueue('c5')).toBe(SETTLE_RESULT.open);
    await store.markRow('c5', 'a', { status: 'failed', errcode: -1, errmsg: 'system error' });
    expect(await redis.hget(rows, 'a')).toBe(`${ROW_STATUS.failed}-1|system error`);
    expect(await store.addRows('c5', ['a', 'b'])).toEqual([
      ADD_RESULT.alreadySettled,
      ADD_RESULT.alreadyPending,
    ]);
    expect(await store.markRow('c5', 'a', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await redis.hget(rows, 'a')).toBe(ROW_STATUS.done);
    expect(await store.get('c5')).toMatchObject({ state: 'active', total: 2, done: 1, failed: 0 });
    expect(await store.markRow('c5', 'b', { status: 'done' })).toBe(SETTLE_RESULT.completed);
    expect(await store.markRow('c5', 'c', { status: 'done' })).toBe(SETTLE_RESULT.unknown);
  });
});
