/**
 * Whether this process may spend WeChat calls on codes it could not keep. The first failed write closes the
 * gate: no call is made until a probe write succeeds again (tried with backoff), because every image generated
 * meanwhile would have to be held in Redis or paid for twice. When the probe succeeds, the stashed images are
 * uploaded first, then the gate opens and work resumes by itself.
 *
 * The failure is also recorded in Redis (`${prefix}:storage`), so that `status`, `watch` and the metrics of
 * every process show that campaigns wait on storage, and why.
 */
import type { Redis } from 'ioredis';
import { type Logger, silentLogger } from '../log.js';
import type { Storage, StorageError } from '../storage/index.js';
import { imageTypeOf } from '../wechat/body.js';
import type { ImageStash } from './stash.js';

/** The gate is closed: the job comes back when the next probe is due. */
export class StorageUnavailable extends Error {
  override readonly name = 'StorageUnavailable';
  constructor(
    readonly retryInMs: number,
    override readonly cause: StorageError,
  ) {
    super(`waiting for ${cause.target} to take writes again: ${cause.message}`);
  }
}

/** What `status` shows while storage refuses writes. */
export interface StorageTrouble {
  target: string;
  code: string;
  error: string;
  since: number;
}

export function storageHealthKey(prefix: string): string {
  return `${prefix}:storage`;
}

export async function storageTrouble(redis: Redis, prefix: string): Promise<StorageTrouble | undefined> {
  const h = await redis.hgetall(storageHealthKey(prefix));
  if (!h.since) return undefined;
  return { target: h.target ?? '', code: h.code ?? '', error: h.error ?? '', since: Number(h.since) };
}

export interface StorageGateOptions {
  storage: Storage;
  stash: ImageStash;
  redis: Redis;
  prefix: string;
  logger?: Logger;
  /** First wait before a probe; doubles with each failed probe. */
  retryMs: number;
  retryMaxMs: number;
}

export class StorageGate {
  readonly #o: StorageGateOptions;
  readonly #logger: Logger;
  #failure: { error: StorageError; failures: number; nextProbeAt: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: StorageGateOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Failed writes in a row, 0 while storage takes writes. */
  get failures(): number {
    return this.#failure?.failures ?? 0;
  }

  /** Throws StorageUnavailable while the gate is closed. */
  check(): void {
    const f = this.#failure;
    if (f) throw new StorageUnavailable(Math.max(0, f.nextProbeAt - Date.now()) + 100, f.error);
  }

  /** A write failed: close the gate (if open) and probe later. Returns the failures in a row. */
  async failed(error: StorageError): Promise<number> {
    if (this.#failure) {
      this.#failure.error = error;
      return this.#failure.failures;
    }
    this.#logger.warn(
      { storage: error.target, code: error.code, err: error.message },
      'storage refused a write: no more WeChat calls until it takes writes again',
    );
    this.#failure = { error, failures: 1, nextProbeAt: Date.now() + this.#o.retryMs };
    this.#schedule();
    await this.#record(error);
    return 1;
  }

  #schedule(): void {
    if (this.#closed || !this.#failure) return;
    this.#timer = setTimeout(() => void this.#probe(), Math.max(0, this.#failure.nextProbeAt - Date.now()));
  }

  async #probe(): Promise<void> {
    const failure = this.#failure!;
    try {
      await this.#o.storage.checkWritable();
      await this.#flushStash();
    } catch (err) {
      failure.error = err as StorageError;
      failure.failures += 1;
      const wait = Math.min(this.#o.retryMaxMs, this.#o.retryMs * 2 ** (failure.failures - 1));
      failure.nextProbeAt = Date.now() + wait;
      await this.#record(failure.error).catch(() => undefined);
      this.#schedule();
      return;
    }
    this.#failure = undefined;
    await this.#o.redis.del(storageHealthKey(this.#o.prefix)).catch(() => undefined);
    this.#logger.info({ storage: this.#o.storage.description }, 'storage takes writes again: resuming');
  }

  /** Upload what the stash holds before any new call, so that no stashed image waits on a new one. */
  async #flushStash(): Promise<void> {
    const { stash, storage } = this.#o;
    for await (const { objectKey, image } of stash.entries()) {
      const type = imageTypeOf(image);
      if (type) await storage.put(objectKey, image, type.contentType);
      await stash.drop(objectKey);
    }
  }

  async #record(error: StorageError): Promise<void> {
    const key = storageHealthKey(this.#o.prefix);
    await this.#o.redis
      .multi()
      .hsetnx(key, 'since', Date.now())
      .hset(key, 'target', error.target, 'code', error.code, 'error', error.message)
      .exec();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}
