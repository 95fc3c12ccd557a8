/** What a worker process is told, and what it reports: the options of `CodeWorker.start`. */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

/** Observations for metrics; every method optional. */
export interface WorkerHooks {
  generated?(appid: string, kind: string): void;
  alreadyStored?(appid: string): void;
  failed?(appid: string, reason: string): void;
  limiterWait?(appid: string, ms: number): void;
  rateLimited?(appid: string): void;
  upload?(ms: number): void;
  call?(info: { appid: string; kind: string; ms: number; outcome: string }): void;
  tokenFetched?(appid: string): void;
}

export interface CodeWorkerOptions {
  config: Config;
  /** Jobs in flight per app in this process. Default 8. */
  concurrency?: number;
  /** Apps to work for; default every configured app. */
  apps?: string[];
  logger?: Logger;
  hooks?: WorkerHooks;
  /** How long the whole app pauses after 45009/45011. Default: a tenth of the rate window, at least 1 s. */
  rateLimitBackoffMs?: number;
  /**
   * BullMQ lock duration. Jobs take well under a second (one spaced call and one upload), and the lock is
   * renewed every half of it, so 10 s only expires when the process is gone; a crashed worker's jobs then come
   * back within lockDuration + stalledInterval instead of BullMQ's default 30 s + 30 s. Default 10 000 ms.
   */
  lockDurationMs?: number;
  /** How often BullMQ looks for stalled jobs. Default 5000 ms. */
  stalledIntervalMs?: number;
  /** Delay before retrying when storage fails (doubles with each failure in a row, up to 30 s). Default 1000 ms. */
  storageRetryMs?: number;
  /** How long a WeChat call may wait for the answer's headers, and then for its body. Default 15 000 ms each. */
  wechatTimeoutMs?: number;
  /** How often the fleet looks for queued rows with no job (see reconcile.ts). Default 60 000 ms. */
  reconcileIntervalMs?: number;
  /** How often the feeder tops up the campaigns' windows (see feeder.ts). Default 250 ms. */
  feedIntervalMs?: number;
}
