/**
 * The workers' reconcile. A queued row (in its campaign's window) can be left with no job to carry it: BullMQ
 * fails and removes a job whose last attempt threw outside the WeChat call (the campaign lookup, `markRow`), a
 * feeder died between recording rows in the window and adding their jobs, a `retry` put back a row whose job was
 * just finishing. And a campaign whose producer died after every row settled is completed by nothing else. So
 * every interval one worker of the fleet goes over the running campaigns of its apps: it completes those no
 * producer holds open any more, and queues again the window's rows that have no job. Deterministic job ids keep a
 * row from being queued twice: an add whose job exists is ignored. With a retention, the same pass drops the
 * records of the app's campaigns that completed longer ago than that.
 */
import type { Queue } from 'bullmq';
import { type Logger, silentLogger } from '../log.js';
import type { CampaignLifecycle } from './lifecycle.js';
import { type CodeJobData, jobId, jobsFor } from './queue.js';
import type { CampaignMeta } from './store.js';

export const RECONCILE_INTERVAL_MS = 60_000;

export interface ReconcilerOptions {
  lifecycle: CampaignLifecycle;
  /** The apps whose campaigns are reconciled: those the worker has queues for. */
  apps: string[];
  /** The app's queue, the worker's own. */
  queue: (appid: string) => Queue<CodeJobData>;
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
        await this.#requeueOrphans(meta);
      }
    }
  }

  /** A completed campaign has no jobs left: its records are all there is to drop. Storage keeps its codes. */
  async #expire(campaign: string, appid: string): Promise<void> {
    const { lifecycle } = this.#o;
    const retentionMs = this.#o.retentionMs!;
    const meta = await lifecycle.store.get(campaign);
    if (meta?.appid !== appid || Date.now() - (meta.completedAt ?? meta.createdAt) < retentionMs) return;
    // Checked again inside Redis, by its clock: a retry may have reopened the campaign since.
    if ((await lifecycle.deleteRecords(meta, ['completed'], retentionMs)).deleted) {
      this.#logger.info(
        { campaign, completedAt: meta.completedAt },
        'dropped the records of a campaign past WXACODE_RETENTION',
      );
    }
  }

  async #requeueOrphans({ id: campaign, appid, priority }: CampaignMeta): Promise<void> {
    const store = this.#o.lifecycle.store;
    const queue = this.#o.queue(appid);
    let requeued = 0;
    for await (const batch of store.windowRows(campaign)) {
      const slots = batch.map(({ slot }) => slot);
      const jobKeys = slots.map((slot) => queue.toKey(jobId(campaign, slot)));
      const orphans = await store.queuedWithoutJob(campaign, slots, jobKeys);
      if (orphans.length === 0) continue;
      await queue.addBulk(jobsFor(campaign, priority, orphans));
      requeued += orphans.length;
    }
    if (requeued > 0) {
      this.#logger.warn(
        { campaign, rows: requeued },
        'queued again rows that were in the window with no job',
      );
    }
  }

  /** Stop, after the pass under way if any. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
