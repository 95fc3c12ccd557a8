/** The one interface both backends (S3 and a local folder) implement, and what they share. */

/** A body written a piece at a time (`putStream`): a manifest of any size in constant memory. */
export type StreamBody = AsyncIterable<Buffer | string> | Iterable<Buffer | string>;

export interface PutResult {
  /** The relative key, as given to `put`. */
  key: string;
  url: string;
}

/**
 * Where images and manifests go. Every key is relative to the storage root (the S3 key prefix or the folder);
 * a key that could leave the root is refused with a StorageError (code `InvalidKey`).
 */
export interface Storage {
  /** 's3://bucket/prefix' or the folder path, for messages. */
  readonly description: string;
  /**
   * Prove we can write: put and read back a probe object under the root. Throws a StorageError naming
   * the bucket or folder and the reason (NoSuchBucket, AccessDenied, ECONNREFUSED, EACCES...).
   */
  checkWritable(): Promise<void>;
  exists(key: string): Promise<boolean>;
  put(key: string, body: Buffer, contentType: string): Promise<PutResult>;
  /**
   * Write a body of any size, holding only a few MB of it at a time (manifests of millions of rows). The object
   * appears whole or not at all: a failure of the body or of storage leaves nothing at `key` (an S3 multipart
   * upload is aborted, a temporary file removed). An error of the body itself is thrown as it is; storage's own,
   * as StorageErrors. Unlike `put`, S3 records no size with an object of several parts: `exists` does not count it,
   * and nothing looks such objects up.
   */
  putStream(key: string, body: StreamBody, contentType: string): Promise<PutResult>;
  /** Read back (for manifests and tests); undefined if missing. */
  get(key: string): Promise<Buffer | undefined>;
  /**
   * Remove objects; keys already missing are not an error. Used for a campaign's own records (its input chunks),
   * never for codes. Every key is checked first: one that could leave the root refuses the call before anything
   * is removed.
   */
  delete(keys: string[]): Promise<void>;
  /**
   * Public URL of a key: WXACODE_PUBLIC_BASE_URL + '/' + key when set (that URL serves the storage root: the key
   * prefix or the folder); else the S3 endpoint's URL of the object, or a file:// URL.
   */
  url(key: string): string;
  close(): Promise<void>;
}

/** Storage refused or failed an operation. `code` is the backend's reason (NoSuchBucket, EACCES, InvalidKey…). */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    /** The bucket and prefix, or the folder. */
    readonly target: string,
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Codes no wait will cure: missing buckets and folders, refused credentials or permissions, keys we must not
 * write. Anything else (a network fault, a 5xx, a full disk or bucket quota, a read-only remount) may pass.
 * A 403 answer to a HEAD has no body to name it: the SDK calls it Forbidden (a role without ListBucket answers
 * 403 for a missing key, so no lookup can tell a stored code from a missing one).
 */
const PERMANENT_CODES = new Set([
  'AccessDenied',
  'AllAccessDisabled',
  'Forbidden',
  'InvalidAccessKeyId',
  'InvalidBucketName',
  'InvalidKey',
  'NoSuchBucket',
  'SignatureDoesNotMatch',
  'EACCES',
  'EPERM',
  'ENOTDIR',
  'EISDIR',
]);

export function isPermanentStorageError(err: StorageError): boolean {
  return PERMANENT_CODES.has(err.code);
}

/** The probe object of the write check, at the root: the same key every time, so it never accumulates. */
export const WRITE_CHECK_KEY = '.wxacode-write-check';

/** A key never written, looked up by the start-up check. */
export const LOOKUP_CHECK_KEY = '.wxacode-lookup-check';

/**
 * The write check both backends run: put the probe object under the root and read it back. It is left in
 * place, not deleted: a delete racing another worker's check on a server that keeps folders (s3rver removes
 * a folder it empties) makes that worker's write fail, and one small object per root costs nothing.
 * Servers that write in place (s3rver again) can interleave two workers' simultaneous probes, so a read-back
 * mismatch is tried again after a random pause before it counts.
 * Failures are the backend's StorageErrors, which name the target and the reason.
 */
export async function checkRoundTrip(storage: Storage, tries = 3): Promise<void> {
  // A worker looks every code up before paying for it: storage that cannot say "missing" (a role without
  // ListBucket answers 403) would pause every campaign at its first row.
  await storage.exists(LOOKUP_CHECK_KEY);
  const body = Buffer.from('wxacode write check');
  for (let attempt = 1; ; attempt++) {
    await storage.put(WRITE_CHECK_KEY, body, 'text/plain');
    const back = await storage.get(WRITE_CHECK_KEY);
    if (back?.equals(body)) return;
    if (attempt >= tries) {
      throw new StorageError(
        storage.description,
        `Cannot use ${storage.description}: what was written there read back differently.`,
        'ReadBackMismatch',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
  }
}

/**
 * The body in pieces of exactly `bytes` (the last one shorter; an empty body is one empty piece), each chunk copied
 * once into the piece it falls in, so that a body of many small chunks costs few writes or parts and memory holds
 * one piece being filled, with no concatenated copies.
 */
export async function* piecesOf(body: StreamBody, bytes: number): AsyncGenerator<Buffer> {
  let piece = Buffer.allocUnsafe(bytes);
  let size = 0;
  let yielded = false;
  for await (const chunk of body) {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let at = 0; at < data.length; ) {
      const copied = data.copy(piece, size, at, Math.min(data.length, at + bytes - size));
      size += copied;
      at += copied;
      if (size === bytes) {
        yield piece;
        yielded = true;
        piece = Buffer.allocUnsafe(bytes);
        size = 0;
      }
    }
  }
  if (size > 0 || !yielded) yield piece.subarray(0, size);
}

/** Refuse any key that is not a plain relative path inside the root. */
export function checkKey(key: string, target: string): void {
  const segments = key.split('/');
  if (
    key.includes('\\') ||
    key.includes('\0') ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw new StorageError(
      target,
      `Refusing storage key "${key.replaceAll('\0', '\\0')}": keys are relative paths inside ${target}, without a leading "/", empty, "." or ".." segments, backslashes or NUL.`,
      'InvalidKey',
    );
  }
}

/** `base/key` with each segment of the key URL-encoded. */
export function joinUrl(base: string, key: string): string {
  return `${base.replace(/\/+$/, '')}/${key.split('/').map(encodeURIComponent).join('/')}`;
}
