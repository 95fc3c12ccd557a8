/**
 * Storage that cannot say whether a code is stored: an S3 role without ListBucket answers 403 to a HEAD of a
 * missing key. Without the answer a call could pay for a stored code again, and waiting does not cure it: the
 * campaign pauses with the storage's error in `status`, and `run` and `worker` refuse to start, naming it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus, retryCampaign } from '../../src/campaign/operations.js';
import { openQueue } from '../../src/campaign/queue.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { byScale, CHAOS_APPID, ChaosRig, report } from '../helpers/chaos.js';
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

it('pauses a campaign whose lookups storage refuses, with the reason in status, and resumes on retry', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const rows = byScale(30, 300);
  const values = Array.from({ length: rows }, (_, i) => `lookup-${i}`);
  await rig.enqueue(prefix, 'lookups', options, values);
  rig.mock.reset();
  const config = rig.config(prefix, { S3_ENDPOINT: proxy.url });
  let pausedAt = 0;
  const worker = await CodeWorker.start({ config, concurrency: 2 });
  try {
    await waitFor('some codes stored', async () => (await store.get('lookups'))!.done >= 3);
    proxy.refuse.add('HEAD');
    const paused = await waitFor('the campaign to pause', async () => {
      const status = await campaignStatus(store, 'lookups');
      return status.state === 'stopped' && status;
    });
    expect(paused.stopped?.errcode).toBe(-2);
    expect(paused.stopped?.errmsg).toContain('Forbidden');
    expect(paused.stopped?.errmsg).toContain(`s3://${rig.s3.bucket}/${prefix}`);
    expect(paused.stopped?.errmsg).toContain('wxacode retry');
    expect(paused.failed).toBe(0);
    // Nothing is called for rows storage could not look up. A row looked up before the refusal may still be
    // between its call and its upload when the campaign stops: it is settled once the worker holds no job.
    const queue = openQueue(rig.redis, prefix, CHAOS_APPID);
    try {
      await waitFor('the worker to hold no job', async () => (await queue.getActiveCount()) === 0);
    } finally {
      await queue.close();
    }
    pausedAt = (await store.get('lookups'))!.done;
    expect(rig.mock.stats(CHAOS_APPID).codeCalls).toBe(pausedAt);

    proxy.refuse.clear();
    await retryCampaign(store, rig.redis, 'lookups');
    await waitFor(
      'the campaign to complete after the retry',
      async () => (await campaignStatus(store, 'lookups')).state === 'completed',
      { timeoutMs: 60_000 },
    );
  } finally {
    proxy.refuse.clear();
    await worker.close();
  }
  const account = await rig.audit(prefix, 'lookups', options, values);
  expect(account).toMatchObject({ rows, done: rows, failed: 0, lost: 0 });
  expect(rig.mock.stats(CHAOS_APPID).images).toBe(rows);
  report('storage-lookup-refused', { ...account, pausedAfterDone: pausedAt });
}, 120_000);

it('refuses to start a worker, and `run`, on storage that cannot look a code up', async () => {
  const prefix = rig.prefix();
  rig.mock.reset();
  proxy.refuse.add('HEAD');
  try {
    const env = rig.env(prefix, { S3_ENDPOINT: proxy.url });
    const worker = await runCli(['worker'], { env });
    expect(worker.code).toBe(1);
    expect(worker.stderr).toContain('Forbidden');
    expect(worker.stderr).toContain(`s3://${rig.s3.bucket}/${prefix}`);
    expect(rig.mock.stats(CHAOS_APPID).codeCalls).toBe(0);

    const run = await runCli(['run', '-', '--format', 'csv', '--campaign', 'never', '--kind', 'unlimited'], {
      env,
      input: 'scene\nnever-1\n',
    });
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toContain('Forbidden');
  } finally {
    proxy.refuse.clear();
  }
}, 120_000);
