/**
 * What a worker does about a job that did not end in a stored code: a pure function from the error and the job's
 * context to a decision, so that every reaction is stated (and tested) in one place. The WeChat part follows the
 * errcode table in `wechat/errors.ts` (docs/wechat-api.md, "Error codes"); the worker only carries decisions out.
 */
import { isPermanentStorageError, StorageError } from '../storage/storage.js';
import { isTransientError, isWechatError } from '../wechat/errors.js';
import type { Kind } from '../wechat/params.js';
import { StorageUnavailable } from './storage-gate.js';

/** The campaign was stopped while this job waited for its slot: the call was not made. */
export class CampaignStopped extends Error {
  override readonly name = 'CampaignStopped';
}

/** The app is backed off (another worker saw 45009/45011) while this job waited: the call was not made. */
export class AppBackedOff extends Error {
  override readonly name = 'AppBackedOff';
}

/** The campaign's record in Redis cannot be read back (edited by hand, or written by an incompatible version). */
export class CorruptCampaign extends Error {
  override readonly name = 'CorruptCampaign';
  constructor(
    readonly campaign: string,
    problem: string,
  ) {
    super(
      `the record of campaign ${campaign} is corrupt (${problem}); delete it and enqueue the campaign again`,
    );
  }
}

/** Storage could not say whether a code is stored: without the answer, a call could pay for a code twice. */
export class StorageLookupFailed extends Error {
  override readonly name = 'StorageLookupFailed';
  constructor(override readonly cause: StorageError) {
    super(cause.message);
  }
}

/** The errcode a campaign stopped for a reason of ours, not WeChat's, is recorded with. */
export const LOCAL_ERRCODE = -2;

export type Decision =
  /** Record the row as failed; it will not be tried again unless `retry` is run. */
  | { action: 'settle-failed'; errcode: number; errmsg: string }
  /** Every row of the campaign would fail the same way: stop it, rows stay pending for `retry`. */
  | { action: 'stop-campaign'; errcode: number; errmsg: string }
  /** The app's lifetime A+C quota is spent: stop A/C work for the app, and this campaign. */
  | { action: 'stop-ac'; errcode: number; errmsg: string }
  /** WeChat refused the app itself: this worker stops working for it, the job waits untouched. */
  | { action: 'stop-app'; errcode: number; errmsg: string }
  /** Pause every worker of the app for `ms`; the job goes back to the queue without using an attempt. */
  | { action: 'back-off-app'; ms: number }
  /** The app is already paused: the job goes back to the queue without using an attempt. */
  | { action: 'wait-for-app' }
  /** Nothing to do: the campaign was stopped before the call was made. */
  | { action: 'drop' }
  /** Come back to the job in `ms` without using an attempt: not the row's fault (storage is failing). */
  | { action: 'delay'; ms: number }
  /** Let BullMQ retry the job with its backoff, using an attempt. */
  | { action: 'retry' };

export interface ReactionContext {
  kind: Kind;
  /** This attempt, from 1. */
  attempt: number;
  /** Attempts the job has in all. */
  attempts: number;
  /** Storage failures in a row in this process, this one included (1 for a first failure). */
  storageFailures: number;
  /** How long the app pauses after 45009/45011. */
  backoffMs: number;
  /** First delay after a storage failure; it doubles with each failure in a row, up to `storageRetryMaxMs`. */
  storageRetryMs: number;
  storageRetryMaxMs: number;
}

function lastAttempt(ctx: ReactionContext, errcode: number, errmsg: string): Decision {
  return ctx.attempt < ctx.attempts
    ? { action: 'retry' }
    : { action: 'settle-failed', errcode, errmsg: `${errmsg} (after ${ctx.attempts} attempts)` };
}

export function decide(err: unknown, ctx: ReactionContext): Decision {
  if (err instanceof CampaignStopped) return { action: 'drop' };
  if (err instanceof AppBackedOff) return { action: 'wait-for-app' };
  if (err instanceof CorruptCampaign) {
    return { action: 'stop-campaign', errcode: LOCAL_ERRCODE, errmsg: err.message };
  }
  if (err instanceof StorageUnavailable) return { action: 'delay', ms: err.retryInMs };
  if (err instanceof StorageLookupFailed || err instanceof StorageError) {
    // Not the row's fault either way, so no attempt is used. A lookup refused for good (a role without
    // ListBucket answers 403 for a missing key, a missing bucket) pauses the campaign with the reason: waiting
    // would retry it forever with nothing recorded. A refused write waits for storage to take writes again.
    const cause = err instanceof StorageLookupFailed ? err.cause : err;
    if (err instanceof StorageLookupFailed && isPermanentStorageError(cause)) {
      return {
        action: 'stop-campaign',
        errcode: LOCAL_ERRCODE,
        errmsg: `${cause.message} Fix the storage, then run \`wxacode retry\` to resume.`,
      };
    }
    const ms = ctx.storageRetryMs * 2 ** Math.max(0, ctx.storageFailures - 1);
    return { action: 'delay', ms: Math.min(ctx.storageRetryMaxMs, ms) };
  }
  if (isWechatError(err)) {
    const { errcode, errmsg } = err;
    switch (err.reaction) {
      case 'backoff-app':
        return { action: 'back-off-app', ms: ctx.backoffMs };
      case 'fail-row':
        return { action: 'settle-failed', errcode, errmsg };
      case 'stop-campaign':
        return { action: 'stop-campaign', errcode, errmsg };
      case 'stop-ac':
        return { action: 'stop-ac', errcode, errmsg };
      case 'stop-app':
        return { action: 'stop-app', errcode, errmsg };
      // The client already refreshed the token once and tried again: from here it is an ordinary retry.
      case 'refresh-token':
      case 'retry':
        return lastAttempt(ctx, errcode, errmsg);
    }
  }
  // Network faults, WeChat's HTML pages, and anything unexpected (Redis going away mid-job).
  return lastAttempt(ctx, -1, (err as Error).message);
}

/** How a job ended, as the worker returns it to BullMQ. */
export type JobOutcome = 'generated' | 'already-stored' | 'failed' | 'campaign-stopped' | 'unknown-campaign';

/** The outcome a decision that settles the job (rather than handing it back to BullMQ) ends with. */
export function outcomeOf(decision: Decision): JobOutcome | undefined {
  switch (decision.action) {
    case 'settle-failed':
      return 'failed';
    case 'stop-campaign':
    case 'stop-ac':
    case 'drop':
      return 'campaign-stopped';
    default:
      return undefined;
  }
}

/** What the worker logs about a decision, if anything: the rest is counted in the metrics. */
export function logLineOf(
  decision: Decision,
  err: unknown,
  storage: string,
): { level: 'error' | 'warn'; message: string; fields: Record<string, unknown> } | undefined {
  const message = (err as Error).message;
  switch (decision.action) {
    case 'stop-app':
      return {
        level: 'error',
        message: `WeChat refused the app (errcode ${decision.errcode}: ${decision.errmsg}); this worker stops working for it`,
        fields: { errcode: decision.errcode },
      };
    case 'back-off-app':
      return {
        level: 'warn',
        message: 'WeChat rate limit hit: backing the app off',
        fields: { backoffMs: decision.ms },
      };
    case 'delay':
      return {
        level: 'warn',
        message: `${storage} failed; the job will be retried without using up an attempt`,
        fields: { err: message, retryInMs: decision.ms },
      };
    case 'retry':
      return isWechatError(err) || isTransientError(err)
        ? undefined
        : { level: 'warn', message: 'job failed unexpectedly; it will be retried', fields: { err: message } };
    default:
      return undefined;
  }
}

/** How a failed row is counted in the metrics: its errcode, or what kind of fault it was. */
export function failureLabel(err: unknown): string {
  if (isWechatError(err)) return String(err.errcode);
  return isTransientError(err) ? 'transient' : 'error';
}
