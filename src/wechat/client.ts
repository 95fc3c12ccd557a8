/**
 * The WeChat code API client: one call per row, with the shared access token. It never retries on its own beyond
 * the one token refresh: every call counts against the app's quota, so retries belong to the limiter-aware worker.
 */
import type { Dispatcher } from 'undici';
import { type CodeImage, classifyBody, exchange } from './body.js';
import { type WechatEndpoint, wechatEndpoint } from './endpoint.js';
import { isWechatError } from './errors.js';
import { type CodeOptions, ENDPOINTS, type Kind, requestBody } from './params.js';
import type { TokenSource } from './token.js';

export type { CodeImage } from './body.js';

export interface CallInfo {
  appid: string;
  kind: Kind;
  /** Wall time of the HTTP exchange. */
  ms: number;
  outcome: 'image' | `errcode:${number}` | 'transient';
}

export interface ClientHooks {
  /** Once per API call, the retry after a token refresh included. */
  call?(info: CallInfo): void;
}

/**
 * Runs each API call when the app's rate limit allows it. Every HTTP request to a code endpoint goes through it,
 * the retry after a token refresh included, so the limiter sees every call WeChat counts.
 */
export type CallGate = <T>(appid: string, call: () => Promise<T>) => Promise<T>;

const ungated: CallGate = (_appid, call) => call();

export interface WechatClientOptions {
  /** Config.wechatBaseUrl. */
  baseUrl: string;
  tokens: TokenSource;
  /** Default: an undici Pool of the base URL's origin, owned (and closed) by the client. */
  dispatcher?: Dispatcher;
  /** Pool size, default 16. */
  connections?: number;
  /** Default 5000. */
  connectTimeoutMs?: number;
  /** Default 15000. */
  headersTimeoutMs?: number;
  /** Default 15000. */
  bodyTimeoutMs?: number;
  hooks?: ClientHooks;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Default: no limit (the caller limits calls some other way). */
  gate?: CallGate;
}

/** Codes are well under 1 MiB; anything far larger is not a code and is cut off rather than buffered. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export class WechatClient {
  readonly #tokens: TokenSource;
  readonly #endpoint: WechatEndpoint;
  readonly #headersTimeout: number;
  readonly #bodyTimeout: number;
  readonly #hooks: ClientHooks;

  constructor(options: WechatClientOptions) {
    this.#tokens = options.tokens;
    this.#headersTimeout = options.headersTimeoutMs ?? 15_000;
    this.#bodyTimeout = options.bodyTimeoutMs ?? 15_000;
    this.#hooks = options.hooks ?? {};
    // A plain Pool (no RetryAgent) with pipelining 1: a POST whose bytes were written is failed on a socket
    // error, never re-sent, so every call WeChat may have counted is one the caller saw.
    this.#endpoint = wechatEndpoint(options.baseUrl, options.dispatcher, {
      connections: options.connections ?? 16,
      pipelining: 1,
      connectTimeout: options.connectTimeoutMs ?? 5_000,
      headersTimeout: this.#headersTimeout,
      bodyTimeout: this.#bodyTimeout,
      maxResponseSize: MAX_RESPONSE_BYTES,
    });
  }

  /** One API call for one row (plus at most one token refresh and one retry of the call on 40001/40014/42001). */
  async getCode(
    appid: string,
    options: CodeOptions,
    value: string,
    call: CallOptions = {},
  ): Promise<CodeImage> {
    const body = JSON.stringify(requestBody(options, value));
    const first = await this.#tokens.get(appid);
    try {
      return await this.#call(appid, options.kind, first, body, call);
    } catch (err) {
      if (!isTokenRejection(err)) throw err;
      await this.#tokens.invalidate(appid, first);
    }
    const second = await this.#tokens.get(appid);
    try {
      return await this.#call(appid, options.kind, second, body, call);
    } catch (err) {
      if (isTokenRejection(err)) await this.#tokens.invalidate(appid, second, { stillRejected: true });
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#endpoint.close();
  }

  async #call(
    appid: string,
    kind: Kind,
    token: string,
    body: string,
    { signal, gate = ungated }: CallOptions,
  ): Promise<CodeImage> {
    return gate(appid, () => this.#exchange(appid, kind, token, body, signal));
  }

  async #exchange(
    appid: string,
    kind: Kind,
    token: string,
    body: string,
    signal?: AbortSignal,
  ): Promise<CodeImage> {
    const what = `the ${kind} code call for ${appid}`;
    const started = performance.now();
    let outcome: CallInfo['outcome'] = 'transient';
    try {
      const answer = await exchange(
        this.#endpoint.dispatcher,
        {
          origin: this.#endpoint.origin,
          path: `${this.#endpoint.basePath}${ENDPOINTS[kind]}?access_token=${encodeURIComponent(token)}`,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal,
          headersTimeout: this.#headersTimeout,
          bodyTimeout: this.#bodyTimeout,
        },
        what,
      );
      const image = classifyBody(answer.status, answer.body, kind, what);
      outcome = 'image';
      return image;
    } catch (err) {
      if (isWechatError(err)) outcome = `errcode:${err.errcode}`;
      throw err;
    } finally {
      this.#hooks.call?.({ appid, kind, ms: performance.now() - started, outcome });
    }
  }
}

/** 40001/40014/42001, per the one classification table in errors.ts. */
function isTokenRejection(err: unknown): boolean {
  return isWechatError(err) && err.reaction === 'refresh-token';
}
