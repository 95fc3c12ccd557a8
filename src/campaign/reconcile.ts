/**
 * The workers' reconcile. A row can be left pending with no job to carry it: BullMQ fails and removes a job whose
 * last attempt threw outside the WeChat call (the campaign lookup, `markRow`), an interrupted enqueue recorded
 * rows it never queued, a `retry` turned back to pending a row whose job was just finishing. And a campaign whose
 * producer died after every row settled is completed by nothing else. So every interval one worker of the fleet
 * goes over the running campaigns of its apps: it completes those no producer holds open any more, and queues
 * again the pending rows of active ones that have no job. Deterministic job ids keep a row from being queued
 * twice: an add whose job exists is ignored. With a retention, the same pass drops the records of the app's
 * campaigns that completed longer ago than that.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type Logger, silentLogger } from '../log.js';
import type { CampaignLifecycle } from './lifecycle.js';
import { type CodeJobData, jobId, jobsFor, openQueue } from './queue.js';
import { DELETE_RESULT } from './store.js';

export const RECONCILE_INTERVAL_MS = 60_000;

/** Rows read and checked at a time, so a million-row campaign costs a thousand short scripts, not one long one. */
const BATCH = 1000;

export interface ReconcilerOptions {
  lifecycle: CampaignLifecycle;
  /** The BullMQ connection of the worker. */
  connection: Redis;
  /** The apps whose campaigns are reconciled: those the worker has queues for. */
  apps: string[];
  /** Default RECONCILE_INTERVAL_MS. */
  intervalMs?: number;
  /** WXACODE_RETENTION: how long a completed campaign's records stay in Redis; undefined, forever. */
  retentionMs?: number;
  logger?: Logger;
}

export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  readonly #queues = new Map<string, Queue<CodeJobData>>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: ReconcilerOptions) {
    this.#o = options;
    this.#intervalMs = options.intervalMs ?? RECONCILE_INTERVAL_MS;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Reconcile now (a worker started after a crash heals at once), then every interval. */
  static start(options: ReconcilerOptions): Reconciler {
    const reconciler = new Reconciler(options);
    reconciler.#schedule(0);
    return reconciler;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().then(() => {
        if (!this.#closed) this.#schedule(this.#intervalMs);
      });
    }, delayMs);
    // Never the reason a process stays up: the worker's own close stops it.
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      for (const appid of this.#o.apps) {
        if (!this.#closed && (await this.#lead(appid))) await this.#reconcile(appid);
      }
    } catch (err) {
      this.#logger.warn(
        { err: (err as Error).message },
        'reconcile failed; it runs again at the next interval',
      );
    }
  }

  /**
   * One pass per app and interval across the fleet: the lock outlives this pass until just before this worker's
   * next one, so whichever worker of the app comes first after it takes the next.
   */
  async #lead(appid: string): Promise<boolean> {
    const store = this.#o.lifecycle.store;
    const key = `${store.prefix}:reconcile:${appid}`;
    return (await store.redis.set(key, '1', 'PX', Math.floor(this.#intervalMs * 0.9), 'NX')) === 'OK';
  }

  async #reconcile(appid: string): Promise<void> {
    const { lifecycle } = this.#o;
    const store = lifecycle.store;
    for (const id of await store.list()) {
      if (this.#closed) break;
      const state = await store.state(id);
      if (state === 'completed' && this.#o.retentionMs !== undefined) await this.#expire(id, appid);
      if (state !== 'enqueuing' && state !== 'active') continue;
      const meta = await store.get(id);
      if (meta?.appid !== appid) continue;
      // Producers whose leases ran out never finish their enqueue: this finishes it for them.
      const { state: settled } = await lifecycle.finishEnqueue(id);
      if (settled === 'open' && (await store.state(id)) === 'active') {
        await this.#requeueOrphans(id, appid);
      }
    }
  }

  /** A completed campaign has no jobs left: its records are all there is to drop. Storage keeps its files. */
  async #expire(campaign: string, appid: string): Promise<void> {
    const store = this.#o.lifecycle.store;
    const retentionMs = this.#o.retentionMs!;
    const meta = await store.get(campaign);
    if (meta?.appid !== appid || Date.now() - (meta.completedAt ?? meta.createdAt) < retentionMs) return;
    // Checked again inside Redis, by its clock: a retry may have reopened the campaign since.
    if ((await store.delete(campaign, ['completed'], retentionMs)) === DELETE_RESULT.deleted) {
      this.#logger.info(
        { campaign, completedAt: meta.completedAt },
        'dropped the records of a campaign past WXACODE_RETENTION',
      );
    }
  }

  async #requeueOrphans(campaign: string, appid: string): Promise<void> {
    const store = this.#o.lifecycle.store;
    const queue = this.#queue(appid);
    let requeued = 0;
    for await (const batch of store.rows(campaign, BATCH)) {
      const pending = batch.filter(({ row }) => row.status === 'pending').map(({ value }) => value);
      const jobKeys = pending.map((value) => queue.toKey(jobId(campaign, value)));
      const orphans = await store.pendingWithoutJob(campaign, pending, jobKeys);
      if (orphans.length === 0) continue;
      await queue.addBulk(jobsFor(campaign, orphans));
      requeued += orphans.length;
    }
    if (requeued > 0) {
      this.#logger.warn({ campaign, rows: requeued }, 'queued again rows that were pending with no job');
    }
  }

  #queue(appid: string): Queue<CodeJobData> {
    let queue = this.#queues.get(appid);
    if (!queue) {
      queue = openQueue(this.#o.connection, this.#o.lifecycle.store.prefix, appid);
      this.#queues.set(appid, queue);
    }
    return queue;
  }

  /** Stop, after the pass under way if any. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    await Promise.all([...this.#queues.values()].map((queue) => queue.close()));
  }
}
