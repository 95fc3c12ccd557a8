/**
 * What Redis knows about campaigns, beside BullMQ's own keys. A campaign's rows are not here: they are in its
 * record, chunk files in storage (campaign/record.ts), and Redis holds only what is in flight. All keys sit under
 * `${prefix}:`:
 *
 * - `campaigns`                 sorted set of campaign ids by creation time
 * - `campaign:<id>`             hash: appid, kind, options (JSON, stored once per campaign, never per job),
 *                               state, total, done, failed, createdAt, stop reason, manifest key, priority, and the
 *                               feeding cursor: fedChunk and fedRow (the next row to queue), queued (rows in the
 *                               window)
 * - `campaign:<id>:chunks`      list of the record's chunks in input order, `<name> <rows>` each
 * - `campaign:<id>:window`      hash: slot (`<chunk>:<row>`) → row value, for the rows queued and not settled:
 *                               at most the window (WXACODE_WINDOW) plus the rows a `retry` put back
 * - `campaign:<id>:failed`      hash: slot → JSON [errcode, errmsg, value], for `retry` and the manifest
 * - `campaign:<id>:producers`   sorted set of the producers adding rows (an enqueue, a retry) by when their lease
 *                               runs out: the campaign completes only when none is left (src/lua/includes/producers.lua)
 * - `app:<appid>`               hash of app-wide stops (the A+C quota spent, credentials refused)
 * - `app:<appid>:feeding`       set of the app's campaigns with rows the feeders may still queue (campaign/feeder.ts)
 * - `feeder:<appid>`            the lease of the one worker feeding the app's campaigns
 * - `stash`, `stash:bytes`      images whose upload failed, and the bytes they hold (campaign/stash.ts)
 *
 * A row is done when it was fed (its slot is before the cursor) and is in neither the window nor the failed
 * hash. Counters change only inside the Lua scripts of src/lua, together with the row they count, so
 * `done + failed + pending` always equals `total` however many workers race on one row.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { defineScripts, luaScript, type ScriptedRedis } from '../lua.js';
import type { CodeOptions, Kind } from '../wechat/params.js';

export type CampaignState = 'enqueuing' | 'active' | 'stopped' | 'completed';

export interface StopReason {
  errcode: number;
  errmsg: string;
  at: number;
}

/** Where the feeders are in a campaign's record: the next row to queue is row `row` of chunk `chunk`. */
export interface FeedCursor {
  chunk: number;
  row: number;
}

export interface CampaignMeta {
  id: string;
  appid: string;
  kind: Kind;
  options: CodeOptions;
  state: CampaignState;
  total: number;
  done: number;
  failed: number;
  createdAt: number;
  /** When its last row settled with no producer left (a retry reopens it, and the next completion moves it). */
  completedAt?: number;
  stop?: StopReason;
  manifestKey?: string;
  /** BullMQ's priority of its jobs: 1 goes first (see PRIORITIES). */
  priority: number;
  cursor: FeedCursor;
  /** Rows in its window: queued, not settled. */
  queued: number;
}

export type RowStatus =
  | { status: 'pending' }
  | { status: 'done' }
  | { status: 'failed'; errcode: number; errmsg: string };

/** How a worker settles a row. */
export type RowOutcome = Exclude<RowStatus, { status: 'pending' }>;

/** A row of the record once fed: its place (`<chunk>:<row>`) and its value. */
export interface SlotRow {
  slot: string;
  value: string;
}

export interface FailedRow extends SlotRow {
  errcode: number;
  errmsg: string;
}

/** A chunk of a campaign's record, in the order of the `chunks` list. */
export interface ChunkEntry {
  name: string;
  rows: number;
}

export type AppStop = 'acQuota' | 'credentials';

/**
 * BullMQ priorities (1 first) by name: `enqueue --priority`. Every job has one, since BullMQ takes jobs without a
 * priority before all others; within a priority, jobs go first in, first out, and windows keep that fair.
 */
export const PRIORITIES = { high: 1, normal: 2, low: 3 } as const;
export type PriorityName = keyof typeof PRIORITIES;

/**
 * A producer's hold on a campaign while it adds rows. Renewed every third of its life (and by each addChunk), so
 * it runs out only when its producer is gone, stalled, or cut off from Redis for that long.
 */
export interface ProducerLease {
  id: string;
  ms: number;
}

export const PRODUCER_LEASE_MS = 30_000;

export function producerLease(ms = PRODUCER_LEASE_MS): ProducerLease {
  return { id: randomUUID(), ms };
}

export const CAMPAIGN_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function campaignIdProblem(id: string): string | undefined {
  return CAMPAIGN_ID.test(id) ? undefined : `campaign id "${id}" must be 1-64 letters, digits, _ or -`;
}

export function slotOf(cursor: FeedCursor): string {
  return `${cursor.chunk}:${cursor.row}`;
}

/** Whether the feeders have queued the row at `at` (it is before the cursor). */
export function fed(at: FeedCursor, cursor: FeedCursor): boolean {
  return at.chunk < cursor.chunk || (at.chunk === cursor.chunk && at.row < cursor.row);
}

/** What a row's outcome is called in markRow.lua. */
export const ROW_STATUS = { done: 'd', failed: 'f' } as const;

/** What deleteCampaign.lua answers besides the state that kept a campaign. */
export const DELETE_RESULT = { deleted: 'deleted', unknown: 'unknown', keptRecent: 'recent' } as const;

/** What finishEnqueue and markRow answer: `completed` goes to the one caller that completed the campaign. */
export const SETTLE_RESULT = { completed: 'completed', open: 'open', unknown: 'unknown' } as const;

export type SettleResult = (typeof SETTLE_RESULT)[keyof typeof SETTLE_RESULT];

/** The values above under the names the scripts in src/lua read them by. */
const LUA_CONSTANTS = {
  DONE: ROW_STATUS.done,
  FAILED: ROW_STATUS.failed,
  COMPLETED: SETTLE_RESULT.completed,
  OPEN: SETTLE_RESULT.open,
  UNKNOWN: SETTLE_RESULT.unknown,
  DELETED: DELETE_RESULT.deleted,
  KEPT_RECENT: DELETE_RESULT.keptRecent,
};

const SCRIPTS = {
  wxCreateCampaign: luaScript('createCampaign', 4),
  wxAddChunk: luaScript('addChunk', 4),
  wxFeed: luaScript('feed', 2),
  wxFinishEnqueue: luaScript('finishEnqueue', 2, LUA_CONSTANTS),
  wxMarkRow: luaScript('markRow', 4, LUA_CONSTANTS),
  wxRequeueFailed: luaScript('requeueFailed', 3),
  wxQueuedWithoutJob: luaScript('queuedWithoutJob', 1),
  wxHoldOpen: luaScript('holdOpen', 2),
  wxResumeCampaign: luaScript('resumeCampaign', 3),
  wxStopCampaign: luaScript('stopCampaign', 1),
  wxDeleteCampaign: luaScript('deleteCampaign', 7, LUA_CONSTANTS),
  wxTakeLease: luaScript('takeLease', 1),
  wxDoneFeeding: luaScript('doneFeeding', 2),
  wxReleaseLock: luaScript('releaseLock', 1),
};

function leaseArgs(lease: ProducerLease | undefined): [string, number] {
  return lease ? [lease.id, lease.ms] : ['', 0];
}

/** `[slot, value, slot, value…]` as Lua answers them. */
function slotRows(flat: string[]): SlotRow[] {
  const rows: SlotRow[] = [];
  for (let i = 0; i < flat.length; i += 2) rows.push({ slot: flat[i]!, value: flat[i + 1]! });
  return rows;
}

export class CampaignStore {
  readonly #redis: ScriptedRedis<keyof typeof SCRIPTS>;

  constructor(
    redis: Redis,
    readonly prefix: string,
  ) {
    this.#redis = defineScripts(redis, SCRIPTS);
  }

  get redis(): Redis {
    return this.#redis;
  }

  #key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  #keys(id: string) {
    return {
      meta: this.#key('campaign', id),
      chunks: this.#key('campaign', id, 'chunks'),
      window: this.#key('campaign', id, 'window'),
      failed: this.#key('campaign', id, 'failed'),
      producers: this.#key('campaign', id, 'producers'),
    };
  }

  #feedingKey(appid: string): string {
    return this.#key('app', appid, 'feeding');
  }

  /**
   * Create a campaign, or reopen an existing one with the same app and options for more rows. With a lease, the
   * campaign cannot complete until `finishEnqueue` or the lease runs out. A campaign reopened keeps its priority.
   */
  async open(
    id: string,
    appid: string,
    options: CodeOptions,
    lease?: ProducerLease,
    priority: number = PRIORITIES.normal,
  ): Promise<
    { outcome: 'created' | 'exists' } | { outcome: 'conflict' | 'stopped'; existing: CampaignMeta }
  > {
    const k = this.#keys(id);
    const [outcome] = (await this.#redis.wxCreateCampaign(
      k.meta,
      this.#key('campaigns'),
      k.producers,
      this.#feedingKey(appid),
      id,
      appid,
      options.kind,
      JSON.stringify(options),
      Date.now(),
      ...leaseArgs(lease),
      priority,
    )) as [string, string];
    if (outcome === 'conflict' || outcome === 'stopped') {
      return { outcome, existing: (await this.get(id))! };
    }
    return { outcome: outcome as 'created' | 'exists' };
  }

  /**
   * Register a chunk of the record, stored already, at the end of the campaign's input; its rows count in the
   * total from now on. The lease is renewed with it. Returns the chunk's index.
   */
  async addChunk(id: string, appid: string, chunk: ChunkEntry, lease?: ProducerLease): Promise<number> {
    const k = this.#keys(id);
    return (await this.#redis.wxAddChunk(
      k.meta,
      k.chunks,
      k.producers,
      this.#feedingKey(appid),
      ...leaseArgs(lease),
      chunk.name,
      chunk.rows,
      id,
    )) as number;
  }

  /** The record's chunks from index `from` on, in input order. */
  async chunks(id: string, from = 0): Promise<ChunkEntry[]> {
    const entries = await this.#redis.lrange(this.#keys(id).chunks, from, -1);
    return entries.map((entry) => {
      const space = entry.lastIndexOf(' ');
      return { name: entry.slice(0, space), rows: Number(entry.slice(space + 1)) };
    });
  }

  /**
   * Queue `rows` in the window and move the cursor from `at` to `to`, if it is still at `at` and the campaign is
   * running. False when another feeder moved it first, or the campaign stopped or completed.
   */
  async feed(id: string, at: FeedCursor, to: FeedCursor, rows: SlotRow[]): Promise<boolean> {
    const k = this.#keys(id);
    const args = rows.flatMap(({ slot, value }) => [slot, value]);
    return (await this.#redis.wxFeed(k.meta, k.window, at.chunk, at.row, to.chunk, to.row, ...args)) === 1;
  }

  async holdOpen(id: string, lease: ProducerLease): Promise<void> {
    const k = this.#keys(id);
    await this.#redis.wxHoldOpen(k.meta, k.producers, lease.id, lease.ms);
  }

  /**
   * The producer is done adding rows: once no other producer holds the campaign open, it is active, or completed
   * if nothing is left to do. Without a producer, only that check: producers whose leases ran out never call it.
   */
  async finishEnqueue(id: string, producer = ''): Promise<'completed' | 'open'> {
    const k = this.#keys(id);
    return (await this.#redis.wxFinishEnqueue(k.meta, k.producers, producer)) as 'completed' | 'open';
  }

  /** Settle a queued row; a row settled already (or never queued) changes nothing. */
  async markRow(id: string, slot: string, outcome: RowOutcome): Promise<SettleResult> {
    const k = this.#keys(id);
    const failed = outcome.status === 'failed';
    return (await this.#redis.wxMarkRow(
      k.meta,
      k.window,
      k.failed,
      k.producers,
      slot,
      failed ? ROW_STATUS.failed : ROW_STATUS.done,
      failed ? outcome.errcode : '',
      failed ? outcome.errmsg : '',
    )) as SettleResult;
  }

  /** Move failed rows back to the window, pending again; answers those moved. */
  async requeueFailed(id: string, slots: string[]): Promise<SlotRow[]> {
    if (slots.length === 0) return [];
    const k = this.#keys(id);
    return slotRows((await this.#redis.wxRequeueFailed(k.meta, k.window, k.failed, ...slots)) as string[]);
  }

  /** Of these queued rows (`jobKeys[i]` the job of `slots[i]`), those whose job does not exist. */
  async queuedWithoutJob(id: string, slots: string[], jobKeys: string[]): Promise<SlotRow[]> {
    if (slots.length === 0) return [];
    const args = slots.flatMap((slot, i) => [slot, jobKeys[i]!]);
    return slotRows((await this.#redis.wxQueuedWithoutJob(this.#keys(id).window, ...args)) as string[]);
  }

  /** The rows in the window (queued, not settled), a batch at a time. */
  async *windowRows(id: string, batchSize = 1000): AsyncGenerator<SlotRow[]> {
    for await (const flat of this.#redis.hscanStream(this.#keys(id).window, { count: batchSize })) {
      if ((flat as string[]).length > 0) yield slotRows(flat as string[]);
    }
  }

  /** The failed rows, a batch at a time. */
  async *failedRows(id: string, batchSize = 1000): AsyncGenerator<FailedRow[]> {
    for await (const flat of this.#redis.hscanStream(this.#keys(id).failed, { count: batchSize })) {
      const rows = slotRows(flat as string[]).map(({ slot, value }) => failedRow(slot, value));
      if (rows.length > 0) yield rows;
    }
  }

  /**
   * The status of fed rows, by slot: in the window, pending; in the failed hash, failed with its reason; else
   * done. Rows not fed yet are pending, and not asked about here.
   */
  async fedStatuses(id: string, slots: string[]): Promise<RowStatus[]> {
    if (slots.length === 0) return [];
    const k = this.#keys(id);
    const [queued, failed] = await Promise.all([
      this.#redis.hmget(k.window, ...slots),
      this.#redis.hmget(k.failed, ...slots),
    ]);
    return slots.map((slot, i) => {
      if (queued[i] !== null) return { status: 'pending' };
      const raw = failed[i];
      if (raw == null) return { status: 'done' };
      const { errcode, errmsg } = failedRow(slot, raw);
      return { status: 'failed', errcode, errmsg };
    });
  }

  /** Stop a running campaign; false when it was not running (already stopped, completed or unknown). */
  async stop(id: string, errcode: number, errmsg: string): Promise<boolean> {
    return (await this.#redis.wxStopCampaign(this.#keys(id).meta, errcode, errmsg, Date.now())) === 1;
  }

  /** Clear a stop so the campaign's remaining rows can be queued again, by the producer holding the lease. */
  async resume(id: string, appid: string, lease: ProducerLease): Promise<void> {
    const k = this.#keys(id);
    await this.#redis.wxResumeCampaign(k.meta, k.producers, this.#feedingKey(appid), lease.id, lease.ms, id);
  }

  async state(id: string): Promise<CampaignState | undefined> {
    return ((await this.#redis.hget(this.#keys(id).meta, 'state')) ?? undefined) as CampaignState | undefined;
  }

  async get(id: string): Promise<CampaignMeta | undefined> {
    const h = await this.#redis.hgetall(this.#keys(id).meta);
    if (!h.id) return undefined;
    return {
      id: h.id,
      appid: h.appid!,
      kind: h.kind as Kind,
      options: JSON.parse(h.options!) as CodeOptions,
      state: h.state as CampaignState,
      total: Number(h.total),
      done: Number(h.done),
      failed: Number(h.failed),
      createdAt: Number(h.createdAt),
      completedAt: h.completedAt ? Number(h.completedAt) : undefined,
      stop: h.stopErrcode
        ? { errcode: Number(h.stopErrcode), errmsg: h.stopErrmsg ?? '', at: Number(h.stoppedAt) }
        : undefined,
      manifestKey: h.manifestKey,
      priority: Number(h.priority ?? PRIORITIES.normal),
      cursor: { chunk: Number(h.fedChunk ?? 0), row: Number(h.fedRow ?? 0) },
      queued: Number(h.queued ?? 0),
    };
  }

  async setManifestKey(id: string, key: string): Promise<void> {
    await this.#redis.hset(this.#keys(id).meta, 'manifestKey', key);
  }

  /**
   * Remove the campaign's records in Redis (its hash, chunk list, window, failed rows, producers and its entries
   * in the indexes) if its state is one of `states` and, with `completedMsAgo`, it completed at least that long
   * ago by Redis's clock. Its jobs and its record's files are the caller's (operations.ts); its codes and manifest
   * stay. Answers `deleted`, `unknown`, `recent`, or the state that kept it.
   */
  async delete(id: string, appid: string, states: CampaignState[], completedMsAgo?: number): Promise<string> {
    const k = this.#keys(id);
    return (await this.#redis.wxDeleteCampaign(
      k.meta,
      k.window,
      k.failed,
      k.chunks,
      k.producers,
      this.#key('campaigns'),
      this.#feedingKey(appid),
      id,
      states.join(','),
      completedMsAgo === undefined ? '' : Math.floor(completedMsAgo),
    )) as string;
  }

  /** Campaign ids, oldest first. */
  async list(): Promise<string[]> {
    return this.#redis.zrange(this.#key('campaigns'), 0, -1);
  }

  /** The app's campaigns whose rows the feeders may still queue. */
  async feeding(appid: string): Promise<string[]> {
    return this.#redis.smembers(this.#feedingKey(appid));
  }

  /** Take a campaign that is not running (completed, stopped, deleted) off the feeding set; a retry adds it back. */
  async doneFeeding(appid: string, id: string): Promise<void> {
    await this.#redis.wxDoneFeeding(this.#feedingKey(appid), this.#keys(id).meta, id);
  }

  /** Take, or renew if ours, the lease `name` for `ms`; true while the caller holds it. */
  async takeLease(name: string, holder: string, ms: number): Promise<boolean> {
    return (await this.#redis.wxTakeLease(this.#key(name), holder, ms)) === 1;
  }

  /** Give the lease `name` up if the caller holds it, so that another takes it at once. */
  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#redis.wxReleaseLock(this.#key(name), holder);
  }

  async stopApp(appid: string, what: AppStop, errcode: number, errmsg: string): Promise<void> {
    const reason: StopReason = { errcode, errmsg, at: Date.now() };
    await this.#redis.hset(this.#key('app', appid), what, JSON.stringify(reason));
  }

  async appStop(appid: string, what: AppStop): Promise<StopReason | undefined> {
    const raw = await this.#redis.hget(this.#key('app', appid), what);
    return raw ? (JSON.parse(raw) as StopReason) : undefined;
  }

  async clearAppStop(appid: string, what: AppStop): Promise<void> {
    await this.#redis.hdel(this.#key('app', appid), what);
  }
}

function failedRow(slot: string, raw: string): FailedRow {
  const [errcode, errmsg, value] = JSON.parse(raw) as [number, string, string];
  return { slot, errcode, errmsg, value };
}
