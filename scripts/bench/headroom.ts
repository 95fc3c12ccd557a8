/**
 * 2. Pipeline headroom: with the cap lifted, how fast one worker process turns rows into stored codes (mock +
 * s3rver + Redis on this machine), beside what the S3 server and BullMQ alone manage with the same images and
 * concurrency, and what each code costs in CPU in each process. s3rver runs in a process of its own, so its CPU
 * time is its own; the bench process's (enqueueing, then polling the campaign) is given apart.
 */
import {
  BENCH_SECRET,
  type Bench,
  cpuMeter,
  cpuMs,
  enqueueScenes,
  runChild,
  settled,
  startS3Process,
  startWorkers,
  workerEnv,
} from './services.js';
import type { TaskResult } from './tasks.js';

export interface HeadroomPlan {
  codes: number;
  concurrency: number;
}

/** WeChat's real cap per app, codes per second. */
export const REAL_CAP_PER_SECOND = 5000 / 60;

export interface HeadroomResult extends HeadroomPlan {
  /** Codes per second, end to end: first call to the campaign's completion. */
  pipelinePerSecond: number;
  /** Baselines: raw PutObject of the same images to the same s3rver, and a no-op BullMQ worker on the same Redis. */
  rawPutPerSecond: number;
  noopJobsPerSecond: number;
  ofRawPut: number;
  /**
   * CPU ms per code in each process of the pipeline run; `bench`: the bench process itself, which enqueues the
   * campaign and polls it for completion.
   */
  cpuMsPerCode: { worker: number; mock: number; redis: number; s3rver: number; bench: number };
  /** CPU ms per put of the raw-put client and of s3rver, per job of the no-op worker. */
  baselineCpuMs: { putClient: number; s3rver: number; noopWorker: number };
  /** Apps at WeChat's cap (5000/min) whose codes one worker process's CPU (one core) can generate. */
  appsPerWorkerCore: number;
}

export async function pipelineHeadroom(
  b: Bench,
  plan: HeadroomPlan,
  log: (line: string) => void,
): Promise<HeadroomResult> {
  const appid = 'wxbench-headroom';
  const s3 = await startS3Process();
  try {
    log(`baseline: BullMQ no-op worker, ${plan.codes} jobs × ${plan.concurrency}`);
    const noop = await runChild<TaskResult>({
      name: 'noop',
      redisUrl: b.redisUrl,
      prefix: 'bench-noop',
      appid,
      count: plan.codes,
      concurrency: plan.concurrency,
    });

    log(`baseline: raw PutObject to s3rver, ${plan.codes} images × ${plan.concurrency}`);
    const s3rverCpu = cpuMs(s3.pid);
    const put = await runChild<TaskResult>({
      name: 'put',
      s3Env: s3.env,
      appid,
      bucket: s3.bucket,
      keyPrefix: 'raw-put',
      count: plan.codes,
      concurrency: plan.concurrency,
    });
    const putServer = cpuMs(s3.pid) - s3rverCpu;

    log(`pipeline: 1 worker × ${plan.concurrency}, ${plan.codes} codes, cap lifted`);
    await b.mock.admin.configure({ apps: { [appid]: BENCH_SECRET }, rateLimit: null });
    const prefix = 'bench-headroom';
    const env = {
      ...workerEnv(b, { prefix, apps: [appid], rate: '1000000/1s', storage: `s3://${s3.bucket}/pipeline` }),
      ...s3.env,
    };
    const fleet = await startWorkers(1, env, plan.concurrency);
    const benchCpu = process.cpuUsage();
    const meter = cpuMeter({ worker: fleet.pids, mock: b.mock.pid, redis: b.redisPid, s3rver: s3.pid });
    let cpu: Record<string, number>;
    let completedAt: number;
    try {
      await enqueueScenes(b, env, appid, 'headroom', plan.codes);
      await settled(b, prefix, 'headroom', 600_000, 50);
      completedAt = Date.now();
    } finally {
      cpu = meter.stop();
      await fleet.stop();
    }
    const bench = process.cpuUsage(benchCpu);
    const stats = await b.mock.admin.stats(appid);
    const pipelinePerSecond = (stats.images * 1000) / (completedAt - stats.callTimes[0]!);
    const rawPutPerSecond = (put.count * 1000) / put.ms;
    const perCode = (ms: number) => ms / stats.images;
    return {
      ...plan,
      pipelinePerSecond,
      rawPutPerSecond,
      noopJobsPerSecond: (noop.count * 1000) / noop.ms,
      ofRawPut: pipelinePerSecond / rawPutPerSecond,
      cpuMsPerCode: {
        worker: perCode(cpu.worker!),
        mock: perCode(cpu.mock!),
        redis: perCode(cpu.redis!),
        s3rver: perCode(cpu.s3rver!),
        bench: perCode((bench.user + bench.system) / 1000),
      },
      baselineCpuMs: {
        putClient: put.cpuMs / put.count,
        s3rver: putServer / put.count,
        noopWorker: noop.cpuMs / noop.count,
      },
      appsPerWorkerCore: 1000 / perCode(cpu.worker!) / REAL_CAP_PER_SECOND,
    };
  } finally {
    await s3.stop();
  }
}
