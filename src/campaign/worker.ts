/**
 * A worker process: one BullMQ Worker per configured app, each drawing its calls from that app's clustered
 * limiter. For each job: skip codes already stored, call WeChat, upload, record. How each WeChat answer is
 * handled follows the reaction from the one table in `wechat/errors.ts`.
 */
import { DelayedError, type Job, Queue, RateLimitError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { type Config, workerApps } from '../config.js';
import { AppLimiter, defaultSlackMs } from '../limiter.js';
import { type Logger, silentLogger } from '../log.js';
import { createStorage, objectKey, type Storage } from '../storage/index.js';
import { imageTypeOf } from '../wechat/body.js';
import { WechatClient } from '../wechat/client.js';
import { isTransientError, isWechatError, type WechatError } from '../wechat/errors.js';
import { TokenProvider } from '../wechat/token.js';
import { storeManifest } from './manifest.js';
import { type CodeJobData, queueName, retryDelay } from './queue.js';
import { type CampaignMeta, CampaignStore } from './store.js';

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
  /** Delay before retrying an upload when storage is unreachable (doubles up to 30 s). Default 1000 ms. */
  storageRetryMs?: number;
  /** How long a WeChat call may wait for the answer's headers, and then for its body. Default 15 000 ms each. */
  wechatTimeoutMs?: number;
}

const STORAGE_RETRY_MAX_MS = 30_000;

class CampaignStopped extends Error {}
class SlotMissed extends Error {}

export class CodeWorker {
  readonly #o: CodeWorkerOptions;
  readonly #logger: Logger;
  readonly #hooks: WorkerHooks;
  readonly #connection: Redis;
  readonly #store: CampaignStore;
  readonly #storage: Storage;
  readonly #tokens: TokenProvider;
  readonly #client: WechatClient;
  /** How late after its limiter slot a call may still leave: half the limiter's slack. */
  readonly #lateMs: number;
  readonly #apps = new Map<
    string,
    { worker: Worker<CodeJobData>; queue: Queue<CodeJobData>; limiter: AppLimiter }
  >();
  readonly #campaigns = new Map<string, Promise<CampaignMeta | undefined>>();
  /** Storage failures per object key in this process, for the storage retry backoff. */
  readonly #storageRetries = new Map<string, number>();
  #closing: Promise<void> | undefined;
  #stoppedApps = new Set<string>();
  #resolveAllStopped!: () => void;
  /** Settles when every app's worker has stopped: after close(), or when WeChat refused every app's credentials. */
  readonly stopped: Promise<void> = new Promise((resolve) => {
    this.#resolveAllStopped = resolve;
  });

  private constructor(options: CodeWorkerOptions, storage: Storage) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#hooks = options.hooks ?? {};
    const { config } = options;
    this.#lateMs = defaultSlackMs(config.rateLimit) / 2;
    this.#connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.#connection.on('error', (err) => this.#logger.debug({ err: err.message }, 'redis connection error'));
    this.#store = new CampaignStore(this.#connection, config.prefix);
    this.#storage = storage;
    this.#tokens = new TokenProvider({
      redis: this.#connection,
      prefix: config.prefix,
      apps: config.apps,
      mode: config.tokenMode,
      baseUrl: config.wechatBaseUrl,
      hooks: { fetched: (appid) => this.#hooks.tokenFetched?.(appid) },
    });
    this.#client = new WechatClient({
      baseUrl: config.wechatBaseUrl,
      tokens: this.#tokens,
      headersTimeoutMs: options.wechatTimeoutMs,
      bodyTimeoutMs: options.wechatTimeoutMs,
      hooks: { call: (info) => this.#hooks.call?.(info) },
    });
  }

  /**
   * Check storage, then start working. Storage is checked first so that a worker that could not keep what it
   * generates never spends an API call.
   */
  static async start(options: CodeWorkerOptions): Promise<CodeWorker> {
    const { config } = options;
    const apps = workerApps(config, options.apps);
    const storage = createStorage(config, { logger: options.logger });
    await storage.checkWritable();
    const worker = new CodeWorker(options, storage);
    for (const appid of apps) worker.#startApp(appid);
    return worker;
  }

  get storage(): Storage {
    return this.#storage;
  }

  #startApp(appid: string): void {
    const { config } = this.#o;
    const connection = this.#connection;
    const limiter = new AppLimiter({
      redisUrl: config.redisUrl,
      prefix: config.prefix,
      appid,
      rate: config.rateLimit,
      logger: this.#logger,
    });
    const queue = new Queue<CodeJobData>(queueName(appid), { connection, prefix: config.prefix });
    const worker = new Worker<CodeJobData>(
      queueName(appid),
      (job, token) => this.#process(appid, job, token),
      {
        connection,
        prefix: config.prefix,
        concurrency: this.#o.concurrency ?? 8,
        lockDuration: this.#o.lockDurationMs ?? 10_000,
        stalledInterval: this.#o.stalledIntervalMs ?? 5_000,
        // A job whose worker was killed is stalled, not faulty: BullMQ's default (1) would fail it on the second
        // crash, and a failed job would leave its row pending with nobody working on it.
        maxStalledCount: 1000,
        // The campaign's rows hash is the record of what happened; finished jobs would only cost memory.
        removeOnComplete: { count: 0 },
        removeOnFail: { count: 0 },
        settings: { backoffStrategy: retryDelay },
      },
    );
    worker.on('error', (err) => this.#logger.warn({ err: err.message, appid }, 'worker error'));
    this.#apps.set(appid, { worker, queue, limiter });
  }

  #campaign(id: string): Promise<CampaignMeta | undefined> {
    // Options and app never change after creation; state is read fresh where it matters.
    let meta = this.#campaigns.get(id);
    if (!meta) {
      meta = this.#store.get(id);
      this.#campaigns.set(id, meta);
      void meta.then((m) => m === undefined && this.#campaigns.delete(id));
    }
    return meta;
  }

  async #process(appid: string, job: Job<CodeJobData>, token: string | undefined): Promise<string> {
    try {
      return await this.#processRow(appid, job, token);
    } catch (err) {
      if (err instanceof DelayedError || err instanceof RateLimitError) throw err;
      return this.#onRetriableError(appid, job, err);
    }
  }

  /**
   * WeChat's retry reactions (refresh-token included: the client already refreshed once), network faults and
   * anything unexpected (Redis going away mid-job): BullMQ retries with exponential backoff and jitter. On the
   * last attempt the row is recorded as failed with the reason: a job BullMQ fails is removed, and its row would
   * stay pending with nothing left to settle it.
   */
  async #onRetriableError(appid: string, job: Job<CodeJobData>, err: unknown): Promise<string> {
    const wechat = isWechatError(err);
    if (!wechat && !isTransientError(err)) {
      this.#logger.warn(
        { job: job.id, attempt: job.attemptsMade + 1, err: (err as Error).message },
        'job failed unexpectedly; it will be retried',
      );
    }
    const attempts = job.opts.attempts ?? 1;
    const meta = await this.#campaign(job.data.c);
    if (job.attemptsMade + 1 < attempts || !meta) throw err;
    const errcode = wechat ? err.errcode : -1;
    const errmsg = wechat ? err.errmsg : (err as Error).message;
    this.#hooks.failed?.(appid, wechat ? String(errcode) : isTransientError(err) ? 'transient' : 'error');
    await this.#settle(meta, job.data.v, {
      status: 'failed',
      errcode,
      errmsg: `${errmsg} (after ${attempts} attempts)`,
    });
    return 'failed';
  }

  async #processRow(appid: string, job: Job<CodeJobData>, token: string | undefined): Promise<string> {
    const { c: campaign, v: value } = job.data;
    const meta = await this.#campaign(campaign);
    if (!meta) return 'unknown-campaign';
    if ((await this.#store.state(campaign)) === 'stopped') return 'campaign-stopped';
    if (meta.kind !== 'unlimited') {
      const quota = await this.#store.appStop(appid, 'acQuota');
      if (quota) {
        await this.#stopCampaign(meta, quota.errcode, quota.errmsg);
        return 'campaign-stopped';
      }
    }

    const key = objectKey({ appid, options: meta.options, value });
    let stored: boolean;
    try {
      stored = await this.#storage.exists(key);
    } catch (err) {
      return this.#retryStorageLater(key, 'lookup in', err, job, token);
    }
    if (stored) {
      this.#storageRetries.delete(key);
      this.#hooks.alreadyStored?.(appid);
      await this.#settle(meta, value, { status: 'done' });
      return 'already-stored';
    }

    const stashed = await this.#store.stashedImage(key);
    let image = stashed;
    if (!image) {
      try {
        image = await this.#generate(appid, meta, value, job);
      } catch (err) {
        return this.#onGenerateError(appid, meta, value, job, token, err);
      }
    }
    await this.#upload(key, image, stashed !== undefined, job, token);
    await this.#settle(meta, value, { status: 'done' });
    return 'generated';
  }

  async #generate(appid: string, meta: CampaignMeta, value: string, job: Job<CodeJobData>): Promise<Buffer> {
    const limiter = this.#apps.get(appid)!.limiter;
    const image = await this.#client.getCode(appid, meta.options, value, {
      // Every call (the retry after a token refresh included) waits for the app's shared limiter.
      gate: async (_appid, call) => {
        for (;;) {
          const queuedAt = Date.now();
          try {
            return await limiter.schedule(async () => {
              const slotAt = Date.now();
              this.#hooks.limiterWait?.(appid, slotAt - queuedAt);
              // Checked again at the last moment: another worker may have stopped the campaign while this job
              // waited, and a call for a stopped campaign is spent on a row that must fail the same way.
              if ((await this.#store.state(meta.id)) === 'stopped') throw new CampaignStopped();
              // A slot is good only now. When Redis is slow to answer (restarting), every job whose slot comes
              // up meanwhile would call at once when it answers, over the cap: give the slot up, take a new one.
              if (Date.now() - slotAt > this.#lateMs) throw new SlotMissed();
              return call();
            });
          } catch (err) {
            if (!(err instanceof SlotMissed)) throw err;
          }
        }
      },
    });
    this.#hooks.generated?.(appid, meta.kind);
    this.#logger.debug({ campaign: meta.id, job: job.id }, 'code generated');
    return image.body;
  }

  async #onGenerateError(
    appid: string,
    meta: CampaignMeta,
    value: string,
    job: Job<CodeJobData>,
    token: string | undefined,
    err: unknown,
  ): Promise<string> {
    if (err instanceof CampaignStopped) return 'campaign-stopped';
    if (isWechatError(err)) {
      switch (err.reaction) {
        case 'backoff-app':
          return this.#backOffApp(appid, err);
        case 'fail-row':
          this.#hooks.failed?.(appid, String(err.errcode));
          await this.#settle(meta, value, { status: 'failed', errcode: err.errcode, errmsg: err.errmsg });
          return 'failed';
        case 'stop-campaign':
          await this.#stopCampaign(meta, err.errcode, err.errmsg);
          return 'campaign-stopped';
        case 'stop-ac':
          await this.#store.stopApp(appid, 'acQuota', err.errcode, err.errmsg);
          await this.#stopCampaign(meta, err.errcode, err.errmsg);
          return 'campaign-stopped';
        case 'stop-app':
          return this.#stopApp(appid, err, job, token);
        default:
          break;
      }
    }
    throw err;
  }

  async #backOffApp(appid: string, err: WechatError): Promise<never> {
    this.#hooks.rateLimited?.(appid);
    const backoff = this.#o.rateLimitBackoffMs ?? Math.max(1000, this.#o.config.rateLimit.durationMs / 10);
    this.#logger.warn(
      { appid, errcode: err.errcode, backoffMs: backoff },
      'WeChat rate limit hit: backing the app off',
    );
    // Every worker of the app pauses, and the job goes back to the queue without using up an attempt.
    await this.#apps.get(appid)!.queue.rateLimit(backoff);
    throw Worker.RateLimitError();
  }

  async #stopApp(
    appid: string,
    err: WechatError,
    job: Job<CodeJobData>,
    token: string | undefined,
  ): Promise<never> {
    await this.#store.stopApp(appid, 'credentials', err.errcode, err.errmsg);
    this.#logger.error(
      { appid, errcode: err.errcode },
      `WeChat refused app ${appid} (errcode ${err.errcode}: ${err.errmsg}); this worker stops working for it`,
    );
    // The job is not this row's fault: put it back untouched for when the app is fixed.
    await job.moveToDelayed(Date.now() + 60_000, token);
    void this.#closeApp(appid);
    throw new DelayedError();
  }

  async #upload(
    key: string,
    image: Buffer,
    stashed: boolean,
    job: Job<CodeJobData>,
    token: string | undefined,
  ): Promise<void> {
    const started = Date.now();
    try {
      // Every image here passed classifyBody (a stashed one did before it was stashed).
      await this.#storage.put(key, image, imageTypeOf(image)!.contentType);
      this.#hooks.upload?.(Date.now() - started);
      this.#storageRetries.delete(key);
      if (stashed) await this.#store.dropStash(key);
    } catch (err) {
      // Keep the image: it cost an API call, and for A/C a unit of a lifetime quota.
      if (!stashed) await this.#store.stashImage(key, image);
      await this.#retryStorageLater(key, 'upload to', err, job, token);
    }
  }

  /**
   * Storage failed (the SDK already retried): come back to the job later without using up an attempt, with a
   * backoff per object key. Storage being down is not the row's fault, and an outage longer than BullMQ's
   * attempts would otherwise fail rows, or leave them pending once their job is removed.
   */
  async #retryStorageLater(
    key: string,
    action: string,
    err: unknown,
    job: Job<CodeJobData>,
    token: string | undefined,
  ): Promise<never> {
    const tries = (this.#storageRetries.get(key) ?? 0) + 1;
    this.#storageRetries.set(key, tries);
    const delay = Math.min(STORAGE_RETRY_MAX_MS, (this.#o.storageRetryMs ?? 1000) * 2 ** (tries - 1));
    this.#logger.warn(
      { key, err: (err as Error).message, retryInMs: delay },
      `${action} ${this.#storage.description} failed; the job will be retried without using up an attempt`,
    );
    await job.moveToDelayed(Date.now() + delay, token);
    throw new DelayedError();
  }

  async #settle(
    meta: CampaignMeta,
    value: string,
    row: Parameters<CampaignStore['markRow']>[2],
  ): Promise<void> {
    if ((await this.#store.markRow(meta.id, value, row)) !== 'completed') return;
    this.#logger.info({ campaign: meta.id }, 'campaign completed');
    try {
      const key = await storeManifest(this.#store, this.#storage, meta.id);
      this.#logger.info({ campaign: meta.id, manifest: this.#storage.url(key) }, 'manifest stored');
    } catch (err) {
      this.#logger.error(
        { campaign: meta.id, err: (err as Error).message },
        'could not store the manifest; `wxacode export` still lists every row',
      );
    }
  }

  async #stopCampaign(meta: CampaignMeta, errcode: number, errmsg: string): Promise<void> {
    if (await this.#store.stop(meta.id, errcode, errmsg)) {
      this.#hooks.failed?.(meta.appid, String(errcode));
      this.#logger.error(
        { campaign: meta.id, errcode, errmsg },
        `campaign ${meta.id} stopped: WeChat answered ${errcode} (${errmsg}); every remaining row would fail the same way`,
      );
    }
  }

  async #closeApp(appid: string): Promise<void> {
    const app = this.#apps.get(appid);
    if (!app || this.#stoppedApps.has(appid)) return;
    this.#stoppedApps.add(appid);
    await app.worker.close();
    await Promise.all([app.queue.close(), app.limiter.close()]);
    if (this.#stoppedApps.size === this.#apps.size) this.#resolveAllStopped();
  }

  /** Stop taking jobs, let in-flight ones finish (call and upload), release everything. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#apps.keys()].map((appid) => this.#closeApp(appid)));
      await Promise.all([this.#client.close(), this.#tokens.close(), this.#storage.close()]);
      this.#connection.disconnect();
      this.#resolveAllStopped();
    })();
    return this.#closing;
  }
}
