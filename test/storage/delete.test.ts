/**
 * `delete`: a campaign's own records removed from S3 (s3rver over real HTTP) and from a local folder. Missing keys
 * are no error, nothing else is touched, and keys are refused as `put` refuses them.
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createStorage, type Storage, StorageError } from '../../src/storage/index.js';
import { localPath } from '../../src/storage/keys.js';
import { removeDir } from '../../test-support/redis-server.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';

const ESCAPING = ['../x', '/abs', 'a/../../b', 'a/./b', '.', '', 'a//b', 'a/', 'a\\..\\b', 'a\0b'];
const CHUNKS = 'wx0123456789abcdef/records/spring';

let s3: TestS3;
let tmp: string;

beforeAll(async () => {
  s3 = await startS3();
  tmp = mkdtempSync(path.join(tmpdir(), 'wxacode-delete-'));
});

afterAll(async () => {
  await s3.stop();
  removeDir(tmp);
});

interface Opened {
  storage: Storage;
  /** Every key stored under this storage's root, relative to it, as the backend itself lists them. */
  list(): Promise<string[]>;
}

let roots = 0;
const backends: Record<string, () => Opened> = {
  s3: () => {
    const root = `delete/run-${++roots}`;
    const storage = createStorage(
      loadConfig({ ...s3.env, WXACODE_STORAGE: `s3://${s3.bucket}/${root}` }, {}, tmp),
    );
    return {
      storage,
      async list() {
        const client = s3.client();
        const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${root}/` }));
        client.destroy();
        return (page.Contents ?? []).map((object) => object.Key!.slice(root.length + 1)).sort();
      },
    };
  },
  local: () => {
    const dir = path.join(tmp, `out-${++roots}`);
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'us-east-1' },
    });
    return { storage, list: async () => listFiles(dir) };
  },
};

/** Every file under `dir`, relative to it, with `/` separators. */
function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .sort();
}

const body = (key: string) => Buffer.from(`record ${key}`);

describe.each(Object.entries(backends))('%s storage: delete', (name, open) => {
  it('removes what put wrote: get answers undefined, exists false, and other objects stay', async () => {
    const { storage, list } = open();
    const gone = [`${CHUNKS}/chunk-0001.jsonl`, `${CHUNKS}/chunk-0002.jsonl`];
    const kept = [`${CHUNKS}/chunk-0003.jsonl`, 'wx0123456789abcdef/unlimited/0123456789ab/id~3D1.jpg'];
    for (const key of [...gone, ...kept]) await storage.put(key, body(key), 'application/octet-stream');

    await storage.delete(gone);
    for (const key of gone) {
      expect(await storage.get(key), key).toBeUndefined();
      expect(await storage.exists(key), key).toBe(false);
    }
    for (const key of kept) {
      expect(await storage.exists(key), key).toBe(true);
      expect(await storage.get(key), key).toEqual(body(key));
    }
    expect(await list()).toEqual([...kept].map(localName(name)).sort());
    await storage.close();
  });

  it('removes a streamed object and many keys at once', async () => {
    const { storage, list } = open();
    const keys = Array.from({ length: 40 }, (_, i) => `${CHUNKS}/chunk-${String(i).padStart(4, '0')}.csv`);
    await Promise.all(keys.map((key) => storage.put(key, body(key), 'text/csv')));
    await storage.putStream(`${CHUNKS}/streamed.csv`, ['a,b\n', Buffer.from('1,2\n')], 'text/csv');
    expect(await list()).toHaveLength(41);

    await storage.delete([...keys, `${CHUNKS}/streamed.csv`, keys[0]!]);
    expect(await list()).toEqual([]);
    expect(await storage.get(`${CHUNKS}/streamed.csv`)).toBeUndefined();
    await storage.close();
  });

  it('resolves for keys already missing, and for none', async () => {
    const { storage, list } = open();
    await storage.put('kept.txt', body('kept'), 'text/plain');
    await storage.delete([]);
    await storage.delete(['never-written.txt', 'no/such/folder/x.jsonl', 'kept.txt/below-a-file']);
    await storage.delete(['kept.txt']);
    await storage.delete(['kept.txt']);
    expect(await storage.exists('kept.txt')).toBe(false);
    expect(await list()).toEqual([]);
    await storage.close();
  });

  it('refuses keys as put refuses them, before removing anything', async () => {
    const { storage, list } = open();
    await storage.put('a/b.txt', body('a/b'), 'text/plain');
    for (const key of ESCAPING) {
      await expect(storage.delete([key]), JSON.stringify(key)).rejects.toMatchObject({
        name: 'StorageError',
        code: 'InvalidKey',
      });
      await expect(storage.delete(['a/b.txt', key]), JSON.stringify(key)).rejects.toBeInstanceOf(
        StorageError,
      );
    }
    expect(await list()).toEqual(['a/b.txt']);
    await storage.close();
  });

  it('removes a key with capitals, leaving the same key in other case', async () => {
    const { storage, list } = open();
    const upper = `${CHUNKS}/Chunk-ABC.jsonl`;
    const lower = `${CHUNKS}/chunk-abc.jsonl`;
    await storage.put(upper, body(upper), 'application/x-ndjson');
    await storage.put(lower, body(lower), 'application/x-ndjson');
    await storage.delete([upper]);
    expect(await storage.exists(upper)).toBe(false);
    expect(await storage.get(upper)).toBeUndefined();
    expect(await storage.get(lower)).toEqual(body(lower));
    expect(await list()).toEqual([lower]);
    await storage.close();
  });
});

/** The name a backend lists a key under: the local folder writes capitals in file names as `~XX`. */
function localName(backend: string): (key: string) => string {
  return backend === 'local' ? localPath : (key) => key;
}

describe('local storage: delete', () => {
  it('removes the encoded file that put wrote for a key with capitals', async () => {
    const dir = path.join(tmp, 'capitals');
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'us-east-1' },
    });
    const key = `${CHUNKS}/Part-XY.jsonl`;
    await storage.put(key, body(key), 'application/x-ndjson');
    const folder = path.join(dir, CHUNKS);
    expect(await readdir(folder)).toEqual(['~50art-~58~59.jsonl']);
    await storage.delete([key]);
    expect(await readdir(folder)).toEqual([]);
    await storage.close();
  });

  it('removes a file written under the legacy name (exact case only), leaving the lower-case key', async () => {
    const dir = path.join(tmp, 'legacy');
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'us-east-1' },
    });
    const folder = path.join(dir, CHUNKS);
    await storage.put(`${CHUNKS}/xyz.jsonl`, body('xyz'), 'application/x-ndjson');
    // Written by a version that kept upper-case letters in file names.
    await writeFile(path.join(folder, 'XyZ.jsonl'), 'legacy XyZ');
    // A lookup in the folder has listed its legacy names; deleting must not leave XyZ there to be adopted.
    expect(await storage.exists(`${CHUNKS}/ABC.jsonl`)).toBe(false);

    await storage.delete([`${CHUNKS}/XYZ.jsonl`]);
    expect((await readdir(folder)).sort()).toEqual(['XyZ.jsonl', 'xyz.jsonl']);
    await storage.delete([`${CHUNKS}/XyZ.jsonl`]);
    expect(await readdir(folder)).toEqual(['xyz.jsonl']);
    expect(await storage.get(`${CHUNKS}/XyZ.jsonl`)).toBeUndefined();
    expect(await storage.exists(`${CHUNKS}/XyZ.jsonl`)).toBe(false);
    expect(String(await storage.get(`${CHUNKS}/xyz.jsonl`))).toBe('record xyz');
    await storage.close();
  });

  it('leaves a folder standing where a key would be, and folders it empties', async () => {
    const dir = path.join(tmp, 'folders');
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'us-east-1' },
    });
    await mkdir(path.join(dir, 'a', 'b'), { recursive: true });
    await storage.put('a/b/c.txt', body('c'), 'text/plain');
    await storage.delete(['a/b', 'a/b/c.txt']);
    expect(readdirSync(path.join(dir, 'a'))).toEqual(['b']);
    expect(readdirSync(path.join(dir, 'a', 'b'))).toEqual([]);
    await storage.close();
  });
});

describe('S3 storage: delete', () => {
  it('keeps the key as given under the prefix, capitals and all', async () => {
    const { storage, list } = backends.s3!();
    await storage.put('Mixed/Case.jsonl', body('x'), 'application/x-ndjson');
    expect(await list()).toEqual(['Mixed/Case.jsonl']);
    await storage.delete(['mixed/case.jsonl']);
    expect(await list()).toEqual(['Mixed/Case.jsonl']);
    await storage.delete(['Mixed/Case.jsonl']);
    expect(await list()).toEqual([]);
    await storage.close();
  });

  it('throws a StorageError naming the bucket and the reason when the bucket is missing', async () => {
    const storage = createStorage(
      loadConfig({ ...s3.env, WXACODE_STORAGE: 's3://no-such-bucket/records' }, {}, tmp),
    );
    const err = await storage.delete(['a.jsonl', 'b.jsonl']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).toMatchObject({ code: 'NoSuchBucket', target: 's3://no-such-bucket/records' });
    expect((err as Error).message).toMatch(
      /^Cannot delete from s3:\/\/no-such-bucket\/records .*\(key [ab]\.jsonl\)/,
    );
    await storage.close();
  });
});
