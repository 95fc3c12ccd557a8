/**
 * Where a worker keeps the codes it pays for: the storage, the gate that stops calls while storage refuses
 * writes, and the bounded stash of images it could not store yet. The worker asks it whether a code is stored and
 * hands it each image; what it throws is for `policy.ts` to decide on.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { isPermanentStorageError, type Storage, StorageError } from '../storage/index.js';
import { imageTypeOf } from '../wechat/body.js';
import { StorageLookupFailed } from './policy.js';
import { ImageStash } from './stash.js';
import { StorageGate } from './storage-gate.js';

export interface CodeStoreOptions {
  storage: Storage;
  redis: Redis;
  prefix: string;
  stashMaxBytes: number;
  /** First wait before probing storage that refused a write; doubles up to `retryMaxMs`. */
  retryMs: number;
  retryMaxMs: number;
  logger: Logger;
}

export class CodeStore {
  readonly storage: Storage;
  readonly #stash: ImageStash;
  readonly #gate: StorageGate;
  readonly #logger: Logger;

  constructor(o: CodeStoreOptions) {
    this.storage = o.storage;
    this.#logger = o.logger;
    this.#stash = new ImageStash(o.redis, o.prefix, o.stashMaxBytes);
    this.#gate = new StorageGate({ ...o, stash: this.#stash });
  }

  /** Throws StorageUnavailable while storage refuses writes: no call, not even a lookup, until it takes them. */
  check(): void {
    this.#gate.check();
  }

  /** Whether the code is stored; a lookup that fails throws StorageLookupFailed. */
  async has(key: string): Promise<boolean> {
    const stored = await this.storage.exists(key).catch((err: StorageError) => {
      throw new StorageLookupFailed(err);
    });
    // A stash left by an upload that did reach storage before it failed is of no more use.
    if (stored) await this.#stash.drop(key);
    return stored;
  }

  /** The image an earlier upload of this key could not store, if the stash kept it. */
  stashed(key: string): Promise<Buffer | undefined> {
    return this.#stash.get(key);
  }

  /** Store an image; when storage fails, keep it in the stash (it cost a call) and throw. */
  async put(key: string, image: Buffer, fromStash: boolean): Promise<void> {
    try {
      // Every image here passed classifyBody (a stashed one did before it was stashed).
      await this.storage.put(key, image, imageTypeOf(image)!.contentType);
    } catch (err) {
      if (!fromStash && !(await this.#stash.put(key, image))) {
        this.#logger.warn({ key, maxBytes: this.#stash.maxBytes }, 'the stash is full: this image is let go');
      }
      throw err;
    }
    if (fromStash) await this.#stash.drop(key);
  }

  /**
   * A storage failure that may pass (a refused write, a lookup that did not get through) closes the gate: no
   * call until a probe write succeeds. Returns the failures in a row, 0 for any other error.
   */
  async failed(err: unknown): Promise<number> {
    if (err instanceof StorageError) return this.#gate.failed(err);
    if (err instanceof StorageLookupFailed && !isPermanentStorageError(err.cause)) {
      return this.#gate.failed(err.cause);
    }
    return 0;
  }

  async close(): Promise<void> {
    this.#gate.close();
    await this.storage.close();
  }
}
