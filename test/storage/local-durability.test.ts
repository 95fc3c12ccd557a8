/**
 * A power loss right after `put` must not leave a row marked done whose file is gone: the rename is made durable
 * by syncing the folder. A test cannot cut the power; it can only see that the folder is synced after the rename
 * and that the file, and no temporary file, is there.
 */
import type * as fs from 'node:fs/promises';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';

const synced: string[] = [];

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof fs>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const sync = handle.sync.bind(handle);
    handle.sync = async () => {
      synced.push(String(args[0]));
      return sync();
    };
    return handle;
  };
  return { ...actual, open, default: { ...actual, open } };
});

const { LocalStorage } = await import('../../src/storage/local.js');

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'wxacode-durable-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

it('syncs the folder after renaming the file into it, leaving no temporary file', async () => {
  const storage = new LocalStorage(root);
  await storage.put('wx1/unlimited/0123456789ab/scene.jpg', Buffer.from('image'), 'image/jpeg');
  const dir = path.join(root, 'wx1/unlimited/0123456789ab');
  expect(synced).toContain(dir);
  expect(await readdir(dir)).toEqual(['scene.jpg']);
});
