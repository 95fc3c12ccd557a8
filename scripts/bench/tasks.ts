/**
 * What the forked children of a benchmark do (child.ts runs one), and the workload every section shares: the
 * code options and the scenes. A child reports its own wall time, CPU time and peak RSS, so neither the parent's
 * bookkeeping nor s3rver is counted against it. Modules only one task needs are imported by
 * that task, so a child's peak RSS holds what its task loads and no more.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { jobsFor, openQueue, queueName } from '../../src/campaign/queue.js';
import { CHUNK_ROWS } from '../../src/campaign/record.js';
import { PRIORITIES, type SlotRow, slotOf } from '../../src/campaign/store.js';
import type { TokenMode } from '../../src/config.js';
import { type CodeOptions, codeOptions, MIN_WIDTH, requestBody } from '../../src/wechat/params.js';

/**
 * Transparent PNG at the least width: the cheapest image the mock draws (about 3 ms against 13 ms for its
 * default 430 px JPEG), so that on 2 cores the mock, standing in for WeChat, leaves the CPU to our processes.
 */
export const CODE_OPTIONS: CodeOptions = codeOptions({
  kind: 'unlimited',
  page: 'pages/item/detail',
  width: MIN_WIDTH,
  isHyaline: true,
});

/** Row `i` of every benchmark campaign: a realistic scene, at most 32 characters. */
export function sceneOf(i: number): string {
  return `sku=${i}&ch=bench`;
}

export function* scenes(count: number): Generator<string> {
  for (let i = 0; i < count; i++) yield sceneOf(i);
}

/** Row `i` where a record of default-sized chunks puts it: what a job of it names. */
function sceneRow(i: number): SlotRow {
  return { slot: slotOf({ chunk: Math.floor(i / CHUNK_ROWS), row: i % CHUNK_ROWS }), value: sceneOf(i) };
}

/** Rows per addBulk, the producer's default. */
const CHUNK = 1000;

export type ChildTask =
  | {
      name: 'put';
      /** TestS3.env: endpoint and s3rver's credentials. */
      s3Env: Record<string, string>;
      /** The pipeline's app: its images hold the same text, so they have the same size. */
      appid: string;
      bucket: string;
      keyPrefix: string;
      count: number;
      concurrency: number;
    }
  | { name: 'noop'; redisUrl: string; prefix: string; appid: string; count: number; concurrency: number }
  | {
      name: 'enqueue';
      redisUrl: string;
      prefix: string;
      appid: string;
      campaign: string;
      /** The input file (CSV or TXT). */
      input: string;
      /** The local folder the record is written to (WXACODE_STORAGE of the workers). */
      storageDir: string;
    }
  | { name: 'addBulk'; redisUrl: string; prefix: string; appid: string; campaign: string; count: number }
  | {
      name: 'token';
      redisUrl: string;
      /** The provider's cache prefix: a process of its own, or one prefix for the whole fleet. */
      prefix: string;
      wechatUrl: string;
      secret: string;
      /** The apps this process needs a token of, at once. `check`: use the token once, refetch if refused. */
      apps: { appid: string; mode: TokenMode; check: boolean }[];
    };

/** What a `token` child ended with: each app's token, and the errcodes its one code call was answered with. */
export interface TokenTaskResult {
  tokens: Record<string, string>;
  refused: Record<string, number | undefined>;
}

export interface TaskResult {
  count: number;
  ms: number;
  cpuMs: number;
  /** VmHWM of the child at the end. */
  peakRssMb: number;
}

/** An enqueue's result: `count` is the rows recorded, beside the rows it found repeated. */
export interface EnqueueTaskResult extends TaskResult {
  duplicates: number;
}

function peakRssMb(): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

async function measured(count: number, run: () => Promise<void>): Promise<TaskResult> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run();
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { count, ms, cpuMs: (used.user + used.system) / 1000, peakRssMb: peakRssMb() };
}

/** Run `task(i)` for i in 0..count-1, `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** Plain PutObject of mock-sized images: what the S3 server takes at this concurrency, with no pipeline. */
async function put(t: Extract<ChildTask, { name: 'put' }>): Promise<TaskResult> {
  const { PutObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const { codeContent } = await import('../../src/mock/content.js');
  const { renderCode } = await import('../../src/mock/image.js');
  const { codeStyle } = await import('../../src/mock/requests.js');
  const client = new S3Client({
    endpoint: t.s3Env.S3_ENDPOINT,
    forcePathStyle: true,
    region: t.s3Env.AWS_REGION,
    credentials: { accessKeyId: t.s3Env.AWS_ACCESS_KEY_ID!, secretAccessKey: t.s3Env.AWS_SECRET_ACCESS_KEY! },
    // As in S3Storage: s3rver would store aws-chunked bodies verbatim.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const images = Array.from({ length: 16 }, (_, i) => {
    const body = requestBody(CODE_OPTIONS, sceneOf(i));
    return renderCode(codeContent(t.appid, 'unlimited', body), codeStyle('unlimited', body)).body;
  });
  try {
    return await measured(t.count, () =>
      pool(t.count, t.concurrency, (i) =>
        client.send(
          new PutObjectCommand({
            Bucket: t.bucket,
            Key: `${t.keyPrefix}/${i}.png`,
            Body: images[i % images.length],
            ContentType: 'image/png',
          }),
        ),
      ),
    );
  } finally {
    client.destroy();
  }
}

/**
 * A job per row, with the priority every job of a campaign has now, or `beforeWindows` as the producer added them
 * up front before windows: no priority, which keeps a job's options under Redis's hash-max-listpack-value (64)
 * and so its hash in the compact encoding.
 */
async function addAll(
  redis: Redis,
  t: { prefix: string; appid: string; campaign: string; count: number },
  beforeWindows: boolean,
) {
  const queue = openQueue(redis, t.prefix, t.appid);
  for (let start = 0; start < t.count; start += CHUNK) {
    const rows = Array.from({ length: Math.min(CHUNK, t.count - start) }, (_, k) => sceneRow(start + k));
    const jobs = jobsFor(t.campaign, PRIORITIES.normal, rows);
    await queue.addBulk(
      beforeWindows ? jobs.map((job) => ({ ...job, opts: { ...job.opts, priority: undefined } })) : jobs,
    );
  }
  await queue.close();
}

/** A BullMQ worker that does nothing with the same jobs: the queue's own cost per job at this concurrency. */
async function noop(t: Extract<ChildTask, { name: 'noop' }>): Promise<TaskResult> {
  const redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  await addAll(redis, { ...t, campaign: 'noop' }, false);
  try {
    return await measured(t.count, async () => {
      let done = 0;
      const worker = new Worker(queueName(t.appid), async () => undefined, {
        connection: redis,
        prefix: t.prefix,
        concurrency: t.concurrency,
      });
      await new Promise<void>((resolve, reject) => {
        worker.on('completed', () => {
          if (++done === t.count) resolve();
        });
        worker.on('error', reject);
      });
      await worker.close();
    });
  } finally {
    redis.disconnect();
  }
}

/** `enqueueCampaign` of a file into a local folder's record: what `wxacode enqueue` does. */
async function enqueue(t: Extract<ChildTask, { name: 'enqueue' }>): Promise<EnqueueTaskResult> {
  const { enqueueCampaign } = await import('../../src/campaign/producer.js');
  const { LocalStorage } = await import('../../src/storage/local.js');
  const redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  const storage = new LocalStorage(t.storageDir);
  try {
    let answer = { enqueued: 0, duplicates: 0 };
    const result = await measured(0, async () => {
      answer = await enqueueCampaign({
        redis,
        prefix: t.prefix,
        storage,
        campaign: t.campaign,
        appid: t.appid,
        options: CODE_OPTIONS,
        input: t.input,
      });
    });
    return { ...result, count: answer.enqueued, duplicates: answer.duplicates };
  } finally {
    await storage.close();
    redis.disconnect();
  }
}

/** A job per row added straight to BullMQ, as before windows: the floor any producer that did so paid. */
async function addBulk(t: Extract<ChildTask, { name: 'addBulk' }>): Promise<TaskResult> {
  const redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  try {
    return await measured(t.count, () => addAll(redis, t, true));
  } finally {
    redis.disconnect();
  }
}

/** The errcode WeChat answers a code call made with `token`, or undefined when it sends the image. */
export async function codeCallErrcode(wechatUrl: string, token: string): Promise<number | undefined> {
  const url = new URL(`${wechatUrl.replace(/\/+$/, '')}/wxa/getwxacodeunlimit`);
  url.searchParams.set('access_token', token);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(requestBody(CODE_OPTIONS, sceneOf(0))),
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (!res.headers.get('content-type')?.includes('json')) return undefined;
  return (JSON.parse(body.toString('utf8')) as { errcode?: number }).errcode || undefined;
}

/**
 * One process of a fleet that starts at once: a TokenProvider of its own (its own Redis connection and HTTP
 * pool, as in a worker), then, at the fleet's signal, a token of every app at the same moment. An app to `check`
 * has its token used once: refused (the cache held a token WeChat expired), it is invalidated and fetched again.
 */
async function token(
  t: Extract<ChildTask, { name: 'token' }>,
  ready: () => Promise<void>,
): Promise<TokenTaskResult> {
  const { Secret } = await import('../../src/config.js');
  const { TokenProvider } = await import('../../src/wechat/token.js');
  const redis = new Redis(t.redisUrl, { maxRetriesPerRequest: null });
  const modes = [...new Set(t.apps.map((app) => app.mode))];
  const providers = new Map(
    modes.map((mode) => [
      mode,
      new TokenProvider({
        redis,
        prefix: t.prefix,
        apps: new Map(t.apps.filter((a) => a.mode === mode).map((a) => [a.appid, new Secret(t.secret)])),
        mode,
        baseUrl: t.wechatUrl,
      }),
    ]),
  );
  const result: TokenTaskResult = { tokens: {}, refused: {} };
  try {
    await redis.ping();
    await ready();
    await Promise.all(
      t.apps.map(async ({ appid, mode, check }) => {
        const provider = providers.get(mode)!;
        let value = await provider.get(appid);
        if (check) {
          const errcode = await codeCallErrcode(t.wechatUrl, value);
          result.refused[appid] = errcode;
          if (errcode === 40001 || errcode === 40014 || errcode === 42001) {
            await provider.invalidate(appid, value);
            value = await provider.get(appid);
          }
        }
        result.tokens[appid] = value;
      }),
    );
    return result;
  } finally {
    await Promise.all([...providers.values()].map((p) => p.close()));
    redis.disconnect();
  }
}

/** `ready` resolves when the parent says go; only tasks that must start together with others wait for it. */
export function runTask(
  task: ChildTask,
  ready: () => Promise<void> = async () => undefined,
): Promise<TaskResult | EnqueueTaskResult | TokenTaskResult> {
  switch (task.name) {
    case 'token':
      return token(task, ready);
    case 'put':
      return put(task);
    case 'noop':
      return noop(task);
    case 'enqueue':
      return enqueue(task);
    case 'addBulk':
      return addBulk(task);
  }
}
