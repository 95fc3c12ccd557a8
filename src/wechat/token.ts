/**
 * Access tokens, one per app, shared by every process through Redis (docs/wechat-api.md, "Access tokens").
 * Each fetch can knock out the token other servers hold (40001), so exactly one process fetches at a time under a
 * Redis lock and everyone else reads the result from the cache key. The secret never reaches Redis, a message
 * or a log; the token lives only in the cache key `${prefix}:token:${appid}`.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Dispatcher } from 'undici';
import type { Secret, TokenMode } from '../config.js';
import { defineScripts, luaScript, type ScriptedRedis } from '../lua.js';
import { exchange, jsonAnswer } from './body.js';
import { type WechatEndpoint, wechatEndpoint } from './endpoint.js';
import { TransientError } from './errors.js';

/** What the code client needs from a token source. */
export interface TokenSource {
  get(appid: string): Promise<string>;
  /**
   * WeChat rejected `rejected` (40001/40014/42001). `stillRejected`: it was a freshly fetched token and WeChat still
   * refused it, which in stable mode lets the next fetch use force_refresh.
   */
  invalidate(appid: string, rejected: string, opts?: { stillRejected?: boolean }): Promise<void>;
}

export interface TokenProviderOptions {
  /** Shared ioredis client; the provider never closes it. */
  redis: Redis;
  /** Config.prefix. */
  prefix: string;
  /** Config.apps: appid → AppSecret. */
  apps: Map<string, Secret>;
  mode: TokenMode;
  /** Config.wechatBaseUrl. */
  baseUrl: string;
  /** Default: an undici Pool of the base URL's origin, owned (and closed) by the provider. */
  dispatcher?: Dispatcher;
  /** Refresh a token once less than this is left of its life (at the latest at half its life). Default 5 min. */
  refreshAheadMs?: number;
  /**
   * How long the fetch lock lives if its holder dies. A token request, connection and body included, gets half
   * of it; the other half covers the Redis calls around it. Default 10 s.
   */
  lockTtlMs?: number;
  hooks?: { fetched?(appid: string, mode: string, forced: boolean): void };
}

/** The cache value. `refreshAt` is when a process should fetch a successor; `expiresAt` when WeChat drops it. */
interface CachedToken {
  token: string;
  expiresAt: number;
  refreshAt: number;
}

/** WeChat allows force_refresh about 20 times a day and 30 s apart. */
const FORCE_INTERVAL_MS = 30_000;
const POLL_MS = 50;
/** After a failed early refresh, keep using the valid token this long before trying again. */
const RETRY_REFRESH_MS = 5_000;

const SCRIPTS = {
  wxReleaseLock: luaScript('releaseLock', 1),
  wxDropToken: luaScript('dropToken', 1),
  wxStoreToken: luaScript('storeToken', 2),
};

export class TokenProvider implements TokenSource {
  readonly #redis: ScriptedRedis<keyof typeof SCRIPTS>;
  readonly #prefix: string;
  readonly #apps: Map<string, Secret>;
  readonly #mode: TokenMode;
  readonly #endpoint: WechatEndpoint;
  readonly #refreshAheadMs: number;
  readonly #lockTtlMs: number;
  readonly #hooks: NonNullable<TokenProviderOptions['hooks']>;
  readonly #local = new Map<string, CachedToken>();
  readonly #pending = new Map<string, Promise<CachedToken>>();
  /** appid → the fresh token WeChat still rejected; the next fetch for the app may force a refresh. */
  readonly #forceWanted = new Map<string, string>();

  constructor(options: TokenProviderOptions) {
    this.#redis = defineScripts(options.redis, SCRIPTS);
    this.#prefix = options.prefix;
    this.#apps = options.apps;
    this.#mode = options.mode;
    this.#endpoint = wechatEndpoint(options.baseUrl, options.dispatcher, {
      connections: 2,
      connectTimeout: 5_000,
    });
    this.#refreshAheadMs = options.refreshAheadMs ?? 5 * 60_000;
    this.#lockTtlMs = options.lockTtlMs ?? 10_000;
    this.#hooks = options.hooks ?? {};
  }

  async get(appid: string): Promise<string> {
    this.#secretOf(appid);
    const local = this.#local.get(appid);
    if (local && Date.now() < local.refreshAt) return local.token;
    let pending = this.#pending.get(appid);
    if (!pending) {
      const avoid = this.#forceWanted.get(appid);
      pending = this.#obtain(appid, avoid)
        .then((entry) => {
          this.#local.set(appid, entry);
          if (avoid !== undefined && this.#forceWanted.get(appid) === avoid) this.#forceWanted.delete(appid);
          return entry;
        })
        .finally(() => this.#pending.delete(appid));
      this.#pending.set(appid, pending);
    }
    return (await pending).token;
  }

  async invalidate(appid: string, rejected: string, opts: { stillRejected?: boolean } = {}): Promise<void> {
    if (this.#local.get(appid)?.token === rejected) this.#local.delete(appid);
    // Compare-and-delete: of many calls rejected with the same token, only the first drops it, so one refetch.
    await this.#redis.wxDropToken(this.#key(appid), rejected);
    if (opts.stillRejected && this.#mode === 'stable') this.#forceWanted.set(appid, rejected);
  }

  async close(): Promise<void> {
    await this.#endpoint.close();
  }

  #secretOf(appid: string): Secret {
    const secret = this.#apps.get(appid);
    if (!secret) throw new Error(`appid ${appid} is not configured (WECHAT_APPID or WECHAT_APPS)`);
    return secret;
  }

  #key(appid: string, suffix = ''): string {
    return `${this.#prefix}:token:${appid}${suffix}`;
  }

  async #read(appid: string, avoid: string | undefined): Promise<CachedToken | undefined> {
    const text = await this.#redis.get(this.#key(appid));
    if (text === null) return undefined;
    const entry = JSON.parse(text) as CachedToken;
    return entry.token !== avoid && Date.now() < entry.expiresAt ? entry : undefined;
  }

  /**
   * The cached token, or a new one fetched under the fleet-wide lock. While another process holds the lock, a
   * still-valid token serves (early refresh) or the cache key is polled until the new one appears.
   */
  async #obtain(appid: string, avoid: string | undefined): Promise<CachedToken> {
    const deadline = Date.now() + 2 * this.#lockTtlMs;
    for (;;) {
      const cached = await this.#read(appid, avoid);
      if (cached && Date.now() < cached.refreshAt) return cached;
      const lock = { key: this.#key(appid, ':lock'), owner: randomUUID() };
      const locked = await this.#redis.set(lock.key, lock.owner, 'PX', this.#lockTtlMs, 'NX');
      if (locked === 'OK') {
        // One deadline for the whole fetch, well inside the lock's life: once the lock expires another process
        // may fetch too, which in classic mode knocks out the token this one gets.
        const fetchDeadline = AbortSignal.timeout(this.#lockTtlMs / 2);
        try {
          // Another process may have stored a token between our read and the lock.
          const again = await this.#read(appid, avoid);
          if (again && Date.now() < again.refreshAt) return again;
          return await this.#fetch(appid, avoid !== undefined, lock, fetchDeadline);
        } catch (err) {
          if (!cached) throw err;
          // An early refresh failed but the token is still valid: keep serving it, try again a little later.
          return { ...cached, refreshAt: Math.min(cached.expiresAt, Date.now() + RETRY_REFRESH_MS) };
        } finally {
          await this.#redis.wxReleaseLock(lock.key, lock.owner);
        }
      }
      if (cached) return cached;
      if (Date.now() > deadline) {
        throw new TransientError(
          `timed out waiting for another process to fetch the access token of ${appid}`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  /**
   * Call the token endpoint (the caller holds `lock`) within `deadline`, and store the answer in the cache key
   * only while the lock is still ours. A lock lost meanwhile means another process may have fetched a newer token:
   * this one is then dropped unused and the call fails transiently, so an early refresh keeps serving the cached
   * token and any other caller retries, finding the token the lock's new holder stores.
   */
  async #fetch(
    appid: string,
    forceWanted: boolean,
    lock: { key: string; owner: string },
    deadline: AbortSignal,
  ): Promise<CachedToken> {
    const forced =
      forceWanted &&
      this.#mode === 'stable' &&
      (await this.#redis.set(this.#key(appid, ':forced'), '1', 'PX', FORCE_INTERVAL_MS, 'NX')) === 'OK';
    const what = `the access token request for ${appid}`;
    const secret = this.#secretOf(appid).reveal();
    const grant = 'client_credential';
    const answer = await exchange(
      this.#endpoint.dispatcher,
      this.#mode === 'stable'
        ? {
            origin: this.#endpoint.origin,
            path: `${this.#endpoint.basePath}/cgi-bin/stable_token`,
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ grant_type: grant, appid, secret, force_refresh: forced }),
            signal: deadline,
          }
        : {
            origin: this.#endpoint.origin,
            path: `${this.#endpoint.basePath}/cgi-bin/token?${new URLSearchParams({ grant_type: grant, appid, secret })}`,
            method: 'GET',
            signal: deadline,
          },
      what,
    ).catch((err: unknown) => {
      if (!deadline.aborted) throw err;
      throw new TransientError(`${what} took longer than ${this.#lockTtlMs / 2} ms`, undefined, {
        cause: err,
      });
    });
    const { access_token: token, expires_in: expiresIn } = jsonAnswer(answer, what);
    if (typeof token !== 'string' || token === '' || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
      throw new TransientError(`${what} answered without access_token and expires_in`, answer.status);
    }
    this.#hooks.fetched?.(appid, this.#mode, forced);
    const lifeMs = expiresIn * 1000;
    const now = Date.now();
    const entry: CachedToken = {
      token,
      expiresAt: now + lifeMs,
      refreshAt: now + Math.max(lifeMs - this.#refreshAheadMs, lifeMs / 2),
    };
    const stored = await this.#redis.wxStoreToken(
      lock.key,
      this.#key(appid),
      lock.owner,
      JSON.stringify(entry),
      Math.ceil(lifeMs),
    );
    if (stored !== 1) {
      throw new TransientError(`lost the token lock of ${appid} during the fetch; dropped the token it got`);
    }
    return entry;
  }
}
