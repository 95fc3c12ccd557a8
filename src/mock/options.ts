/** Every knob of the mock WeChat server, with its default, and the checks that name a bad value. */
import type { RateLimit } from '../config.js';
import type { Logger } from '../log.js';

/**
 * Faults on the three code endpoints (never on the token endpoints), each a fraction 0..1 of calls, drawn
 * independently per call from a seedable generator. When several are drawn for one call, the first of
 * drop, html502, busy, empty, truncated wins; `slow` delays whatever the answer is.
 */
export interface MockFaults {
  /** `{"errcode":-1,"errmsg":"system error"}`. */
  busy?: number;
  /** HTTP 502 with an nginx-like text/html page. */
  html502?: number;
  /** The socket is destroyed without an answer. */
  drop?: number;
  /** The answer is delayed by `slowMs` (default 2000). */
  slow?: number;
  slowMs?: number;
  /** HTTP 200, `Content-Type: image/jpeg`, empty body. */
  empty?: number;
  /** HTTP 200, `Content-Type: image/jpeg`, the first half of a real image. */
  truncated?: number;
  /** Seed of the fault generator, for repeatable runs; default random. */
  seed?: number;
}

export const FAULT_KINDS = ['drop', 'html502', 'busy', 'empty', 'truncated', 'slow'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface MockOptions {
  /** Default '127.0.0.1': the mock hands out tokens to anyone who can reach it. */
  host?: string;
  /** Default 0: a free port (read it from `MockServer.url`). */
  port?: number;
  /** appid → AppSecret; default `{ wxmock00000000001: 'mock-secret' }`. */
  apps?: Record<string, string>;
  /**
   * Per-appid cap on the three code endpoints together, over a sliding window; null = no cap.
   * Default 5000/60s. A call past it answers 45009 on B and 45011 on A and C (whose 45009 means the daily limit).
   */
  rateLimit?: RateLimit | null;
  /** Lifetime of access tokens, seconds; default 7200. */
  tokenTtlSec?: number;
  /** How long a classic token keeps working after the next one is fetched, seconds; default 300. */
  classicOverlapSec?: number;
  /** Minimum spacing of accepted stable-token force refreshes, seconds; default 30 (else 45011). */
  forceRefreshIntervalSec?: number;
  /** Accepted stable-token force refreshes per app and day; default 20 (else 45009). */
  forceRefreshDailyLimit?: number;
  /** For B with check_path true: the published pages; null (default) = every page exists. */
  publishedPages?: string[] | null;
  /** Distinct A + C codes per app, ever; default 100000 (else 45029). */
  acTotalLimit?: number;
  /** A images per app and day (Beijing time); default 10000 (else 45009). */
  acDailyLimit?: number;
  faults?: MockFaults;
  /** Default: silent. Never receives secrets or tokens. */
  logger?: Logger;
}

/** What `configure()` and `POST /__mock/configure` accept. */
export type MockPatch = Partial<Omit<MockOptions, 'host' | 'port' | 'logger'>>;

export type MockSettings = Required<MockPatch>;

export const DEFAULT_MOCK_APPS: Readonly<Record<string, string>> = { wxmock00000000001: 'mock-secret' };

export const MOCK_DEFAULTS: Readonly<MockSettings> = {
  apps: DEFAULT_MOCK_APPS,
  rateLimit: { count: 5000, durationMs: 60_000 },
  tokenTtlSec: 7200,
  classicOverlapSec: 300,
  forceRefreshIntervalSec: 30,
  forceRefreshDailyLimit: 20,
  publishedPages: null,
  acTotalLimit: 100_000,
  acDailyLimit: 10_000,
  faults: {},
};

function show(value: unknown): string {
  return typeof value === 'string' ? `"${value}" (string)` : `${JSON.stringify(value)}`;
}

function isCount(value: unknown, min: number): boolean {
  return Number.isSafeInteger(value) && (value as number) >= min;
}

function isSeconds(value: unknown, positive: boolean): boolean {
  return typeof value === 'number' && Number.isFinite(value) && (positive ? value > 0 : value >= 0);
}

function faultProblems(faults: unknown): string[] {
  if (faults === null || typeof faults !== 'object' || Array.isArray(faults)) {
    return [`faults must be an object, got ${show(faults)}`];
  }
  const problems: string[] = [];
  for (const [key, value] of Object.entries(faults)) {
    if (value === undefined) continue;
    if ((FAULT_KINDS as readonly string[]).includes(key)) {
      if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
        problems.push(`faults.${key} must be a fraction from 0 to 1, got ${show(value)}`);
      }
    } else if (key === 'slowMs') {
      if (!isSeconds(value, false)) problems.push(`faults.slowMs must be a number >= 0, got ${show(value)}`);
    } else if (key === 'seed') {
      if (!Number.isSafeInteger(value))
        problems.push(`faults.seed must be a whole number, got ${show(value)}`);
    } else {
      problems.push(
        `faults.${key} is not a fault; known are ${[...FAULT_KINDS, 'slowMs', 'seed'].join(', ')}`,
      );
    }
  }
  return problems;
}

const CHECKS: { [K in keyof MockSettings]: (value: unknown) => string | undefined } = {
  apps(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      // Not show(value): a string here is likely `appid:secret`.
      return `apps must be an object mapping appid to secret, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`}`;
    }
    const entries = Object.entries(value);
    if (entries.length === 0) return 'apps must name at least one appid';
    const bad = entries.find(
      ([appid, secret]) => appid === '' || typeof secret !== 'string' || secret === '',
    );
    // Name the appid, never the secret.
    return bad ? `apps: appid "${bad[0]}" needs a non-empty secret string` : undefined;
  },
  rateLimit(value) {
    if (value === null) return undefined;
    const rate = value as Partial<RateLimit> | undefined;
    if (typeof rate !== 'object' || !isCount(rate.count, 1) || !isCount(rate.durationMs, 1)) {
      return `rateLimit must be null or { count, durationMs } with whole numbers >= 1, got ${show(value)}`;
    }
    return undefined;
  },
  tokenTtlSec: (value) =>
    isSeconds(value, true) ? undefined : `tokenTtlSec must be a number of seconds > 0, got ${show(value)}`,
  classicOverlapSec: (value) =>
    isSeconds(value, false)
      ? undefined
      : `classicOverlapSec must be a number of seconds >= 0, got ${show(value)}`,
  forceRefreshIntervalSec: (value) =>
    isSeconds(value, false)
      ? undefined
      : `forceRefreshIntervalSec must be a number of seconds >= 0, got ${show(value)}`,
  forceRefreshDailyLimit: (value) =>
    isCount(value, 0) ? undefined : `forceRefreshDailyLimit must be a whole number >= 0, got ${show(value)}`,
  publishedPages(value) {
    if (value === null) return undefined;
    if (!Array.isArray(value) || value.some((page) => typeof page !== 'string')) {
      return `publishedPages must be null or an array of page strings, got ${show(value)}`;
    }
    return undefined;
  },
  acTotalLimit: (value) =>
    isCount(value, 0) ? undefined : `acTotalLimit must be a whole number >= 0, got ${show(value)}`,
  acDailyLimit: (value) =>
    isCount(value, 0) ? undefined : `acDailyLimit must be a whole number >= 0, got ${show(value)}`,
  faults: (value) => faultProblems(value).join('; ') || undefined,
};

/** Every problem with a patch (or the options minus host, port and logger), each naming the value at fault. */
export function mockPatchProblems(patch: unknown): string[] {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    return [`mock options must be an object, got ${show(patch)}`];
  }
  const problems: string[] = [];
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    const check = CHECKS[key as keyof MockSettings];
    if (!check) {
      problems.push(`${key} is not a mock option; known are ${Object.keys(CHECKS).join(', ')}`);
      continue;
    }
    const problem = check(value);
    if (problem) problems.push(problem);
  }
  return problems;
}
