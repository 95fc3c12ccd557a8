/**
 * Storage that refuses writes, injected as a fault rather than by file permissions (CI runs as root, which
 * writes anywhere): an HTTP proxy in front of s3rver that answers PUT with 403 AccessDenied while told to.
 * A refused write stops new WeChat calls until a probe write succeeds; the rows wait, and resume by themselves.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { CHAOS_APPID, ChaosRig } from '../helpers/chaos.js';
import { type RefusingProxy, refusingProxy } from '../helpers/s3-proxy.js';

let rig: ChaosRig;
let proxy: RefusingProxy;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: { count: 20, durationMs: 1000 } });
  proxy = await refusingProxy(rig.s3.endpoint);
});

afterAll(async () => {
  await proxy?.close();
  await rig?.close();
});

it('a worker refuses to start when the storage refuses writes, naming the cause', async () => {
  const prefix = rig.prefix();
  proxy.refuse.add('PUT');
  try {
    const result = await runCli(['worker'], { env: rig.env(prefix, { S3_ENDPOINT: proxy.url }) });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('AccessDenied');
    expect(result.stderr).toContain(`s3://${rig.s3.bucket}/${prefix}`);
    expect(result.stderr).not.toContain('worker started');
  } finally {
    proxy.refuse.clear();
  }
}, 60_000);

it('a worker whose storage starts refusing writes mid-campaign keeps the rows pending, and loses none', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280, isHyaline: true });
  const values = Array.from({ length: 40 }, (_, i) => `refused-${i}`);
  await rig.enqueue(prefix, 'refused', options, values);
  rig.mock.reset();
  const worker = await CodeWorker.start({
    config: rig.config(prefix, { S3_ENDPOINT: proxy.url }),
    concurrency: 4,
  });
  try {
    await waitFor('some codes stored', async () => (await store.get('refused'))!.done >= 5);
    proxy.refuse.add('PUT');
    const refusedFrom = proxy.refused;
    await waitFor('uploads refused', () => proxy.refused >= refusedFrom + 5);
    const during = await campaignStatus(store, 'refused');
    expect(during).toMatchObject({ state: 'active', failed: 0 });
    expect(during.pending).toBeGreaterThan(0);
    expect(during.done + during.pending).toBe(40);

    proxy.refuse.clear();
    await waitFor(
      'the campaign to complete',
      async () => (await campaignStatus(store, 'refused')).state === 'completed',
      { timeoutMs: 90_000 },
    );
  } finally {
    proxy.refuse.clear();
    await worker.close();
  }
  expect(await rig.audit(prefix, 'refused', options, values)).toMatchObject({
    rows: 40,
    done: 40,
    failed: 0,
    lost: 0,
  });
  // What a refused upload generated was kept and uploaded later, not paid for again.
  expect(rig.mock.stats(CHAOS_APPID).images).toBe(40);
}, 120_000);
