/**
 * The BullMQ side of a campaign: one queue per app, so that BullMQ's own rate limiting (`queue.rateLimit`)
 * backs off exactly the app WeChat throttled, and one app's trouble never stalls another's queue.
 */
import { createHash } from 'node:crypto';
import { type ConnectionOptions, type JobsOptions, Queue } from 'bullmq';
import type { SlotRow } from './store.js';

/** What a job carries: the campaign and the row. Campaign options live once in the campaign hash. */
export interface CodeJobData {
  /** Campaign id. */
  c: string;
  /** The row's slot in the campaign's record, `<chunk>:<row>` (store.ts). */
  s: string;
  /** Row value: the scene (B) or path (A/C). */
  v: string;
}

export const JOB_NAME = 'code';

export function queueName(appid: string): string {
  return `codes-${appid}`;
}

/**
 * Deterministic, so a row added twice while its job exists (a feeder and the reconcile, a retry racing a worker)
 * is queued once: BullMQ ignores an add whose job id exists. Short, because BullMQ copies it into each job's
 * options: a job costs about 630 bytes of Redis (its options, with the priority, are just over the 64 bytes of
 * `hash-max-listpack-value`, so the compact encoding is lost), and a campaign has at most a window of them.
 * 66 bits of hash: only jobs queued at the same time can collide, with odds far below 1 in 10^8. The leading
 * letter keeps BullMQ from reading it as a number.
 */
export function jobId(campaign: string, slot: string): string {
  return `j${createHash('sha256').update(`${campaign}\n${slot}`).digest('base64url').slice(0, 11)}`;
}

/** Attempts for transient failures (-1, network, HTML pages); the backoff spreads them over about 4 minutes. */
export const ATTEMPTS = 8;

/** Our backoff, computed by the worker's `backoffStrategy` (see `retryDelay`), named in each job's options. */
export const BACKOFF_TYPE = 'wx';

/**
 * Exponential backoff with jitter: 1 s, 2 s, 4 s … times a random factor in [0.5, 1]. BullMQ's built-in
 * exponential backoff does the same, but its options ({type, delay, jitter}) would be copied into every job.
 */
export function retryDelay(attemptsMade: number): number {
  return 1000 * 2 ** Math.max(0, attemptsMade - 1) * (0.5 + Math.random() / 2);
}

/** Only what differs per job: finished jobs are removed by the worker's own options (see worker.ts). */
export const JOB_OPTIONS: JobsOptions = { attempts: ATTEMPTS, backoff: { type: BACKOFF_TYPE } };

export function jobsFor(campaign: string, priority: number, rows: readonly SlotRow[]) {
  return rows.map(({ slot, value }) => ({
    name: JOB_NAME,
    data: { c: campaign, s: slot, v: value } satisfies CodeJobData,
    opts: { ...JOB_OPTIONS, jobId: jobId(campaign, slot), priority },
  }));
}

export function openQueue(connection: ConnectionOptions, prefix: string, appid: string): Queue<CodeJobData> {
  return new Queue<CodeJobData>(queueName(appid), { connection, prefix });
}
