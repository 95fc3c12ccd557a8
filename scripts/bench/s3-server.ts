/**
 * Entry of the benchmark's s3rver process (services.ts, startS3Process): starts s3rver with one bucket, sends its
 * bucket and settings, and stops it, removing its folder, when the parent disconnects.
 */
import { startS3 } from '../../test-support/s3.js';

const s3 = await startS3();
process.once('disconnect', () => {
  void s3.stop().then(() => process.exit(0));
});
process.send!({ bucket: s3.bucket, env: s3.env });
