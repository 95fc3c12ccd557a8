/**
 * What Redis knows about campaigns, beside BullMQ's own keys. All keys sit under `${prefix}:`:
 *
 * - `campaigns`                 sorted set of campaign ids by creation time
 * - `campaign:<id>`             hash: appid, kind, options (JSON, stored once per campaign, never per job),
 *                               state, total, done, failed, createdAt, stop reason, manifest key
 * - `campaign:<id>:rows`        hash: row value (scene or path) → status: `p` pending, `d` done,
 *                               `f<errcode>|<errmsg>` failed. It dedupes rows and is the record export reads.
 * - `campaign:<id>:order`       list of row values in input order, so exports follow the input
 * - `campaign:<id>:producers`   sorted set of the producers adding rows (an enqueue, a retry) by when their lease
 *                               runs out: the campaign completes only when none is left (src/lua/includes/producers.lua)
 * - `app:<appid>`               hash of app-wide stops (the A+C quota spent, credentials refused)
 * - `stash`, `stash:bytes`      images whose upload failed, and the bytes they hold (campaign/stash.ts)
 *
 * Counters change only inside the Lua scripts of src/lua, together with the row they count, so
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
}

export type RowStatus =
  | { status: 'pending' }
  | { status: 'done' }
  | { status: 'failed'; errcode: number; errmsg: string };

export type AppStop = 'acQuota' | 'credentials';

/**
 * A producer's hold on a campaign while it adds rows. Renewed every third of its life (and by each addRows), so
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

/** A row's status in the rows hash: these letters, a failure followed by `<errcode>|<errmsg>`. */
export const ROW_STATUS = { pending: 'p', done: 'd', failed: 'f' } as const;

/** What addRows answers per value. */
export const ADD_RESULT = { added: 1, alreadyPending: 0, alreadySettled: 2 } as const;

/** What deleteCampaign.lua answers besides the state that kept a campaign. */
export const DELETE_RESULT = { deleted: 'deleted', unknown: 'unknown', keptRecent: 'recent' } as const;

/** What finishEnqueue and markRow answer: `completed` goes to the one caller that completed the campaign. */
export const SETTLE_RESULT = { completed: 'completed', open: 'open', unknown: 'unknown' } as const;

export function encodeStatus(row: RowStatus): string {
  if (row.status === 'pending') return ROW_STATUS.pending;
  if (row.status === 'done') return ROW_STATUS.done;
  return `${ROW_STATUS.failed}${row.errcode}|${row.errmsg}`;
}

export function decodeStatus(raw: string | null | undefined): RowStatus | undefined {
  if (!raw) return undefined;
  if (raw === ROW_STATUS.pending) return { status: 'pending' };
  if (raw === ROW_STATUS.done) return { status: 'done' };
  const bar = raw.indexOf('|');
  return { status: 'failed', errcode: Number(raw.slice(1, bar)), errmsg: raw.slice(bar + 1) };
}

/** The values above under the names the scripts in src/lua read them by. */
const LUA_CONSTANTS = {
  PENDING: ROW_STATUS.pending,
  DONE: ROW_STATUS.done,
  FAILED: ROW_STATUS.failed,
  ADDED: ADD_RESULT.added,
  ALREADY_PENDING: ADD_RESULT.alreadyPending,
  ALREADY_SETTLED: ADD_RESULT.alreadySettled,
  COMPLETED: SETTLE_RESULT.completed,
  OPEN: SETTLE_RESULT.open,
  UNKNOWN: SETTLE_RESULT.unknown,
  DELETED: DELETE_RESULT.deleted,
  KEPT_RECENT: DELETE_RESULT.keptRecent,
};

const SCRIPTS = {
  wxCreateCampaign: luaScript('createCampaign', 3),
  wxAddRows: luaScript('addRows', 4, LUA_CONSTANTS),
  wxFinishEnqueue: luaScript('finishEnqueue', 2, LUA_CONSTANTS),
  wxMarkRow: luaScript('markRow', 3, LUA_CONSTANTS),
  wxHoldOpen: luaScript('holdOpen', 2),
  wxResumeCampaign: luaScript('resumeCampaign', 2),
  wxPendingWithoutJob: luaScript('pendingWithoutJob', 1, LUA_CONSTANTS),
  wxStopCampaign: luaScript('stopCampaign', 1),
  wxDeleteCampaign: luaScript('deleteCampaign', 5, LUA_CONSTANTS),
};

function leaseArgs(lease: ProducerLease | undefined): [string, number] {
  return lease ? [lease.id, lease.ms] : ['', 0];
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
      rows: this.#key('campaign', id, 'rows'),
      order: this.#key('campaign', id, 'order'),
      producers: this.#key('campaign', id, 'producers'),
    };
  }

  /**
   * Create a campaign, or reopen an existing one with the same app and options for more rows.
   * `resumed` is true when an earlier enqueue did not finish (its rows may be recorded but not queued), or
   * another is under way. With a lease, the campaign cannot complete until `finishEnqueue` or the lease runs out.
   */
  async open(
    id: string,
    appid: string,
    options: CodeOptions,
    lease?: ProducerLease,
  ): Promise<
    | { outcome: 'created' | 'exists'; resumed: boolean }
    | { outcome: 'conflict' | 'stopped'; existing: CampaignMeta }
  > {
    const k = this.#keys(id);
    const [outcome, previous] = (await this.#redis.wxCreateCampaign(
      k.meta,
      this.#key('campaigns'),
      k.producers,
      id,
      appid,
      options.kind,
      JSON.stringify(options),
      Date.now(),
      ...leaseArgs(lease),
    )) as [string, string];
    if (outcome === 'conflict' || outcome === 'stopped') {
      return { outcome, existing: (await this.get(id))! };
    }
    return { outcome: outcome as 'created' | 'exists', resumed: previous === 'enqueuing' };
  }

  /**
   * Record rows; per value an ADD_RESULT: added, already recorded and pending, or already done or failed. The
   * lease is renewed with them, reopening the campaign if it completed after the lease ran out.
   */
  async addRows(id: string, values: string[], lease?: ProducerLease): Promise<number[]> {
    if (values.length === 0) return [];
    const k = this.#keys(id);
    return (await this.#redis.wxAddRows(
      k.meta,
      k.rows,
      k.order,
      k.producers,
      ...leaseArgs(lease),
      ...values,
    )) as number[];
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

  async markRow(id: string, value: string, row: RowStatus): Promise<'completed' | 'open' | 'unknown'> {
    const k = this.#keys(id);
    return (await this.#redis.wxMarkRow(k.meta, k.rows, k.producers, value, encodeStatus(row))) as
      | 'completed'
      | 'open'
      | 'unknown';
  }

  /** Of these rows, those pending whose job (`jobKeys[i]` for `values[i]`) does not exist. */
  async pendingWithoutJob(id: string, values: string[], jobKeys: string[]): Promise<string[]> {
    if (values.length === 0) return [];
    const args = values.flatMap((value, i) => [value, jobKeys[i]!]);
    return (await this.#redis.wxPendingWithoutJob(this.#keys(id).rows, ...args)) as string[];
  }

  async rowStatus(id: string, value: string): Promise<RowStatus | undefined> {
    return decodeStatus(await this.#redis.hget(this.#keys(id).rows, value));
  }

  /** Stop a running campaign; false when it was not running (already stopped, completed or unknown). */
  async stop(id: string, errcode: number, errmsg: string): Promise<boolean> {
    return (await this.#redis.wxStopCampaign(this.#keys(id).meta, errcode, errmsg, Date.now())) === 1;
  }

  /** Clear a stop so the campaign's remaining rows can be queued again, by the producer holding the lease. */
  async resume(id: string, lease: ProducerLease): Promise<void> {
    const k = this.#keys(id);
    await this.#redis.wxResumeCampaign(k.meta, k.producers, lease.id, lease.ms);
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
    };
  }

  async setManifestKey(id: string, key: string): Promise<void> {
    await this.#redis.hset(this.#keys(id).meta, 'manifestKey', key);
  }

  /**
   * Remove the campaign's records (its hash, rows, order, producers and its entry in the index) if its state is
   * one of `states` and, with `completedMsAgo`, it completed at least that long ago by Redis's clock. Its jobs
   * are the caller's (operations.ts), its codes and manifest in storage stay. Answers `deleted`, `unknown`,
   * `recent`, or the state that kept it.
   */
  async delete(id: string, states: CampaignState[], completedMsAgo?: number): Promise<string> {
    const k = this.#keys(id);
    return (await this.#redis.wxDeleteCampaign(
      k.meta,
      k.rows,
      k.order,
      k.producers,
      this.#key('campaigns'),
      id,
      states.join(','),
      completedMsAgo === undefined ? '' : Math.floor(completedMsAgo),
    )) as string;
  }

  /** Campaign ids, oldest first. */
  async list(): Promise<string[]> {
    return this.#redis.zrange(this.#key('campaigns'), 0, -1);
  }

  /** Rows in input order with their status, a batch at a time (memory stays flat for a million rows). */
  async *rows(id: string, batchSize = 1000): AsyncGenerator<{ value: string; row: RowStatus }[]> {
    const k = this.#keys(id);
    for (let start = 0; ; start += batchSize) {
      const values = await this.#redis.lrange(k.order, start, start + batchSize - 1);
      if (values.length === 0) return;
      const statuses = await this.#redis.hmget(k.rows, ...values);
      yield values.map((value, i) => ({ value, row: decodeStatus(statuses[i]) ?? { status: 'pending' } }));
      if (values.length < batchSize) return;
    }
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
