/**
 * 1. Cap utilisation: worker processes drain a campaign against the mock's strict sliding-window cap, set to
 * the same rate as WXACODE_RATE_LIMIT, time-scaled so a run lasts about a minute. The workers' feeders queue the
 * campaign from its record a window at a time, the window scaled with the cap, so a run crosses many windows.
 * The mock's call times say how full each window was, whether one ever held more than the cap, and the mock
 * counts its 45009s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseRateLimit, type RateLimit } from '../../src/config.js';
import { busiestWindow } from '../../test-support/windows.js';
import { limiterCeiling, perSecond, type SteadyState, steadyState, windowCounts } from './analysis.js';
import {
  BENCH_SECRET,
  type Bench,
  cpuMeter,
  enqueueScenes,
  settled,
  startWorkers,
  workerEnv,
} from './services.js';

export interface CapScenario {
  /** WXACODE_RATE_LIMIT and the mock's cap. */
  rate: string;
  workers: number;
  /** --concurrency of each worker. */
  concurrency: number;
  /** Codes queued: the run lasts about this many seconds at the cap. */
  seconds: number;
}

export interface CapResult extends CapScenario {
  /**
   * WXACODE_WINDOW: one window of the cap's rows, as the default (a minute of the cap) is at WeChat's 5000/60s,
   * so that the feeders top the queue up many times in a run.
   */
  window: number;
  calls: number;
  images: number;
  /** Calls per window the limiter's spacing allows, as a fraction of the cap: the most a run can reach. */
  ceilingOfCap: number;
  steady?: SteadyState;
  /** Most calls in any window of the run, start-up included, the cap it is held to, and when it ended (s). */
  maxInWindow: number;
  cap: number;
  busiestWindowEndsAtS: number;
  /** Calls the mock refused with 45009. */
  rateLimited: number;
  /** CPU ms per code of the worker processes together, the mock and redis-server. */
  cpuMsPerCode: { workers: number; mock: number; redis: number };
  /** Calls in each second of the run, and the calls in the window ending at each second as a fraction of the cap. */
  series: { perSecond: number[]; windowOfCap: number[] };
}

/** A scenario's result and the raw call times (for the chart; not written to results.json). */
export interface CapRun {
  result: CapResult;
  times: number[];
  rate: RateLimit;
}

async function runScenario(b: Bench, scenario: CapScenario, index: number): Promise<CapRun> {
  const rate = parseRateLimit(scenario.rate);
  if (!rate) throw new Error(`cap scenario rate "${scenario.rate}" is not <count>/<duration>`);
  // A fresh app and prefix per scenario: its own token, limiter settings (Bottleneck keeps the first ones it
  // stored under an id) and mock window.
  const appid = `wxbench-cap-${index}`;
  const prefix = `bench-cap-${index}`;
  const storage = await mkdtemp(path.join(b.tmp, 'cap-'));
  await b.mock.admin.configure({ apps: { [appid]: BENCH_SECRET }, rateLimit: rate });
  const window = rate.count;
  const env = workerEnv(b, { prefix, apps: [appid], rate: scenario.rate, storage, window });
  const fleet = await startWorkers(scenario.workers, env, scenario.concurrency);
  const codes = Math.round((rate.count * scenario.seconds * 1000) / rate.durationMs);
  const meter = cpuMeter({ workers: fleet.pids, mock: b.mock.pid, redis: b.redisPid });
  let cpu: Record<string, number>;
  try {
    await enqueueScenes(b, env, appid, 'cap', codes);
    await settled(b, prefix, 'cap', scenario.seconds * 3000 + 60_000);
  } finally {
    cpu = meter.stop();
    await fleet.stop();
    await rm(storage, { recursive: true, force: true });
  }
  const stats = await b.mock.admin.stats(appid);
  const times = stats.callTimes;
  const first = times[0] ?? 0;
  const seconds = perSecond(times, first);
  const secondEnds = seconds.map((_, k) => first + (k + 1) * 1000);
  const perCode = (ms: number) => ms / Math.max(1, stats.images);
  const busiest = busiestWindow(times, rate.durationMs);
  return {
    rate,
    times,
    result: {
      ...scenario,
      window,
      calls: stats.codeCalls,
      images: stats.images,
      ceilingOfCap: limiterCeiling(rate),
      steady: steadyState(times, rate),
      maxInWindow: busiest.calls,
      cap: rate.count,
      busiestWindowEndsAtS: (busiest.endsAt - first) / 1000,
      rateLimited: stats.errors['45009'] ?? 0,
      cpuMsPerCode: { workers: perCode(cpu.workers!), mock: perCode(cpu.mock!), redis: perCode(cpu.redis!) },
      series: {
        perSecond: seconds,
        windowOfCap: windowCounts(times, rate.durationMs, secondEnds).map((n) => n / rate.count),
      },
    },
  };
}

export async function capUtilisation(
  b: Bench,
  scenarios: CapScenario[],
  log: (line: string) => void,
): Promise<CapRun[]> {
  const runs: CapRun[] = [];
  for (const [i, scenario] of scenarios.entries()) {
    log(
      `cap ${scenario.rate}, ${scenario.workers} worker(s) × ${scenario.concurrency}, ~${scenario.seconds} s`,
    );
    runs.push(await runScenario(b, scenario, i));
  }
  return runs;
}
