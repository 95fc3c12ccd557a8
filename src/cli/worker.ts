/** `wxacode worker`: drain the queues of the configured apps until SIGINT/SIGTERM. */
import type { Command } from 'commander';
import { CodeWorker } from '../campaign/worker.js';
import { cliConfig, cliLogger, connectRedis, type GlobalFlags, parseInteger } from './context.js';

export interface WorkerFlags extends GlobalFlags {
  concurrency?: string;
  app?: string[];
}

/** Resolve on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .summary('generate codes for queued campaigns until stopped (SIGINT/SIGTERM)')
    .option('--concurrency <n>', 'jobs in flight per app in this process (default 8)')
    .option('--app <appid...>', 'work only for these apps (default: every configured app)')
    .addHelpText(
      'after',
      `
Run as many workers on as many machines as you like: they share each app's rate limit through Redis.
On SIGTERM a worker finishes its in-flight calls and uploads, returns the rest to the queue, and exits 0.

Examples:
  WECHAT_APPID=wx... WECHAT_SECRET=... WXACODE_STORAGE=s3://codes/2026 wxacode worker --concurrency 16`,
    )
    .action(async (flags: WorkerFlags) => {
      const config = cliConfig();
      const logger = cliLogger(flags);
      (await connectRedis(config.redisUrl)).disconnect();
      const worker = await CodeWorker.start({
        config,
        logger,
        apps: flags.app,
        concurrency:
          flags.concurrency === undefined
            ? undefined
            : parseInteger('--concurrency', flags.concurrency, 1, 1000),
      });
      logger.info(
        { apps: flags.app ?? [...config.apps.keys()], storage: worker.storage.description },
        'worker started',
      );
      const signal = await Promise.race([untilSignal(), worker.stopped.then(() => undefined)]);
      if (signal) logger.info({ signal }, 'stopping: finishing in-flight jobs');
      await worker.close();
      logger.info('worker stopped');
      if (!signal) process.exitCode = 1;
    });
}
