/** Images in a local folder: each key is a file path under it, its file name as `localPath` writes it. */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { localPath } from './keys.js';
import {
  checkKey,
  checkRoundTrip,
  joinUrl,
  type PutResult,
  piecesOf,
  type Storage,
  StorageError,
  type StreamBody,
} from './storage.js';

/** Bytes per write of `putStream`: few system calls, little memory. */
const WRITE_BYTES = 1024 * 1024;

export class LocalStorage implements Storage {
  readonly description: string;
  readonly #publicBaseUrl: string | undefined;
  /** Per folder, the names in it that a version before `localPath` wrote with upper-case letters. */
  readonly #legacyNames = new Map<string, Promise<Set<string>>>();

  constructor(dir: string, publicBaseUrl?: string) {
    this.description = path.resolve(dir);
    this.#publicBaseUrl = publicBaseUrl;
  }

  async checkWritable(): Promise<void> {
    await checkRoundTrip(this);
  }

  async exists(key: string): Promise<boolean> {
    const file = this.#file(key);
    const found = async () => {
      try {
        return (await stat(file)).isFile();
      } catch (err) {
        if (isMissing(err)) return false;
        throw this.#error('check', file, err);
      }
    };
    return (await found()) || ((await this.#adoptLegacy(key, file)) && (await found()));
  }

  /**
   * Written to a temporary file beside the target, synced, renamed, then the folder synced: a crash never leaves
   * half an image, and a power loss after `put` returns (the row then marked done) cannot lose the rename.
   */
  async put(key: string, body: Buffer, _contentType: string): Promise<PutResult> {
    const file = this.#file(key);
    const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID().slice(0, 8)}.tmp`);
    await this.#attempt('write to', async () => {
      await mkdir(path.dirname(file), { recursive: true });
      try {
        const handle = await open(temp, 'wx');
        try {
          await handle.writeFile(body);
          await handle.datasync();
        } finally {
          await handle.close();
        }
        await rename(temp, file);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      await syncDir(path.dirname(file));
    });
    return { key, url: this.url(key) };
  }

  /** As `put`, the body written to the temporary file a piece at a time. */
  async putStream(key: string, body: StreamBody, _contentType: string): Promise<PutResult> {
    const file = this.#file(key);
    const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID().slice(0, 8)}.tmp`);
    await this.#attempt('write to', () =>
      mkdir(path.dirname(file), { recursive: true }).then(() => undefined),
    );
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    try {
      handle = await this.#attempt('write to', () => open(temp, 'wx'));
      // The body's own errors come out of the loop's iteration as they are; only file operations are wrapped.
      for await (const piece of piecesOf(body, WRITE_BYTES)) {
        await this.#attempt('write to', () => handle!.writeFile(piece));
      }
      await this.#attempt('write to', () => handle!.datasync());
      await this.#attempt('write to', () => handle!.close());
      handle = undefined;
      await this.#attempt('write to', () => rename(temp, file));
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
    await this.#attempt('write to', () => syncDir(path.dirname(file)));
    return { key, url: this.url(key) };
  }

  async get(key: string): Promise<Buffer | undefined> {
    const file = this.#file(key);
    const read = async () => {
      try {
        return await readFile(file);
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw this.#error('read', file, err);
      }
    };
    return (await read()) ?? ((await this.#adoptLegacy(key, file)) ? await read() : undefined);
  }

  /**
   * Each key's file removed, as `put` named it, and a file that a version before `localPath` wrote for the key
   * under its own name (the one `get` would adopt), found by its exact name in a fresh listing of its folder: on a
   * case-insensitive file system, removing `XyZ.jpg` blindly would remove the key `xyz`'s file. A missing file,
   * or a folder where the file would be, is nothing to remove. Folders stay, even emptied; each folder a file left
   * is synced, so a power loss after `delete` returns does not bring the files back.
   */
  async delete(keys: string[]): Promise<void> {
    const targets = [...new Set(keys)].map((key) => ({ key, file: this.#file(key) }));
    const listings = new Map<string, Promise<Set<string>>>();
    const touched = new Set<string>();
    for (const { key, file } of targets) {
      if (await this.#remove(file)) touched.add(path.dirname(file));
      const legacy = this.#legacyFile(key);
      if (legacy === file) continue;
      const dir = path.dirname(legacy);
      const name = path.basename(legacy);
      let names = listings.get(dir);
      if (!names) {
        names = readdir(dir).then(
          (all) => new Set(all),
          () => new Set<string>(),
        );
        listings.set(dir, names);
      }
      if (!(await names).has(name)) continue;
      (await names).delete(name);
      // Forgotten by `#adoptLegacy` too: on a case-insensitive file system, renaming the gone `XyZ.jpg` would
      // move the key `xyz`'s file.
      (await this.#legacyNames.get(dir))?.delete(name);
      if (await this.#remove(legacy)) touched.add(dir);
    }
    for (const dir of touched) await this.#attempt('delete from', () => syncDir(dir));
  }

  url(key: string): string {
    const file = this.#file(key);
    return this.#publicBaseUrl === undefined
      ? pathToFileURL(file).href
      : joinUrl(this.#publicBaseUrl, localPath(key));
  }

  async close(): Promise<void> {}

  /**
   * A code stored before file names were made case-distinct sits under its key's own name: rename it to the
   * new one rather than pay WeChat for it again (A and C codes count against a lifetime quota). The folder's
   * listing, read once, is compared exactly: on a case-insensitive file system a plain stat of `ABC.jpg` would
   * find `abc.jpg`. True when a file was moved (or another worker moved it first).
   */
  async #adoptLegacy(key: string, file: string): Promise<boolean> {
    const legacy = this.#legacyFile(key);
    if (legacy === file) return false;
    const dir = path.dirname(file);
    let names = this.#legacyNames.get(dir);
    if (!names) {
      names = readdir(dir).then(
        (all) => new Set(all.filter((name) => localPath(name) !== name)),
        () => new Set<string>(),
      );
      this.#legacyNames.set(dir, names);
    }
    const name = path.basename(legacy);
    if (!(await names).has(name)) return false;
    (await names).delete(name);
    try {
      await rename(legacy, file);
    } catch (err) {
      if (!isMissing(err)) throw this.#error('rename', legacy, err);
    }
    return true;
  }

  /** Where a version before `localPath` wrote the key: its own name. Call after `#file` has checked the key. */
  #legacyFile(key: string): string {
    return path.join(this.description, ...key.split('/'));
  }

  /** Remove one file; false when there was none (missing, or a folder in its place). */
  async #remove(file: string): Promise<boolean> {
    try {
      await rm(file);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (isMissing(err) || code === 'ERR_FS_EISDIR') return false;
      throw this.#error('delete', file, err);
    }
  }

  #file(key: string): string {
    checkKey(key, this.description);
    const file = path.join(this.description, ...localPath(key).split('/'));
    // A second fence behind checkKey: whatever the platform's path rules, the file stays under the folder.
    const inside = path.relative(this.description, file);
    if (inside === '' || inside === '..' || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
      throw new StorageError(
        this.description,
        `Refusing storage key "${key}": it leaves ${this.description}.`,
        'InvalidKey',
      );
    }
    return file;
  }

  async #attempt<T>(action: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.#error(action, this.description, err);
    }
  }

  #error(action: string, file: string, err: unknown): StorageError {
    const code = (err as NodeJS.ErrnoException).code ?? 'Error';
    const where = file === this.description ? file : `${file} (in ${this.description})`;
    return new StorageError(
      this.description,
      `Cannot ${action} ${where}: ${code} (${(err as Error).message}).`,
      code,
      { cause: err },
    );
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Make a rename in `dir` durable. Windows cannot open a folder for syncing; there the rename stands unsynced. */
async function syncDir(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(dir, 'r');
  } catch (err) {
    if (process.platform === 'win32') return;
    throw err;
  }
  try {
    await handle.sync();
  } catch (err) {
    // Some file systems (and Windows) refuse fsync on a folder: nothing more can be done there.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EPERM' && code !== 'EISDIR') throw err;
  } finally {
    await handle.close();
  }
}
