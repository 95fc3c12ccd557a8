/**
 * The feeders: rows reach BullMQ from a campaign's record (campaign/record.ts) a window at a time, so Redis holds
 * at most `window` jobs of a campaign however many rows it has. Every worker runs a feeder; one per app feeds at a
 * time, under a lease that another worker takes over when its holder dies. Each tick tops up every running
 * campaign of the app whose window has room: the rows are recorded in the window and the cursor moved in one
 * script that first checks the cursor is where this feeder read it, then their jobs are added. So no row is queued
 * twice at once (a job id per slot), and a feeder that dies between the two leaves rows in the window without a job,
 * which the reconcile queues again (campaign/reconcile.ts).
 *
 * Sharing the cap: the app's campaigns of one priority go first in, first out, and each has at most a window of
 * jobs in the queue, topped up in turn as its rows settle. Running campaigns thus take turns at the cap about
 * equally, a new one's first rows waiting at most one window of each other campaign. A campaign of a higher
 * priority (`enqueue --priority high`) goes before them all.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { type Logger, silentLogger } from '../log.js';
import type { Storage } from '../storage/index.js';
import type { CampaignLifecycle } from './lifecycle.js';
import { CorruptCampaign, LOCAL_ERRCODE } from './policy.js';
import { type CodeJobData, jobsFor } from './queue.js';
import { MissingChunkError, readChunk } from './record.js';
import { type CampaignMeta, type ChunkEntry, type FeedCursor, type SlotRow, slotOf } from './store.js';

export const FEED_INTERVAL_MS = 250;

function leaseName(appid: string): string {
  return `feeder:${appid}`;
}

/** How long a feeder's hold on an app lasts without renewal: a dead feeder is replaced within this. */
const LEASE_MS = 5_000;

/** After a failure, the first wait before trying again; it doubles with each failure in a row, up to the max. */
const RETRY_MS = 1_000;
const RETRY_MAX_MS = 30_000;

export interface FeederOptions {
  lifecycle: CampaignLifecycle;
  storage: Storage;
  apps: string[];
  /** The app's queue, the worker's own. */
  queue: (appid: string) => Queue<CodeJobData>;
  /** Most rows of a campaign queued at once (WXACODE_WINDOW). */
  window: number;
  intervalMs?: number;
  logger?: Logger;
}

/**
 * What a feeder keeps of a campaign between ticks: its chunk list as far as read, and the chunk it feeds from.
 * A campaign deleted and enqueued again under its id is another campaign: `createdAt` tells them apart.
 */
interface FeedState {
  appid: string;
  createdAt: number;
  chunks: ChunkEntry[];
  current?: { index: number; values: string[] };
}

export class Feeder {
  readonly #o: FeederOptions;
  readonly #logger: Logger;
  readonly #holder = randomUUID();
  readonly #campaigns = new Map<string, FeedState>();
  /** What failed, by campaign (or app), and when to try it again. */
  readonly #retries = new Map<string, { at: number; failures: number }>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: FeederOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  static start(options: FeederOptions): Feeder {
    const feeder = new Feeder(options);
    feeder.#schedule(0);
    return feeder;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#running = this.tick().then(() => {
        if (!this.#closed) this.#schedule(this.#o.intervalMs ?? FEED_INTERVAL_MS);
      });
    }, delayMs);
    this.#timer.unref();
  }

  /**
   * One round over the apps this feeder leads. What fails (Redis away, a chunk storage will not give) is logged
   * and tried again later, backing off to RETRY_MAX_MS, without holding up the app's other campaigns.
   */
  async tick(): Promise<void> {
    const store = this.#o.lifecycle.store;
    for (const appid of this.#o.apps) {
      if (this.#closed) return;
      const leading = await this.#attempt(appid, undefined, () => this.#lead(appid));
      if (!leading) continue;
      const campaigns = await this.#attempt(appid, undefined, () => store.feeding(appid));
      if (!campaigns) continue;
      this.#forgetAllBut(appid, new Set(campaigns));
      for (const id of campaigns) {
        if (this.#closed) return;
        // Renewed before each campaign: on a busy machine one round can outlast the lease, and another worker
        // would take over from a feeder that is still feeding.
        if (!(await this.#attempt(appid, undefined, () => this.#lead(appid)))) break;
        await this.#attempt(appid, id, () => this.#topUp(appid, id));
      }
    }
  }

  #lead(appid: string): Promise<boolean> {
    return this.#o.lifecycle.store.takeLease(leaseName(appid), this.#holder, LEASE_MS);
  }

  async #attempt<T>(
    appid: string,
    campaign: string | undefined,
    work: () => Promise<T>,
  ): Promise<T | undefined> {
    const key = campaign ?? `app ${appid}`;
    const retry = this.#retries.get(key);
    if (retry && Date.now() < retry.at) return undefined;
    try {
      const result = await work();
      this.#retries.delete(key);
      return result;
    } catch (err) {
      const failures = (retry?.failures ?? 0) + 1;
      const waitMs = Math.min(RETRY_MAX_MS, RETRY_MS * 2 ** (failures - 1));
      this.#retries.set(key, { at: Date.now() + waitMs, failures });
      this.#logger.warn(
        { appid, campaign, err: (err as Error).message, retryInMs: waitMs },
        'feeding failed',
      );
      return undefined;
    }
  }

  async #topUp(appid: string, id: string): Promise<void> {
    const store = this.#o.lifecycle.store;
    let meta: CampaignMeta | undefined;
    try {
      meta = await store.get(id);
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      // No job of it is queued for a worker to find the record corrupt and stop it: without this it would be
      // tried again forever, neither fed nor stopped.
      await this.#o.lifecycle.stop(id, LOCAL_ERRCODE, new CorruptCampaign(id, err.message).message);
      return;
    }
    if (!meta || meta.state === 'completed' || meta.state === 'stopped') {
      await store.doneFeeding(appid, id);
      return;
    }
    // Topped up once a quarter of the window has room, so each add is a fair share, not a row at a time.
    let room = this.#o.window - meta.queued;
    if (room < Math.ceil(this.#o.window / 4)) return;
    let cursor = meta.cursor;
    while (room > 0 && !this.#closed) {
      const rows = await this.#next(meta, cursor, room);
      if (!rows) return;
      const to = rows.length === 0 ? { chunk: cursor.chunk + 1, row: 0 } : rows.at(-1)!.next;
      const slotRows = rows.map((r) => r.row);
      if (!(await store.feed(id, cursor, to, slotRows))) return;
      if (slotRows.length > 0) await this.#o.queue(appid).addBulk(jobsFor(id, meta.priority, slotRows));
      cursor = to;
      room -= slotRows.length;
    }
  }

  /**
   * Up to `room` rows from the cursor on, each with the cursor after it; an empty list at the end of a chunk (the
   * cursor moves to the next); undefined when the record has no more chunks yet, or its chunk is lost (the
   * campaign is stopped).
   */
  async #next(
    meta: CampaignMeta,
    cursor: FeedCursor,
    room: number,
  ): Promise<{ row: SlotRow; next: FeedCursor }[] | undefined> {
    const values = await this.#chunkValues(meta, cursor.chunk);
    if (!values) return undefined;
    const end = Math.min(values.length, cursor.row + room);
    const rows: { row: SlotRow; next: FeedCursor }[] = [];
    for (let row = cursor.row; row < end; row++) {
      const next =
        row + 1 === values.length
          ? { chunk: cursor.chunk + 1, row: 0 }
          : { chunk: cursor.chunk, row: row + 1 };
      rows.push({ row: { slot: slotOf({ chunk: cursor.chunk, row }), value: values[row]! }, next });
    }
    return rows;
  }

  /** Drop what is kept of the app's campaigns that left the feeding set (completed, stopped, deleted). */
  #forgetAllBut(appid: string, feeding: Set<string>): void {
    for (const [id, state] of this.#campaigns) {
      if (state.appid === appid && !feeding.has(id)) this.#campaigns.delete(id);
    }
  }

  async #chunkValues(meta: CampaignMeta, index: number): Promise<string[] | undefined> {
    let state = this.#campaigns.get(meta.id);
    if (state?.createdAt !== meta.createdAt) {
      state = { appid: meta.appid, createdAt: meta.createdAt, chunks: [] };
      this.#campaigns.set(meta.id, state);
    }
    if (state.current?.index === index) return state.current.values;
    if (index >= state.chunks.length) {
      state.chunks.push(...(await this.#o.lifecycle.store.chunks(meta.id, state.chunks.length)));
      if (index >= state.chunks.length) return undefined;
    }
    try {
      const values = await readChunk(this.#o.storage, meta, state.chunks[index]!);
      state.current = { index, values };
      return values;
    } catch (err) {
      if (!(err instanceof MissingChunkError)) throw err;
      await this.#o.lifecycle.stop(
        meta.id,
        LOCAL_ERRCODE,
        `${err.message}; enqueue its rows again into a new campaign`,
      );
      return undefined;
    }
  }

  /** Stop, after the tick under way if any. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    // A worker that stops hands its apps over at once, not when the lease runs out.
    const store = this.#o.lifecycle.store;
    await Promise.allSettled(this.#o.apps.map((appid) => store.releaseLease(leaseName(appid), this.#holder)));
  }
}
