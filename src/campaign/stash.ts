/**
 * Images WeChat generated but storage did not take: each cost a call, and for A/C a unit of a lifetime quota, so
 * the next attempt uploads the stashed image instead of paying for it again. Kept under `${prefix}:stash` (a
 * hash, object key → image) with the bytes it holds beside it: the stash is bounded, so a long storage outage
 * cannot fill a `noeviction` Redis (where a refused write would lose rows with their jobs). An image the stash
 * has no room for is let go: its row stays pending, and costs a call again later.
 */
import type { Redis } from 'ioredis';
import { defineScripts, luaScript, type ScriptedRedis } from '../lua.js';

const SCRIPTS = {
  wxStashImage: luaScript('stashImage', 2),
  wxDropStash: luaScript('dropStash', 2),
} as const;

/** Tens of MB: a few hundred images, more than a fleet has in flight when storage fails. */
export const DEFAULT_STASH_MAX_BYTES = 32 * 1024 * 1024;

function keys(prefix: string) {
  return { images: `${prefix}:stash`, total: `${prefix}:stash:bytes` };
}

/** Bytes the stash of a deployment holds now. */
export async function stashBytes(redis: Redis, prefix: string): Promise<number> {
  return Number(await redis.get(keys(prefix).total));
}

export class ImageStash {
  readonly #redis: ScriptedRedis<keyof typeof SCRIPTS>;
  readonly #images: string;
  readonly #total: string;

  constructor(
    redis: Redis,
    prefix: string,
    readonly maxBytes = DEFAULT_STASH_MAX_BYTES,
  ) {
    this.#redis = defineScripts(redis, SCRIPTS);
    ({ images: this.#images, total: this.#total } = keys(prefix));
  }

  /** False when the stash is full and the image was not kept. */
  async put(objectKey: string, image: Buffer): Promise<boolean> {
    // ioredis sends a Buffer argument as it is; the scripts' typing only names strings and numbers.
    const body = image as unknown as string;
    return (await this.#redis.wxStashImage(this.#images, this.#total, objectKey, body, this.maxBytes)) === 1;
  }

  async get(objectKey: string): Promise<Buffer | undefined> {
    return (await this.#redis.hgetBuffer(this.#images, objectKey)) ?? undefined;
  }

  async drop(objectKey: string): Promise<void> {
    await this.#redis.wxDropStash(this.#images, this.#total, objectKey);
  }

  /** Every stashed image, a batch at a time. */
  async *entries(): AsyncGenerator<{ objectKey: string; image: Buffer }> {
    let cursor = '0';
    do {
      const [next, flat] = await this.#redis.hscanBuffer(this.#images, cursor, 'COUNT', 20);
      cursor = next.toString();
      for (let i = 0; i < flat.length; i += 2) {
        yield { objectKey: flat[i]!.toString(), image: flat[i + 1]! };
      }
    } while (cursor !== '0');
  }
}
