/**
 * The processes a benchmark run drives: the mock WeChat API and the workers run as CLI processes from source,
 * the producer and the baselines as forked children, so each one's CPU time can be read apart from the others'
 * in /proc on this 2-core machine.
 */
import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { type CampaignMeta, CampaignStore } from '../../src/campaign/store.js';
import { loadConfig } from '../../src/config.js';
import { type MockAdmin, mockAdmin } from '../../src/mock/admin.js';
import { createStorage } from '../../src/storage/index.js';
import { spawnCli } from '../../test-support/cli.js';
import { wxacodeEnv } from '../../test-support/env.js';
import { waitFor } from '../../test-support/wait.js';
import { type ChildTask, CODE_OPTIONS, scenes } from './tasks.js';

/** What every section runs against: one private Redis and one mock WeChat API for the whole run. */
export interface Bench {
  redisUrl: string;
  redisPid: number;
  /** A connection for the sections' own reads and enqueues. */
  redis: Redis;
  mock: MockProcess;
  /** Scratch folder, removed at the end of the run. */
  tmp: string;
}

/** Every benchmark app's AppSecret (the mock's apps are set per section). */
export const BENCH_SECRET = 'bench-secret';

/**
 * The environment of `wxacode worker` processes working for `apps` against the run's Redis and mock; `window`
 * sets WXACODE_WINDOW (default: a minute of `rate`).
 */
export function workerEnv(
  b: Bench,
  settings: { prefix: string; apps: string[]; rate: string; storage: string; window?: number },
): Record<string, string> {
  return {
    ...wxacodeEnv({
      redisUrl: b.redisUrl,
      prefix: settings.prefix,
      apps: Object.fromEntries(settings.apps.map((appid) => [appid, BENCH_SECRET])),
      wechatUrl: b.mock.url,
      rate: settings.rate,
      storage: settings.storage,
    }),
    ...(settings.window !== undefined && { WXACODE_WINDOW: String(settings.window) }),
  };
}

/**
 * Record a campaign of `count` benchmark scenes for `appid` in the storage of the workers run with `env`, under
 * their prefix: their feeders queue it from there.
 */
export async function enqueueScenes(
  b: Bench,
  env: Record<string, string>,
  appid: string,
  campaign: string,
  count: number,
): Promise<void> {
  const config = loadConfig(env);
  const storage = createStorage(config);
  try {
    await enqueueCampaign({
      redis: b.redis,
      prefix: config.prefix,
      storage,
      campaign,
      appid,
      options: CODE_OPTIONS,
      input: () => scenes(count),
    });
  } finally {
    await storage.close();
  }
}

/** Wait until a campaign completed; throws when it stopped. */
export async function settled(
  b: Bench,
  prefix: string,
  campaign: string,
  timeoutMs: number,
  everyMs = 100,
): Promise<CampaignMeta> {
  const store = new CampaignStore(b.redis, prefix);
  const meta = await waitFor(
    `campaign ${campaign} to complete`,
    async () => {
      const m = await store.get(campaign);
      return m && (m.state === 'completed' || m.state === 'stopped') ? m : undefined;
    },
    { timeoutMs, everyMs },
  );
  if (meta.state === 'stopped') {
    throw new Error(`campaign ${campaign} stopped: ${meta.stop?.errcode} ${meta.stop?.errmsg}`);
  }
  return meta;
}

const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** User + system CPU time a process has used so far (all its threads), in ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; fields after its closing parenthesis start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

/** CPU ms of each process between `start()` and `stop()`. */
export function cpuMeter(pids: Record<string, number | number[]>) {
  const read = () =>
    Object.fromEntries(
      Object.entries(pids).map(([name, p]) => [name, (Array.isArray(p) ? p : [p]).map(cpuMs)]),
    );
  const before = read();
  return {
    stop(): Record<string, number> {
      const after = read();
      return Object.fromEntries(
        Object.entries(after).map(([name, ms]) => [
          name,
          ms.reduce((sum, value, i) => sum + value - before[name]![i]!, 0),
        ]),
      );
    },
  };
}

/** Keep the last lines a child wrote, to say why it failed. */
function tail(child: ChildProcess): () => string {
  let text = '';
  const keep = (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text.trim();
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Resolve once `pattern` appears in the child's output; reject if it exits first. */
function waitForOutput(child: ChildProcess, pattern: RegExp, what: string, timeoutMs: number) {
  const lastWords = tail(child);
  return new Promise<string>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`${what} did not start within ${timeoutMs} ms: ${lastWords()}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      const match = pattern.exec(seen);
      if (!match) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      resolve(match[0]);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with code ${code} before it was ready: ${lastWords()}`));
    });
  });
}

export interface MockProcess {
  url: string;
  pid: number;
  admin: MockAdmin;
  stop(): Promise<void>;
}

/** `wxacode mock-server` in its own process, with no cap; each section sets the apps and cap it needs. */
export async function startMock(): Promise<MockProcess> {
  const child = spawnCli(['mock-server', '--rate', 'none']);
  const line = await waitForOutput(child, /\{"url":"[^"]+"\}/, 'the mock server', 30_000);
  const { url } = JSON.parse(line) as { url: string };
  return {
    url,
    pid: child.pid!,
    admin: mockAdmin(url),
    async stop() {
      child.kill('SIGTERM');
      await exited(child);
    },
  };
}

export interface WorkerFleet {
  pids: number[];
  /** SIGTERM every worker and wait for them; throws when one did not exit 0. */
  stop(): Promise<void>;
}

/**
 * `count` `wxacode worker` processes started at once; resolves when every one has said it started, so a
 * campaign enqueued next reaches them all at the same moment.
 */
export async function startWorkers(
  count: number,
  env: Record<string, string>,
  concurrency: number,
): Promise<WorkerFleet> {
  const children = Array.from({ length: count }, () =>
    spawnCli(['worker', '--concurrency', String(concurrency)], { env: { ...env, LOG_LEVEL: 'info' } }),
  );
  const lastWords = children.map(tail);
  const stop = async () => {
    for (const child of children) child.kill('SIGTERM');
    const codes = await Promise.all(children.map(exited));
    const bad = codes.findIndex((code) => code !== 0);
    if (bad !== -1) throw new Error(`worker ${bad} exited with code ${codes[bad]}: ${lastWords[bad]!()}`);
  };
  try {
    // Each process compiles the sources under tsx first: 8 at once on 2 busy cores take minutes, not seconds.
    await Promise.all(children.map((c, i) => waitForOutput(c, /worker started/, `worker ${i}`, 300_000)));
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { pids: children.map((c) => c.pid!), stop };
}

const CHILD = path.join(import.meta.dirname, 'child.ts');

function forkChild(script: string, args: string[]): ChildProcess {
  return fork(script, args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
}

/** Run one task of tasks.ts in a forked child and return what it reports. */
export function runChild<T>(task: ChildTask): Promise<T> {
  return runFleet<T>([task]).then(([result]) => result!);
}

/**
 * Run tasks in forked children at once: tasks that wait for a signal (see child.ts) are all sent `go` in the
 * same instant, once every child has said it is ready. Resolves with each child's report, in order.
 */
export async function runFleet<T>(tasks: ChildTask[]): Promise<T[]> {
  const children = tasks.map((task) => forkChild(CHILD, [JSON.stringify(task)]));
  let readyCount = 0;
  const results = children.map(
    (child, i) =>
      new Promise<T>((resolve, reject) => {
        const lastWords = tail(child);
        let result: T | undefined;
        child.on('message', (message: { ready?: true; result?: T }) => {
          if (message.result !== undefined) result = message.result;
          if (message.ready && ++readyCount === children.length) {
            for (const c of children) c.send('go');
          }
        });
        child.once('exit', (code) => {
          if (code === 0 && result !== undefined) resolve(result);
          else reject(new Error(`bench task ${tasks[i]!.name} exited with code ${code}: ${lastWords()}`));
        });
      }),
  );
  try {
    return await Promise.all(results);
  } catch (err) {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map(exited));
    throw err;
  }
}

/** s3rver (test-support/s3.ts) in a process of its own, so that its CPU time can be read apart. */
export interface S3Process {
  bucket: string;
  /** Settings for loadConfig(): endpoint, path style and s3rver's credentials. */
  env: Record<string, string>;
  pid: number;
  stop(): Promise<void>;
}

export async function startS3Process(): Promise<S3Process> {
  const child = forkChild(path.join(import.meta.dirname, 's3-server.ts'), []);
  const lastWords = tail(child);
  const started = await new Promise<{ bucket: string; env: Record<string, string> }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${lastWords()}`)), 30_000);
    child.once('message', (message) => {
      clearTimeout(timer);
      resolve(message as { bucket: string; env: Record<string, string> });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with code ${code} before it was ready: ${lastWords()}`));
    });
  });
  return {
    ...started,
    pid: child.pid!,
    async stop() {
      // Disconnecting the IPC channel tells it to close the server and remove its folder.
      if (child.connected) child.disconnect();
      await exited(child);
    },
  };
}
