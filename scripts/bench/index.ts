/**
 * `npm run bench [-- --quick] [-- --out DIR] [-- --only SECTIONS]`: how close to WeChat's cap the workers run, what
 * the pipeline costs beside it, and how much memory campaigns of millions of rows take in Redis and in the
 * producer, measured in one run on this machine against a private redis-server, the mock WeChat API and s3rver.
 * Prints each figure beside its target and its baseline and writes `results.json` and `cap-utilisation.png` (into
 * `bench/`, or a temporary folder for `--quick`, a smoke run of a few minutes).
 * `--only tokens,headroom` runs those sections alone (of cap, headroom, enqueue, memory, tokens, manifest) and
 * replaces their figures in the folder's existing `results.json`, keeping the others; `measuredAt` and
 * `loadAverageAtStart` say when each section was measured and how busy the machine was then.
 * A benchmark reports; it asserts nothing.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { removeDir, startRedis } from '../../test-support/redis-server.js';
import { type CapScenario, capUtilisation } from './cap.js';
import { drawCapChart } from './chart.js';
import { type EnqueuePlan, enqueueAtScale } from './enqueue.js';
import { type HeadroomPlan, pipelineHeadroom } from './headroom.js';
import { manifestAtScale } from './manifest.js';
import { type MemoryPlan, REAL_CAP_WINDOW, redisMemory } from './memory.js';
import { type Bench, startMock } from './services.js';
import { benchTable, printTable } from './table.js';
import { type TokensPlan, tokenStampede } from './tokens.js';

interface Plan {
  cap: CapScenario[];
  headroom: HeadroomPlan;
  enqueue: EnqueuePlan;
  memory: MemoryPlan;
  tokens: TokensPlan;
}

const FULL: Plan = {
  // 1000/10s and WeChat's 5000/60s scaled down to 500/6s, each with one and with three worker processes.
  cap: [
    { rate: '1000/10s', workers: 1, concurrency: 8, seconds: 60 },
    { rate: '1000/10s', workers: 3, concurrency: 8, seconds: 60 },
    { rate: '500/6s', workers: 1, concurrency: 8, seconds: 60 },
    { rate: '500/6s', workers: 3, concurrency: 8, seconds: 60 },
  ],
  headroom: { codes: 3000, concurrency: 32 },
  enqueue: { rows: 1_000_000, producerRows: 10_000_000 },
  memory: {
    sizes: [10_000, 100_000, 1_000_000],
    worked: [10_000, 10_000, 50_000],
    window: REAL_CAP_WINDOW,
    workers: 2,
    concurrency: 16,
  },
  tokens: { processes: 8, concurrency: 8, codes: 200 },
};

const QUICK: Plan = {
  cap: [{ rate: '200/2s', workers: 2, concurrency: 8, seconds: 12 }],
  headroom: { codes: 400, concurrency: 32 },
  enqueue: { rows: 20_000, producerRows: 200_000 },
  memory: {
    sizes: [1_000, 5_000, 20_000],
    worked: [1_000, 1_500, 2_000],
    window: 500,
    workers: 2,
    concurrency: 16,
  },
  tokens: { processes: 8, concurrency: 8, codes: 50 },
};

const SECTIONS = ['cap', 'headroom', 'enqueue', 'memory', 'tokens', 'manifest'] as const;
type Section = (typeof SECTIONS)[number];

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    only: { type: 'string' },
  },
});
const plan = flags.quick ? QUICK : FULL;
const names = flags.only?.split(',').map((name) => name.trim()) ?? [...SECTIONS];
const unknown = names.filter((name) => !(SECTIONS as readonly string[]).includes(name));
if (unknown.length > 0) {
  throw new Error(`--only: unknown section ${unknown.join(', ')} (of ${SECTIONS.join(', ')})`);
}
const only = names as Section[];
const runs = (section: Section) => only.includes(section);
const out = path.resolve(
  flags.out ??
    (flags.quick
      ? path.join(os.tmpdir(), 'wxacode-bench-quick')
      : path.join(import.meta.dirname, '../../bench')),
);

const started = Date.now();
const log = (line: string) =>
  process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
// The figures assume the machine is ours: anything else running takes CPU from the workers and the mock.
const loadAtStart = os.loadavg()[0]!;
if (loadAtStart > 0.5) {
  log(
    `warning: load average ${loadAtStart.toFixed(2)} before starting; other work on this machine skews the figures`,
  );
}

const redisServer = await startRedis();
const tmp = await mkdtemp(path.join(os.tmpdir(), 'wxacode-bench-'));
let bench: Bench | undefined;
try {
  const mock = await startMock();
  bench = {
    redisUrl: redisServer.url,
    redisPid: redisServer.process.pid!,
    redis: new Redis(redisServer.url, { maxRetriesPerRequest: null }),
    mock,
    tmp,
  };
  const capRuns = runs('cap') ? await capUtilisation(bench, plan.cap, log) : undefined;
  const measured: Partial<Record<Section, unknown>> = {
    cap: capRuns?.map((run) => run.result),
    headroom: runs('headroom') ? await pipelineHeadroom(bench, plan.headroom, log) : undefined,
    tokens: runs('tokens') ? await tokenStampede(bench, plan.tokens, log) : undefined,
    enqueue: runs('enqueue') ? await enqueueAtScale(bench, plan.enqueue, log) : undefined,
    memory: runs('memory') ? await redisMemory(bench, plan.memory, log) : undefined,
    manifest: runs('manifest') ? await manifestAtScale(bench, flags.quick, log) : undefined,
  };

  const redisVersion = /^redis_version:(.+)$/m.exec(await bench.redis.info('server'))?.[1]?.trim();
  mkdirSync(out, { recursive: true });
  const file = path.join(out, 'results.json');
  // A partial run keeps the other sections' figures from the last run into the same folder.
  const previous =
    only.length < SECTIONS.length && existsSync(file)
      ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>)
      : {};
  const now = new Date().toISOString();
  const sections = Object.fromEntries(SECTIONS.map((s) => [s, runs(s) ? measured[s] : previous[s]]));
  const measuredAt = {
    ...Object.fromEntries(SECTIONS.map((s) => [s, previous.generatedAt])),
    ...(previous.measuredAt as Record<string, string> | undefined),
    ...Object.fromEntries(only.map((s) => [s, now])),
  };
  const previousMachine = previous.machine as { loadAverageAtStart?: number } | undefined;
  const loadAverageAtStart = {
    ...Object.fromEntries(SECTIONS.map((s) => [s, previousMachine?.loadAverageAtStart])),
    ...(previous.loadAverageAtStart as Record<string, number> | undefined),
    ...Object.fromEntries(only.map((s) => [s, loadAtStart])),
  };
  const complete = SECTIONS.every((s) => sections[s] !== undefined);
  let table: ReturnType<typeof benchTable> | undefined;
  try {
    if (complete) table = benchTable(sections as Parameters<typeof benchTable>[0]);
  } catch (err) {
    // Sections kept from an older run may lack a figure the table now shows: rerun them to get it.
    log(`no table: the figures kept from the last run do not fit it (${(err as Error).message})`);
  }
  const results = {
    ...previous,
    generatedAt: now,
    quick: flags.quick,
    seconds: Math.round((Date.now() - started) / 1000),
    ...(only.length < SECTIONS.length ? { only } : { only: undefined }),
    measuredAt,
    loadAverageAtStart,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, redis: redisVersion },
    table,
    ...sections,
  };
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  if (capRuns) {
    drawCapChart(
      path.join(out, 'cap-utilisation.png'),
      capRuns.map((run) => ({
        title: `${run.result.rate} x${run.result.workers}`,
        times: run.times,
        rate: run.rate,
      })),
    );
  }
  if (table) printTable(table);
  else
    process.stdout.write(
      `${JSON.stringify(Object.fromEntries(only.map((s) => [s, measured[s]])), null, 2)}\n`,
    );
  log(`wrote ${file}${capRuns ? ' and cap-utilisation.png' : ''}`);
} finally {
  bench?.redis.disconnect();
  await bench?.mock.stop();
  await redisServer.stop();
  removeDir(redisServer.dir);
  await rm(tmp, { recursive: true, force: true });
}
