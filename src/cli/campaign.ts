/** `wxacode enqueue | status | export | retry`: campaign commands over the library in src/campaign/. */

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { type Command, Option } from 'commander';
import type { Redis } from 'ioredis';
import { type AcPlan, acQuotaPrecheck, describeAcPlan, QuotaLedger } from '../campaign/ledger.js';
import { type ManifestFormat, recordSource, writeManifestTo } from '../campaign/manifest.js';
import {
  allCampaignStatuses,
  type CampaignStatus,
  campaignStatus,
  loadCampaign,
  retryCampaign,
} from '../campaign/operations.js';
import { type EnqueueResult, enqueueCampaign } from '../campaign/producer.js';
import { SOURCE_FORMATS, type SourceFormat } from '../campaign/source.js';
import { CampaignStore, PRIORITIES, type PriorityName } from '../campaign/store.js';
import { type Config, pickApp } from '../config.js';
import { createStorage, type Storage } from '../storage/index.js';
import {
  type CodeOptions,
  codeOptions,
  codeOptionsProblems,
  ENV_VERSIONS,
  type EnvVersion,
  KINDS,
  type Kind,
  MAX_WIDTH,
  MIN_WIDTH,
  type Rgb,
} from '../wechat/params.js';
import { cliConfig, connectRedis, parseInteger, ServiceError, UsageError } from './context.js';
import { queuedTime } from './quota.js';

export interface CodeFlags {
  kind: Kind;
  page?: string;
  width?: string;
  autoColor?: boolean;
  lineColor?: string;
  hyaline?: boolean;
  envVersion?: EnvVersion;
  checkPath: boolean;
}

export interface EnqueueFlags extends CodeFlags {
  campaign: string;
  app?: string;
  format?: SourceFormat;
  column?: string;
  skipInvalid?: boolean;
  allowOverQuota?: boolean;
  priority?: PriorityName;
}

function parseColor(text: string): Rgb {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length !== 3 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new UsageError(`--line-color must be three numbers r,g,b from 0 to 255, got "${text}"`);
  }
  const [r, g, b] = parts.map(Number) as [number, number, number];
  return { r, g, b };
}

/** The campaign options from flags, validated: every problem named in one message. */
export function codeOptionsFromFlags(flags: CodeFlags): CodeOptions {
  const options = codeOptions({
    kind: flags.kind,
    page: flags.page,
    checkPath: flags.checkPath,
    envVersion: flags.envVersion,
    width: flags.width === undefined ? undefined : parseInteger('--width', flags.width, MIN_WIDTH, MAX_WIDTH),
    autoColor: flags.autoColor,
    lineColor: flags.lineColor === undefined ? undefined : parseColor(flags.lineColor),
    isHyaline: flags.hyaline,
  });
  const problems = codeOptionsProblems(options);
  if (problems.length > 0) throw new UsageError(problems.join('; '));
  return options;
}

/** The options shared by `enqueue` and `run`. */
export function addEnqueueOptions(command: Command): Command {
  return command
    .requiredOption('-c, --campaign <id>', 'campaign id: 1-64 letters, digits, _ or -')
    .addOption(
      new Option('--kind <kind>', 'code kind: unlimited (B), code (A), qrcode (C)')
        .choices(KINDS)
        .default('unlimited'),
    )
    .option('--app <appid>', 'the app to generate for (default: the only configured app)')
    .option('--page <page>', 'B: the page the code opens, e.g. pages/index/index (default: home page)')
    .option('--width <px>', 'image width, 280-1280 (default 430)')
    .option('--auto-color', 'let WeChat pick the line colour')
    .option('--line-color <r,g,b>', 'line colour, e.g. 0,0,0')
    .option('--hyaline', 'transparent background (PNG)')
    .addOption(
      new Option('--env-version <version>', 'release, trial or develop (default release)').choices(
        ENV_VERSIONS,
      ),
    )
    .option('--no-check-path', 'B: allow pages that are not published yet')
    .addOption(
      new Option('--format <format>', 'input format (default: from the file extension)').choices(
        SOURCE_FORMATS,
      ),
    )
    .option('--column <name>', 'CSV column or JSONL field holding the value (default scene, or path for A/C)')
    .option('--skip-invalid', 'enqueue the valid rows even when some are invalid')
    .addOption(
      new Option(
        '--priority <level>',
        "high goes before the app's other campaigns; campaigns of one level share the cap (default normal)",
      ).choices(Object.keys(PRIORITIES)),
    )
    .option(
      '--allow-over-quota',
      'A/C: enqueue even when the app has fewer codes left than the campaign needs',
    );
}

/** An enqueue's result with what it will spend: A + C codes against what is left, or B time at the cap. */
export interface EnqueueReport extends EnqueueResult {
  quota?: string;
}

export function printEnqueueResult(result: EnqueueReport): void {
  process.stdout.write(
    `campaign ${result.campaign}: enqueued ${result.enqueued}, duplicates ${result.duplicates}, invalid ${result.invalid}; ` +
      `${result.total} rows in the campaign (${result.state})\n${result.quota ? `${result.quota}\n` : ''}`,
  );
}

/** What enqueue flags ask for, checked: the campaign options and the app. */
export interface EnqueueTarget {
  options: CodeOptions;
  appid: string;
}

export function enqueueTargetFromFlags(config: Config, flags: EnqueueFlags): EnqueueTarget {
  return { options: codeOptionsFromFlags(flags), appid: pickApp(config, flags.app) };
}

/**
 * Enqueue from flags; invalid rows are listed on stderr as they are found. Pass `target` when the flags were
 * checked already (before connecting to Redis, so a typo is reported as such even when Redis is down).
 */
export async function enqueueFromFlags(
  config: Config,
  redis: Redis,
  input: string,
  flags: EnqueueFlags,
  { options, appid }: EnqueueTarget = enqueueTargetFromFlags(config, flags),
): Promise<EnqueueReport> {
  // The campaign's rows are recorded in storage, where every worker reads them.
  const storage = createStorage(config);
  let plan: AcPlan | undefined;
  const precheck = acQuotaPrecheck(new QuotaLedger(redis, config.prefix), flags.campaign, appid, options, {
    allowOver: flags.allowOverQuota,
    onPlan: (p) => {
      plan = p;
      if (p.over)
        process.stderr.write(
          `warning: campaign ${flags.campaign} ${describeAcPlan(p)}; it will stop with 45029 when they run out\n`,
        );
    },
  });
  try {
    const result = await enqueueCampaign({
      redis,
      prefix: config.prefix,
      campaign: flags.campaign,
      appid,
      options,
      input,
      format: flags.format,
      column: flags.column,
      skipInvalid: flags.skipInvalid,
      priority: PRIORITIES[flags.priority ?? 'normal'],
      storage,
      precheck,
      onInvalid: ({ line, problem }) =>
        process.stderr.write(`${input === '-' ? 'stdin' : input}:${line}: ${problem}\n`),
    });
    const quota = plan ? `A + C codes: ${describeAcPlan(plan)}` : await queuedTime(config, redis, appid);
    return { ...result, quota };
  } finally {
    await storage.close();
  }
}

function formatStatus(s: CampaignStatus): string {
  const settled = s.total === 0 ? 100 : Math.floor(((s.done + s.failed) / s.total) * 100);
  const lines = [
    `campaign ${s.campaign} (${s.kind}, app ${s.appid}): ${s.state}, ${settled}% settled`,
    `  ${s.done} done, ${s.failed} failed, ${s.pending} pending of ${s.total}`,
  ];
  if (s.stopped) lines.push(`  stopped by errcode ${s.stopped.errcode}: ${s.stopped.errmsg}`);
  if (s.stopped?.errcode === 45029) {
    lines.push(`  the app's lifetime A + C codes ran out with ${s.pending} of its ${s.total} rows left`);
  }
  if (s.waitingOnStorage) {
    const w = s.waitingOnStorage;
    lines.push(`  waiting on storage since ${w.since}: ${w.error}`);
  }
  if (s.appStopped) {
    lines.push(
      `  workers stopped working for app ${s.appid}: errcode ${s.appStopped.errcode}: ${s.appStopped.errmsg}`,
    );
  }
  if (s.stopped || s.appStopped) lines.push(`  fix the cause, then run: wxacode retry ${s.campaign}`);
  else if (s.failed > 0) lines.push(`  to queue the failed rows again: wxacode retry ${s.campaign}`);
  if (s.manifest) lines.push(`  manifest: ${s.manifest}`);
  return `${lines.join('\n')}\n`;
}

interface CampaignContext {
  config: Config;
  redis: Redis;
  store: CampaignStore;
  /** For URLs only: nothing is contacted. */
  storage: Storage;
}

async function withCampaigns<T>(fn: (ctx: CampaignContext) => Promise<T>): Promise<T> {
  const config = cliConfig();
  const redis = await connectRedis(config.redisUrl);
  const storage = createStorage(config);
  try {
    return await fn({ config, redis, store: new CampaignStore(redis, config.prefix), storage });
  } finally {
    await storage.close();
    redis.disconnect();
  }
}

type Write = (text: string) => Promise<void>;

/**
 * Write to `file` through `fill`, with backpressure. The file is opened first, so a bad path is reported in one
 * sentence naming it before anything else happens; a failed write later (a full disk) names it too.
 */
async function writeToFile(file: string, fill: (write: Write) => Promise<unknown>): Promise<void> {
  const out = createWriteStream(file);
  const problem = (err: unknown) => `cannot write --output ${file} (${(err as NodeJS.ErrnoException).code})`;
  try {
    await once(out, 'open');
  } catch (err) {
    throw new UsageError(problem(err));
  }
  try {
    await fill(async (text) => {
      if (!out.write(text)) await once(out, 'drain');
    });
    out.end();
    await finished(out);
  } catch (err) {
    out.destroy();
    throw (err as NodeJS.ErrnoException).syscall === 'write' ? new ServiceError(problem(err)) : err;
  }
}

async function writeToStdout(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export function registerCampaignCommands(program: Command): void {
  addEnqueueOptions(
    program
      .command('enqueue')
      .summary('validate a list of scenes or paths and queue it as a campaign')
      .argument('<file>', 'CSV, JSONL or TXT file, or - for standard input'),
  )
    .addHelpText(
      'after',
      `
Every row is validated first; without --skip-invalid, one invalid row means nothing is enqueued.
Rows repeated in the input or already in the campaign are counted as duplicates and queued once.
Campaigns of one app share its cap in turns; --priority high puts a campaign ahead of the others.

Examples:
  wxacode enqueue scenes.csv --campaign spring-2026 --page pages/item/detail --width 600
  cut -d, -f1 ids.csv | wxacode enqueue - --format txt --campaign posters --kind unlimited
  wxacode enqueue paths.jsonl --campaign shelf --kind qrcode --column link`,
    )
    .action(async (file: string, flags: EnqueueFlags) => {
      const config = cliConfig();
      const target = enqueueTargetFromFlags(config, flags);
      const redis = await connectRedis(config.redisUrl);
      try {
        printEnqueueResult(await enqueueFromFlags(config, redis, file, flags, target));
      } finally {
        redis.disconnect();
      }
    });

  program
    .command('status')
    .summary('show how far a campaign (or every campaign) has come')
    .argument('[campaign]', 'campaign id (default: all campaigns)')
    .option('--json', 'print JSON: {campaign, state, total, done, failed, pending, stopped?, manifest?}')
    .addHelpText(
      'after',
      `
total = done + failed + pending; done counts codes stored now or found already stored.

Examples:
  wxacode status
  wxacode status spring-2026 --json`,
    )
    .action(async (campaign: string | undefined, flags: { json?: boolean }) => {
      await withCampaigns(async ({ config, store, storage }) => {
        const statuses = campaign
          ? [await campaignStatus(store, campaign, storage)]
          : await allCampaignStatuses(store, storage);
        if (flags.json) {
          await writeToStdout(`${JSON.stringify(campaign ? statuses[0] : statuses, null, 2)}\n`);
        } else if (statuses.length === 0) {
          await writeToStdout(`no campaigns under prefix ${config.prefix}\n`);
        } else {
          await writeToStdout(statuses.map(formatStatus).join(''));
        }
      });
    });

  program
    .command('export')
    .summary("write a campaign's manifest: one row per scene or path with status, url and key")
    .argument('<campaign>', 'campaign id')
    .addOption(new Option('--format <format>', 'csv or jsonl').choices(['csv', 'jsonl']).default('csv'))
    .option('-o, --output <file>', 'write to a file instead of standard output')
    .addHelpText(
      'after',
      `
Columns: scene (or path), status (done, failed or pending), url, key, errcode, errmsg.

Examples:
  wxacode export spring-2026 > manifest.csv
  wxacode export spring-2026 --format jsonl --output manifest.jsonl`,
    )
    .action(async (campaign: string, flags: { format: ManifestFormat; output?: string }) => {
      await withCampaigns(async ({ store, storage }) => {
        const meta = await loadCampaign(store, campaign);
        const fill = (write: Write) =>
          writeManifestTo(recordSource(store, storage), storage, meta, flags.format, write);
        if (flags.output) await writeToFile(flags.output, fill);
        else await fill(writeToStdout);
      });
    });

  program
    .command('retry')
    .summary('queue the failed rows again, and resume a stopped campaign once its cause is fixed')
    .argument('<campaign>', 'campaign id')
    .addHelpText(
      'after',
      `
Pending rows whose jobs were lost (a stopped campaign, an interrupted enqueue) are queued again too.

Examples:
  wxacode retry spring-2026
  wxacode status spring-2026 --json   # then watch it settle`,
    )
    .action(async (campaign: string) => {
      await withCampaigns(async ({ store, redis, storage }) => {
        const { failed } = await campaignStatus(store, campaign);
        const result = await retryCampaign(store, redis, campaign, storage);
        const resumed = result.resumedFrom ? `; resumed after errcode ${result.resumedFrom.errcode}` : '';
        // Pending rows are queued again too; those still in the queue keep their place (same job id).
        await writeToStdout(
          `campaign ${campaign}: ${result.requeued} rows queued again ` +
            `(${failed} failed, ${result.requeued - failed} pending)${resumed}\n` +
            (result.manifestStored ? `manifest stored: ${storage.url(result.manifestStored)}\n` : ''),
        );
      });
    });
}
