/**
 * The BullMQ side of a campaign: one queue per app, so that BullMQ's own rate limiting (`queue.rateLimit`)
 * backs off exactly the app WeChat throttled, and one app's trouble never stalls another's queue.
 */
import { createHash } from 'node:crypto';
import { type ConnectionOptions, type JobsOptions, Queue } from 'bullmq';

/** What a job carries: the campaign and the row. Campaign options live once in the campaign hash. */
export interface CodeJobData {
  /** Campaign id. */
  c: string;
  /** Row value: the scene (B) or path (A/C). */
  v: string;
}

export const JOB_NAME = 'code';

export function queueName(appid: string): string {
  return `codes-${appid}`;
}

/**
 * Deterministic, so a row added twice while its job exists (a resumed enqueue, a retry racing a worker) is
 * queued once: BullMQ ignores an add whose job id exists. BullMQ ids may not contain ":".
 */
export function jobId(campaign: string, value: string): string {
  return `${campaign}.${createHash('sha256').update(value).digest('base64url').slice(0, 16)}`;
}

/** Attempts for transient failures (-1, network, HTML pages); the backoff spreads them over about 4 minutes. */
export const ATTEMPTS = 8;

export const JOB_OPTIONS: JobsOptions = {
  attempts: ATTEMPTS,
  backoff: { type: 'exponential', delay: 1000, jitter: 0.5 },
  // The campaign's rows hash is the record of what happened; finished jobs would only cost memory.
  removeOnComplete: true,
  removeOnFail: true,
};

export function jobsFor(campaign: string, values: string[]) {
  return values.map((v) => ({
    name: JOB_NAME,
    data: { c: campaign, v } satisfies CodeJobData,
    opts: { ...JOB_OPTIONS, jobId: jobId(campaign, v) },
  }));
}

export function openQueue(connection: ConnectionOptions, prefix: string, appid: string): Queue<CodeJobData> {
  return new Queue<CodeJobData>(queueName(appid), { connection, prefix });
}
