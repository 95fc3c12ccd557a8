/**
 * One app's BullMQ wiring in a worker process: its queue, the BullMQ Worker that takes its jobs, and the clustered
 * limiter its calls go through. An app has a queue of its own so that a back-off pauses exactly the app WeChat
 * throttled, and one app's trouble never stalls another's.
 */
import { type Job, type Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { AppLimiter } from '../limiter.js';
import type { Logger } from '../log.js';
import { type CodeJobData, openQueue, retryDelay } from './queue.js';
import type { CodeWorkerOptions } from './worker-options.js';

/**
 * BullMQ honours `queue.rateLimit()` in `moveToActive` only for workers that have a `limiter` option: with one,
 * every worker of the app, in every process, stops taking jobs while the back-off lasts. The limit itself is
 * never reached (the cap is kept by AppLimiter); a back-off sets the counter far above it.
 */
const BULLMQ_LIMITER = { max: 1_000_000_000, duration: 1000 };

export interface AppQueueOptions
  extends Pick<CodeWorkerOptions, 'config' | 'concurrency' | 'lockDurationMs' | 'stalledIntervalMs'> {
  appid: string;
  connection: Redis;
  logger: Logger;
  process: (job: Job<CodeJobData>, token: string | undefined) => Promise<unknown>;
}

export class AppQueue {
  private constructor(
    readonly worker: Worker<CodeJobData>,
    readonly queue: Queue<CodeJobData>,
    readonly limiter: AppLimiter,
    readonly connection: Redis,
  ) {}

  static start(o: AppQueueOptions): AppQueue {
    const { config, connection } = o;
    const limiter = new AppLimiter({
      redisUrl: config.redisUrl,
      prefix: config.prefix,
      appid: o.appid,
      rate: config.rateLimit,
      logger: o.logger,
    });
    const queue = openQueue(connection, config.prefix, o.appid);
    const worker = new Worker<CodeJobData>(queue.name, o.process, {
      connection,
      prefix: config.prefix,
      concurrency: o.concurrency ?? 8,
      limiter: BULLMQ_LIMITER,
      lockDuration: o.lockDurationMs ?? 10_000,
      stalledInterval: o.stalledIntervalMs ?? 5_000,
      // A job whose worker was killed is stalled, not faulty: BullMQ's default (1) would fail it on the second
      // crash, and a failed job would leave its row pending with nobody working on it.
      maxStalledCount: 1000,
      // The campaign's rows hash is the record of what happened; finished jobs would only cost memory.
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 0 },
      settings: { backoffStrategy: retryDelay },
    });
    worker.on('error', (err) => o.logger.warn({ err: err.message, appid: o.appid }, 'worker error'));
    return new AppQueue(worker, queue, limiter, connection);
  }

  /** Pause every worker of the app, in every process, for `ms`. */
  async backOff(ms: number): Promise<void> {
    await this.queue.rateLimit(ms);
  }

  /** Whether the app is paused now (by this process or another). */
  async backedOff(): Promise<boolean> {
    const counter = await this.connection.get(this.queue.keys.limiter!);
    return Number(counter) >= BULLMQ_LIMITER.max;
  }

  async close(): Promise<void> {
    await this.worker.close();
    await Promise.all([this.queue.close(), this.limiter.close()]);
  }
}
