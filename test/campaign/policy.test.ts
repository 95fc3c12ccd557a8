/**
 * The reaction policy, row by row, against expectations written by hand from docs/wechat-api.md ("Error codes")
 * and README (what a storage outage or a transient fault costs), never against the errcode table itself.
 */
import { describe, expect, it } from 'vitest';
import {
  AppBackedOff,
  CampaignStopped,
  CorruptCampaign,
  decide,
  LOCAL_ERRCODE,
  outcomeOf,
  type ReactionContext,
  StorageLookupFailed,
} from '../../src/campaign/policy.js';
import { StorageUnavailable } from '../../src/campaign/storage-gate.js';
import { StorageError } from '../../src/storage/storage.js';
import { ERRCODES, TransientError, WechatError } from '../../src/wechat/errors.js';
import type { Kind } from '../../src/wechat/params.js';

const context = (over: Partial<ReactionContext> = {}): ReactionContext => ({
  kind: 'unlimited',
  attempt: 1,
  attempts: 8,
  storageFailures: 0,
  backoffMs: 6000,
  storageRetryMs: 1000,
  storageRetryMaxMs: 30_000,
  ...over,
});

type Expected = 'retry' | 'back-off-app' | 'settle-failed' | 'stop-campaign' | 'stop-ac' | 'stop-app';

/** errcode → what the worker does on an early attempt, for B (unlimited) and for A and C. */
const CONTRACT: Record<number, { B: Expected; AC: Expected }> = {
  [-1]: { B: 'retry', AC: 'retry' },
  // B: the minute cap; A: the daily limit, which no back-off of minutes cures.
  45009: { B: 'back-off-app', AC: 'stop-campaign' },
  45011: { B: 'back-off-app', AC: 'back-off-app' },
  // The client has already refreshed the token once and tried again before the worker sees these.
  40001: { B: 'retry', AC: 'retry' },
  42001: { B: 'retry', AC: 'retry' },
  40014: { B: 'retry', AC: 'retry' },
  40129: { B: 'settle-failed', AC: 'settle-failed' },
  40169: { B: 'settle-failed', AC: 'settle-failed' },
  40159: { B: 'settle-failed', AC: 'settle-failed' },
  85096: { B: 'settle-failed', AC: 'settle-failed' },
  40097: { B: 'stop-campaign', AC: 'stop-campaign' },
  41030: { B: 'stop-campaign', AC: 'stop-campaign' },
  45063: { B: 'stop-campaign', AC: 'stop-campaign' },
  47001: { B: 'stop-campaign', AC: 'stop-campaign' },
  45029: { B: 'stop-ac', AC: 'stop-ac' },
  40013: { B: 'stop-app', AC: 'stop-app' },
  40125: { B: 'stop-app', AC: 'stop-app' },
  40164: { B: 'stop-app', AC: 'stop-app' },
  40243: { B: 'stop-app', AC: 'stop-app' },
  89503: { B: 'stop-app', AC: 'stop-app' },
};

const KINDS: [Kind, 'B' | 'AC'][] = [
  ['unlimited', 'B'],
  ['code', 'AC'],
  ['qrcode', 'AC'],
];

describe('the reaction to each errcode', () => {
  it('has an expectation for every errcode the project knows', () => {
    expect(Object.keys(ERRCODES).map(Number).sort()).toEqual(Object.keys(CONTRACT).map(Number).sort());
  });

  for (const [errcode, expected] of Object.entries(CONTRACT)) {
    for (const [kind, column] of KINDS) {
      it(`${errcode} on ${kind}: ${expected[column]}`, () => {
        const err = new WechatError(Number(errcode), `errmsg of ${errcode}`, kind);
        const decision = decide(err, context({ kind }));
        expect(decision.action).toBe(expected[column]);
        if ('errcode' in decision) {
          expect(decision).toMatchObject({ errcode: Number(errcode), errmsg: `errmsg of ${errcode}` });
        }
        if (decision.action === 'back-off-app') expect(decision.ms).toBe(6000);
      });
    }
  }

  it('fails the row of an errcode nobody documented, with WeChat’s own message', () => {
    expect(decide(new WechatError(99999, 'something new'), context())).toEqual({
      action: 'settle-failed',
      errcode: 99999,
      errmsg: 'something new',
    });
  });
});

describe('retries that use attempts', () => {
  it('retries a transient fault until the last attempt, then fails the row with its reason', () => {
    const err = new TransientError('HTTP 502 with an HTML page', 502);
    expect(decide(err, context({ attempt: 7, attempts: 8 }))).toEqual({ action: 'retry' });
    expect(decide(err, context({ attempt: 8, attempts: 8 }))).toEqual({
      action: 'settle-failed',
      errcode: -1,
      errmsg: 'HTTP 502 with an HTML page (after 8 attempts)',
    });
  });

  it('fails a row that kept answering -1 with errcode -1', () => {
    expect(decide(new WechatError(-1, 'system busy'), context({ attempt: 3, attempts: 3 }))).toEqual({
      action: 'settle-failed',
      errcode: -1,
      errmsg: 'system busy (after 3 attempts)',
    });
  });

  it('treats an unexpected error (Redis away mid-job) as a retry', () => {
    expect(decide(new Error('Connection is closed.'), context())).toEqual({ action: 'retry' });
  });

  it('never retries a back-off or a storage failure as an attempt, even on the last one', () => {
    const last = context({ attempt: 8, attempts: 8, storageFailures: 1 });
    expect(decide(new WechatError(45009, 'limit'), last).action).toBe('back-off-app');
    expect(decide(new StorageError('s3://b', 'down', 'ECONNREFUSED'), last).action).toBe('delay');
  });
});

describe('storage failures', () => {
  const refused = (code: string) => new StorageError('s3://b/p', `Cannot check s3://b/p: ${code}.`, code);

  it('pauses the campaign when storage refuses to say whether a code is stored', () => {
    for (const code of ['Forbidden', 'AccessDenied', 'NoSuchBucket', 'InvalidAccessKeyId', 'EACCES']) {
      expect(decide(new StorageLookupFailed(refused(code)), context()), code).toEqual({
        action: 'stop-campaign',
        errcode: LOCAL_ERRCODE,
        errmsg: `Cannot check s3://b/p: ${code}. Fix the storage, then run \`wxacode retry\` to resume.`,
      });
    }
  });

  it('waits, without an attempt, on a lookup that did not get through', () => {
    for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'InternalError', 'SlowDown', 'ServiceUnavailable']) {
      expect(decide(new StorageLookupFailed(refused(code)), context({ storageFailures: 1 })), code).toEqual({
        action: 'delay',
        ms: 1000,
      });
    }
  });

  it('waits for storage to take writes again, whatever the write was refused for', () => {
    for (const code of ['AccessDenied', 'NoSuchBucket', 'ENOSPC', 'EROFS', 'EACCES', 'ECONNRESET']) {
      expect(decide(refused(code), context({ storageFailures: 2 })).action, code).toBe('delay');
    }
  });

  it('brings a job back when the next probe of refusing storage is due', () => {
    expect(decide(new StorageUnavailable(2345, refused('AccessDenied')), context())).toEqual({
      action: 'delay',
      ms: 2345,
    });
  });

  it('waits longer after each failure in a row, up to the maximum', () => {
    const err = new StorageError('s3://b', 'down', 'ECONNREFUSED');
    const delays = [1, 2, 3, 4, 5, 6, 7].map(
      (storageFailures) => decide(err, context({ storageFailures })) as { ms: number },
    );
    expect(delays.map((d) => d.ms)).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });
});

describe('calls given up before they were made', () => {
  it('drops the job of a campaign stopped while it waited for its slot', () => {
    const decision = decide(new CampaignStopped(), context());
    expect(decision).toEqual({ action: 'drop' });
    expect(outcomeOf(decision)).toBe('campaign-stopped');
  });

  it('hands the job back without an attempt when the app was backed off meanwhile', () => {
    expect(decide(new AppBackedOff(), context())).toEqual({ action: 'wait-for-app' });
  });

  it('stops a campaign whose record is corrupt, saying so', () => {
    const decision = decide(new CorruptCampaign('c1', 'Unexpected token'), context());
    expect(decision).toMatchObject({ action: 'stop-campaign', errcode: LOCAL_ERRCODE });
    expect((decision as { errmsg: string }).errmsg).toMatch(/record of campaign c1 is corrupt/);
  });
});

describe('what a job returns', () => {
  it('names how the job ended for the decisions that end it', () => {
    expect(outcomeOf({ action: 'settle-failed', errcode: 40129, errmsg: 'x' })).toBe('failed');
    expect(outcomeOf({ action: 'stop-campaign', errcode: 41030, errmsg: 'x' })).toBe('campaign-stopped');
    expect(outcomeOf({ action: 'stop-ac', errcode: 45029, errmsg: 'x' })).toBe('campaign-stopped');
    expect(outcomeOf({ action: 'retry' })).toBeUndefined();
    expect(outcomeOf({ action: 'delay', ms: 1 })).toBeUndefined();
  });
});
