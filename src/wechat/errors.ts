import type { Kind } from './params.js';

/**
 * How a bulk worker reacts to an answer from WeChat (docs/wechat-api.md, "Error codes").
 * - `retry`: transient; retry this row with exponential backoff and jitter.
 * - `backoff-app`: the app's minute quota is spent; slow every worker of the app down, keep the attempt.
 * - `refresh-token`: the shared access token is stale; refresh it once and retry.
 * - `fail-row`: this row can never succeed as written.
 * - `stop-campaign`: every row of the campaign would fail the same way; stop spending calls on it.
 * - `stop-ac`: the app's lifetime A+C quota is spent; stop all A/C work for the app.
 * - `stop-app`: the app's credentials or server are refused; stop the worker for this app.
 */
export type Reaction =
  | 'retry'
  | 'backoff-app'
  | 'refresh-token'
  | 'fail-row'
  | 'stop-campaign'
  | 'stop-ac'
  | 'stop-app';

interface Rule {
  reaction: Reaction | ((kind: Kind | undefined) => Reaction);
  meaning: string;
}

/** The one classification table. An errcode missing here fails its row with WeChat's own message. */
export const ERRCODES: Readonly<Record<number, Rule>> = {
  [-1]: { reaction: 'retry', meaning: 'system busy' },
  45009: {
    // B: the older docs' minute rate limit. A (and C, which shares its quota): the daily limit.
    reaction: (kind) => (kind === 'unlimited' || kind === undefined ? 'backoff-app' : 'stop-campaign'),
    meaning: 'rate or daily limit reached',
  },
  45011: { reaction: 'backoff-app', meaning: 'API minute quota reached' },
  40001: { reaction: 'refresh-token', meaning: 'access token invalid or not the latest' },
  42001: { reaction: 'refresh-token', meaning: 'access token expired' },
  40014: { reaction: 'refresh-token', meaning: 'access token invalid' },
  40129: { reaction: 'fail-row', meaning: 'invalid scene characters' },
  40169: { reaction: 'fail-row', meaning: 'invalid scene length' },
  40159: { reaction: 'fail-row', meaning: 'invalid path length' },
  85096: { reaction: 'fail-row', meaning: 'scancode_time is reserved' },
  40097: { reaction: 'stop-campaign', meaning: 'invalid arguments' },
  41030: { reaction: 'stop-campaign', meaning: 'page missing, unpublished or malformed' },
  45063: { reaction: 'stop-campaign', meaning: 'no permission to generate codes' },
  // A body WeChat cannot parse is our bug: every row would fail the same way, so stop loudly.
  47001: { reaction: 'stop-campaign', meaning: 'request body is not JSON (a client bug)' },
  45029: { reaction: 'stop-ac', meaning: 'A + C lifetime code count reached' },
  40013: { reaction: 'stop-app', meaning: 'invalid appid' },
  40125: { reaction: 'stop-app', meaning: 'invalid app secret' },
  40164: { reaction: 'stop-app', meaning: 'server IP not in the whitelist' },
  40243: { reaction: 'stop-app', meaning: 'app secret frozen' },
  89503: { reaction: 'stop-app', meaning: 'server IP flagged as risky' },
};

export function classify(errcode: number, kind?: Kind): Reaction {
  const rule = ERRCODES[errcode];
  if (!rule) return 'fail-row';
  return typeof rule.reaction === 'function' ? rule.reaction(kind) : rule.reaction;
}

/** An error answer from WeChat: `{"errcode": N, "errmsg": "..."}`, sent with HTTP 200. */
export class WechatError extends Error {
  override readonly name = 'WechatError';
  readonly reaction: Reaction;

  constructor(
    readonly errcode: number,
    readonly errmsg: string,
    readonly kind?: Kind,
  ) {
    super(`WeChat answered errcode ${errcode}: ${errmsg}`);
    this.reaction = classify(errcode, kind);
  }
}

/**
 * An answer that is neither an image nor a WeChat error (an HTML 502 page, an empty or truncated body) or no
 * answer at all (connection refused or reset, timeout). Always worth a retry, never an image to store.
 */
export class TransientError extends Error {
  override readonly name = 'TransientError';
  readonly reaction: Reaction = 'retry';

  constructor(
    message: string,
    /** The HTTP status, when there was an answer. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isWechatError(err: unknown): err is WechatError {
  return err instanceof Error && err.name === 'WechatError';
}

export function isTransientError(err: unknown): err is TransientError {
  return err instanceof Error && err.name === 'TransientError';
}
