/**
 * One Bottleneck limiter per appid, clustered in Redis, so every worker process on every machine shares the
 * app's per-minute cap (docs/wechat-api.md: 5000 calls/min for getwxacodeunlimit).
 *
 * - `minTime` spreads calls evenly: with a spacing a hair above `duration / count`, no sliding window of that
 *   duration can hold more than `count` calls, which a fixed reservoir alone cannot promise (it allows `count` at
 *   the end of one interval and `count` more at the start of the next). The hair is slack for jitter: a call
 *   that leaves late (a busy event loop, a slow network) shortens its window by that much, so the spacing
 *   leaves `slackMs` spare in every window: 1% of it, and at least 100 ms for short test windows.
 * - The reservoir is kept as a hard ceiling behind that. In cluster mode Bottleneck refreshes it only when a
 *   script runs or on the heartbeat (default 5 s), so the heartbeat is shortened: an emptied reservoir then
 *   costs at most a second, not five.
 * - Bottleneck re-creates its settings key when it vanishes (a flush, or a restart without persistence) by
 *   matching the error message `SETTINGS_KEY_NOT_FOUND` exactly, and re-registers a client the cluster forgot
 *   by matching `UNKNOWN_CLIENT`; Redis 7 prefixes script errors with "ERR ", so neither recovery fires and
 *   every schedule() fails from then on (SGrondin/bottleneck#205). We detect the prefixed messages and rebuild
 *   the limiter, whose init re-creates the settings and registers a new client. `UNKNOWN_CLIENT` is what every
 *   process but the first sees after the keys are lost: the first one's rebuild already re-created the settings.
 * - A rebuilt limiter starts with an empty reservoir, so the app makes no call for one window after its state
 *   was lost. Calls other processes reserved under the lost state (each waits for its slot after the lost
 *   `nextRequest`) still run until those processes notice, and fresh state would place new calls right on top of
 *   them: up to one extra call per job in flight across the fleet. One quiet window lets them pass; the calls
 *   the refilled reservoir releases are spaced again.
 * - Bottleneck computes time with each client's `Date.now()`, and a slot is kept by a timer in the process that
 *   reserved it, so a stalled process fires its call late, close to the next one. A sliding-window log of the
 *   calls that actually start, kept in Redis by Redis's clock (`window-log.ts`), holds every call that would
 *   overfill the window ending now until the oldest one leaves it.
 */
import Bottleneck from 'bottleneck';
import { Redis, type RedisOptions } from 'ioredis';
import type { RateLimit } from './config.js';
import { type Logger, silentLogger } from './log.js';
import { WindowLog } from './window-log.js';

export interface AppLimiterOptions {
  redisUrl: string;
  /** Config.prefix: the limiter's keys live under `${prefix}:b_limiter-${appid}_*`. */
  prefix: string;
  appid: string;
  rate: RateLimit;
  /** Spare time in every window, absorbing jitter between the limiter and WeChat. Default max(1%, 100 ms). */
  slackMs?: number;
  /** How often the clustered reservoir is refreshed when idle. Default 1000 ms. */
  heartbeatMs?: number;
  logger?: Logger;
}

/** Bottleneck's errors when its Redis state is gone: the settings key, or this client's registration. */
const LOST_STATE = /SETTINGS_KEY_NOT_FOUND|UNKNOWN_CLIENT/;
const REPLACED = 'the rate limiter was rebuilt';

export function defaultSlackMs(rate: RateLimit): number {
  return Math.max(rate.durationMs * 0.01, 100);
}

/** Milliseconds between two calls of one app, fleet-wide. */
export function limiterSpacingMs(rate: RateLimit, slackMs = defaultSlackMs(rate)): number {
  return (rate.durationMs + slackMs) / rate.count;
}

export class AppLimiter {
  readonly #options: AppLimiterOptions;
  readonly #logger: Logger;
  #limiter: Bottleneck;
  /** Settles when this process's settings are in the cluster's state (see #build). */
  #configured!: Promise<unknown>;
  readonly #windowRedis: Redis;
  readonly #window: WindowLog;
  #rebuilding: Promise<void> | undefined;
  #closed = false;

  constructor(options: AppLimiterOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#limiter = this.#build();
    this.#windowRedis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    this.#windowRedis.on('error', () => undefined);
    this.#window = new WindowLog(
      this.#windowRedis,
      `${options.prefix}:window:${options.appid}`,
      options.rate,
      options.slackMs ?? defaultSlackMs(options.rate),
    );
  }

  /** `afterLoss`: the Redis state was lost; start with an empty reservoir (see above). */
  #build(afterLoss = false): Bottleneck {
    const { rate, appid, redisUrl } = this.#options;
    const spacing = {
      minTime: limiterSpacingMs(rate, this.#options.slackMs),
      reservoirRefreshAmount: rate.count,
      reservoirRefreshInterval: rate.durationMs,
    };
    const limiter = new Bottleneck({
      id: `limiter-${appid}`,
      datastore: 'ioredis',
      // Bottleneck constructs its clients from options alone; this binds them to our URL.
      Redis: class extends Redis {
        constructor(options: RedisOptions) {
          super(redisUrl, options);
        }
      },
      // ioredis applies keyPrefix to scripts defined with defineCommand, which is how Bottleneck runs its Lua:
      // the limiter's keys then sit under the deployment's prefix like every other key of ours.
      clientOptions: { keyPrefix: `${this.#options.prefix}:`, maxRetriesPerRequest: null },
      clearDatastore: false,
      maxConcurrent: null,
      ...spacing,
      reservoir: afterLoss ? 0 : rate.count,
      heartbeatInterval: this.#options.heartbeatMs ?? 1000,
    });
    limiter.on('error', (err: Error) => this.#onError(err));
    // Bottleneck applies its options only when it creates the cluster's state; a limiter joining existing state
    // (another worker's, or one left from a run with another WXACODE_RATE_LIMIT) would keep the old spacing.
    // (Bottleneck's typings say updateSettings returns the limiter; it returns a promise of it.)
    this.#configured = Promise.resolve(limiter.updateSettings(spacing)).catch((err: Error) =>
      this.#onError(err),
    );
    return limiter;
  }

  #onError(err: Error): void {
    if (LOST_STATE.test(err.message)) {
      void this.#rebuild();
      return;
    }
    this.#logger.warn({ err: err.message, appid: this.#options.appid }, 'rate limiter error');
  }

  #rebuild(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#rebuilding ??= (async () => {
      this.#logger.warn(
        { appid: this.#options.appid },
        'rate limiter state vanished from Redis; rebuilding it',
      );
      const old = this.#limiter;
      this.#limiter = this.#build(true);
      // Jobs waiting in the old limiter would wait forever once it is disconnected: dropping them rejects their
      // schedule() calls, which ask the new limiter.
      old.stop({ dropWaitingJobs: true, dropErrorMessage: REPLACED }).catch(() => undefined);
      await old.disconnect(false).catch(() => undefined);
      await this.#limiter.ready();
    })().finally(() => {
      this.#rebuilding = undefined;
    });
    return this.#rebuilding;
  }

  /**
   * Run `fn` when the app's shared cap allows one more call. `fn` runs at most once. `beforeCall` runs when the
   * slot comes up and may throw to give the call up (the campaign was stopped, the app backed off meanwhile):
   * it runs before the call is entered in the Redis call log, so a call given up costs the app no slot there.
   */
  async schedule<T>(fn: () => Promise<T>, beforeCall?: () => Promise<void>): Promise<T> {
    // Bottleneck rejects with its own bookkeeping error when Redis fails after the task ran; the task's
    // outcome is kept so that such a failure never makes us run (and pay for) the call twice.
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    const task = async () => {
      try {
        await beforeCall?.();
        await this.#window.acquire();
        const value = await fn();
        outcome = { ok: true, value };
        return value;
      } catch (error) {
        outcome = { ok: false, error };
        throw error;
      }
    };
    for (let attempt = 0; ; attempt++) {
      await this.#rebuilding;
      await this.#configured;
      const limiter = this.#limiter;
      try {
        return await limiter.schedule(task);
      } catch (err) {
        if (outcome?.ok) return outcome.value;
        if (outcome) throw outcome.error;
        const lost = err instanceof Error && LOST_STATE.test(err.message);
        // A task queued on a limiter that a rebuild replaced is dropped, or fails with "Connection is closed":
        // it never ran.
        if (attempt < 3 && (lost || limiter !== this.#limiter)) {
          if (lost) await this.#rebuild();
          continue;
        }
        throw err;
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#rebuilding;
    await this.#limiter.disconnect(true).catch(() => undefined);
    this.#windowRedis.disconnect();
  }
}
