/** Images in an S3 bucket (AWS or any S3-compatible server): each key lives under the bucket's key prefix. */
import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Settings } from '../config.js';
import type { Logger } from '../log.js';
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

/** x-amz-meta-wxacode-size: the body's length, to tell a complete object from a cut-off upload. */
const SIZE_METADATA = 'wxacode-size';

/** Attempts per request, the first included; the SDK's standard retry mode spaces them with backoff and jitter. */
const MAX_ATTEMPTS = 5;
const CONNECTION_TIMEOUT_MS = 5_000;
/** Images are at most a few hundred KB: a request this slow is a stuck connection, better retried. */
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SOCKETS = 64;
/** DeleteObject requests in flight at once: a campaign's records are a few hundred objects at most. */
const DELETE_CONCURRENCY = 8;

/**
 * Parts of a streamed upload. S3 refuses parts under 5 MiB but the last; 8 MiB keeps two or three parts in memory
 * (one uploading while the next is composed) and reaches 80 GiB within S3's 10,000 parts.
 */
export const PART_BYTES = 8 * 1024 * 1024;
const MAX_PARTS = 10_000;

export interface S3StorageOptions {
  /** Bytes per part of `putStream`; tests force small parts to exercise the multipart path. */
  partBytes?: number;
}

export interface S3Target {
  bucket: string;
  /** Key prefix without leading or trailing slashes; empty for the bucket root. */
  prefix: string;
}

export class S3Storage implements Storage {
  readonly description: string;
  readonly #client: S3Client;
  readonly #target: S3Target;
  readonly #settings: S3Settings;
  readonly #publicBaseUrl: string | undefined;
  readonly #logger: Logger | undefined;
  readonly #partBytes: number;

  constructor(
    target: S3Target,
    settings: S3Settings,
    publicBaseUrl?: string,
    logger?: Logger,
    options: S3StorageOptions = {},
  ) {
    this.#partBytes = options.partBytes ?? PART_BYTES;
    this.#target = target;
    this.#settings = settings;
    this.#publicBaseUrl = publicBaseUrl;
    this.#logger = logger;
    this.description = `s3://${target.bucket}${target.prefix ? `/${target.prefix}` : ''}`;
    const agent = { keepAlive: true, maxSockets: MAX_SOCKETS };
    this.#client = new S3Client({
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle,
      region: settings.region,
      credentials: settings.credentials && {
        accessKeyId: settings.credentials.accessKeyId,
        secretAccessKey: settings.credentials.secretAccessKey.reveal(),
      },
      // The SDK's own retries (throttling, 5xx, resets, timeouts) rather than a loop of ours around them.
      maxAttempts: MAX_ATTEMPTS,
      retryMode: 'standard',
      // Otherwise the SDK sends aws-chunked bodies with trailing CRC checksums, which several S3-compatible
      // servers store verbatim (a corrupted image) or refuse. Content-MD5 on put guards the body instead.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Options for the SDK's NodeHttpHandler, which it builds from them.
      requestHandler: {
        connectionTimeout: CONNECTION_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
        httpAgent: agent,
        httpsAgent: agent,
      },
    });
  }

  async checkWritable(): Promise<void> {
    await checkRoundTrip(this);
  }

  /**
   * Only a complete object counts. Some S3-compatible servers (s3rver among them) write the body in place as it
   * streams in, so an upload cut off by a crash leaves a truncated object behind; the size we record in the
   * object's metadata at put time only matches when the whole body arrived.
   */
  async exists(key: string): Promise<boolean> {
    const found = await this.#lookup('check', key, () =>
      this.#client.send(new HeadObjectCommand(this.#params(key))),
    );
    return found !== undefined && found.Metadata?.[SIZE_METADATA] === String(found.ContentLength);
  }

  async put(key: string, body: Buffer, contentType: string): Promise<PutResult> {
    const output = await this.#request('write to', key, () =>
      this.#client.send(
        new PutObjectCommand({
          ...this.#params(key),
          Body: body,
          ContentType: contentType,
          ContentLength: body.length,
          ContentMD5: createHash('md5').update(body).digest('base64'),
          Metadata: { [SIZE_METADATA]: String(body.length) },
        }),
      ),
    );
    const attempts = output.$metadata.attempts ?? 1;
    if (attempts > 1) this.#logger?.warn({ key, attempts }, 'S3 put succeeded after retries');
    return { key, url: this.url(key) };
  }

  /**
   * A body that fits in one part is one `put`. A longer one is a multipart upload: each part is uploaded while the
   * next is composed, and the upload is aborted on any failure, so its parts are not left billed in the bucket.
   */
  async putStream(key: string, body: StreamBody, contentType: string): Promise<PutResult> {
    const params = this.#params(key);
    const pieces = piecesOf(body, this.#partBytes);
    const first = await pieces.next();
    let next = await pieces.next();
    if (next.done) return this.put(key, first.value ?? Buffer.alloc(0), contentType);
    const { UploadId } = await this.#request('start an upload to', key, () =>
      this.#client.send(new CreateMultipartUploadCommand({ ...params, ContentType: contentType })),
    );
    const parts: CompletedPart[] = [];
    try {
      let piece: Buffer = first.value;
      for (let number = 1; ; number++) {
        if (number > MAX_PARTS) {
          throw new StorageError(
            this.description,
            `Cannot write to ${this.description} (key ${key}): more than ${MAX_PARTS} parts of ${this.#partBytes} bytes.`,
            'EntityTooLarge',
          );
        }
        const upload = this.#uploadPart(key, UploadId!, number, piece);
        // Handled from now: a part failing while the next is composed must not be an unhandled rejection,
        // which would stop the process. It is thrown below, where the part is awaited.
        upload.catch(() => undefined);
        try {
          if (number > 1) next = await pieces.next();
        } catch (err) {
          await upload.catch(() => undefined);
          throw err;
        }
        parts.push({ PartNumber: number, ETag: await upload });
        if (next.done) break;
        piece = next.value;
      }
      await this.#request('finish an upload to', key, () =>
        this.#client.send(
          new CompleteMultipartUploadCommand({ ...params, UploadId, MultipartUpload: { Parts: parts } }),
        ),
      );
    } catch (err) {
      await pieces.return(undefined);
      await this.#client.send(new AbortMultipartUploadCommand({ ...params, UploadId })).catch((abortErr) => {
        this.#logger?.warn(
          { key, err: this.#scrub((abortErr as Error).message) },
          'could not abort a failed multipart upload; a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes its parts',
        );
      });
      throw err;
    }
    return { key, url: this.url(key) };
  }

  async #uploadPart(
    key: string,
    uploadId: string,
    number: number,
    body: Buffer,
  ): Promise<string | undefined> {
    const output = await this.#request(`write part ${number} to`, key, () =>
      this.#client.send(
        new UploadPartCommand({
          ...this.#params(key),
          UploadId: uploadId,
          PartNumber: number,
          Body: body,
          ContentLength: body.length,
          ContentMD5: createHash('md5').update(body).digest('base64'),
        }),
      ),
    );
    return output.ETag;
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.#lookup('read', key, async () => {
      const output = await this.#client.send(new GetObjectCommand(this.#params(key)));
      return Buffer.from((await output.Body?.transformToByteArray()) ?? []);
    });
  }

  /**
   * One DeleteObject per key, a few at a time. Not DeleteObjects (up to 1000 keys a request): the SDK now sends it
   * with a CRC32 checksum and no Content-MD5, which several S3-compatible servers (MinIO among them) refuse,
   * and it reports each key's failure inside a successful answer. S3 answers a missing key with success; a server
   * that answers it NoSuchKey or 404 counts the same. The first failure stops the rest and is thrown once the
   * requests in flight have settled.
   */
  async delete(keys: string[]): Promise<void> {
    const targets = [...new Set(keys)].map((key) => ({ key, params: this.#params(key) }));
    let next = 0;
    let failure: { err: unknown } | undefined;
    const worker = async () => {
      while (!failure && next < targets.length) {
        const { key, params } = targets[next++]!;
        try {
          await this.#lookup('delete from', key, () => this.#client.send(new DeleteObjectCommand(params)));
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, targets.length) }, worker));
    if (failure) throw failure.err;
  }

  url(key: string): string {
    const fullKey = this.#fullKey(key);
    if (this.#publicBaseUrl !== undefined) return joinUrl(this.#publicBaseUrl, key);
    const { bucket } = this.#target;
    const { endpoint, forcePathStyle, region } = this.#settings;
    const base = new URL(endpoint ?? `https://s3.${region}.amazonaws.com`);
    const root = base.pathname.replace(/\/+$/, '');
    const origin = forcePathStyle
      ? `${base.origin}${root}/${bucket}`
      : `${base.protocol}//${bucket}.${base.host}${root}`;
    return joinUrl(origin, fullKey);
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  #fullKey(key: string): string {
    checkKey(key, this.description);
    return this.#target.prefix ? `${this.#target.prefix}/${key}` : key;
  }

  #params(key: string): { Bucket: string; Key: string } {
    return { Bucket: this.#target.bucket, Key: this.#fullKey(key) };
  }

  /** Run one request (the SDK retries inside it); any failure becomes a StorageError. */
  async #request<T>(action: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.#error(action, key, err);
    }
  }

  /** A request about one object: undefined when the object is missing. */
  async #lookup<T>(action: string, key: string, run: () => Promise<T>): Promise<T | undefined> {
    try {
      return await this.#request(action, key, run);
    } catch (err) {
      if (err instanceof StorageError && isNotFound(err.cause)) return undefined;
      throw err;
    }
  }

  #error(action: string, key: string, err: unknown): StorageError {
    const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number } };
    // Network failures arrive as Node errors (ECONNREFUSED…), S3 answers as named exceptions (NoSuchBucket…).
    const status = e.$metadata?.httpStatusCode;
    const named = e.code ?? (e.name && e.name !== 'Error' ? e.name : 'Error');
    // An answer without a body (any answer to a HEAD) leaves the SDK nothing to name it by but its status.
    const code = /^Unknown/.test(named) && status ? (STATUS_CODES[status] ?? `HTTP${status}`) : named;
    const where = this.#settings.endpoint ? ` at ${this.#settings.endpoint}` : '';
    const detail = this.#scrub(e.message || (status ? `HTTP ${status}` : code));
    return new StorageError(
      this.description,
      `Cannot ${action} ${this.description}${where} (key ${key}): ${code}${detail === code ? '' : ` (${detail})`}.`,
      code,
      { cause: err },
    );
  }

  /** A second fence: whatever a server echoes back, the secret key never reaches a message. */
  #scrub(text: string): string {
    const secret = this.#settings.credentials?.secretAccessKey.reveal();
    return secret ? text.replaceAll(secret, '[secret]') : text;
  }
}

/** S3's names for the statuses an error answer without a body may carry. */
const STATUS_CODES: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

/** The object is missing (HEAD answers a bare 404, GET a NoSuchKey); a missing bucket is an error. */
function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e.name === 'NotFound' ||
    e.name === 'NoSuchKey' ||
    (e.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket')
  );
}
