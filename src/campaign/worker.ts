/**
 * A worker process: one BullMQ Worker per configured app, each drawing its calls from that app's clustered
 * limiter. For each job: skip codes already stored, call WeChat, upload, record. How each WeChat answer is
 * handled follows the reaction from the one table in `wechat/errors.ts`.
 */
import { DelayedError, type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { AppLimiter } from '../limiter.js';
import { type Logger, silentLogger } from '../log.js';
import { createStorage, objectKey, type Storage } from '../storage/index.js';
import { WechatClient } from '../wechat/client.js';
import { isTransientError, isWechatError, type WechatError } from '../wechat/errors.js';
import { TokenProvider } from '../wechat/token.js';
import { storeManifest } from './manifest.js';
import { type CodeJobData, queueName } from './queue.js';
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
}

const STORAGE_RETRY_MAX_MS = 30_000;

class CampaignStopped extends Error {}

export class CodeWorker {
  readonly #o: CodeWorkerOptions;
  readonly #logger: Logger;
  readonly #hooks: WorkerHooks;
  readonly #connection: Redis;
  readonly #store: CampaignStore;
  readonly #storage: Storage;
  readonly #tokens: TokenProvider;
  readonly #client: WechatClient;
  readonly #apps = new Map<
    string,
    { worker: Worker<CodeJobData>; queue: Queue<CodeJobData>; limiter: AppLimiter }
  >();
  readonly #campaigns = new Map<string, Promise<CampaignMeta | undefined>>();
  /** Upload failures per object key in this process, for the storage retry backoff. */
  readonly #uploadRetries = new Map<string, number>();
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
      hooks: { call: (info) => this.#hooks.call?.(info) },
    });
  }

  /**
   * Check storage, then start working. Storage is checked first so that a worker that could not keep what it
   * generates never spends an API call.
   */
  static async start(options: CodeWorkerOptions): Promise<CodeWorker> {
    const { config } = options;
    const apps = options.apps ?? [...config.apps.keys()];
    if (apps.length === 0) {
      throw new Error('no mini program configured: set WECHAT_APPID and WECHAT_SECRET (or WECHAT_APPS)');
    }
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
    if (await this.#storage.exists(key)) {
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
        const queuedAt = Date.now();
        return limiter.schedule(async () => {
          this.#hooks.limiterWait?.(appid, Date.now() - queuedAt);
          // Checked again at the last moment: another worker may have stopped the campaign while this job
          // waited, and a call for a stopped campaign is spent on a row that must fail the same way.
          if ((await this.#store.state(meta.id)) === 'stopped') throw new CampaignStopped();
          return call();
        });
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
    } else if (!isTransientError(err)) {
      throw err;
    }
    // retry, refresh-token (already refreshed once by the client) and transient failures: BullMQ retries with
    // exponential backoff and jitter; on the last attempt the row is recorded as failed with the last reason.
    const attempts = job.opts.attempts ?? 1;
    if (job.attemptsMade + 1 >= attempts) {
      const errcode = isWechatError(err) ? err.errcode : -1;
      const errmsg = isWechatError(err) ? err.errmsg : (err as Error).message;
      this.#hooks.failed?.(appid, isWechatError(err) ? String(errcode) : 'transient');
      await this.#settle(meta, value, {
        status: 'failed',
        errcode,
        errmsg: `${errmsg} (after ${attempts} attempts)`,
      });
      return 'failed';
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
      await this.#storage.put(key, image, contentTypeOf(image));
      this.#hooks.upload?.(Date.now() - started);
      this.#uploadRetries.delete(key);
      if (stashed) await this.#store.dropStash(key);
    } catch (err) {
      // The SDK already retried. Keep the image (it cost an API call, and for A/C a unit of a lifetime quota)
      // and come back later without using up an attempt: storage being down is not the row's fault.
      if (!stashed) await this.#store.stashImage(key, image);
      const tries = (this.#uploadRetries.get(key) ?? 0) + 1;
      this.#uploadRetries.set(key, tries);
      const delay = Math.min(STORAGE_RETRY_MAX_MS, (this.#o.storageRetryMs ?? 1000) * 2 ** (tries - 1));
      this.#logger.warn(
        { key, err: (err as Error).message, retryInMs: delay },
        `upload to ${this.#storage.description} failed; the image is kept and the upload will be retried`,
      );
      await job.moveToDelayed(Date.now() + delay, token);
      throw new DelayedError();
    }
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

function contentTypeOf(image: Buffer): string {
  return image[0] === 0x89 ? 'image/png' : 'image/jpeg';
}
