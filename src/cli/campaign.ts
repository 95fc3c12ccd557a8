/** `wxacode enqueue | status | export | retry`: campaign commands over the library in src/campaign/. */

import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { type Command, Option } from 'commander';
import type { Redis } from 'ioredis';
import { type ManifestFormat, writeManifestTo } from '../campaign/manifest.js';
import {
  allCampaignStatuses,
  type CampaignStatus,
  campaignStatus,
  loadCampaign,
  retryCampaign,
} from '../campaign/operations.js';
import { type EnqueueResult, enqueueCampaign } from '../campaign/producer.js';
import { SOURCE_FORMATS, type SourceFormat } from '../campaign/source.js';
import { CampaignStore } from '../campaign/store.js';
import { type Config, pickApp } from '../config.js';
import { createStorage } from '../storage/index.js';
import {
  type CodeOptions,
  codeOptions,
  codeOptionsProblems,
  ENV_VERSIONS,
  type EnvVersion,
  KINDS,
  type Kind,
  type Rgb,
} from '../wechat/params.js';
import { cliConfig, connectRedis, UsageError } from './context.js';

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
}

function parseColor(text: string): Rgb {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length !== 3 || parts.some((p) => !/^\d{1,3}$/.test(p))) {
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
    width: flags.width === undefined ? undefined : Number(flags.width),
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
    .option('--skip-invalid', 'enqueue the valid rows even when some are invalid');
}

export function printEnqueueResult(result: EnqueueResult): void {
  process.stdout.write(
    `campaign ${result.campaign}: enqueued ${result.enqueued}, duplicates ${result.duplicates}, invalid ${result.invalid}; ` +
      `${result.total} rows in the campaign (${result.state})\n`,
  );
}

/** Enqueue from flags; invalid rows are listed on stderr as they are found. */
export async function enqueueFromFlags(
  config: Config,
  redis: Redis,
  input: string,
  flags: EnqueueFlags,
): Promise<EnqueueResult> {
  const options = codeOptionsFromFlags(flags);
  const appid = pickApp(config, flags.app);
  return enqueueCampaign({
    redis,
    prefix: config.prefix,
    campaign: flags.campaign,
    appid,
    options,
    input,
    format: flags.format,
    column: flags.column,
    skipInvalid: flags.skipInvalid,
    storage: createStorage(config),
    onInvalid: ({ line, problem }) =>
      process.stderr.write(`${input === '-' ? 'stdin' : input}:${line}: ${problem}\n`),
  });
}

function formatStatus(s: CampaignStatus): string {
  const lines = [
    `campaign ${s.campaign} (${s.kind}, app ${s.appid}): ${s.state}`,
    `  ${s.done} done, ${s.failed} failed, ${s.pending} pending of ${s.total}`,
  ];
  if (s.stopped) lines.push(`  stopped by errcode ${s.stopped.errcode}: ${s.stopped.errmsg}`);
  if (s.manifest) lines.push(`  manifest: ${s.manifest}`);
  return `${lines.join('\n')}\n`;
}

async function withStore<T>(
  fn: (store: CampaignStore, redis: Redis, config: Config) => Promise<T>,
): Promise<T> {
  const config = cliConfig();
  const redis = await connectRedis(config.redisUrl);
  try {
    return await fn(new CampaignStore(redis, config.prefix), redis, config);
  } finally {
    redis.disconnect();
  }
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
Rows already in the campaign are counted as duplicates and queued once.

Examples:
  wxacode enqueue scenes.csv --campaign spring-2026 --page pages/item/detail --width 600
  cut -d, -f1 ids.csv | wxacode enqueue - --format txt --campaign posters --kind unlimited
  wxacode enqueue paths.jsonl --campaign shelf --kind qrcode --column link`,
    )
    .action(async (file: string, flags: EnqueueFlags) => {
      const config = cliConfig();
      const redis = await connectRedis(config.redisUrl);
      try {
        printEnqueueResult(await enqueueFromFlags(config, redis, file, flags));
      } finally {
        redis.disconnect();
      }
    });

  program
    .command('status')
    .summary('show how far a campaign (or every campaign) has come')
    .argument('[campaign]', 'campaign id (default: all campaigns)')
    .option('--json', 'print JSON: {campaign, state, total, done, failed, pending, stopped?, manifest?}')
    .addHelpText('after', '\nExamples:\n  wxacode status\n  wxacode status spring-2026 --json')
    .action(async (campaign: string | undefined, flags: { json?: boolean }) => {
      await withStore(async (store, _redis, config) => {
        const storage = createStorage(config);
        const statuses = campaign
          ? [await campaignStatus(store, campaign, storage)]
          : await allCampaignStatuses(store, storage);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(campaign ? statuses[0] : statuses, null, 2)}\n`);
        } else if (statuses.length === 0) {
          process.stdout.write(`no campaigns under prefix ${config.prefix}\n`);
        } else {
          process.stdout.write(statuses.map(formatStatus).join(''));
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
      '\nExamples:\n  wxacode export spring-2026 > manifest.csv\n  wxacode export spring-2026 --format jsonl --output manifest.jsonl',
    )
    .action(async (campaign: string, flags: { format: ManifestFormat; output?: string }) => {
      await withStore(async (store, _redis, config) => {
        const meta = await loadCampaign(store, campaign);
        const out = flags.output ? createWriteStream(flags.output) : process.stdout;
        const write = async (text: string) => {
          if (!out.write(text)) await once(out, 'drain');
        };
        await writeManifestTo(store, createStorage(config), meta, flags.format, write);
        if (flags.output) {
          out.end();
          await once(out, 'finish');
        }
      });
    });

  program
    .command('retry')
    .summary('queue the failed rows again, and resume a stopped campaign once its cause is fixed')
    .argument('<campaign>', 'campaign id')
    .addHelpText('after', '\nExample:\n  wxacode retry spring-2026')
    .action(async (campaign: string) => {
      await withStore(async (store, redis) => {
        const result = await retryCampaign(store, redis, campaign);
        const resumed = result.resumedFrom ? ` (resumed after errcode ${result.resumedFrom.errcode})` : '';
        process.stdout.write(`campaign ${campaign}: ${result.requeued} rows queued again${resumed}\n`);
      });
    });
}
