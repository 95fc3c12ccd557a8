/**
 * The stash of images storage did not take, and the gate that stops calls while storage refuses writes: real
 * Redis, and a real local-folder storage whose writes a wrapper refuses while told to.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageStash, stashBytes } from '../../src/campaign/stash.js';
import { StorageGate, StorageUnavailable, storageTrouble } from '../../src/campaign/storage-gate.js';
import { LocalStorage, type Storage, StorageError } from '../../src/storage/index.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

const JPEG = (size: number, fill: number) =>
  Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(size - 3, fill)]);

const redis = connect();
const prefixes: string[] = [];
let dir: string;

function prefix(): string {
  const p = testPrefix();
  prefixes.push(p);
  return p;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-stash-'));
});

afterAll(async () => {
  for (const p of prefixes) await deletePrefix(redis, p);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

describe('ImageStash', () => {
  it('keeps images as bytes up to its bound, and accounts for what it drops', async () => {
    const p = prefix();
    const stash = new ImageStash(redis, p, 2500);
    expect(await stash.put('a.jpg', JPEG(1000, 1))).toBe(true);
    expect(await stash.put('b.jpg', JPEG(1000, 2))).toBe(true);
    // A third would take it past 2500 bytes: let go, the others kept.
    expect(await stash.put('c.jpg', JPEG(1000, 3))).toBe(false);
    expect(await stash.get('c.jpg')).toBeUndefined();
    expect(await stashBytes(redis, p)).toBe(2000);
    // Replacing an image counts only the difference.
    expect(await stash.put('a.jpg', JPEG(1400, 4))).toBe(true);
    expect(await stashBytes(redis, p)).toBe(2400);
    expect(await stash.get('a.jpg')).toEqual(JPEG(1400, 4));
    await stash.drop('a.jpg');
    await stash.drop('a.jpg');
    expect(await stashBytes(redis, p)).toBe(1000);
    expect(await stash.put('c.jpg', JPEG(1000, 3))).toBe(true);
    const entries = [];
    for await (const entry of stash.entries()) entries.push(entry);
    expect(entries.map((e) => e.objectKey).sort()).toEqual(['b.jpg', 'c.jpg']);
  });
});

/** The folder storage, its writes refused while `refusing` is set. */
function refusable(inner: Storage) {
  const state = { refusing: false, puts: 0 };
  const storage: Storage = Object.create(inner);
  storage.put = async (key, body, type) => {
    state.puts++;
    if (state.refusing) throw new StorageError(inner.description, `Cannot write ${key}: ENOSPC.`, 'ENOSPC');
    return inner.put(key, body, type);
  };
  storage.checkWritable = async () => {
    await storage.put('.probe', Buffer.from('x'), 'text/plain');
  };
  return { storage, state };
}

describe('StorageGate', () => {
  it('closes on a refused write, probes with backoff, uploads the stash first, then opens', async () => {
    const p = prefix();
    const local = new LocalStorage(path.join(dir, p));
    const { storage, state } = refusable(local);
    const stash = new ImageStash(redis, p, 1_000_000);
    const gate = new StorageGate({ storage, stash, redis, prefix: p, retryMs: 50, retryMaxMs: 200 });
    try {
      expect(() => gate.check()).not.toThrow();
      state.refusing = true;
      const error = new StorageError(storage.description, 'Cannot write x: ENOSPC.', 'ENOSPC');
      expect(await gate.failed(error)).toBe(1);
      expect(() => gate.check()).toThrow(StorageUnavailable);
      expect(await storageTrouble(redis, p)).toMatchObject({ code: 'ENOSPC', target: storage.description });
      await stash.put('wx1/unlimited/v/kept.jpg', JPEG(500, 7));

      // Probes keep failing: the gate stays closed.
      await waitFor('three failed probes', () => gate.failures >= 3);
      expect(() => gate.check()).toThrow(StorageUnavailable);

      state.refusing = false;
      await waitFor('the gate to open', () => gate.failures === 0);
      expect(() => gate.check()).not.toThrow();
      expect(await local.get('wx1/unlimited/v/kept.jpg')).toEqual(JPEG(500, 7));
      expect(await stashBytes(redis, p)).toBe(0);
      expect(await storageTrouble(redis, p)).toBeUndefined();
    } finally {
      gate.close();
    }
  });
});
