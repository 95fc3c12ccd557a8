/**
 * 3. Enqueue at scale: `enqueueCampaign` reads a generated CSV (validated in full, then queued) in a child
 * process, beside a child adding the very same jobs straight to BullMQ with `addBulk`. Each child reports its
 * rate and peak RSS; Redis's used_memory before and after says what a queued scene costs, and MEMORY USAGE on
 * its keys says where those bytes are.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { jobId, jobsFor, openQueue } from '../../src/campaign/queue.js';
import { type Bench, runChild } from './services.js';
import { sceneOf, scenes, type TaskResult } from './tasks.js';

export interface EnqueueResult {
  rows: number;
  enqueuePerSecond: number;
  addBulkPerSecond: number;
  ofAddBulk: number;
  peakRssMb: { enqueue: number; addBulk: number };
  /** used_memory growth per row. */
  bytesPerScene: number;
  addBulkBytesPerJob: number;
  /** Bytes per scene by key (MEMORY USAGE), and what is left: the keyspace's own entries per key. */
  breakdown: { jobHash: number; waitList: number; rowsHash: number; orderList: number; keyspace: number };
  /**
   * A job hash when Redis keeps it as a listpack: its `opts` (about 150 bytes) is over the default
   * hash-max-listpack-value of 64, which makes every job a full hashtable.
   */
  jobHashAsListpack: { hashMaxListpackValue: number; bytes: number };
}

const LISTPACK_VALUE = 256;

async function writeCsv(file: string, rows: number): Promise<void> {
  const out = createWriteStream(file);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  await write('scene\n');
  let batch = '';
  for (const scene of scenes(rows)) {
    batch += `${scene}\n`;
    if (batch.length > 65_536) {
      await write(batch);
      batch = '';
    }
  }
  await write(batch);
  out.end();
  await once(out, 'finish');
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)![1]);
}

async function memoryUsage(redis: Redis, key: string): Promise<number> {
  return Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
}

async function averageJobHash(redis: Redis, queue: Queue, campaign: string, scenes: string[]) {
  let bytes = 0;
  for (const scene of scenes) bytes += await memoryUsage(redis, queue.toKey(jobId(campaign, scene)));
  return bytes / scenes.length;
}

/** The same jobs added again with Redis told to keep hashes with longer values as listpacks. */
async function listpackJobHash(redis: Redis, appid: string, campaign: string, scenes: string[]) {
  const [, previous] = (await redis.config('GET', 'hash-max-listpack-value')) as [string, string];
  await redis.config('SET', 'hash-max-listpack-value', String(LISTPACK_VALUE));
  const queue = openQueue(redis, 'bench-listpack', appid);
  try {
    await queue.addBulk(jobsFor(campaign, scenes));
    return await averageJobHash(redis, queue, campaign, scenes);
  } finally {
    await queue.close();
    await redis.config('SET', 'hash-max-listpack-value', previous);
  }
}

/** Used memory growth across `run`, per `count`. */
async function bytesPer(redis: Redis, count: number, run: () => Promise<TaskResult>) {
  const before = await usedMemory(redis);
  const result = await run();
  return { result, bytes: ((await usedMemory(redis)) - before) / count };
}

export async function enqueueAtScale(
  b: Bench,
  rows: number,
  log: (line: string) => void,
): Promise<EnqueueResult> {
  const appid = 'wxbench-enqueue';
  const campaign = 'scale';
  const csv = path.join(b.tmp, 'scenes.csv');
  log(`writing a ${rows}-row CSV`);
  await writeCsv(csv, rows);
  const common = { redisUrl: b.redisUrl, appid, campaign };

  log(`baseline: addBulk of the same ${rows} jobs`);
  const baseline = await bytesPer(b.redis, rows, () =>
    runChild<TaskResult>({ name: 'addBulk', ...common, prefix: 'bench-addbulk', count: rows }),
  );
  log(`enqueueCampaign of ${rows} rows`);
  const prefix = 'bench-enqueue';
  const ours = await bytesPer(b.redis, rows, () =>
    runChild<TaskResult>({ name: 'enqueue', ...common, prefix, csv }),
  );

  const queue = openQueue(b.redis, prefix, appid);
  const samples = Array.from({ length: 200 }, (_, i) => sceneOf(Math.floor((i * rows) / 200)));
  // The campaign's keys, as store.ts lays them out.
  const perRow = async (key: string) => (await memoryUsage(b.redis, key)) / rows;
  const breakdown = {
    jobHash: await averageJobHash(b.redis, queue, campaign, samples),
    waitList: await perRow(queue.keys.wait!),
    rowsHash: await perRow(`${prefix}:campaign:${campaign}:rows`),
    orderList: await perRow(`${prefix}:campaign:${campaign}:order`),
    keyspace: 0,
  };
  await queue.close();
  breakdown.keyspace =
    ours.bytes - breakdown.jobHash - breakdown.waitList - breakdown.rowsHash - breakdown.orderList;

  const jobHashAsListpack = {
    hashMaxListpackValue: LISTPACK_VALUE,
    bytes: await listpackJobHash(b.redis, appid, campaign, samples),
  };

  const enqueuePerSecond = (ours.result.count * 1000) / ours.result.ms;
  const addBulkPerSecond = (baseline.result.count * 1000) / baseline.result.ms;
  return {
    rows,
    enqueuePerSecond,
    addBulkPerSecond,
    ofAddBulk: enqueuePerSecond / addBulkPerSecond,
    peakRssMb: { enqueue: ours.result.peakRssMb, addBulk: baseline.result.peakRssMb },
    bytesPerScene: ours.bytes,
    addBulkBytesPerJob: baseline.bytes,
    breakdown,
    jobHashAsListpack,
  };
}
