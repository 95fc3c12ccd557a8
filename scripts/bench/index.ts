/**
 * `npm run bench [-- --quick] [-- --out DIR]`: how close to WeChat's cap the workers run, and what the pipeline
 * costs beside it, measured in one run on this machine against a private redis-server, the mock WeChat API and
 * s3rver. Prints each figure beside its target and its baseline and writes `results.json` and
 * `cap-utilisation.png` (into `bench/`, or a temporary folder for `--quick`, a ~1 minute smoke run).
 * A benchmark reports; it asserts nothing.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { removeDir, startRedis } from '../../test-support/redis-server.js';
import { type CapScenario, capUtilisation } from './cap.js';
import { drawCapChart } from './chart.js';
import { enqueueAtScale } from './enqueue.js';
import { type HeadroomPlan, pipelineHeadroom } from './headroom.js';
import { type Bench, startMock } from './services.js';
import { benchTable, printTable } from './table.js';
import { type TokensPlan, tokenStampede } from './tokens.js';

interface Plan {
  cap: CapScenario[];
  headroom: HeadroomPlan;
  enqueueRows: number;
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
  enqueueRows: 1_000_000,
  tokens: { processes: 8, concurrency: 8, codes: 200 },
};

const QUICK: Plan = {
  cap: [{ rate: '200/2s', workers: 2, concurrency: 8, seconds: 12 }],
  headroom: { codes: 400, concurrency: 32 },
  enqueueRows: 20_000,
  tokens: { processes: 8, concurrency: 8, codes: 50 },
};

const { values: flags } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } },
});
const plan = flags.quick ? QUICK : FULL;
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
  const capRuns = await capUtilisation(bench, plan.cap, log);
  const headroom = await pipelineHeadroom(bench, plan.headroom, log);
  const tokens = await tokenStampede(bench, plan.tokens, log);
  const enqueue = await enqueueAtScale(bench, plan.enqueueRows, log);

  const cap = capRuns.map((run) => run.result);
  const table = benchTable({ cap, headroom, enqueue, tokens });
  const redisVersion = /^redis_version:(.+)$/m.exec(await bench.redis.info('server'))?.[1]?.trim();
  mkdirSync(out, { recursive: true });
  const results = {
    generatedAt: new Date().toISOString(),
    quick: flags.quick,
    seconds: Math.round((Date.now() - started) / 1000),
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      node: process.version,
      redis: redisVersion,
      loadAverageAtStart: loadAtStart,
    },
    table,
    cap,
    headroom,
    enqueue,
    tokens,
  };
  writeFileSync(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  drawCapChart(
    path.join(out, 'cap-utilisation.png'),
    capRuns.map((run) => ({
      title: `${run.result.rate} x${run.result.workers}`,
      times: run.times,
      rate: run.rate,
    })),
  );
  printTable(table);
  log(`wrote ${path.join(out, 'results.json')} and cap-utilisation.png`);
} finally {
  bench?.redis.disconnect();
  await bench?.mock.stop();
  await redisServer.stop();
  removeDir(redisServer.dir);
  await rm(tmp, { recursive: true, force: true });
}
