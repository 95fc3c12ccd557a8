/**
 * `wxacode worker` as an operator runs it: metrics served on loopback, and shutdown on SIGTERM/SIGINT within
 * --shutdown-timeout, against the harness Redis, the mock WeChat server and a local storage folder.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { openQueue } from '../../src/campaign/queue.js';
import type { CampaignStore } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import type { MockServer } from '../../src/mock/server.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli, spawnCli } from '../../test-support/cli.js';
import { freePort } from '../../test-support/redis-server.js';
import { waitFor } from '../../test-support/wait.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxworkercli0000001';
const SECRET = 'worker-cli-secret';
const OPTIONS = codeOptions({ kind: 'unlimited' });

const stack = useLocalStack({ [APPID]: SECRET });
const { prefix } = stack;
let redis: Redis;
let store: CampaignStore;
let mock: MockServer;
let storage: Storage;

beforeAll(() => {
  ({ redis, store, mock } = stack);
  storage = createStorage(loadConfig(env()));
});

afterAll(async () => {
  await storage.close();
});

function env(): Record<string, string> {
  return { ...stack.env(), LOG_LEVEL: 'info' };
}

/** A worker process with its stderr log lines collected, and its exit awaited. */
function startWorker(args: string[]) {
  const child = spawnCli(['worker', ...args], { env: env() });
  const logs: Record<string, unknown>[] = [];
  let buffered = '';
  child.stderr!.on('data', (d) => {
    buffered += d;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line));
      } catch {
        // Not a log line (a stray print): not what these tests look at.
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, logs, exited };
}

const FORCED = 'forced exit: jobs still in flight return to the queue when their locks expire (about 15 s)';

function logged(logs: Record<string, unknown>[], msg: string) {
  return logs.find((l) => l.msg === msg);
}

async function enqueue(campaign: string, count: number) {
  const values = Array.from({ length: count }, (_, i) => `${campaign}-${i}`);
  await enqueueCampaign({
    redis,
    prefix,
    storage,
    campaign,
    appid: APPID,
    options: OPTIONS,
    input: () => values,
  });
}

function stop(child: ChildProcess, signal: NodeJS.Signals) {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}

/** Codes stored in the storage folder (manifests, records and the write probe are not images). */
function storedImages(): number {
  return (readdirSync(stack.dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.jpg')).length;
}

describe('wxacode worker --metrics-port', () => {
  it('serves /metrics and /healthz on 127.0.0.1 by default, and exits 0 on SIGTERM', async () => {
    await enqueue('served', 12);
    const port = await freePort();
    const worker = startWorker(['--metrics-port', String(port), '--concurrency', '4']);
    try {
      const listening = await waitFor('the metrics server', () =>
        logged(worker.logs, 'metrics server listening'),
      );
      expect(listening.url).toBe(`http://127.0.0.1:${port}`);
      await waitFor('a healthy worker', async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
        return res?.status === 200 && (await res.json());
      });
      await waitFor(
        'the campaign',
        async () => (await campaignStatus(store, 'served')).state === 'completed',
      );
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toContain(`wxacode_codes_generated_total{appid="${APPID}",kind="unlimited"} 12\n`);
      expect(text).toContain(`wxacode_queue_jobs{appid="${APPID}",state="waiting"} 0\n`);
    } finally {
      stop(worker.child, 'SIGTERM');
    }
    expect(await worker.exited).toBe(0);
    expect(logged(worker.logs, 'worker stopped')).toBeDefined();
  });

  it('refuses --metrics-host without --metrics-port, and a --shutdown-timeout out of range', async () => {
    const host = await runCli(['worker', '--metrics-host', '0.0.0.0'], { env: env() });
    expect(host.code).toBe(2);
    expect(host.stderr).toContain('--metrics-host needs --metrics-port');
    const timeout = await runCli(['worker', '--shutdown-timeout', '0'], { env: env() });
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toContain('--shutdown-timeout must be a whole number from 1 to 86400, got "0"');
  });
});

describe('wxacode worker shutdown', () => {
  it('lets in-flight calls finish and upload on SIGTERM, leaves the rest queued, and exits 0', async () => {
    mock.configure({ faults: { slow: 1, slowMs: 1500 } });
    mock.reset();
    const imagesBefore = storedImages();
    await enqueue('graceful', 30);
    const worker = startWorker(['--concurrency', '4', '--shutdown-timeout', '20']);
    try {
      await waitFor('calls in flight', () => mock.stats(APPID).codeCalls >= 4);
      stop(worker.child, 'SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      stop(worker.child, 'SIGKILL');
      mock.configure({ faults: {} });
    }
    const status = await campaignStatus(store, 'graceful');
    const queue = openQueue(redis, prefix, APPID);
    // Every job has a priority (store.ts, PRIORITIES): those left wait as prioritized ones.
    const counts = await queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed');
    await queue.close();
    // Every call WeChat answered was stored and recorded; nothing was left active or lost.
    expect(status.done).toBeGreaterThanOrEqual(4);
    expect(status.done).toBe(mock.stats(APPID).images);
    expect(storedImages()).toBe(imagesBefore + status.done);
    expect(counts).toEqual({ waiting: 0, prioritized: 30 - status.done, active: 0, delayed: 0 });
    await drain('graceful');
  });

  it('exits 1 when in-flight calls outlast --shutdown-timeout, and their jobs return to the queue', async () => {
    await forcedShutdown('timeout', ['--shutdown-timeout', '1'], '--shutdown-timeout 1', async (worker) => {
      stop(worker.child, 'SIGTERM');
    });
  }, 60_000);

  it('exits 1 at once on a second SIGINT, and the jobs in flight return to the queue', async () => {
    await forcedShutdown('twice', ['--shutdown-timeout', '600'], 'second signal', async (worker) => {
      stop(worker.child, 'SIGINT');
      await waitFor('the first signal', () => logged(worker.logs, 'stopping: finishing in-flight jobs'));
      stop(worker.child, 'SIGINT');
    });
  }, 60_000);
});

/** Complete a campaign with an in-process worker; BullMQ's stalled-job check runs every second. */
async function drain(campaign: string) {
  const survivor = await CodeWorker.start({
    config: loadConfig(env()),
    concurrency: 4,
    stalledIntervalMs: 1000,
  });
  try {
    await waitFor(
      `campaign ${campaign}`,
      async () => (await campaignStatus(store, campaign)).state === 'completed',
    );
  } finally {
    await survivor.close();
  }
}

/** Calls that take 10 s are in flight when `signal` stops the worker: it must exit 1, and lose nothing. */
async function forcedShutdown(
  campaign: string,
  args: string[],
  reason: string,
  signal: (worker: ReturnType<typeof startWorker>) => Promise<void>,
) {
  mock.configure({ faults: { slow: 1, slowMs: 10_000 } });
  mock.reset();
  await enqueue(campaign, 5);
  const worker = startWorker(['--concurrency', '2', ...args]);
  try {
    await waitFor('calls in flight', () => mock.stats(APPID).codeCalls >= 2);
    await signal(worker);
    expect(await worker.exited).toBe(1);
  } finally {
    stop(worker.child, 'SIGKILL');
    mock.configure({ faults: {} });
  }
  expect(logged(worker.logs, FORCED)).toMatchObject({ reason });
  expect(await campaignStatus(store, campaign)).toMatchObject({ state: 'active', pending: 5 });
  // The abandoned jobs come back through BullMQ's stalled-job check once their locks expire.
  await drain(campaign);
  expect(await campaignStatus(store, campaign)).toMatchObject({ done: 5, failed: 0 });
}
