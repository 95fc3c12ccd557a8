/**
 * 5. Redis memory with windows: campaigns of growing size are recorded (a child enqueues a TXT file into a local
 * folder), then worker processes with the cap lifted (WXACODE_RATE_LIMIT and the mock's) work a sample of their
 * rows while the bench reads Redis's used_memory every 100 ms. The figure is the highest used_memory above the
 * baseline read just before the enqueue, per row of the campaign: with a window of W rows queued at a time it
 * should not grow with the rows, so the bytes per row fall as the campaign grows and the slope between the
 * smallest and the largest campaign is about 0. The window is WXACODE_WINDOW's default at WeChat's cap
 * (5000/60s: 5000 rows), since the default with the cap lifted would be a million.
 *
 * The smallest campaign is worked to completion: what Redis keeps of it then, by MEMORY USAGE of its keys, is the
 * figure after completion; used_memory beside it also counts what its app keeps whatever its campaigns (BullMQ's
 * queue keys and capped event stream, the token).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { CampaignStore } from '../../src/campaign/store.js';
import { defaultWindow, parseRateLimit } from '../../src/config.js';
import { dropPrefix, memoryUsage, recordedEnqueue, usedMemory, writeScenes } from './enqueue.js';
import { BENCH_SECRET, type Bench, startWorkers, workerEnv } from './services.js';

export interface MemoryPlan {
  /** Rows of each campaign, smallest first. */
  sizes: number[];
  /** Rows worked of each while used_memory is sampled: all of the smallest, which completes; a sample of the others. */
  worked: number[];
  /** WXACODE_WINDOW of the workers. */
  window: number;
  workers: number;
  concurrency: number;
}

/** Bytes by key while a campaign was worked (MEMORY USAGE, read once half the sample was worked). */
export interface MemoryBreakdown {
  /** The campaign's `window` hash: the rows queued and not settled. */
  window: number;
  /** BullMQ's job hashes of the app's queue, and how many there were. */
  jobs: number;
  jobCount: number;
  /** BullMQ's other keys of the queue: the prioritized set, the events stream (capped), meta, locks. */
  queue: number;
  /** The campaign hash and its chunk list. */
  campaign: number;
  /** Everything else under the prefix: the token, the feeder's lease, the limiter's keys. */
  other: number;
}

export interface MemoryRun {
  rows: number;
  /** Rows settled when sampling stopped. */
  worked: number;
  /** used_memory above the baseline once recorded, before any worker started. */
  recordedBytes: number;
  /** Highest used_memory above the baseline while the sample was worked. */
  peakBytes: number;
  /** The same until the rows worked of each smaller campaign's sample were settled here too, by that number. */
  peakBytesBy: Record<string, number>;
  bytesPerRow: number;
  /** Codes per second while sampling. */
  codesPerSecond: number;
  breakdown: MemoryBreakdown;
}

export interface MemoryResult extends MemoryPlan {
  runs: MemoryRun[];
  /**
   * Peak growth per row added between the two largest campaigns, each up to the rows worked of the smaller: about
   * 0 when Redis holds a window, not the rows.
   */
  slopeBytesPerRow: number;
  /** The smallest campaign once completed, workers stopped. */
  completed: {
    rows: number;
    /** MEMORY USAGE of each key left under `campaign:<id>`. */
    keys: Record<string, number>;
    /** Their sum: the figure. */
    campaignBytes: number;
    /** The chunk list's part of it: the one key that grows with the rows, a line per chunk. */
    chunkListBytes: number;
    /** used_memory above the baseline: the campaign's keys and what its app keeps whatever its campaigns. */
    usedMemoryBytes: number;
  };
}

/** The real cap's default window: what a deployment queues at once of each campaign. */
export const REAL_CAP_WINDOW = defaultWindow(parseRateLimit('5000/60s')!);

/**
 * The codes and records go to a folder in memory where there is one: a folder store syncs every image to disk,
 * and on this machine's disk that, not the pipeline, would set the pace of the sample.
 */
const SHM = '/dev/shm';

function groupOf(key: string, prefix: string, campaign: string, queue: string): keyof MemoryBreakdown {
  const rest = key.slice(prefix.length + 1);
  if (rest === `campaign:${campaign}:window`) return 'window';
  if (rest === `campaign:${campaign}` || rest.startsWith(`campaign:${campaign}:`)) return 'campaign';
  if (rest.startsWith(`${queue}:`))
    return /^j[\w-]{11}$/.test(rest.slice(queue.length + 1)) ? 'jobs' : 'queue';
  return 'other';
}

async function keysUnder(b: Bench, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await b.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

async function breakdown(b: Bench, prefix: string, campaign: string, appid: string) {
  const result: MemoryBreakdown = { window: 0, jobs: 0, jobCount: 0, queue: 0, campaign: 0, other: 0 };
  const queue = `codes-${appid}`;
  const keys = await keysUnder(b, `${prefix}:*`);
  const pipeline = b.redis.pipeline();
  for (const key of keys) pipeline.call('MEMORY', 'USAGE', key, 'SAMPLES', '0');
  const sizes = (await pipeline.exec())!.map(([, bytes]) => Number(bytes ?? 0));
  keys.forEach((key, i) => {
    const group = groupOf(key, prefix, campaign, queue);
    if (group === 'jobs') result.jobCount++;
    result[group] += sizes[i]!;
  });
  return result;
}

async function runCampaign(
  b: Bench,
  plan: MemoryPlan,
  name: string,
  rows: number,
  target: number,
  log: (line: string) => void,
): Promise<{ run: MemoryRun; completed?: MemoryResult['completed'] }> {
  const appid = `wxbench-${name}`;
  const prefix = `bench-${name}`;
  const campaign = 'memory';
  const storageDir = await mkdtemp(path.join(existsSync(SHM) ? SHM : b.tmp, 'wxacode-bench-memory-'));
  const input = path.join(b.tmp, 'memory.txt');
  const toComplete = target >= rows;
  const checkpoints = plan.worked.filter((worked) => worked < target);
  const store = new CampaignStore(b.redis, prefix);
  try {
    await writeScenes(input, rows);
    const baseline = await usedMemory(b.redis);
    log(`${name}: ${rows} rows recorded, then ${toComplete ? 'all' : target} worked, window ${plan.window}`);
    await recordedEnqueue(b, { prefix, appid, campaign, input, storageDir });
    const recordedBytes = (await usedMemory(b.redis)) - baseline;

    await b.mock.admin.configure({ apps: { [appid]: BENCH_SECRET }, rateLimit: null });
    const env = workerEnv(b, {
      prefix,
      apps: [appid],
      rate: '1000000/1s',
      storage: storageDir,
      window: plan.window,
    });
    const fleet = await startWorkers(plan.workers, env, plan.concurrency);
    let peak = 0;
    const peakBy: Record<string, number> = {};
    let worked = 0;
    let started = 0;
    let sampled: MemoryBreakdown | undefined;
    let ended = 0;
    try {
      for (;;) {
        peak = Math.max(peak, (await usedMemory(b.redis)) - baseline);
        const meta = (await store.get(campaign))!;
        worked = meta.done + meta.failed;
        for (const at of checkpoints) if (worked >= at) peakBy[at] ??= peak;
        if (!sampled && worked >= target / 2) sampled = await breakdown(b, prefix, campaign, appid);
        if (started === 0 && worked > 0) started = performance.now() - 100;
        const finished = toComplete
          ? meta.state === 'completed' && meta.manifestKey !== undefined
          : worked >= target;
        if (finished) {
          ended = performance.now();
          break;
        }
        if (meta.state === 'stopped') throw new Error(`campaign stopped: ${meta.stop?.errmsg}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      await fleet.stop();
    }
    const seconds = (ended - started) / 1000;
    const run: MemoryRun = {
      rows,
      worked,
      recordedBytes,
      peakBytes: peak,
      peakBytesBy: peakBy,
      bytesPerRow: peak / rows,
      codesPerSecond: worked / seconds,
      breakdown: sampled!,
    };
    log(
      `${name}: ${rows} rows, peak +${(peak / 1024 / 1024).toFixed(1)} MB = ${run.bytesPerRow.toFixed(1)} B/row, ` +
        `${run.codesPerSecond.toFixed(0)} codes/s`,
    );
    if (!toComplete) return { run };
    const keys: Record<string, number> = {};
    for (const key of await keysUnder(b, `${prefix}:campaign:${campaign}*`)) {
      keys[key.slice(prefix.length + 1)] = await memoryUsage(b.redis, key);
    }
    return {
      run,
      completed: {
        rows,
        keys,
        campaignBytes: Object.values(keys).reduce((sum, bytes) => sum + bytes, 0),
        chunkListBytes: keys[`campaign:${campaign}:chunks`] ?? 0,
        usedMemoryBytes: (await usedMemory(b.redis)) - baseline,
      },
    };
  } finally {
    await dropPrefix(b.redis, prefix);
    await Promise.all([rm(input, { force: true }), rm(storageDir, { recursive: true, force: true })]);
  }
}

export async function redisMemory(
  b: Bench,
  plan: MemoryPlan,
  log: (line: string) => void,
): Promise<MemoryResult> {
  // Loads the scripts Redis caches (ours and BullMQ's) and has the mock and Redis warm, so the first campaign
  // measured pays for none of it.
  await runCampaign(b, plan, 'memory-warmup', 100, 100, log);
  const runs: MemoryRun[] = [];
  let completed: MemoryResult['completed'] | undefined;
  for (const [i, rows] of plan.sizes.entries()) {
    const result = await runCampaign(b, plan, `memory-${i}`, rows, plan.worked[i]!, log);
    runs.push(result.run);
    completed ??= result.completed;
  }
  if (!completed) throw new Error('memory: no campaign was worked to completion');
  const at = Math.max(0, runs.length - 2);
  const smaller = runs[at]!;
  const larger = runs.at(-1)!;
  const largerPeak = larger.peakBytesBy[plan.worked[at]!] ?? larger.peakBytes;
  return {
    ...plan,
    runs,
    slopeBytesPerRow: (largerPeak - smaller.peakBytes) / Math.max(1, larger.rows - smaller.rows),
    completed,
  };
}
