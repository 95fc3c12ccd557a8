/**
 * What the chaos scenarios (test/chaos/) share: how big they run, a fleet of `wxacode worker` processes to kill,
 * a dump of every Redis value under a prefix, and the exact account every scenario ends with.
 */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { ListObjectsCommand } from '@aws-sdk/client-s3';
import type { Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import { type EnqueueOptions, enqueueCampaign } from '../../src/campaign/producer.js';
import { openQueue } from '../../src/campaign/queue.js';
import { type RecordRow, recordRows } from '../../src/campaign/record.js';
import { type CampaignMeta, CampaignStore, type RowStatus } from '../../src/campaign/store.js';
import { type Config, formatRateLimit, loadConfig, type RateLimit } from '../../src/config.js';
import { type MockOptions, type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, objectKey, type Storage } from '../../src/storage/index.js';
import type { CodeOptions } from '../../src/wechat/params.js';
import { spawnCli } from '../../test-support/cli.js';
import { wxacodeEnv } from '../../test-support/env.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { decodeImage, expectedCodeText } from './qr.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from './redis.js';

/** `CHAOS_SCALE=full` runs the long versions of the scenarios; the default is the short one CI runs. */
export const FULL_SCALE = process.env.CHAOS_SCALE === 'full';

export function byScale<T>(ci: T, full: T): T {
  return FULL_SCALE ? full : ci;
}

/** One line of figures per scenario in the run's output, from which the reliability figures are read. */
export function report(scenario: string, figures: Record<string, unknown>): void {
  console.log(`[chaos] ${scenario} ${JSON.stringify(figures)}`);
}

/** A whole number from `min` to `max`, both included. */
export function between(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

export const CHAOS_APPID = 'wxchaos00000000001';

/**
 * One scenario's world: a Redis (the harness's, or one the scenario restarts), an S3 server, the mock WeChat
 * API with one app, and a key prefix per campaign, deleted at the end.
 */
export class ChaosRig {
  readonly prefixes: string[] = [];

  private constructor(
    readonly redisUrl: string,
    readonly redis: Redis,
    readonly s3: TestS3,
    readonly mock: MockServer,
    readonly secret: string,
    readonly rate: RateLimit,
  ) {}

  static async start(o: {
    rate: RateLimit;
    redisUrl?: string;
    secret?: string;
    mock?: MockOptions;
  }): Promise<ChaosRig> {
    const redisUrl = o.redisUrl ?? testRedisUrl();
    const secret = o.secret ?? 'chaos-secret-value';
    const mock = await startMockServer({ apps: { [CHAOS_APPID]: secret }, rateLimit: o.rate, ...o.mock });
    const redis = connect(redisUrl);
    // The Redis restart scenario stops the server on purpose; commands wait for it to come back.
    redis.on('error', () => undefined);
    return new ChaosRig(redisUrl, redis, await startS3(), mock, secret, o.rate);
  }

  /** A fresh key prefix, also the campaign's storage root, removed by close(). */
  prefix(): string {
    const prefix = testPrefix();
    this.prefixes.push(prefix);
    return prefix;
  }

  /** The environment of a `wxacode` process working under `prefix`. */
  env(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...wxacodeEnv({
        redisUrl: this.redisUrl,
        prefix,
        apps: { [CHAOS_APPID]: this.secret },
        wechatUrl: this.mock.url,
        rate: formatRateLimit(this.rate),
        storage: `s3://${this.s3.bucket}/${prefix}`,
      }),
      ...this.s3.env,
      ...extra,
    };
  }

  config(prefix: string, extra: Record<string, string> = {}): Config {
    return loadConfig(this.env(prefix, extra));
  }

  store(prefix: string): CampaignStore {
    return new CampaignStore(this.redis, prefix);
  }

  /** Enqueue `values` into the campaign's record, in the storage its workers use. */
  async enqueue(
    prefix: string,
    campaign: string,
    options: CodeOptions,
    values: string[],
    more: Partial<EnqueueOptions> = {},
  ) {
    const storage = createStorage(this.config(prefix));
    try {
      return await enqueueCampaign({
        redis: this.redis,
        prefix,
        storage,
        campaign,
        appid: CHAOS_APPID,
        options,
        input: () => values,
        ...more,
      });
    } finally {
      await storage.close();
    }
  }

  /** The campaign's rows in input order with their status (campaign/record.ts). */
  async rows(prefix: string, campaign: string): Promise<RecordRow[]> {
    const storage = createStorage(this.config(prefix));
    try {
      return await campaignRows(this.store(prefix), storage, campaign);
    } finally {
      await storage.close();
    }
  }

  /** The exact account of a campaign stored under its prefix (see auditCampaign). */
  async audit(prefix: string, campaign: string, options: CodeOptions, values: string[]): Promise<Account> {
    const storage = createStorage(this.config(prefix));
    try {
      return await auditCampaign({
        store: this.store(prefix),
        storage,
        campaign,
        appid: CHAOS_APPID,
        options,
        values,
        storedKeys: await s3Keys(this.s3, prefix),
      });
    } finally {
      await storage.close();
    }
  }

  async close(): Promise<void> {
    for (const prefix of this.prefixes) await deletePrefix(this.redis, prefix);
    this.redis.disconnect();
    await this.mock.close();
    await this.s3.stop();
  }
}

/** Preloaded into the workers of a fleet built with `{ named: true }`: see test/helpers/worker-names.mjs. */
const WORKER_NAMES_HOOK = pathToFileURL(path.join(import.meta.dirname, 'worker-names.mjs')).href;

/**
 * The BullMQ worker name of the fleet process `pid` when the fleet is built with `{ named: true }`: the
 * `processedBy` of every job that process takes.
 */
export function fleetWorkerName(pid: number): string {
  return `fleet-worker-${pid}`;
}

interface FleetMember {
  child: ChildProcess;
  /** When it logged "worker started"; rejects if it exits before. */
  started: Promise<number>;
}

/**
 * `wxacode worker` processes sharing one environment (logging at info at least, to see them start). Everything
 * they print is kept, for secret scans and for failure messages.
 */
export class WorkerFleet {
  readonly #env: Record<string, string>;
  readonly #args: string[];
  /** Oldest first. */
  readonly #members: FleetMember[] = [];
  #output = '';

  /**
   * `named`: each worker's BullMQ workers carry fleetWorkerName(its pid), which BullMQ records on the jobs they
   * take as `processedBy` (a test hook preloaded into the processes; the CLI itself names no worker).
   */
  constructor(env: Record<string, string>, args: string[] = ['worker'], options: { named?: boolean } = {}) {
    this.#env = { LOG_LEVEL: 'info', ...env };
    if (options.named) {
      const inherited = env.NODE_OPTIONS ?? process.env.NODE_OPTIONS;
      this.#env.NODE_OPTIONS = `${inherited ? `${inherited} ` : ''}--import=${WORKER_NAMES_HOOK}`;
    }
    this.#args = args;
  }

  /** Standard output and error of every worker so far. */
  get output(): string {
    return this.#output;
  }

  get size(): number {
    return this.#members.length;
  }

  /** Start one more worker; the promise settles when it has started. */
  spawn(): Promise<number> {
    const child = spawnCli(this.#args, { env: this.#env });
    let own = '';
    const started = new Promise<number>((resolve, reject) => {
      const keep = (data: Buffer) => {
        own += data;
        this.#output += data;
        if (own.includes('"msg":"worker started"')) resolve(Date.now());
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.once('close', (code, signal) =>
        reject(new Error(`worker exited (${signal ?? code}) before it started:\n${own}`)),
      );
    });
    // Nobody may be waiting for a worker that is stopped before it starts.
    started.catch(() => undefined);
    const member = { child, started };
    this.#members.push(member);
    child.once('exit', () => this.#members.splice(this.#members.indexOf(member), 1));
    return started;
  }

  /**
   * Start `count` workers one after another, each once the one before has started: two workers starting at once
   * race on s3rver's write check, as s3rver writes an object in place and one may read the other's half-written
   * probe (real S3 replaces an object whole).
   */
  async start(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.spawn();
  }

  /** Wait until the oldest worker has been working for `ms` (long enough to hold jobs). */
  async oldestWorkingFor(ms: number): Promise<void> {
    const oldest = this.#members[0];
    if (!oldest) throw new Error('no worker is running');
    const startedAt = await oldest.started;
    await sleep(Math.max(0, startedAt + ms - Date.now()));
  }

  /** SIGKILL the oldest worker and wait until it is gone; its pid. */
  async killOldest(): Promise<number> {
    const victim = this.#members[0]?.child;
    if (!victim) throw new Error('no worker is running');
    const gone = new Promise((resolve) => victim.once('close', resolve));
    victim.kill('SIGKILL');
    await gone;
    return victim.pid!;
  }

  /**
   * Run `work` while the fleet runs, then stop the fleet with SIGTERM: every worker must exit 0. A failure of
   * `work` carries the end of the workers' output.
   */
  async during<T>(work: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await work();
    } catch (err) {
      await this.stop();
      if (err instanceof Error)
        err.message += `\n--- end of the workers' output ---\n${this.#output.slice(-4000)}`;
      throw err;
    }
    const running = this.size;
    expect(await this.stop(), 'exit codes of the workers stopped with SIGTERM').toEqual(
      Array(running).fill(0),
    );
    return result;
  }

  /** SIGTERM every worker and wait for them; their exit codes. */
  async stop(): Promise<(number | null)[]> {
    const running = this.#members.map((m) => m.child);
    const closed = running.map(
      (child) => new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code))),
    );
    for (const child of running) child.kill('SIGTERM');
    return Promise.all(closed);
  }
}

/** Wait until the campaign is completed or stopped. */
export function settled(
  store: CampaignStore,
  campaign: string,
  timeoutMs = byScale(180_000, 900_000),
): Promise<CampaignMeta> {
  return vi.waitUntil(
    async () => {
      const meta = await store.get(campaign);
      return (meta?.state === 'completed' || meta?.state === 'stopped') && meta;
    },
    { timeout: timeoutMs, interval: 200 },
  );
}

/** Wait until at least `count` rows of the campaign are done; the time it took, in ms. */
export async function doneAtLeast(store: CampaignStore, campaign: string, count: number): Promise<number> {
  const started = Date.now();
  await vi.waitUntil(async () => ((await store.get(campaign))?.done ?? 0) >= count, {
    timeout: 120_000,
    interval: 50,
  });
  return Date.now() - started;
}

/**
 * Every key of a bucket under `root/`, relative to it; the whole bucket when `root` is empty. ListObjects (v1)
 * pages by marker: s3rver fails any ListObjectsV2 longer than a page, as it encrypts continuation tokens with
 * DES, which OpenSSL 3 (Node 17 on) no longer has.
 */
export async function s3Keys(s3: TestS3, root: string): Promise<string[]> {
  const client = s3.client();
  const start = root ? root.length + 1 : 0;
  const keys: string[] = [];
  try {
    for (let marker: string | undefined, more = true; more; ) {
      const page = await client.send(
        new ListObjectsCommand({ Bucket: s3.bucket, Prefix: root ? `${root}/` : undefined, Marker: marker }),
      );
      const found = (page.Contents ?? []).map((object) => object.Key!);
      keys.push(...found.map((key) => key.slice(start)));
      marker = found.at(-1);
      more = page.IsTruncated === true && marker !== undefined;
    }
  } finally {
    client.destroy();
  }
  return keys;
}

/** Every key under `prefix:` with its value as text, whatever its type (strings, hashes, lists, sets, streams). */
export async function redisDump(redis: Redis, prefix: string): Promise<Map<string, string>> {
  const dump = new Map<string, string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const value = await valueText(redis, key);
      if (value !== undefined) dump.set(key, value);
    }
  } while (cursor !== '0');
  return dump;
}

async function valueText(redis: Redis, key: string): Promise<string | undefined> {
  const parts = (values: (Buffer | string)[]) => values.map((v) => v.toString()).join('\n');
  switch (await redis.type(key)) {
    case 'string':
      return (await redis.getBuffer(key))?.toString('latin1');
    case 'hash':
      return parts(Object.entries(await redis.hgetall(key)).flat());
    case 'list':
      return parts(await redis.lrange(key, 0, -1));
    case 'set':
      return parts(await redis.smembers(key));
    case 'zset':
      return parts(await redis.zrange(key, 0, -1, 'WITHSCORES'));
    case 'stream':
      return JSON.stringify(await redis.xrange(key, '-', '+'));
    case 'none':
      return undefined;
    default:
      throw new Error(`redisDump cannot read key ${key} of type ${await redis.type(key)}`);
  }
}

/** Every row of a campaign's record in input order, with its status. */
export async function campaignRows(
  store: CampaignStore,
  storage: Storage,
  campaign: string,
): Promise<RecordRow[]> {
  const meta = await store.get(campaign);
  if (!meta) throw new Error(`campaign ${campaign} does not exist under ${store.prefix}`);
  const rows: RecordRow[] = [];
  for await (const batch of recordRows(store, storage, meta)) rows.push(...batch);
  return rows;
}

export interface AuditInput {
  store: CampaignStore;
  storage: Storage;
  campaign: string;
  appid: string;
  options: CodeOptions;
  /** The input's rows, in order, duplicates included. */
  values: string[];
  /** Every key in storage under its root (s3Keys, or a folder listing), other campaigns' included. */
  storedKeys: string[];
}

export interface Account {
  rows: number;
  done: number;
  failed: number;
  /** Rows missing, still pending, or done without a stored object that decodes to their code. Must be 0. */
  lost: number;
  /** Code images in storage. */
  objects: number;
}

/**
 * The exact account of a finished campaign: every input row is done, with a stored object that decodes to its
 * own code, or failed with a reason; no row is missing or extra; every image in the campaign's folder of the
 * storage is the object of one done row (nothing stored twice under another key); and the app's queue drains. Call it while the workers
 * still run. Collects every problem before failing, so a failure shows the whole picture.
 */
export async function auditCampaign(a: AuditInput): Promise<Account> {
  const problems: string[] = [];
  const expected = [...new Set(a.values)];
  const meta = await a.store.get(a.campaign);
  if (meta?.state !== 'completed') problems.push(`campaign ${a.campaign} is ${meta?.state ?? 'missing'}`);
  if (meta && meta.total !== expected.length) {
    problems.push(`campaign total is ${meta.total}, the input has ${expected.length} distinct rows`);
  }

  const rows = new Map<string, RowStatus>();
  for (const { value, row } of meta ? await campaignRows(a.store, a.storage, a.campaign) : []) {
    if (rows.has(value)) problems.push(`row ${JSON.stringify(value)} is recorded twice`);
    rows.set(value, row);
  }
  const inInput = new Set(expected);
  for (const value of rows.keys()) {
    if (!inInput.has(value)) problems.push(`row ${JSON.stringify(value)} is not in the input`);
  }

  // The campaign's folder, <appid>/<kind>/<variant>/: other campaigns' codes live in folders of their own.
  const sample = objectKey({ appid: a.appid, options: a.options, value: expected[0] ?? 'x' });
  const folder = sample.slice(0, sample.lastIndexOf('/') + 1);
  const images = new Set(a.storedKeys.filter((key) => key.startsWith(folder)));
  const doneKeys = new Set<string>();
  const account: Account = { rows: expected.length, done: 0, failed: 0, lost: 0, objects: images.size };
  for (const value of expected) {
    const row = rows.get(value);
    const key = objectKey({ appid: a.appid, options: a.options, value });
    const name = JSON.stringify(value);
    if (row === undefined || row.status === 'pending') {
      account.lost++;
      problems.push(`row ${name} is ${row ? 'still pending' : 'missing from the campaign'}`);
    } else if (row.status === 'failed') {
      account.failed++;
      if (!row.errmsg) problems.push(`row ${name} failed (errcode ${row.errcode}) without a reason`);
      if (images.has(key)) problems.push(`row ${name} failed but its object ${key} is stored`);
    } else {
      account.done++;
      if (doneKeys.has(key)) problems.push(`rows share the key ${key}`);
      doneKeys.add(key);
      const body = images.has(key) ? await a.storage.get(key) : undefined;
      const want = expectedCodeText(a.appid, a.options, value);
      const got = body && decodeImage(body);
      if (got !== want) {
        account.lost++;
        problems.push(
          `row ${name} is done but ${body ? `its object decodes to ${JSON.stringify(got)}` : `${key} is not stored`}`,
        );
      }
    }
  }
  for (const key of images) {
    if (!doneKeys.has(key)) problems.push(`stored object ${key} is the code of no done row`);
  }

  // The job that settles the last row finishes just after it, and a killed worker's job waits for the stall
  // check: the workers must still run while the queue drains.
  const queue = openQueue(a.store.redis, a.store.prefix, a.appid);
  try {
    const left = () => queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
    await vi
      .waitUntil(async () => Object.values(await left()).every((count) => count === 0), {
        timeout: 30_000,
        interval: 200,
      })
      .catch(() => undefined);
    for (const [state, count] of Object.entries(await left())) {
      if (count > 0) problems.push(`${count} jobs are left ${state} in ${queue.name}`);
    }
  } finally {
    await queue.close();
  }
  expect(problems.slice(0, 30), `${problems.length} problems in the account of ${a.campaign}`).toEqual([]);
  return account;
}
