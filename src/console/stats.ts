/**
 * What the dashboard shows beyond a campaign's counts: codes per minute and ETA (from samples of the counts kept
 * in this process), each app's use of its cap (the Redis call log of window-log.ts), back-offs and stops, and
 * failed rows grouped by errcode with what to do about each.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { CampaignStatus } from '../campaign/operations.js';
import type { CampaignStore, StopReason } from '../campaign/store.js';
import type { RateLimit } from '../config.js';

/** What an operator does about each errcode a row or a campaign can end with (src/wechat/errors.ts). */
const ADVICE: Record<number, string> = {
  [-2]: 'Stopped by us (an operator, or storage refusing lookups): fix the cause, then resume or retry.',
  [-1]: 'WeChat or the network failed on every attempt: retry once WeChat answers again.',
  40097:
    'WeChat refused the arguments (often env_version trial/develop with no such version): fix the options, enqueue as a new campaign.',
  40129: 'The scene has characters WeChat refuses: map such data to short ids, enqueue the fixed rows.',
  40169: 'The scene is longer than 32 characters: shorten it (an id), enqueue the fixed rows.',
  40159: 'The path is too long: shorten it, enqueue the fixed rows.',
  41030:
    'The page does not exist in the published version: publish the page, or create the campaign with checkPath=false (--no-check-path), then retry.',
  45063: 'The app may not generate codes (account or permission): fix it in the WeChat console, then retry.',
  47001: 'WeChat could not read the request body: a client bug; report it, then retry.',
  45029: 'The app used its lifetime A + C code quota: use unlimited (B) codes; retry will not help.',
  85096: 'The row contains the reserved word scancode_time: change the row.',
  40013: 'WeChat does not know the appid: check WECHAT_APPID/WECHAT_APPS, then retry.',
  40125: 'WeChat refused the AppSecret: set the right one on the workers, then retry.',
  40164: "The workers' IP is not in the app's whitelist: add it in the WeChat console, then retry.",
  40243: 'The AppSecret is frozen: unfreeze or reset it in the WeChat console, then retry.',
  89503: "WeChat flagged the workers' IP as risky: confirm it in the WeChat console, then retry.",
};

export function adviceFor(errcode: number): string {
  return ADVICE[errcode] ?? 'See the errcode in the WeChat documentation; `retry` queues these rows again.';
}

export interface FailureGroup {
  errcode: number;
  count: number;
  errmsg: string;
  advice: string;
}

/**
 * Failed rows by errcode. A campaign's failed rows can be many: they are scanned only when its failed count
 * changed since the last scan, and the result kept.
 */
export class FailureGroups {
  readonly #cache = new Map<string, { failed: number; groups: FailureGroup[] }>();

  constructor(readonly store: CampaignStore) {}

  async of(campaign: string, failed: number): Promise<FailureGroup[]> {
    if (failed === 0) return [];
    const cached = this.#cache.get(campaign);
    if (cached?.failed === failed) return cached.groups;
    const groups = new Map<number, FailureGroup>();
    for await (const batch of this.store.failedRows(campaign, 2000)) {
      for (const { errcode, errmsg } of batch) {
        const group = groups.get(errcode);
        if (group) group.count++;
        else groups.set(errcode, { errcode, count: 1, errmsg, advice: adviceFor(errcode) });
      }
    }
    const sorted = [...groups.values()].sort((a, b) => b.count - a.count);
    this.#cache.set(campaign, { failed, groups: sorted });
    return sorted;
  }
}

interface Sample {
  at: number;
  value: number;
}

/** A short history of numbers per name, sampled by the caller. */
export class Samples {
  readonly #series = new Map<string, Sample[]>();

  constructor(readonly keepMs: number) {}

  add(name: string, value: number, at = Date.now()): void {
    const series = this.#series.get(name) ?? [];
    series.push({ at, value });
    while (series.length > 0 && series[0]!.at < at - this.keepMs) series.shift();
    this.#series.set(name, series);
  }

  series(name: string): Sample[] {
    return this.#series.get(name) ?? [];
  }

  /** Increase per minute from the oldest sample within `overMs` to `value` now. */
  perMinute(name: string, value: number, overMs: number, now = Date.now()): number {
    const first = this.series(name).find((s) => s.at >= now - overMs);
    if (!first || now - first.at < 1000) return 0;
    return Math.max(0, ((value - first.value) / (now - first.at)) * 60_000);
  }
}

export interface CampaignProgress {
  status: CampaignStatus;
  codesPerMinute: number;
  etaSeconds: number | null;
}

export function progressOf(status: CampaignStatus, samples: Samples, now = Date.now()): CampaignProgress {
  const settled = status.done + status.failed;
  const rate = samples.perMinute(`campaign:${status.campaign}`, settled, 60_000, now);
  const running = status.state === 'active' || status.state === 'enqueuing';
  const etaSeconds =
    running && status.pending > 0 && rate > 0 ? Math.ceil((status.pending / rate) * 60) : null;
  return { status, codesPerMinute: Math.round(rate * 10) / 10, etaSeconds };
}

export interface AppReport {
  appid: string;
  configured: boolean;
  rate: RateLimit;
  window: { calls: number; history: { at: string; calls: number }[] };
  backedOffMs: number;
  stops: { credentials?: StopJson; acQuota?: StopJson };
  queue: { waiting: number; active: number; delayed: number };
}

type StopJson = { errcode: number; errmsg: string; at: string };

function stopJson(stop: StopReason | undefined): StopJson | undefined {
  return stop && { errcode: stop.errcode, errmsg: stop.errmsg, at: new Date(stop.at).toISOString() };
}

/** Calls started in the window ending now, by Redis's clock as the call log is. */
export async function windowCalls(redis: Redis, prefix: string, appid: string, rate: RateLimit) {
  const [seconds, micros] = await redis.time();
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  return redis.zcount(`${prefix}:window:${appid}`, now - rate.durationMs, '+inf');
}

export async function appReport(input: {
  redis: Redis;
  store: CampaignStore;
  prefix: string;
  appid: string;
  configured: boolean;
  rate: RateLimit;
  queue: Queue;
  samples: Samples;
}): Promise<AppReport> {
  const { redis, store, appid } = input;
  // worker.ts backs an app off by setting BullMQ's limiter counter far above any limit, for the back-off's time.
  const limiterKey = input.queue.keys.limiter!;
  const [calls, counter, pttl, credentials, acQuota, counts] = await Promise.all([
    windowCalls(redis, input.prefix, appid, input.rate),
    redis.get(limiterKey),
    redis.pttl(limiterKey),
    store.appStop(appid, 'credentials'),
    store.appStop(appid, 'acQuota'),
    input.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized'),
  ]);
  const backedOffMs = Number(counter) >= 1_000_000 && pttl > 0 ? pttl : 0;
  return {
    appid,
    configured: input.configured,
    rate: input.rate,
    window: {
      calls,
      history: input.samples
        .series(`app:${appid}`)
        .map((s) => ({ at: new Date(s.at).toISOString(), calls: s.value })),
    },
    backedOffMs,
    stops: { credentials: stopJson(credentials), acQuota: stopJson(acQuota) },
    queue: {
      waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
    },
  };
}
