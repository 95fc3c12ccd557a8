/**
 * `wxacode run`: one machine, one command. Enqueue a file, work it in this process, show progress until the
 * campaign settles, and say where the manifest is. `demo` runs the same path against the built-in mock.
 */
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import { CampaignLifecycle } from '../campaign/lifecycle.js';
import { manifestText, recordSource } from '../campaign/manifest.js';
import { type CampaignStatus, campaignStatus, loadCampaign } from '../campaign/operations.js';
import { CampaignStore } from '../campaign/store.js';
import { CodeWorker } from '../campaign/worker.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { createStorage, type Storage } from '../storage/index.js';
import { addEnqueueOptions, type EnqueueFlags, enqueueFromFlags, printEnqueueResult } from './campaign.js';
import {
  cliConfig,
  type GlobalFlags,
  parseConcurrency,
  parseInterval,
  runLogger,
  UsageError,
  withLocalRedis,
} from './context.js';
import { followCampaign, Interrupt, isSettled, printSettled } from './progress.js';

export interface RunFlags extends EnqueueFlags, GlobalFlags {
  concurrency?: string;
  output?: string;
  progressInterval?: string;
}

export interface RunPlan {
  /** With the Redis from withLocalRedis. */
  config: Config;
  redis: Redis;
  /** A file or `-`. */
  input: string;
  flags: EnqueueFlags;
  /** Jobs in flight in this process. Default 8. */
  concurrency?: number;
  /** Also write the manifest to this local file (`.jsonl`: JSON lines, else CSV). */
  output?: string;
  progressIntervalMs?: number;
  logger: Logger;
}

export interface RunResult {
  /** The process exit code: 0 every row done, 1 rows failed or the campaign stopped, 128+n on signal n. */
  code: number;
  status: CampaignStatus;
  /** The storage's bucket and prefix, or its folder. */
  storage: string;
}

async function writeManifestFile(store: CampaignStore, storage: Storage, campaign: string, file: string) {
  const meta = await loadCampaign(store, campaign);
  const format = file.endsWith('.jsonl') ? 'jsonl' : 'csv';
  const text = manifestText(recordSource(store, storage), storage, meta, format);
  await pipeline(Readable.from(text), createWriteStream(file));
}

/** Said before any work rather than after the campaign: appending nothing keeps an existing file as it is. */
async function checkOutput(file: string): Promise<void> {
  try {
    await (await open(file, 'a')).close();
  } catch (err) {
    throw new UsageError(`cannot write --output ${file} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** Enqueue, work in this process until the campaign settles (or a signal), report. */
export async function runCampaign(plan: RunPlan): Promise<RunResult> {
  const { config, redis, flags } = plan;
  const campaign = flags.campaign;
  if (plan.output) await checkOutput(plan.output);
  const enqueued = await enqueueFromFlags(config, redis, plan.input, flags);
  printEnqueueResult(enqueued);
  const store = new CampaignStore(redis, config.prefix);
  const storage = createStorage(config, { logger: plan.logger });
  const poll = () => campaignStatus(store, campaign, storage);
  let status = await poll();
  const interrupt = new Interrupt();
  try {
    if (!isSettled(status)) {
      const worker = await CodeWorker.start({
        config,
        apps: [status.appid],
        concurrency: plan.concurrency,
        logger: plan.logger,
      });
      try {
        void worker.stopped.then(() => interrupt.abort());
        status = await followCampaign({
          poll,
          intervalMs: plan.progressIntervalMs,
          signal: interrupt.signal,
        });
        if (interrupt.received) {
          process.stderr.write(
            `${interrupt.received}: finishing the codes in flight (again to quit at once)…\n`,
          );
        }
      } finally {
        await worker.close();
      }
    }
    status = await poll();
    // The worker that completes a campaign stores its manifest; when that was another process still writing
    // it, or a campaign that had nothing left to do, store it here.
    if (await new CampaignLifecycle(store, storage).ensureManifest(campaign)) status = await poll();
    if (plan.output) {
      await writeManifestFile(store, storage, campaign, plan.output);
      process.stdout.write(`manifest written to ${plan.output}\n`);
    }
  } finally {
    await storage.close();
  }

  if (interrupt.received && !isSettled(status)) {
    process.stderr.write(
      `interrupted: ${status.done} done, ${status.failed} failed, ${status.pending} still queued of ${status.total}. ` +
        'Run the same command again to resume.\n',
    );
    return { code: interrupt.exitCode, status, storage: storage.description };
  }
  if (!isSettled(status)) {
    const refused = await store.appStop(status.appid, 'credentials');
    process.stderr.write(
      `WeChat refused app ${status.appid} (errcode ${refused?.errcode}: ${refused?.errmsg}); ` +
        `${status.pending} rows stay queued. Fix the app's credentials and run the same command again.\n`,
    );
    return { code: 1, status, storage: storage.description };
  }
  const code = printSettled(status, 'run the same command again');
  return { code, status, storage: storage.description };
}

export function registerRunCommand(program: Command): void {
  addEnqueueOptions(
    program
      .command('run')
      .summary('enqueue a file, generate its codes in this process, and wait for the manifest')
      .argument('<file>', 'CSV, JSONL or TXT file, or - for standard input'),
  )
    .option('--concurrency <n>', 'jobs in flight in this process (default 8)')
    .option('-o, --output <file>', 'also write the manifest to this file (.jsonl for JSON lines, else CSV)')
    .option('--progress-interval <s>', 'seconds between progress lines when stderr is not a terminal', '5')
    .addHelpText(
      'after',
      `
Shows a progress bar on a terminal (plain lines every --progress-interval seconds otherwise), prints where the
manifest is stored, and exits 0 when every row is done, 1 when rows failed or the campaign stopped, 2 on bad
usage, configuration or input. On SIGINT/SIGTERM the codes in flight are finished and stored, the rest stay
queued, and the command exits 130 (SIGINT) or 143 (SIGTERM): run the same command again to resume.

Without REDIS_URL, it uses a Redis answering on 127.0.0.1:6379, else starts a private redis-server with its
data in ./.wxacode/redis/ (kept between runs, so an interrupted run resumes) and stops it at the end.

Examples:
  wxacode run scenes.csv --campaign spring-2026 --page pages/item/detail --width 600
  wxacode run paths.txt --campaign shelf --kind qrcode --output manifest.csv
  REDIS_URL=redis://10.0.0.5:6379 wxacode run scenes.csv --campaign spring-2026 --concurrency 16`,
    )
    .action(async (file: string, flags: RunFlags, command: Command) => {
      const config = cliConfig();
      const logger = runLogger(command.optsWithGlobals<GlobalFlags>());
      const concurrency = parseConcurrency(flags.concurrency);
      const progressIntervalMs = parseInterval('--progress-interval', flags.progressInterval);
      const result = await withLocalRedis(config, {}, (config, redis) =>
        runCampaign({
          config,
          redis,
          input: file,
          flags,
          concurrency,
          output: flags.output,
          progressIntervalMs,
          logger,
        }),
      );
      process.exitCode = result.code;
    });
}
