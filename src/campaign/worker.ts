/**
 * A worker process: one BullMQ Worker per configured app, each drawing its calls from that app's clustered
 * limiter. For each job: skip codes already stored, call WeChat, upload, record. What happens when a job does not
 * end in a stored code is decided by `policy.ts`; this file carries the decisions out.
 */
import { DelayedError, type Job, RateLimitError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { workerApps } from '../config.js';
import { type Logger, silentLogger } from '../log.js';
import { createStorage, objectKey, type Storage } from '../storage/index.js';
import { WechatClient } from '../wechat/client.js';
import { TokenProvider } from '../wechat/token.js';
import { AppQueue } from './app-queue.js';
import { CodeStore } from './code-store.js';
import { Feeder } from './feeder.js';
import { QuotaLedger } from './ledger.js';
import { CampaignLifecycle } from './lifecycle.js';
import {
  AppBackedOff,
  CampaignStopped,
  CorruptCampaign,
  type Decision,
  decide,
  failureLabel,
  type JobOutcome,
  logLineOf,
  outcomeOf,
} from './policy.js';
import type { CodeJobData } from './queue.js';
import { Reconciler } from './reconcile.js';
import { type CampaignMeta, CampaignStore } from './store.js';
import type { CodeWorkerOptions, WorkerHooks } from './worker-options.js';

export type { CodeWorkerOptions, WorkerHooks } from './worker-options.js';

const STORAGE_RETRY_MAX_MS = 30_000;

export class CodeWorker {
  readonly #o: CodeWorkerOptions;
  readonly #logger: Logger;
  readonly #hooks: WorkerHooks;
  readonly #connection: Redis;
  readonly #store: CampaignStore;
  readonly #lifecycle: CampaignLifecycle;
  readonly #tokens: TokenProvider;
  readonly #client: WechatClient;
  readonly #apps = new Map<string, AppQueue>();
  /** Campaign options and app never change after creation: each is read once. Only found ones are kept. */
  readonly #campaigns = new Map<string, CampaignMeta>();
  readonly #ledger: QuotaLedger;
  readonly #codes: CodeStore;
  #reconciler: Reconciler | undefined;
  #feeder: Feeder | undefined;
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
    this.#lifecycle = new CampaignLifecycle(this.#store, storage, this.#logger);
    this.#ledger = new QuotaLedger(this.#connection, config.prefix);
    this.#codes = new CodeStore({
      storage,
      redis: this.#connection,
      prefix: config.prefix,
      stashMaxBytes: config.stashMaxBytes,
      retryMs: options.storageRetryMs ?? 1000,
      retryMaxMs: STORAGE_RETRY_MAX_MS,
      logger: this.#logger,
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
    const queue = (appid: string) => worker.#apps.get(appid)!.queue;
    worker.#feeder = Feeder.start({
      lifecycle: worker.#lifecycle,
      storage,
      apps,
      queue,
      window: config.window,
      intervalMs: options.feedIntervalMs,
      logger: worker.#logger,
    });
    worker.#reconciler = Reconciler.start({
      lifecycle: worker.#lifecycle,
      apps,
      queue,
      intervalMs: options.reconcileIntervalMs,
      retentionMs: config.retentionMs,
      logger: worker.#logger,
    });
    return worker;
  }

  get storage(): Storage {
    return this.#codes.storage;
  }

  #startApp(appid: string): void {
    const app = AppQueue.start({
      ...this.#o,
      appid,
      connection: this.#connection,
      logger: this.#logger,
      process: (job, token) => this.#process(appid, job, token),
    });
    this.#apps.set(appid, app);
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
    const { c: campaign, s: slot, v: value } = job.data;
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

    this.#codes.check();
    const key = objectKey({ appid, options: meta.options, value });
    if (await this.#codes.has(key)) {
      this.#hooks.alreadyStored?.(appid);
      await this.#lifecycle.settleRow(campaign, slot, { status: 'done' });
      return 'already-stored';
    }

    const stashed = await this.#codes.stashed(key);
    const image = stashed ?? (await this.#generate(appid, meta, value, job));
    // Counted before the upload: the quota is spent once WeChat answered, whatever storage does with the image.
    if (!stashed) await this.#ledger.count(appid, meta.kind, key);
    const started = Date.now();
    await this.#codes.put(key, image, stashed !== undefined);
    this.#hooks.upload?.(Date.now() - started);
    await this.#lifecycle.settleRow(campaign, slot, { status: 'done' });
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
  async #beforeCall(app: AppQueue, campaign: string): Promise<void> {
    const [state, backedOff] = await Promise.all([this.#store.state(campaign), app.backedOff()]);
    if (state === 'stopped') throw new CampaignStopped();
    this.#codes.check();
    if (backedOff) throw new AppBackedOff();
  }

  async #carryOut(
    appid: string,
    job: Job<CodeJobData>,
    token: string | undefined,
    err: unknown,
  ): Promise<JobOutcome> {
    if (err instanceof DelayedError || err instanceof RateLimitError) throw err;
    const { c: campaign, s: slot } = job.data;
    const meta = this.#campaigns.get(campaign);
    const decision = decide(err, {
      kind: meta?.kind ?? 'unlimited',
      attempt: job.attemptsMade + 1,
      attempts: job.opts.attempts ?? 1,
      storageFailures: await this.#codes.failed(err),
      backoffMs: this.#o.rateLimitBackoffMs ?? Math.max(1000, this.#o.config.rateLimit.durationMs / 10),
      storageRetryMs: this.#o.storageRetryMs ?? 1000,
      storageRetryMaxMs: STORAGE_RETRY_MAX_MS,
    });
    this.#log(decision, job, err);
    switch (decision.action) {
      case 'settle-failed':
        this.#hooks.failed?.(appid, failureLabel(err));
        await this.#lifecycle.settleRow(campaign, slot, {
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
        await this.#apps.get(appid)!.backOff(decision.ms);
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

  #log(decision: Decision, job: Job<CodeJobData>, err: unknown): void {
    const line = logLineOf(decision, err, this.#codes.storage.description);
    if (!line) return;
    const at = { job: job.id, campaign: job.data.c, attempt: job.attemptsMade + 1 };
    this.#logger[line.level]({ ...at, ...line.fields }, line.message);
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
    await app.close();
    if (this.#stoppedApps.size === this.#apps.size) this.#resolveAllStopped();
  }

  /** Stop taking jobs, let in-flight ones finish (call and upload), release everything. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([this.#feeder?.close(), this.#reconciler?.close()]);
      await Promise.all([...this.#apps.keys()].map((appid) => this.#closeApp(appid)));
      await Promise.all([this.#client.close(), this.#tokens.close(), this.#codes.close()]);
      this.#connection.disconnect();
      this.#resolveAllStopped();
    })();
    return this.#closing;
  }
}
