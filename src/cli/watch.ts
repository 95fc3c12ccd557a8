/** `wxacode watch`: the progress of a campaign a fleet is working on, until it settles. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { campaignStatus } from '../campaign/operations.js';
import { CampaignStore } from '../campaign/store.js';
import { createStorage } from '../storage/index.js';
import { cliConfig, parseInterval, withLocalRedis } from './context.js';
import { followCampaign, Interrupt, printSettled } from './progress.js';

/** The worker that completes a campaign stores its manifest a moment later: wait that long for its URL. */
const MANIFEST_WAIT_MS = 5000;

export function registerWatchCommand(program: Command): void {
  program
    .command('watch')
    .summary('show the progress of a campaign that workers are generating, until it settles')
    .argument('<campaign>', 'campaign id')
    .option('--interval <s>', 'seconds between progress lines when stderr is not a terminal', '5')
    .addHelpText(
      'after',
      `
A progress bar on a terminal (done, failed, total, codes per minute, ETA), plain lines otherwise. Exits 0 when
the campaign completes with every row done, 1 when it completes with failed rows or stops, 2 when it does not
exist, 130 on Ctrl-C. Without REDIS_URL it looks on 127.0.0.1:6379, then for a private redis-server that
\`wxacode run\` started in this folder.

Examples:
  wxacode watch spring-2026
  REDIS_URL=redis://10.0.0.5:6379 wxacode watch spring-2026 --interval 60 2>> progress.log`,
    )
    .action(async (campaign: string, flags: { interval: string }) => {
      const intervalMs = parseInterval('--interval', flags.interval);
      const config = cliConfig();
      process.exitCode = await withLocalRedis(config, { start: false }, async (config, redis) => {
        const store = new CampaignStore(redis, config.prefix);
        const storage = createStorage(config);
        try {
          const poll = () => campaignStatus(store, campaign, storage);
          const before = await poll();
          const interrupt = new Interrupt();
          let status = await followCampaign({ poll, intervalMs, signal: interrupt.signal });
          if (interrupt.received) return interrupt.exitCode;
          // Only a campaign seen completing here may still be getting its manifest.
          const justCompleted = before.state !== 'completed';
          for (
            let waited = 0;
            justCompleted && status.state === 'completed' && !status.manifest;
            waited += 250
          ) {
            if (waited >= MANIFEST_WAIT_MS) break;
            await sleep(250);
            status = await poll();
          }
          return printSettled(status, 'the workers take them up again');
        } finally {
          await storage.close();
        }
      });
    });
}
