/** Where code images and manifests are written: an S3 bucket or a local folder, behind one interface. */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { LocalStorage } from './local.js';
import { S3Storage } from './s3.js';
import type { Storage } from './storage.js';

export { decodeSegment, encodeSegment, manifestKey, objectKey, recordKey } from './keys.js';
export { LocalStorage } from './local.js';
export { PART_BYTES, S3Storage, type S3StorageOptions, type S3Target } from './s3.js';
export { isPermanentStorageError, type PutResult, type Storage, StorageError } from './storage.js';

/** The storage WXACODE_STORAGE names. Nothing is contacted until the first call (see `checkWritable`). */
export function createStorage(
  config: Pick<Config, 'storage' | 's3' | 'publicBaseUrl'>,
  options: { logger?: Logger; partBytes?: number } = {},
): Storage {
  const target = config.storage;
  if (target.type === 'local') return new LocalStorage(target.dir, config.publicBaseUrl);
  return new S3Storage(
    { bucket: target.bucket, prefix: target.prefix },
    config.s3,
    config.publicBaseUrl,
    options.logger,
    { partBytes: options.partBytes },
  );
}
