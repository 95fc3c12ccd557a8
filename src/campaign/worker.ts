/**
 * A worker process: one BullMQ Worker per configured app, each drawing its calls from that app's clustered
 * limiter. For each job: skip codes already stored, call WeChat, upload, record. What happens when a job does not
 * end in a stored code is decided by `policy.ts`; this file carries the decisions out.
 */
import { DelayedError, type Job, type Queue, RateLimitError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { type Config, workerApps } from '../config.js';
import { AppLimiter } from '../limiter.js';
import { type Logger, silentLogger } from '../log.js';
import {
  createStorage,
  isPermanentStorageError,
  objectKey,
  type Storage,
  StorageError,
} from '../storage/index.js';
import { imageTypeOf } from '../wechat/body.js';
import { WechatClient } from '../wechat/client.js';
import { isTransientError, isWechatError } from '../wechat/errors.js';
import { TokenProvider } from '../wechat/token.js';
import { CampaignLifecycle } from './lifecycle.js';
import {
  AppBackedOff,
  CampaignStopped,
  CorruptCampaign,
  type Decision,
  decide,
  type JobOutcome,
  outcomeOf,
  StorageLookupFailed,
} from './policy.js';
import { type CodeJobData, openQueue, retryDelay } from './queue.js';
import { Reconciler } from './reconcile.js';
import { QuotaLedger } from './ledger.js';
import { ImageStash } from './stash.js';
import { StorageGate } from './storage-gate.js';
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
  /** Delay before retrying when storage fails (doubles with each failure in a row, up to 30 s). Default 1000 ms. */
  storageRetryMs?: number;
  /** How long a WeChat call may wait for the answer's headers, and then for its body. Default 15 000 ms each. */
  wechatTimeoutMs?: number;
  /** How often the fleet looks for pending rows with no job (see reconcile.ts). Default 60 000 ms. */
  reconcileIntervalMs?: number;
}

const STORAGE_RETRY_MAX_MS = 30_000;

/**
 * BullMQ honours `queue.rateLimit()` in `moveToActive` only for workers that have a `limiter` option: with one,
 * every worker of the app, in every process, stops taking jobs while the back-off lasts. The limit itself is
 * never reached (the cap is kept by AppLimiter); a back-off sets the counter far above it.
 */
const BULLMQ_LIMITER = { max: 1_000_000_000, duration: 1000 };

interface App {
  worker: Worker<CodeJobData>;
  queue: Queue<CodeJobData>;
  limiter: AppLimiter;
  /** BullMQ's rate-limit key of the app's queue: far above the limit while the app is backed off. */
  backoffKey: string;
}

export class CodeWorker {
  readonly #o: CodeWorkerOptions;
  readonly #logger: Logger;
  readonly #hooks: WorkerHooks;
  readonly #connection: Redis;
  readonly #store: CampaignStore;
  readonly #lifecycle: CampaignLifecycle;
  readonly #storage: Storage;
  readonly #tokens: TokenProvider;
  readonly #client: WechatClient;
  readonly #apps = new Map<string, App>();
  /** Campaign options and app never change after creation: each is read once. Only found ones are kept. */
  readonly #campaigns = new Map<string, CampaignMeta>();
  readonly #stash: ImageStash;
  readonly #ledger: QuotaLedger;
  readonly #gate: StorageGate;
  #reconciler: Reconciler | undefined;
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
    this.#lifecycle = new CampaignLifecycle(this.#store, storage, this.#logger);
    this.#stash = new ImageStash(this.#connection, config.prefix, config.stashMaxBytes);
    this.#ledger = new QuotaLedger(this.#connection, config.prefix);
    this.#gate = new StorageGate({
      storage,
      stash: this.#stash,
      redis: this.#connection,
      prefix: config.prefix,
      logger: this.#logger,
      retryMs: options.storageRetryMs ?? 1000,
      retryMaxMs: STORAGE_RETRY_MAX_MS,
    });
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
    worker.#reconciler = Reconciler.start({
      lifecycle: worker.#lifecycle,
      connection: worker.#connection,
      apps,
      intervalMs: options.reconcileIntervalMs,
      retentionMs: config.retentionMs,
      logger: worker.#logger,
    });
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
    const queue = openQueue(connection, config.prefix, appid);
    const worker = new Worker<CodeJobData>(queue.name, (job, token) => this.#process(appid, job, token), {
      connection,
      prefix: config.prefix,
      concurrency: this.#o.concurrency ?? 8,
      limiter: BULLMQ_LIMITER,
      lockDuration: this.#o.lockDurationMs ?? 10_000,
      stalledInterval: this.#o.stalledIntervalMs ?? 5_000,
      // A job whose worker was killed is stalled, not faulty: BullMQ's default (1) would fail it on the second
      // crash, and a failed job would leave its row pending with nobody working on it.
      maxStalledCount: 1000,
      // The campaign's rows hash is the record of what happened; finished jobs would only cost memory.
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 0 },
      settings: { backoffStrategy: retryDelay },
    });
    worker.on('error', (err) => this.#logger.warn({ err: err.message, appid }, 'worker error'));
    this.#apps.set(appid, { worker, queue, limiter, backoffKey: queue.keys.limiter! });
  }

  /** A lookup that fails (Redis away) is not kept: the job's retry asks again. */
  async #campaign(id: string): Promise<CampaignMeta | undefined> {
    const known = this.#campaigns.get(id);
    if (known) return known;
    let meta: CampaignMeta | undefined;
    try {
      meta = await this.#store.get(id);
    } catch (err) {
      if (err instanceof SyntaxError) throw new CorruptCampaign(id, err.message);
      throw err;
    }
    if (meta) this.#campaigns.set(id, meta);
    return meta;
  }

  async #process(appid: string, job: Job<CodeJobData>, token: string | undefined): Promise<JobOutcome> {
    try {
      return await this.#processRow(appid, job);
    } catch (err) {
      return this.#carryOut(appid, job, token, err);
    }
  }

  async #processRow(appid: string, job: Job<CodeJobData>): Promise<JobOutcome> {
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

    // While storage refuses writes, not even a lookup: the job comes back when the next probe is due.
    this.#gate.check();
    const key = objectKey({ appid, options: meta.options, value });
    const stored = await this.#storage.exists(key).catch((err: StorageError) => {
      throw new StorageLookupFailed(err);
    });
    if (stored) {
      // A stash left by an upload that did reach storage before it failed is of no more use.
      await this.#stash.drop(key);
      this.#hooks.alreadyStored?.(appid);
      await this.#lifecycle.settleRow(campaign, value, { status: 'done' });
      return 'already-stored';
    }

    const stashed = await this.#stash.get(key);
    const image = stashed ?? (await this.#generate(appid, meta, value, job));
    // Counted before the upload: the quota is spent once WeChat answered, whatever storage does with the image.
    if (!stashed) await this.#ledger.count(appid, meta.kind, key);
    await this.#upload(key, image, stashed !== undefined);
    await this.#lifecycle.settleRow(campaign, value, { status: 'done' });
    return 'generated';
  }

  async #generate(appid: string, meta: CampaignMeta, value: string, job: Job<CodeJobData>): Promise<Buffer> {
    const app = this.#apps.get(appid)!;
    const image = await this.#client.getCode(appid, meta.options, value, {
      // Every call (the retry after a token refresh included) waits for the app's shared limiter.
      gate: (_appid, call) => {
        const queuedAt = Date.now();
        return app.limiter.schedule(call, async () => {
          this.#hooks.limiterWait?.(appid, Date.now() - queuedAt);
          await this.#beforeCall(app, meta.id);
        });
      },
    });
    this.#hooks.generated?.(appid, meta.kind);
    this.#logger.debug({ campaign: meta.id, job: job.id }, 'code generated');
    return image.body;
  }

  /**
   * Checked when the slot comes up, at the last moment: another worker may have stopped the campaign, or backed
   * the app off, while this job waited. A call made then would be spent on a row that fails the same way, or
   * would answer 45009 again.
   */
  async #beforeCall(app: App, campaign: string): Promise<void> {
    const [state, backoff] = await Promise.all([
      this.#store.state(campaign),
      this.#connection.get(app.backoffKey),
    ]);
    if (state === 'stopped') throw new CampaignStopped();
    this.#gate.check();
    if (Number(backoff) >= BULLMQ_LIMITER.max) throw new AppBackedOff();
  }

  async #upload(key: string, image: Buffer, stashed: boolean): Promise<void> {
    const started = Date.now();
    try {
      // Every image here passed classifyBody (a stashed one did before it was stashed).
      await this.#storage.put(key, image, imageTypeOf(image)!.contentType);
    } catch (err) {
      // Keep the image: it cost an API call, and for A/C a unit of a lifetime quota.
      if (!stashed && !(await this.#stash.put(key, image))) {
        this.#logger.warn({ key, maxBytes: this.#stash.maxBytes }, 'the stash is full: this image is let go');
      }
      throw err;
    }
    this.#hooks.upload?.(Date.now() - started);
    if (stashed) await this.#stash.drop(key);
  }

  async #carryOut(
    appid: string,
    job: Job<CodeJobData>,
    token: string | undefined,
    err: unknown,
  ): Promise<JobOutcome> {
    if (err instanceof DelayedError || err instanceof RateLimitError) throw err;
    const { c: campaign, v: value } = job.data;
    const meta = this.#campaigns.get(campaign);
    const decision = decide(err, {
      kind: meta?.kind ?? 'unlimited',
      attempt: job.attemptsMade + 1,
      attempts: job.opts.attempts ?? 1,
      storageFailures: await this.#storageFailed(err),
      backoffMs: this.#o.rateLimitBackoffMs ?? Math.max(1000, this.#o.config.rateLimit.durationMs / 10),
      storageRetryMs: this.#o.storageRetryMs ?? 1000,
      storageRetryMaxMs: STORAGE_RETRY_MAX_MS,
    });
    this.#log(decision, job, err);
    switch (decision.action) {
      case 'settle-failed':
        this.#hooks.failed?.(appid, failureLabel(err));
        await this.#lifecycle.settleRow(campaign, value, {
          status: 'failed',
          errcode: decision.errcode,
          errmsg: decision.errmsg,
        });
        break;
      case 'stop-ac':
        await this.#store.stopApp(appid, 'acQuota', decision.errcode, decision.errmsg);
        await this.#ledger.saw45029(appid, decision.errmsg);
        await this.#stopCampaign(meta ?? { id: campaign, appid }, decision.errcode, decision.errmsg);
        break;
      case 'stop-campaign':
        await this.#stopCampaign(meta ?? { id: campaign, appid }, decision.errcode, decision.errmsg);
        break;
      case 'stop-app':
        await this.#store.stopApp(appid, 'credentials', decision.errcode, decision.errmsg);
        // The job is not this row's fault: put it back untouched for when the app is fixed.
        await job.moveToDelayed(Date.now() + 60_000, token);
        void this.#closeApp(appid);
        throw new DelayedError();
      case 'back-off-app':
        this.#hooks.rateLimited?.(appid);
        await this.#apps.get(appid)!.queue.rateLimit(decision.ms);
        throw Worker.RateLimitError();
      case 'wait-for-app':
        throw Worker.RateLimitError();
      case 'delay':
        await job.moveToDelayed(Date.now() + decision.ms, token);
        throw new DelayedError();
      case 'retry':
        throw err;
      case 'drop':
        break;
    }
    return outcomeOf(decision)!;
  }

  /**
   * A storage failure that may pass (a refused write, a lookup that did not get through) closes the gate: no
   * call until a probe write succeeds. Returns the failures in a row, 0 for any other error.
   */
  async #storageFailed(err: unknown): Promise<number> {
    if (err instanceof StorageError) return this.#gate.failed(err);
    if (err instanceof StorageLookupFailed && !isPermanentStorageError(err.cause))
      return this.#gate.failed(err.cause);
    return 0;
  }

  #log(decision: Decision, job: Job<CodeJobData>, err: unknown): void {
    const message = (err as Error).message;
    const at = { job: job.id, campaign: job.data.c, attempt: job.attemptsMade + 1 };
    switch (decision.action) {
      case 'stop-app':
        this.#logger.error(
          { ...at, errcode: decision.errcode },
          `WeChat refused the app (errcode ${decision.errcode}: ${decision.errmsg}); this worker stops working for it`,
        );
        break;
      case 'back-off-app':
        this.#logger.warn({ ...at, backoffMs: decision.ms }, 'WeChat rate limit hit: backing the app off');
        break;
      case 'delay':
        this.#logger.warn(
          { ...at, err: message, retryInMs: decision.ms },
          `${this.#storage.description} failed; the job will be retried without using up an attempt`,
        );
        break;
      case 'retry':
        if (!isWechatError(err) && !isTransientError(err)) {
          this.#logger.warn({ ...at, err: message }, 'job failed unexpectedly; it will be retried');
        }
        break;
      default:
        break;
    }
  }

  async #stopCampaign(
    meta: Pick<CampaignMeta, 'id' | 'appid'>,
    errcode: number,
    errmsg: string,
  ): Promise<void> {
    if (await this.#lifecycle.stop(meta.id, errcode, errmsg))
      this.#hooks.failed?.(meta.appid, String(errcode));
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
      await this.#reconciler?.close();
      this.#gate.close();
      await Promise.all([...this.#apps.keys()].map((appid) => this.#closeApp(appid)));
      await Promise.all([this.#client.close(), this.#tokens.close(), this.#storage.close()]);
      this.#connection.disconnect();
      this.#resolveAllStopped();
    })();
    return this.#closing;
  }
}

/** How a failed row is counted in the metrics: its errcode, or what kind of fault it was. */
function failureLabel(err: unknown): string {
  if (isWechatError(err)) return String(err.errcode);
  return isTransientError(err) ? 'transient' : 'error';
}
