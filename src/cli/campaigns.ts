/** `wxacode campaigns | delete`: what campaigns Redis holds, and dropping one's records. */
import { once } from 'node:events';
import type { Command } from 'commander';
import {
  CampaignBusyError,
  type CampaignSummary,
  deleteCampaign,
  listCampaigns,
} from '../campaign/operations.js';
import { CampaignStore } from '../campaign/store.js';
import { createStorage } from '../storage/index.js';
import { cliConfig, connectRedis, UsageError } from './context.js';

async function writeToStdout(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

/** `45s`, `12m`, `5h`, `3d`: the largest unit, rounded down, as a glance at a list wants. */
export function formatAge(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

const COLUMNS: [string, (s: CampaignSummary) => string][] = [
  ['campaign', (s) => s.campaign],
  ['state', (s) => s.state],
  ['total', (s) => String(s.total)],
  ['done', (s) => String(s.done)],
  ['failed', (s) => String(s.failed)],
  ['pending', (s) => String(s.pending)],
  ['age', (s) => formatAge(s.ageSeconds)],
];

/** Text columns left-aligned, counts right-aligned, so the list reads as a table. */
export function formatCampaigns(summaries: CampaignSummary[]): string {
  const cells = [COLUMNS.map(([name]) => name), ...summaries.map((s) => COLUMNS.map(([, cell]) => cell(s)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${cells.map(line).join('\n')}\n`;
}

export function registerCampaignsCommands(program: Command): void {
  program
    .command('campaigns')
    .summary('list the campaigns in Redis with their state, counts and age')
    .option(
      '--json',
      'print JSON: [{campaign, appid, kind, state, total, done, failed, pending, createdAt, ...}]',
    )
    .addHelpText(
      'after',
      `
Oldest first; age is the time since the campaign was created.

Examples:
  wxacode campaigns
  wxacode campaigns --json`,
    )
    .action(async (flags: { json?: boolean }) => {
      const config = cliConfig();
      const redis = await connectRedis(config.redisUrl);
      try {
        const summaries = await listCampaigns(new CampaignStore(redis, config.prefix));
        if (flags.json) await writeToStdout(`${JSON.stringify(summaries, null, 2)}\n`);
        else if (summaries.length === 0) await writeToStdout(`no campaigns under prefix ${config.prefix}\n`);
        else await writeToStdout(formatCampaigns(summaries));
      } finally {
        redis.disconnect();
      }
    });

  program
    .command('delete')
    .summary("remove a campaign's records, in Redis and its record in storage (its codes and manifest stay)")
    .argument('<campaign>', 'campaign id')
    .option('--yes', 'confirm: the rows, their statuses and the queued jobs cannot be brought back')
    .option(
      '--force',
      'delete an enqueuing or active campaign too (its producers and workers lose their records)',
    )
    .addHelpText(
      'after',
      `
Removes the campaign's records: in Redis its hash, window, failed rows, producer leases, its jobs still queued
and its entry in the campaign list; in storage its record (the chunk files of its rows). Codes are never
deleted (other campaigns may share them), nor is the manifest.

Examples:
  wxacode delete spring-2026 --yes
  wxacode delete stuck-import --yes --force`,
    )
    .action(async (campaign: string, flags: { yes?: boolean; force?: boolean }) => {
      if (!flags.yes) {
        throw new UsageError(
          `delete removes campaign ${campaign}'s records for good, in Redis and its record in storage (codes and manifest stay): pass --yes to confirm`,
        );
      }
      const config = cliConfig();
      const redis = await connectRedis(config.redisUrl);
      try {
        const store = new CampaignStore(redis, config.prefix);
        const storage = createStorage(config);
        const result = await deleteCampaign(store, redis, campaign, { force: flags.force, storage })
          .catch((err) => {
            throw err instanceof CampaignBusyError ? new UsageError(err.message) : err;
          })
          .finally(() => storage.close());
        await writeToStdout(
          `campaign ${campaign} deleted: ${result.state}, ${result.rows} rows, ${result.jobsRemoved} queued jobs removed; ` +
            `its codes and manifest stay in ${storage.description}\n`,
        );
      } finally {
        redis.disconnect();
      }
    });
}
