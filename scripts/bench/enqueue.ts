/**
 * 3. Enqueue at scale: `enqueueCampaign` reads a generated 1 M-row CSV in a child process and writes the
 * campaign's record (chunk files) to a local folder, as `wxacode enqueue` does with WXACODE_STORAGE a folder; no
 * job is added until the workers' feeders queue a window. Then the producer alone at 10 M rows (a TXT file, 1 in
 * 100 rows a repeat of an earlier one): its peak RSS, with the de-duplication that spills to disk. Each child
 * reports its rate and peak RSS; Redis's used_memory before and after says what the enqueue left in Redis. The
 * baseline is a child adding a job per row of the CSV straight to BullMQ with `addBulk`: what every enqueue paid
 * before windows, at least.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { type Bench, runChild } from './services.js';
import { type EnqueueTaskResult, sceneOf, type TaskResult } from './tasks.js';

export interface EnqueuePlan {
  /** Rows of the CSV whose enqueue is timed beside addBulk. */
  rows: number;
  /** Rows of the TXT file whose producer's peak RSS is measured. */
  producerRows: number;
}

/** One enqueue into a record, and what it left in Redis. */
export interface RecordedEnqueue {
  /** Input rows, repeats included. */
  rows: number;
  recorded: number;
  duplicates: number;
  rowsPerSecond: number;
  peakRssMb: number;
  cpuMs: number;
  /** used_memory growth: the campaign hash and its chunk list (and the keyspace's entries for them). */
  redisBytes: number;
  /** MEMORY USAGE of the chunk list, the one key that grows with the rows (a line per chunk). */
  chunkListBytes: number;
  chunks: number;
}

export interface EnqueueResult extends EnqueuePlan {
  enqueue: RecordedEnqueue;
  /** The producer at `producerRows`. */
  producer: RecordedEnqueue;
  /** A job per row with addBulk, as the producer before windows did. */
  addBulk: { rowsPerSecond: number; peakRssMb: number; bytesPerJob: number };
  ofAddBulk: number;
}

/**
 * `rows` scenes, one a line after the header; every `repeatEvery`-th row repeats the scene 50 rows before it, so
 * the producer has repeats to find across its de-duplication's partitions.
 */
export async function writeScenes(
  file: string,
  rows: number,
  options: { header?: string; repeatEvery?: number } = {},
): Promise<void> {
  const out = createWriteStream(file);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  const repeat = options.repeatEvery;
  let batch = options.header === undefined ? '' : `${options.header}\n`;
  for (let i = 0; i < rows; i++) {
    batch += `${sceneOf(repeat !== undefined && i % repeat === repeat - 1 && i >= 50 ? i - 50 : i)}\n`;
    if (batch.length > 65_536) {
      await write(batch);
      batch = '';
    }
  }
  await write(batch);
  out.end();
  await once(out, 'finish');
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)![1]);
}

export async function memoryUsage(redis: Redis, key: string): Promise<number> {
  return Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
}

/**
 * Remove every key under `prefix`: the bench's Redis is its own, and later sections measure from a clean one. DEL,
 * not UNLINK, so the keys' memory is free when this returns; Redis then shrinks its keyspace's table a step at a
 * time, which would be read as a fall of the next figure, so this also waits for used_memory to hold still.
 */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 10_000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  let last = await usedMemory(redis);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = await usedMemory(redis);
    if (Math.abs(now - last) < 16 * 1024) return;
    last = now;
  }
}

/** `enqueueCampaign` of `input` in a child, into a record in `storageDir`, and what it left in Redis. */
export async function recordedEnqueue(
  b: Bench,
  task: { prefix: string; appid: string; campaign: string; input: string; storageDir: string },
): Promise<RecordedEnqueue> {
  const before = await usedMemory(b.redis);
  const result = await runChild<EnqueueTaskResult>({ name: 'enqueue', redisUrl: b.redisUrl, ...task });
  const redisBytes = (await usedMemory(b.redis)) - before;
  const chunkList = `${task.prefix}:campaign:${task.campaign}:chunks`;
  const rows = result.count + result.duplicates;
  return {
    rows,
    recorded: result.count,
    duplicates: result.duplicates,
    rowsPerSecond: (rows * 1000) / result.ms,
    peakRssMb: result.peakRssMb,
    cpuMs: result.cpuMs,
    redisBytes,
    chunkListBytes: await memoryUsage(b.redis, chunkList),
    chunks: await b.redis.llen(chunkList),
  };
}

export async function enqueueAtScale(
  b: Bench,
  plan: EnqueuePlan,
  log: (line: string) => void,
): Promise<EnqueueResult> {
  const appid = 'wxbench-enqueue';
  const csv = path.join(b.tmp, 'scenes.csv');
  log(`writing a ${plan.rows}-row CSV`);
  await writeScenes(csv, plan.rows, { header: 'scene' });

  log(`enqueueCampaign of ${plan.rows} rows into a record in a local folder`);
  const storageDir = path.join(b.tmp, 'enqueue-records');
  const enqueue = await recordedEnqueue(b, {
    prefix: 'bench-enqueue',
    appid,
    campaign: 'scale',
    input: csv,
    storageDir,
  });
  await rm(csv, { force: true });
  log(`enqueue: ${enqueue.rowsPerSecond.toFixed(0)} rows/s, peak RSS ${enqueue.peakRssMb.toFixed(0)} MB`);

  const txt = path.join(b.tmp, 'producer.txt');
  log(`writing a ${plan.producerRows}-row TXT file, 1 row in 100 a repeat`);
  await writeScenes(txt, plan.producerRows, { repeatEvery: 100 });
  log(`producer: enqueueCampaign of ${plan.producerRows} rows`);
  const producer = await recordedEnqueue(b, {
    prefix: 'bench-producer',
    appid,
    campaign: 'scale',
    input: txt,
    storageDir,
  });
  await Promise.all([rm(txt, { force: true }), rm(storageDir, { recursive: true, force: true })]);
  log(`producer: peak RSS ${producer.peakRssMb.toFixed(0)} MB, ${producer.rowsPerSecond.toFixed(0)} rows/s`);

  // Last, and dropped at once: a million jobs in Redis would be counted in every figure after them.
  log(`baseline: addBulk of a job per row, ${plan.rows} rows`);
  const addBulkPrefix = 'bench-addbulk';
  const before = await usedMemory(b.redis);
  const baseline = await runChild<TaskResult>({
    name: 'addBulk',
    redisUrl: b.redisUrl,
    prefix: addBulkPrefix,
    appid,
    campaign: 'scale',
    count: plan.rows,
  });
  const addBulkBytes = (await usedMemory(b.redis)) - before;
  await dropPrefix(b.redis, addBulkPrefix);

  const addBulkPerSecond = (baseline.count * 1000) / baseline.ms;
  return {
    ...plan,
    enqueue,
    producer,
    addBulk: {
      rowsPerSecond: addBulkPerSecond,
      peakRssMb: baseline.peakRssMb,
      bytesPerJob: addBulkBytes / plan.rows,
    },
    ofAddBulk: enqueue.rowsPerSecond / addBulkPerSecond,
  };
}
