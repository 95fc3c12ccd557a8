import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CampaignStore,
  DELETE_RESULT,
  type FeedCursor,
  type ProducerLease,
  producerLease,
  SETTLE_RESULT,
  type SlotRow,
} from '../../src/campaign/store.js';
import { codeOptions } from '../../src/wechat/params.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

const APP = 'wxstore00000000001';

describe('CampaignStore', () => {
  const redis = connect();
  const prefix = testPrefix();
  const store = new CampaignStore(redis, prefix);
  const options = codeOptions({ kind: 'unlimited' });
  const others: Redis[] = [];

  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
    for (const other of others) other.disconnect();
  });

  /** Stores on connections of their own, so that their scripts race as separate workers' do. */
  function workers(n: number): CampaignStore[] {
    return Array.from({ length: n }, () => {
      const other = connect();
      others.push(other);
      return new CampaignStore(other, prefix);
    });
  }

  const key = (id: string, part?: string) => [prefix, 'campaign', id, ...(part ? [part] : [])].join(':');
  const at = (chunk: number, row: number): FeedCursor => ({ chunk, row });
  const rowsOf = (chunk: number, values: string[], from = 0): SlotRow[] =>
    values.map((value, i) => ({ slot: `${chunk}:${from + i}`, value }));

  /** A campaign of one chunk of `values`, all fed; open while `lease` holds it, active without one. */
  async function fedCampaign(id: string, values: string[], lease?: ProducerLease): Promise<SlotRow[]> {
    expect((await store.open(id, APP, options, lease)).outcome).toBe('created');
    await store.addChunk(id, APP, { name: 'c0', rows: values.length }, lease);
    const rows = rowsOf(0, values);
    expect(await store.feed(id, at(0, 0), at(1, 0), rows)).toBe(true);
    if (!lease) expect(await store.finishEnqueue(id)).toBe(SETTLE_RESULT.open);
    return rows;
  }

  /** The counters next to what the window and failed hashes hold. */
  async function counts(id: string) {
    const meta = (await store.get(id))!;
    return {
      state: meta.state,
      total: meta.total,
      done: meta.done,
      failed: meta.failed,
      queued: meta.queued,
      window: await redis.hlen(key(id, 'window')),
      failedRows: await redis.hlen(key(id, 'failed')),
    };
  }

  it('registers chunks in input order, counting their rows in the total', async () => {
    const lease = producerLease();
    expect(await store.open('chunks', APP, options, lease)).toEqual({ outcome: 'created' });
    expect(await store.addChunk('chunks', APP, { name: 'p-0', rows: 7 }, lease)).toBe(0);
    expect(await store.addChunk('chunks', APP, { name: 'p-1', rows: 3 }, lease)).toBe(1);
    // Reopened by a second enqueue: its chunks go after the first's.
    expect(await store.open('chunks', APP, options)).toEqual({ outcome: 'exists' });
    expect(await store.addChunk('chunks', APP, { name: 'q 0', rows: 5 })).toBe(2);
    expect(await store.chunks('chunks')).toEqual([
      { name: 'p-0', rows: 7 },
      { name: 'p-1', rows: 3 },
      { name: 'q 0', rows: 5 },
    ]);
    expect(await store.chunks('chunks', 2)).toEqual([{ name: 'q 0', rows: 5 }]);
    expect(await store.finishEnqueue('chunks', lease.id)).toBe(SETTLE_RESULT.open);
    expect(await store.get('chunks')).toMatchObject({
      state: 'active',
      total: 15,
      done: 0,
      failed: 0,
      queued: 0,
      cursor: { chunk: 0, row: 0 },
    });
    expect(await store.feeding(APP)).toContain('chunks');
  });

  it('feeds from the cursor the feeder read, once among racing feeders, and only while running', async () => {
    await store.open('feed', APP, options);
    await store.addChunk('feed', APP, { name: 'c0', rows: 4 });
    await store.addChunk('feed', APP, { name: 'c1', rows: 4 });
    await store.finishEnqueue('feed');
    const values = ['a', 'b', 'c', 'd'];
    // Feeders that all read the cursor at 0:0 race to queue overlapping rows: only one moves it.
    const racing = workers(4).map((s, i) =>
      s.feed('feed', at(0, 0), at(0, i + 1), rowsOf(0, values.slice(0, i + 1))),
    );
    const fed = await Promise.all(racing);
    expect(fed.filter(Boolean)).toHaveLength(1);
    const winner = fed.indexOf(true) + 1;
    expect(await store.get('feed')).toMatchObject({ cursor: { chunk: 0, row: winner }, queued: winner });
    expect(await redis.hgetall(key('feed', 'window'))).toEqual(
      Object.fromEntries(values.slice(0, winner).map((v, i) => [`0:${i}`, v])),
    );
    // Across the chunk boundary, from where the winner left the cursor.
    expect(await store.feed('feed', at(0, 0), at(1, 1), rowsOf(0, values))).toBe(false);
    const rest = [...rowsOf(0, values.slice(winner), winner), ...rowsOf(1, ['e'])];
    expect(await store.feed('feed', at(0, winner), at(1, 1), rest)).toBe(true);
    expect(await counts('feed')).toMatchObject({ queued: 5, window: 5 });
    expect((await store.get('feed'))!.cursor).toEqual({ chunk: 1, row: 1 });

    expect(await store.stop('feed', 41030, 'invalid page')).toBe(true);
    expect(await store.feed('feed', at(1, 1), at(2, 0), rowsOf(1, ['f', 'g', 'h'], 1))).toBe(false);
    expect(await counts('feed')).toMatchObject({ queued: 5, window: 5 });
    expect((await store.get('feed'))!.cursor).toEqual({ chunk: 1, row: 1 });
    expect(await store.feed('unknown', at(0, 0), at(0, 1), rowsOf(0, ['x']))).toBe(false);
  });

  it('settles a slot once: done stays done, and a second outcome changes no counter', async () => {
    await fedCampaign('once', ['x', 'y', 'z']);
    expect(await store.markRow('once', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.open);
    const after = await counts('once');
    expect(after).toMatchObject({ done: 1, failed: 0, queued: 2, window: 2 });
    expect(await store.markRow('once', '0:0', { status: 'failed', errcode: -1, errmsg: 'late' })).toBe(
      SETTLE_RESULT.open,
    );
    expect(await store.markRow('once', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.open);
    // A slot never fed settles nothing either.
    expect(await store.markRow('once', '0:7', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await counts('once')).toEqual(after);

    expect(
      await store.markRow('once', '0:1', { status: 'failed', errcode: 40129, errmsg: 'invalid scene' }),
    ).toBe(SETTLE_RESULT.open);
    // The failure keeps its value beside its reason: `retry` and the manifest read it from there.
    expect(JSON.parse((await redis.hget(key('once', 'failed'), '0:1'))!)).toEqual([
      40129,
      'invalid scene',
      'y',
    ]);
    expect(await store.markRow('once', '0:1', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await store.fedStatuses('once', ['0:0', '0:1', '0:2'])).toEqual([
      { status: 'done' },
      { status: 'failed', errcode: 40129, errmsg: 'invalid scene' },
      { status: 'pending' },
    ]);
    expect(await store.markRow('once', '0:2', { status: 'done' })).toBe(SETTLE_RESULT.completed);
    expect(await store.markRow('once', '0:2', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await counts('once')).toEqual({
      state: 'completed',
      total: 3,
      done: 2,
      failed: 1,
      queued: 0,
      window: 0,
      failedRows: 1,
    });
    expect(await store.markRow('nope', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.unknown);
  });

  it('completes exactly once, to one caller, and keeps the counts whole under racing workers', async () => {
    const values = Array.from({ length: 60 }, (_, i) => `r${i}`);
    const rows = await fedCampaign('race', values);
    const fleet = workers(4);
    // Every row settled by each worker at once, some with a failure: jobs run twice after a stall, say.
    const results = await Promise.all(
      rows.flatMap(({ slot }, i) =>
        fleet.map((s, w) =>
          s.markRow(
            'race',
            slot,
            (i + w) % 3 === 0
              ? { status: 'failed', errcode: -1, errmsg: 'system error' }
              : { status: 'done' },
          ),
        ),
      ),
    );
    expect(results.filter((r) => r === SETTLE_RESULT.completed)).toHaveLength(1);
    expect(results.filter((r) => r === SETTLE_RESULT.open)).toHaveLength(rows.length * fleet.length - 1);
    const c = await counts('race');
    expect(c).toMatchObject({ state: 'completed', total: 60, queued: 0, window: 0 });
    expect(c.done + c.failed).toBe(60);
    expect(c.failedRows).toBe(c.failed);
    const statuses = await store.fedStatuses(
      'race',
      rows.map((r) => r.slot),
    );
    expect(statuses.filter((s) => s.status === 'done')).toHaveLength(c.done);
  });

  it('keeps done + failed + pending equal to the total while retries race the workers', async () => {
    const values = Array.from({ length: 40 }, (_, i) => `t${i}`);
    const lease = producerLease();
    const rows = await fedCampaign('retries', values, lease);
    const slots = rows.map((r) => r.slot);
    const failure = { status: 'failed', errcode: -1, errmsg: 'system error' } as const;
    await Promise.all(slots.map((slot) => store.markRow('retries', slot, failure)));
    const [a, b, c] = workers(3);
    for (let round = 0; round < 3; round++) {
      await Promise.all([
        a!.requeueFailed('retries', slots),
        b!.requeueFailed('retries', slots),
        ...slots.map((slot, i) => c!.markRow('retries', slot, i % 2 === 0 ? { status: 'done' } : failure)),
      ]);
      const now = await counts('retries');
      expect(now.done + now.failed + now.queued).toBe(40);
      expect(now.window).toBe(now.queued);
      expect(now.failedRows).toBe(now.failed);
    }
    // Done stays done: no requeue brings a done row back.
    const statuses = await store.fedStatuses('retries', slots);
    const done = slots.filter((_, i) => statuses[i]!.status === 'done');
    expect(done.length).toBe((await counts('retries')).done);
    const moved = await store.requeueFailed('retries', slots);
    expect(moved.map((r) => r.slot).filter((slot) => done.includes(slot))).toEqual([]);
    expect((await counts('retries')).done).toBe(done.length);
    expect(await store.fedStatuses('retries', done)).toEqual(done.map(() => ({ status: 'done' })));
    expect(await store.finishEnqueue('retries', lease.id)).toBe(SETTLE_RESULT.open);
  });

  it('moves failed rows back to the window with requeueFailed, and the counters follow', async () => {
    const lease = producerLease();
    await fedCampaign('requeue', ['a', 'b', 'c'], lease);
    await store.markRow('requeue', '0:0', { status: 'failed', errcode: 45009, errmsg: 'limit' });
    await store.markRow('requeue', '0:1', { status: 'failed', errcode: -1, errmsg: 'system error' });
    await store.markRow('requeue', '0:2', { status: 'done' });
    expect(await counts('requeue')).toMatchObject({
      done: 1,
      failed: 2,
      queued: 0,
      window: 0,
      failedRows: 2,
    });

    // Only failed rows move: a done one, or one never fed, stays as it is.
    expect(await store.requeueFailed('requeue', ['0:0', '0:2', '0:9'])).toEqual([
      { slot: '0:0', value: 'a' },
    ]);
    expect(await store.requeueFailed('requeue', ['0:0'])).toEqual([]);
    expect(await store.requeueFailed('requeue', [])).toEqual([]);
    expect(await counts('requeue')).toMatchObject({
      done: 1,
      failed: 1,
      queued: 1,
      window: 1,
      failedRows: 1,
    });
    expect(await redis.hget(key('requeue', 'window'), '0:0')).toBe('a');
    expect(await store.fedStatuses('requeue', ['0:0', '0:1', '0:2'])).toEqual([
      { status: 'pending' },
      { status: 'failed', errcode: -1, errmsg: 'system error' },
      { status: 'done' },
    ]);
    const failed = [];
    for await (const batch of store.failedRows('requeue')) failed.push(...batch);
    expect(failed).toEqual([{ slot: '0:1', value: 'b', errcode: -1, errmsg: 'system error' }]);

    expect(await store.markRow('requeue', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await counts('requeue')).toMatchObject({
      done: 2,
      failed: 1,
      queued: 0,
      window: 0,
      failedRows: 1,
    });
    expect(await store.finishEnqueue('requeue', lease.id)).toBe(SETTLE_RESULT.completed);
  });

  it('answers the queued rows whose job does not exist', async () => {
    await fedCampaign('orphans', ['a', 'b', 'c', 'd']);
    const jobKey = (slot: string) => `${prefix}:jobs:${slot}`;
    await redis.set(jobKey('0:0'), '1');
    await store.markRow('orphans', '0:1', { status: 'done' });
    const slots = ['0:0', '0:1', '0:2', '0:3', '0:9'];
    expect(await store.queuedWithoutJob('orphans', slots, slots.map(jobKey))).toEqual([
      { slot: '0:2', value: 'c' },
      { slot: '0:3', value: 'd' },
    ]);
    expect(await store.queuedWithoutJob('orphans', [], [])).toEqual([]);
    const window = [];
    for await (const batch of store.windowRows('orphans', 1)) window.push(...batch);
    expect(window.sort((x, y) => x.slot.localeCompare(y.slot))).toEqual([
      { slot: '0:0', value: 'a' },
      { slot: '0:2', value: 'c' },
      { slot: '0:3', value: 'd' },
    ]);
  });

  it('reports a conflict for other options and a stop for stopped campaigns', async () => {
    await fedCampaign('conflict', ['s']);
    const other = await store.open('conflict', APP, codeOptions({ kind: 'unlimited', width: 600 }));
    expect(other.outcome).toBe('conflict');
    expect((await store.open('conflict', 'wxother', options)).outcome).toBe('conflict');
    expect(await store.stop('conflict', 41030, 'invalid page')).toBe(true);
    expect(await store.stop('conflict', 41030, 'invalid page')).toBe(false);
    expect(await store.open('conflict', APP, options)).toMatchObject({
      outcome: 'stopped',
      existing: { state: 'stopped', stop: { errcode: 41030, errmsg: 'invalid page' } },
    });
    // A stopped row settles still (a job that was running), and moves no state.
    expect(await store.markRow('conflict', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.open);
    expect(await store.state('conflict')).toBe('stopped');
  });

  it('deletes a campaign only in the states asked, with every key of it and its feeding entry', async () => {
    const lease = producerLease();
    await fedCampaign('gone', ['a', 'b'], lease);
    await store.markRow('gone', '0:1', { status: 'failed', errcode: -1, errmsg: 'system error' });
    const keys = ['', 'chunks', 'window', 'failed', 'producers'].map((part) => key('gone', part));
    for (const k of keys) expect(await redis.exists(k), k).toBe(1);

    expect(await store.delete('gone', APP, ['completed', 'stopped'])).toBe('enqueuing');
    expect(await redis.exists(...keys)).toBe(keys.length);
    expect(await store.delete('gone', APP, ['enqueuing'])).toBe(DELETE_RESULT.deleted);
    expect(await redis.exists(...keys)).toBe(0);
    expect(await store.list()).not.toContain('gone');
    expect(await store.feeding(APP)).not.toContain('gone');
    expect(await store.get('gone')).toBeUndefined();
    expect(await store.delete('gone', APP, ['enqueuing'])).toBe(DELETE_RESULT.unknown);
  });

  it('keeps a completed campaign until it completed that long ago by Redis clock', async () => {
    await fedCampaign('recent', ['a']);
    expect(await store.markRow('recent', '0:0', { status: 'done' })).toBe(SETTLE_RESULT.completed);
    const [seconds, micros] = await redis.time();
    const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await redis.hset(key('recent'), 'completedAt', redisNow - 600_000);
    expect(await store.delete('recent', APP, ['completed'], 3_600_000)).toBe(DELETE_RESULT.keptRecent);
    expect(await store.state('recent')).toBe('completed');
    // Completed before completedAt was recorded: counted from its creation.
    await redis.hdel(key('recent'), 'completedAt');
    await redis.hset(key('recent'), 'createdAt', redisNow - 7_200_000);
    expect(await store.delete('recent', APP, ['completed'], 3_600_000)).toBe(DELETE_RESULT.deleted);
    expect(await store.list()).not.toContain('recent');
  });

  it('takes a campaign off the feeding set only when not running, even if reopened meanwhile', async () => {
    // A feeder read the campaign stopped, then a retry resumed it before the feeder took it off.
    await fedCampaign('resumed', ['a']);
    await store.stop('resumed', 41030, 'invalid page');
    const lease = producerLease();
    await store.resume('resumed', APP, lease);
    await store.doneFeeding(APP, 'resumed');
    expect(await store.feeding(APP)).toContain('resumed');
    await store.stop('resumed', 41030, 'invalid page');
    await store.doneFeeding(APP, 'resumed');
    expect(await store.feeding(APP)).not.toContain('resumed');
    // The retry's resume puts it back.
    await store.resume('resumed', APP, lease);
    expect(await store.feeding(APP)).toContain('resumed');
    expect(await store.state('resumed')).toBe('enqueuing');

    // A feeder read the campaign completed, then an enqueue reopened it for more rows.
    await fedCampaign('reopened', ['a']);
    await store.markRow('reopened', '0:0', { status: 'done' });
    expect(await store.state('reopened')).toBe('completed');
    expect((await store.open('reopened', APP, options, producerLease())).outcome).toBe('exists');
    await store.doneFeeding(APP, 'reopened');
    expect(await store.feeding(APP)).toContain('reopened');

    await fedCampaign('finished', ['a']);
    await store.markRow('finished', '0:0', { status: 'done' });
    await store.doneFeeding(APP, 'finished');
    expect(await store.feeding(APP)).not.toContain('finished');
    // Deleted meanwhile: nothing left to feed.
    await redis.sadd(`${prefix}:app:${APP}:feeding`, 'deleted');
    await store.doneFeeding(APP, 'deleted');
    expect(await store.feeding(APP)).not.toContain('deleted');
  });

  it('gives the feeder lease to one holder until it runs out', async () => {
    expect(await store.takeLease('feeder:wxa', 'one', 60_000)).toBe(true);
    expect(await store.takeLease('feeder:wxa', 'two', 60_000)).toBe(false);
    expect(await store.takeLease('feeder:wxa', 'one', 60_000)).toBe(true);
    await redis.pexpire(`${prefix}:feeder:wxa`, 1);
    await waitFor('the lease to run out', () => store.takeLease('feeder:wxa', 'two', 60_000));
    expect(await store.takeLease('feeder:wxa', 'one', 60_000)).toBe(false);
  });
});
