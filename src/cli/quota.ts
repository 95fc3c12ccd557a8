/** `wxacode quota [set]`: what each app has spent of WeChat's quotas, from the ledger (campaign/ledger.ts). */
import { Argument, type Command } from 'commander';
import type { Redis } from 'ioredis';
import {
  type AppUsage,
  formatCount,
  QuotaDeclarationError,
  QuotaLedger,
  SOURCES,
} from '../campaign/ledger.js';
import { CampaignStore } from '../campaign/store.js';
import { type Config, formatRateLimit, pickApp, workerApps } from '../config.js';
import { cliConfig, connectRedis, parseInteger, UsageError } from './context.js';

interface QuotaFlags {
  app?: string;
  json?: boolean;
  acUsed?: string;
}

export function formatUsage(u: AppUsage): string {
  const { ac, b } = u;
  const lines = [
    `app ${u.appid}`,
    `  A + C codes: ${formatCount(ac.used)} used of ${formatCount(ac.limit)}, ${formatCount(ac.left)} left`,
    `    ${formatCount(ac.counted)} counted here: ${SOURCES.counted}`,
    `    ${formatCount(ac.declared)} declared: ${ac.declaredAt ? `${SOURCES.declared} at ${ac.declaredAt}` : 'none recorded with `wxacode quota set`'}`,
    `    ${formatCount(ac.limit)} limit: ${SOURCES.limit}`,
  ];
  if (ac.seen45029) {
    lines.push(
      `    0 left since ${ac.seen45029.at}: ${SOURCES.seen45029} (${ac.seen45029.errmsg})`,
      `    if that was wrong, record the figure WeChat reports: wxacode quota set --app ${u.appid} --ac-used N`,
    );
  }
  lines.push(
    `  B calls: ${formatCount(b.today)} today (${b.day}, Beijing), ${formatCount(b.lastHour)} in the last hour: ${SOURCES.b}`,
  );
  return `${lines.join('\n')}\n`;
}

/**
 * How long the rows left in an app's running campaigns take at the configured cap: what a B campaign costs.
 * Rows whose code is stored already make no call, so this is the longest it takes.
 */
export async function queuedTime(config: Config, redis: Redis, appid: string): Promise<string> {
  const store = new CampaignStore(redis, config.prefix);
  let rows = 0;
  for (const id of await store.feeding(appid)) {
    const meta = await store.get(id);
    if (meta && meta.state !== 'stopped') rows += meta.total - meta.done - meta.failed;
  }
  const rate = config.rateLimit;
  const seconds = Math.ceil((rows * rate.durationMs) / rate.count / 1000);
  return (
    `app ${appid}: ${formatCount(rows)} codes to go, about ${formatDuration(seconds)} at ${formatRateLimit(rate)} ` +
    '(codes already stored take no call)'
  );
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function registerQuotaCommand(program: Command): void {
  program
    .command('quota')
    .summary("show what each app has spent of WeChat's quotas; `quota set` records codes made elsewhere")
    .addArgument(
      new Argument('[action]', 'set: record how many A + C codes the app has used').choices(['set']),
    )
    .option('--app <appid>', 'the app (default: every configured app; for set, the only one)')
    .option('--json', 'print JSON: [{appid, ac: {limit, used, left, counted, declared, ...}, b: {...}}]')
    .option('--ac-used <n>', 'with set: A + C codes the app has used in all, as known now')
    .addHelpText(
      'after',
      `
A and C codes share a lifetime limit of 100 000 per app; this deployment counts the distinct ones WeChat returns
to it. Codes made elsewhere (another system, the WeChat console) are invisible to it: \`quota set\` records the
app's total as known now (WeChat's Num-Used), and codes counted afterwards add to it.

Examples:
  wxacode quota
  wxacode quota --app wx0123456789abcdef --json
  wxacode quota set --app wx0123456789abcdef --ac-used 8800`,
    )
    .action(async (action: 'set' | undefined, flags: QuotaFlags) => {
      const config = cliConfig();
      if (action === undefined && flags.acUsed !== undefined) {
        throw new UsageError('--ac-used goes with `wxacode quota set`');
      }
      if (action === 'set' && flags.acUsed === undefined) {
        throw new UsageError('`wxacode quota set` needs --ac-used N');
      }
      const total = flags.acUsed === undefined ? 0 : parseInteger('--ac-used', flags.acUsed, 0, 10_000_000);
      const apps =
        action === 'set'
          ? [pickApp(config, flags.app)]
          : workerApps(config, flags.app === undefined ? undefined : [flags.app]);
      const redis = await connectRedis(config.redisUrl);
      try {
        const ledger = new QuotaLedger(redis, config.prefix);
        let usages: AppUsage[];
        if (action === 'set') {
          try {
            usages = [await ledger.declareAcUsed(apps[0]!, total)];
          } catch (err) {
            if (err instanceof QuotaDeclarationError) throw new UsageError(err.message);
            throw err;
          }
        } else {
          usages = await Promise.all(apps.map((appid) => ledger.usage(appid)));
        }
        process.stdout.write(
          flags.json ? `${JSON.stringify(usages, null, 2)}\n` : usages.map(formatUsage).join(''),
        );
      } finally {
        redis.disconnect();
      }
    });
}
