/** The same contract, run against S3 (s3rver over real HTTP) and a local folder. */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Logger } from '../../src/log.js';
import { createStorage, objectKey, type Storage, StorageError } from '../../src/storage/index.js';
import { checkRoundTrip, WRITE_CHECK_KEY } from '../../src/storage/storage.js';
import { codeOptions } from '../../src/wechat/params.js';
import { freePort, removeDir } from '../../test-support/redis-server.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { HOSTILE_VALUES } from './hostile.js';

const APPID = 'wx0123456789abcdef';
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
const ESCAPING = ['../x', '/abs', 'a/../../b', 'a/./b', '.', '', 'a//b', 'a/', 'a\\..\\b', 'a\0b'];

let s3: TestS3;
let tmp: string;

beforeAll(async () => {
  s3 = await startS3();
  tmp = mkdtempSync(path.join(tmpdir(), 'wxacode-storage-'));
});

afterAll(async () => {
  await s3.stop();
  removeDir(tmp);
});

/** An HTTP server standing in for S3, answering every request with `answer` once its body is read. */
async function fakeS3(
  answer: (res: ServerResponse, req: IncomingMessage) => void,
): Promise<{ env: Record<string, string>; close(): void }> {
  const server = createServer((req, res) => {
    req.resume().on('end', () => answer(res, req));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { env: { S3_ENDPOINT: `http://127.0.0.1:${port}` }, close: () => server.close() };
}

interface Backend {
  /** A storage over a fresh root (a key prefix or a folder), with its own way to list what exists. */
  open(publicBaseUrl?: string): { storage: Storage; root: string; list(): Promise<string[]> };
}

function s3Storage(env: Record<string, string>): Storage {
  return createStorage(loadConfig(env, {}, tmp));
}

/** Every object in the bucket, whatever its prefix, so an escape would show. */
async function listBucket(): Promise<string[]> {
  const client = s3.client();
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((object) => object.Key!));
    token = page.NextContinuationToken;
  } while (token);
  client.destroy();
  return keys;
}

/** Every file under the temp folder, so an escape from a storage folder inside it would show. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

let roots = 0;
const backends: Record<string, Backend> = {
  s3: {
    open(publicBaseUrl) {
      const root = `campaigns/run-${++roots}`;
      const storage = s3Storage({
        ...s3.env,
        WXACODE_STORAGE: `s3://${s3.bucket}/${root}`,
        ...(publicBaseUrl ? { WXACODE_PUBLIC_BASE_URL: publicBaseUrl } : {}),
      });
      return { storage, root, list: listBucket };
    },
  },
  local: {
    open(publicBaseUrl) {
      const root = `out-${++roots}`;
      const storage = createStorage({
        storage: { type: 'local', dir: path.join(tmp, root) },
        s3: { forcePathStyle: false, region: 'us-east-1' },
        publicBaseUrl,
      });
      return { storage, root, list: async () => listFiles(tmp) };
    },
  },
};

describe.each(Object.entries(backends))('%s storage', (name, backend) => {
  it('puts, finds and reads back an image', async () => {
    const { storage, root, list } = backend.open();
    const key = objectKey({ appid: APPID, options: codeOptions({ kind: 'unlimited' }), value: 'id=1' });
    expect(await storage.exists(key)).toBe(false);
    expect(await storage.get(key)).toBeUndefined();

    const result = await storage.put(key, JPEG, 'image/jpeg');
    expect(result).toEqual({ key, url: storage.url(key) });
    expect(await storage.exists(key)).toBe(true);
    expect(await storage.get(key)).toEqual(JPEG);
    expect(await list()).toContain(`${root}/${key}`);

    const png = Buffer.from('\x89PNG replaced');
    await storage.put(key, png, 'image/png');
    expect(await storage.get(key)).toEqual(png);
    await storage.close();
  });

  it('proves it can write, leaving only its one probe object however often it checks', async () => {
    const { storage, root, list } = backend.open();
    await storage.checkWritable();
    await Promise.all([storage.checkWritable(), storage.checkWritable()]);
    expect((await list()).filter((key) => key.startsWith(`${root}/`))).toEqual([
      `${root}/${WRITE_CHECK_KEY}`,
    ]);
    await storage.close();
  });

  it('keeps hostile row values inside its root, each under its own key', async () => {
    const { storage, root, list } = backend.open();
    const before = new Set(await list());
    const keys = HOSTILE_VALUES.map((value) =>
      objectKey({ appid: APPID, options: codeOptions({ kind: 'code' }), value }),
    );
    for (const [i, key] of keys.entries()) await storage.put(key, Buffer.from(`image ${i}`), 'image/jpeg');

    const added = (await list()).filter((key) => !before.has(key));
    expect(added.sort()).toEqual(keys.map((key) => `${root}/${key}`).sort());
    for (const [i, key] of keys.entries()) expect((await storage.get(key))?.toString()).toBe(`image ${i}`);
    await storage.close();
  });

  it('refuses keys that could leave its root', async () => {
    const { storage, list } = backend.open();
    const before = await list();
    for (const key of ESCAPING) {
      for (const call of [
        () => storage.put(key, JPEG, 'image/jpeg'),
        () => storage.exists(key),
        () => storage.get(key),
        async () => storage.url(key),
      ]) {
        await expect(call(), JSON.stringify(key)).rejects.toMatchObject({
          name: 'StorageError',
          code: 'InvalidKey',
        });
      }
    }
    expect(await list()).toEqual(before);
    await storage.close();
  });

  it('gives public URLs under WXACODE_PUBLIC_BASE_URL, each segment encoded', async () => {
    const { storage } = backend.open('https://cdn.example.com/codes/');
    expect(storage.url('wx1/code/abc/~2Fx.jpg')).toBe('https://cdn.example.com/codes/wx1/code/abc/~2Fx.jpg');
    expect(storage.url('a b/c#d?.jpg')).toBe('https://cdn.example.com/codes/a%20b/c%23d%3F.jpg');
    await storage.close();
  });

  it(`names the ${name === 's3' ? 'bucket' : 'folder'} in its description`, () => {
    const { storage, root } = backend.open();
    expect(storage.description).toBe(name === 's3' ? `s3://${s3.bucket}/${root}` : path.join(tmp, root));
  });
});

describe('S3 storage', () => {
  it('stores the Content-Type and Content-Length', async () => {
    const storage = s3Storage({ ...s3.env, WXACODE_STORAGE: `s3://${s3.bucket}/types` });
    await storage.put('a.png', JPEG, 'image/png');
    const client = s3.client();
    const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'types/a.png' }));
    expect(head.ContentType).toBe('image/png');
    expect(head.ContentLength).toBe(JPEG.length);
    client.destroy();
    await storage.close();
  });

  it('counts only complete objects: one without its recorded size is a cut-off upload', async () => {
    const storage = s3Storage({ ...s3.env, WXACODE_STORAGE: `s3://${s3.bucket}/partial` });
    const client = s3.client();
    // What a server that writes in place keeps of an upload cut off by a crash: bytes, but no size record.
    await client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: 'partial/cut.jpg', Body: JPEG.subarray(0, 4) }),
    );
    expect(await storage.exists('cut.jpg')).toBe(false);
    await storage.put('cut.jpg', JPEG, 'image/jpeg');
    expect(await storage.exists('cut.jpg')).toBe(true);
    client.destroy();
    await storage.close();
  });

  it('fails checkWritable on a missing bucket, naming it', async () => {
    const storage = s3Storage({ ...s3.env, WXACODE_STORAGE: 's3://no-such-bucket/p' });
    const err = await storage.checkWritable().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).toMatchObject({ code: 'NoSuchBucket', target: 's3://no-such-bucket/p' });
    expect((err as Error).message).toContain('s3://no-such-bucket/p');
    await storage.close();
  });

  it('fails checkWritable on a refused port, naming the bucket and the endpoint', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const storage = s3Storage({ ...s3.env, S3_ENDPOINT: endpoint, WXACODE_STORAGE: 's3://codes/p' });
    const err = await storage.checkWritable().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StorageError', code: 'ECONNREFUSED' });
    expect((err as Error).message).toContain('s3://codes/p');
    expect((err as Error).message).toContain(endpoint);
    await storage.close();
  });

  it('keeps the secret key out of its errors, even when a server echoes it', async () => {
    const secret = 'wJalrXUtnFEMI-a-secret-key';
    const server = await fakeS3((res) =>
      res
        .writeHead(403, { 'Content-Type': 'application/xml' })
        .end(`<Error><Code>AccessDenied</Code><Message>key ${secret} refused</Message></Error>`),
    );
    const storage = createStorage(
      loadConfig({
        ...s3.env,
        ...server.env,
        AWS_SECRET_ACCESS_KEY: secret,
        WXACODE_STORAGE: 's3://codes/p',
      }),
    );
    // A PUT, not the start-up check: its first request is a HEAD, whose answer has no body to echo anything.
    const err = await storage.put('a.jpg', Buffer.from('x'), 'image/jpeg').catch((e: unknown) => e);
    await storage.close();
    server.close();
    expect(err).toMatchObject({ name: 'StorageError', code: 'AccessDenied' });
    expect((err as Error).message).toContain('key [secret] refused');
    expect(`${(err as Error).message} ${JSON.stringify(err)}`).not.toContain(secret);
  });

  it('sends plain bodies with Content-MD5, and retries a 503 through the SDK', async () => {
    const requests: IncomingHttpHeaders[] = [];
    const server = await fakeS3((res, req) => {
      requests.push(req.headers);
      res.writeHead(requests.length === 1 ? 503 : 200).end();
    });
    const warnings: unknown[] = [];
    const logger = { warn: (fields: unknown) => warnings.push(fields) } as unknown as Logger;
    const storage = createStorage(loadConfig({ ...s3.env, ...server.env, WXACODE_STORAGE: 's3://codes/p' }), {
      logger,
    });
    await storage.put('wx1/a.jpg', JPEG, 'image/jpeg');
    await storage.close();
    server.close();

    expect(requests).toHaveLength(2);
    const headers = requests[1]!;
    expect(headers['content-md5']).toBe(createHash('md5').update(JPEG).digest('base64'));
    expect(headers['content-length']).toBe(String(JPEG.length));
    expect(headers['content-encoding']).toBeUndefined();
    expect(Object.keys(headers).filter((name) => name.startsWith('x-amz-checksum'))).toEqual([]);
    expect(headers['x-amz-sdk-checksum-algorithm']).toBeUndefined();
    expect(warnings).toEqual([{ key: 'wx1/a.jpg', attempts: 2 }]);
  });

  it('gives path-style and virtual-host URLs of the object without a public base URL', () => {
    const pathStyle = s3Storage({ ...s3.env, WXACODE_STORAGE: 's3://codes/runs/1' });
    expect(pathStyle.url('wx1/a b.jpg')).toBe(`${s3.endpoint}/codes/runs/1/wx1/a%20b.jpg`);
    const aws = createStorage({
      storage: { type: 's3', bucket: 'codes', prefix: '' },
      s3: { forcePathStyle: false, region: 'eu-west-1' },
    });
    expect(aws.url('wx1/x.jpg')).toBe('https://codes.s3.eu-west-1.amazonaws.com/wx1/x.jpg');
  });
});

describe('local storage', () => {
  it('fails checkWritable when the folder cannot be created, naming it', async () => {
    const blocker = path.join(tmp, 'a-file');
    writeFileSync(blocker, 'not a folder');
    const dir = path.join(blocker, 'out');
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'us-east-1' },
    });
    const err = await storage.checkWritable().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StorageError', code: 'ENOTDIR', target: dir });
    expect((err as Error).message).toContain(dir);
  });

  // Not a chmod: root, which CI runs as, writes through any mode. A root that is a file refuses everyone.
  it('fails checkWritable on a folder it cannot write, naming it and why', async () => {
    const dir = path.join(tmp, 'not-a-folder');
    await writeFile(dir, 'a file where the folder should be');
    const storage = createStorage({
      storage: { type: 'local', dir },
      s3: { forcePathStyle: false, region: 'x' },
    });
    await expect(storage.checkWritable()).rejects.toMatchObject({ code: 'EEXIST', target: dir });
  });

  it('leaves neither the file nor a temporary file when a write fails', async () => {
    const { storage, root } = backends.local!.open();
    await mkdir(path.join(tmp, root, 'wx1', 'taken.jpg'), { recursive: true });
    await expect(storage.put('wx1/taken.jpg', JPEG, 'image/jpeg')).rejects.toBeInstanceOf(StorageError);
    expect(readdirSync(path.join(tmp, root, 'wx1'))).toEqual(['taken.jpg']);
    expect(await storage.exists('wx1/taken.jpg')).toBe(false);
  });

  it('gives file:// URLs of the files it wrote', async () => {
    const { storage, root } = backends.local!.open();
    const { url } = await storage.put('wx1/~2Fx y.jpg', JPEG, 'image/jpeg');
    expect(url).toMatch(/^file:\/\//);
    expect(fileURLToPath(url)).toBe(path.join(tmp, root, 'wx1', '~2Fx y.jpg'));
  });
});

describe('the write check', () => {
  function flaky(badReads: number): Storage & { puts: number } {
    let reads = 0;
    let stored: Buffer = Buffer.alloc(0);
    return {
      description: 'flaky',
      puts: 0,
      async put(key, body) {
        this.puts++;
        stored = body;
        return { key, url: key };
      },
      async get() {
        return reads++ < badReads ? stored.subarray(0, 3) : stored;
      },
      putStream: async () => {
        throw new Error('the write check never streams');
      },
      checkWritable: async () => undefined,
      exists: async () => true,
      delete: async () => undefined,
      url: (key) => key,
      close: async () => undefined,
    };
  }

  it('tries a read-back mismatch again (two workers probing at once on a server that writes in place)', async () => {
    const storage = flaky(2);
    await checkRoundTrip(storage);
    expect(storage.puts).toBe(3);
  });

  it('fails, naming the target, when the probe never reads back right', async () => {
    await expect(checkRoundTrip(flaky(3))).rejects.toThrow(
      'Cannot use flaky: what was written there read back differently.',
    );
  });
});
