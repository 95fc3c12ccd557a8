/**
 * Prometheus metrics of a worker process: counters and histograms fed by the worker's hooks, and gauges of the
 * queues and campaigns read from Redis on each scrape. One registry per worker (never prom-client's global one),
 * so a process embedding several workers, or tests, never mix their counts.
 *
 * Labels stay few and bounded: appid, kind, WeChat's errcodes, job and row states, and the ids of campaigns
 * still running. Never a scene or a path: a million rows would be a million series.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { QuotaLedger } from './campaign/ledger.js';
import { openQueue } from './campaign/queue.js';
import { stashBytes } from './campaign/stash.js';
import { storageTrouble } from './campaign/storage-gate.js';
import { type CampaignMeta, CampaignStore } from './campaign/store.js';
import type { WorkerHooks } from './campaign/worker.js';
import { type Logger, silentLogger } from './log.js';
import { KINDS } from './wechat/params.js';

export interface WorkerMetricsOptions {
  /** Redis of the queues and campaign records, read on each scrape. The caller owns (and closes) it. */
  redis: Redis;
  /** Config.prefix. */
  prefix: string;
  /** Apps whose queue depth is reported: the worker's apps. */
  apps: string[];
  /**
   * Node's process metrics (CPU, memory, event loop lag, GC) as `wxacode_process_…` and `wxacode_nodejs_…`.
   * Default true.
   */
  processMetrics?: boolean;
  /** Longest a scrape waits for Redis before reporting `wxacode_redis_up 0`. Default 2000 ms. */
  redisTimeoutMs?: number;
  logger?: Logger;
}

const JOB_STATES = ['waiting', 'active', 'delayed'] as const;

/** Reject with a one-sentence error when `promise` takes longer than `ms`; the timer never holds the process. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function seconds(ms: number): number {
  return ms / 1000;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  /** Pass to `CodeWorker.start({ hooks })`. */
  readonly hooks: WorkerHooks;
  readonly #o: WorkerMetricsOptions;
  readonly #logger: Logger;
  readonly #store: CampaignStore;
  readonly #queues: Map<string, Queue>;
  readonly #queueJobs: Gauge<'appid' | 'state'>;
  readonly #campaignRows: Gauge<'campaign' | 'status'>;
  readonly #campaignState: Gauge<'campaign' | 'state'>;
  readonly #redisUp: Gauge;
  readonly #storageRefusing: Gauge;
  readonly #stashBytes: Gauge;
  readonly #ledger: QuotaLedger;
  readonly #acUsed: Gauge<'appid'>;
  readonly #bToday: Gauge<'appid'>;

  constructor(options: WorkerMetricsOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#store = new CampaignStore(options.redis, options.prefix);
    this.#queues = new Map(
      options.apps.map((appid) => {
        const queue = openQueue(options.redis, options.prefix, appid);
        // Connection errors also reach the scrape as a failed read; without a listener BullMQ prints each one.
        queue.on('error', (err) => this.#logger.debug({ err: err.message, appid }, 'metrics queue error'));
        return [appid, queue];
      }),
    );
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Counter({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[], buckets: number[]) =>
      new Histogram({ name, help, labelNames, buckets, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Gauge({ name, help, labelNames, registers });

    const generated = counter(
      'wxacode_codes_generated_total',
      'Codes WeChat generated for this worker (each one an API call that returned an image)',
      ['appid', 'kind'],
    );
    const alreadyStored = counter(
      'wxacode_codes_already_stored_total',
      'Rows settled without a call because their code was already in storage',
      ['appid'],
    );
    const failed = counter(
      'wxacode_codes_failed_total',
      'Rows failed, and campaigns stopped, by WeChat errcode, or "transient" after the last attempt',
      ['appid', 'reason'],
    );
    const rateLimited = counter(
      'wxacode_wechat_rate_limited_total',
      'Answers 45009/45011 (rate cap hit): each one backs the whole app off',
      ['appid'],
    );
    const tokenFetches = counter(
      'wxacode_token_fetches_total',
      'Access tokens fetched from WeChat by this process (the fleet shares them through Redis)',
      ['appid'],
    );
    const calls = histogram(
      'wxacode_wechat_call_seconds',
      'Duration of each code API call; outcome is image, errcode:<n> or transient',
      ['appid', 'kind', 'outcome'],
      [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20],
    );
    const limiterWait = histogram(
      'wxacode_limiter_wait_seconds',
      "Time a job waited for its app's fleet-wide rate limiter before calling WeChat",
      ['appid'],
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    );
    const upload = histogram(
      'wxacode_upload_seconds',
      'Duration of each successful image upload to storage, SDK retries included',
      [],
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    this.#queueJobs = gauge(
      'wxacode_queue_jobs',
      "Jobs in an app's queue by state (the same for every worker of a fleet: aggregate with max)",
      ['appid', 'state'],
    );
    this.#campaignRows = gauge(
      'wxacode_campaign_rows',
      'Rows of each campaign not yet completed, by status (pending: queued or not fed yet)',
      ['campaign', 'status'],
    );
    this.#campaignState = gauge(
      'wxacode_campaign_state',
      'State of each campaign not yet completed: 1 for its current state (enqueuing, active, stopped)',
      ['campaign', 'state'],
    );
    this.#storageRefusing = gauge(
      'wxacode_storage_refusing_writes',
      'Whether storage refuses writes (1): workers make no WeChat call until it takes them again',
      [],
    );
    this.#stashBytes = gauge(
      'wxacode_stash_bytes',
      'Bytes of generated images held in Redis until storage takes them (bounded by WXACODE_STASH_MAX_MB)',
      [],
    );
    this.#ledger = new QuotaLedger(options.redis, options.prefix);
    this.#acUsed = gauge(
      'wxacode_ac_codes_used',
      "A + C codes the app has used of WeChat's lifetime 100 000: counted by this deployment plus declared",
      ['appid'],
    );
    this.#bToday = gauge(
      'wxacode_b_calls_today',
      'B calls WeChat answered with an image today (Beijing day), counted by this deployment',
      ['appid'],
    );
    this.#redisUp = gauge(
      'wxacode_redis_up',
      'Whether this scrape could read the queues and campaigns from Redis',
      [],
    );
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'wxacode_' });

    // Zero series from the start, so rate() and increase() see the first increment of each.
    for (const appid of options.apps) {
      for (const kind of KINDS) generated.inc({ appid, kind }, 0);
      alreadyStored.inc({ appid }, 0);
      rateLimited.inc({ appid }, 0);
      tokenFetches.inc({ appid }, 0);
    }

    this.hooks = {
      generated: (appid, kind) => generated.inc({ appid, kind }),
      alreadyStored: (appid) => alreadyStored.inc({ appid }),
      failed: (appid, reason) => failed.inc({ appid, reason }),
      rateLimited: (appid) => rateLimited.inc({ appid }),
      tokenFetched: (appid) => tokenFetches.inc({ appid }),
      call: ({ appid, kind, ms, outcome }) => calls.observe({ appid, kind, outcome }, seconds(ms)),
      limiterWait: (appid, ms) => limiterWait.observe({ appid }, seconds(ms)),
      upload: (ms) => upload.observe(seconds(ms)),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition, with the queue and campaign gauges read from Redis now. */
  async metrics(): Promise<string> {
    await this.#readRedis();
    return this.registry.metrics();
  }

  async #readRedis(): Promise<void> {
    this.#queueJobs.reset();
    this.#campaignRows.reset();
    this.#campaignState.reset();
    try {
      const [queues, campaigns, trouble, stashed, usages] = await within(
        Promise.all([
          this.#queueCounts(),
          this.#openCampaigns(),
          storageTrouble(this.#store.redis, this.#store.prefix),
          stashBytes(this.#store.redis, this.#store.prefix),
          Promise.all(this.#o.apps.map((appid) => this.#ledger.usage(appid))),
        ]),
        this.#o.redisTimeoutMs ?? 2000,
        'reading the queues and campaigns from Redis',
      );
      for (const [appid, counts] of queues) {
        for (const state of JOB_STATES) this.#queueJobs.set({ appid, state }, counts[state] ?? 0);
      }
      for (const c of campaigns) {
        this.#campaignRows.set({ campaign: c.id, status: 'pending' }, c.total - c.done - c.failed);
        this.#campaignRows.set({ campaign: c.id, status: 'done' }, c.done);
        this.#campaignRows.set({ campaign: c.id, status: 'failed' }, c.failed);
        this.#campaignState.set({ campaign: c.id, state: c.state }, 1);
      }
      this.#storageRefusing.set(trouble ? 1 : 0);
      this.#stashBytes.set(stashed);
      for (const u of usages) {
        this.#acUsed.set({ appid: u.appid }, u.ac.used);
        this.#bToday.set({ appid: u.appid }, u.b.today);
      }
      this.#redisUp.set(1);
    } catch (err) {
      // The counters are still worth serving: report Redis as down rather than failing the whole scrape.
      this.#logger.warn({ err: (err as Error).message }, 'metrics: could not read queue depths from Redis');
      this.#redisUp.set(0);
    }
  }

  #queueCounts(): Promise<[string, Record<string, number>][]> {
    return Promise.all(
      [...this.#queues].map(async ([appid, queue]) => {
        const counts = await queue.getJobCounts(...JOB_STATES, 'prioritized');
        // Every job has a priority (store.ts, PRIORITIES), so BullMQ keeps the waiting ones as prioritized.
        counts.waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
        return [appid, counts] as [string, Record<string, number>];
      }),
    );
  }

  async #openCampaigns(): Promise<CampaignMeta[]> {
    // Issued together, the reads share one round trip's worth of latency however many campaigns there are;
    // only the state of completed ones (most of them, after a while) is read.
    const ids = await this.#store.list();
    const states = await Promise.all(ids.map((id) => this.#store.state(id)));
    const open = ids.filter((_, i) => states[i] !== undefined && states[i] !== 'completed');
    const metas = await Promise.all(open.map((id) => this.#store.get(id)));
    return metas.filter((m): m is CampaignMeta => m !== undefined);
  }

  /** Close the queue handles (not the Redis connection, which the caller owns). */
  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((queue) => queue.close()));
  }
}
