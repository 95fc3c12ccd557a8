/** Images in a local folder: each key is a file path under it. */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkKey, checkRoundTrip, joinUrl, type PutResult, type Storage, StorageError } from './storage.js';

export class LocalStorage implements Storage {
  readonly description: string;
  readonly #publicBaseUrl: string | undefined;

  constructor(dir: string, publicBaseUrl?: string) {
    this.description = path.resolve(dir);
    this.#publicBaseUrl = publicBaseUrl;
  }

  async checkWritable(): Promise<void> {
    await checkRoundTrip(this);
  }

  async exists(key: string): Promise<boolean> {
    const file = this.#file(key);
    try {
      return (await stat(file)).isFile();
    } catch (err) {
      if (isMissing(err)) return false;
      throw this.#error('check', file, err);
    }
  }

  /** Written to a temporary file beside the target, synced, then renamed: a crash never leaves half an image. */
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
    });
    return { key, url: this.url(key) };
  }

  async get(key: string): Promise<Buffer | undefined> {
    const file = this.#file(key);
    try {
      return await readFile(file);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.#error('read', file, err);
    }
  }

  url(key: string): string {
    const file = this.#file(key);
    return this.#publicBaseUrl === undefined ? pathToFileURL(file).href : joinUrl(this.#publicBaseUrl, key);
  }

  async close(): Promise<void> {}

  #file(key: string): string {
    checkKey(key, this.description);
    const file = path.join(this.description, ...key.split('/'));
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

  async #attempt(action: string, run: () => Promise<void>): Promise<void> {
    try {
      await run();
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
