/** `wxacode worker`: drain the queues of the configured apps until SIGINT/SIGTERM. */
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import { CodeWorker } from '../campaign/worker.js';
import { workerApps } from '../config.js';
import type { Logger } from '../log.js';
import { WorkerMetrics } from '../metrics.js';
import { type MetricsServer, startMetricsServer, type WorkerState } from '../metrics-server.js';
import {
  cliConfig,
  cliLogger,
  connectRedis,
  type GlobalFlags,
  parseConcurrency,
  parseInteger,
  UsageError,
  untilSignal,
  untilStopRequest,
} from './context.js';

export interface WorkerFlags {
  concurrency?: string;
  app?: string[];
  metricsPort?: string;
  metricsHost?: string;
  shutdownTimeout?: string;
}

/** Exit code of a worker that had to abandon in-flight jobs (they return to the queue when their locks expire). */
const FORCED_EXIT = 1;

async function serveMetrics(
  flags: WorkerFlags,
  redis: Redis,
  metrics: WorkerMetrics,
  state: () => WorkerState,
  logger: Logger,
): Promise<MetricsServer> {
  const port = parseInteger('--metrics-port', flags.metricsPort!, 0, 65_535);
  const host = flags.metricsHost ?? '127.0.0.1';
  try {
    return await startMetricsServer({ metrics, redis, state, port, host, logger });
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(
      `cannot serve metrics on ${host}:${port} (${reason}); choose another --metrics-port or --metrics-host`,
    );
  }
}

/**
 * Let in-flight jobs finish and upload, within `timeoutMs`. A second signal or the timeout ends the wait: the
 * process must then exit at once, because BullMQ's close cannot be escalated once started (it is memoised, so
 * a later `close(true)` waits for the same jobs). Their locks are no longer renewed, so BullMQ's stalled-job
 * check returns them to the queue within lockDuration + stalledInterval (about 15 s).
 */
async function closeWithin(worker: CodeWorker, timeoutMs: number): Promise<'closed' | 'timeout' | 'signal'> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    worker.close().then(() => 'closed' as const),
    untilSignal().then(() => 'signal' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return outcome;
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .summary('generate codes for queued campaigns until stopped (SIGINT/SIGTERM)')
    .option('--concurrency <n>', 'jobs in flight per app in this process (default 8)')
    .option('--app <appid...>', 'work only for these apps (default: every configured app)')
    .option('--metrics-port <port>', 'serve /metrics (Prometheus) and /healthz on this port')
    .option(
      '--metrics-host <host>',
      'address of the metrics server (default 127.0.0.1; 0.0.0.0 to be scraped from elsewhere)',
    )
    .option(
      '--shutdown-timeout <seconds>',
      'on SIGTERM/SIGINT, how long in-flight jobs may take before the worker exits anyway (default 30)',
    )
    .addHelpText(
      'after',
      `
Run as many workers on as many machines as you like: they share each app's rate limit through Redis.

On SIGTERM or SIGINT a worker takes no new jobs, lets the ones in flight finish their call and upload (the rest
stay queued), and exits 0. If that takes longer than --shutdown-timeout, or a second signal arrives, it exits 1
at once; the jobs it abandoned return to the queue within about 15 s for any worker to take.

/healthz answers 200 {"status":"ok",...} while Redis answers and the worker runs, 503 otherwise.

Examples:
  WECHAT_APPID=wx... WECHAT_SECRET=... WXACODE_STORAGE=s3://codes/2026 wxacode worker --concurrency 16
  wxacode worker --metrics-port 9464 --metrics-host 0.0.0.0 --shutdown-timeout 50`,
    )
    .action(async (flags: WorkerFlags, command: Command) => {
      const config = cliConfig();
      const logger = cliLogger(command.optsWithGlobals<GlobalFlags>());
      const concurrency = parseConcurrency(flags.concurrency);
      const timeoutSeconds = parseInteger('--shutdown-timeout', flags.shutdownTimeout ?? '30', 1, 86_400);
      if (flags.metricsHost !== undefined && flags.metricsPort === undefined) {
        throw new UsageError('--metrics-host needs --metrics-port');
      }
      const apps = workerApps(config, flags.app);

      const redis = await connectRedis(config.redisUrl);
      let state: WorkerState = 'starting';
      let metrics: WorkerMetrics | undefined;
      let server: MetricsServer | undefined;
      try {
        if (flags.metricsPort !== undefined) {
          metrics = new WorkerMetrics({ redis, prefix: config.prefix, apps, logger });
          server = await serveMetrics(flags, redis, metrics, () => state, logger);
          logger.info({ url: server.url }, 'metrics server listening');
        }
        const worker = await CodeWorker.start({ config, logger, apps, concurrency, hooks: metrics?.hooks });
        state = 'running';
        logger.info({ apps, storage: worker.storage.description }, 'worker started');

        const signal = await Promise.race([untilStopRequest(logger), worker.stopped.then(() => undefined)]);
        state = 'stopping';
        if (!signal) {
          // Every app's credentials were refused: nothing left to do, and an operator must look.
          await worker.close();
          process.exitCode = 1;
        } else {
          if (signal === 'fatal') process.exitCode = 1;
          logger.info({ signal, timeoutSeconds }, 'stopping: finishing in-flight jobs');
          const outcome = await closeWithin(worker, timeoutSeconds * 1000);
          if (outcome !== 'closed') {
            logger.warn(
              { reason: outcome === 'timeout' ? `--shutdown-timeout ${timeoutSeconds}` : 'second signal' },
              'forced exit: jobs still in flight return to the queue when their locks expire (about 15 s)',
            );
            process.exit(FORCED_EXIT);
          }
        }
        logger.info('worker stopped');
      } finally {
        state = 'stopped';
        await server?.close();
        await metrics?.close();
        redis.disconnect();
      }
    });
}
