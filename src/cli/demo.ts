/**
 * `wxacode demo`: the whole pipeline on this machine against the built-in mock WeChat API, so a newcomer sees
 * codes appear in a folder within seconds of `npm ci`. It is `run` with the mock on a free port, a generated
 * scene list and the mock's own app: whatever WECHAT_* says, a demo never calls the real WeChat.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { CampaignStore } from '../campaign/store.js';
import { LOCAL_STATE_DIR } from '../local-redis.js';
import { DEFAULT_MOCK_APPS } from '../mock/options.js';
import { startMockServer } from '../mock/server.js';
import { objectKey } from '../storage/index.js';
import { codeOptionsFromFlags, type EnqueueFlags } from './campaign.js';
import {
  cliConfig,
  type GlobalFlags,
  parseConcurrency,
  parseInteger,
  runLogger,
  withLocalRedis,
} from './context.js';
import { runCampaign } from './run.js';

/** Fast enough that 200 codes appear in a few seconds, slow enough to watch the bar move. */
export const DEMO_RATE = '600/10s';

const SCENES_FILE = path.join(LOCAL_STATE_DIR, 'demo-scenes.csv');

interface DemoFlags extends GlobalFlags {
  scenes: string;
  out?: string;
  concurrency?: string;
}

/** `demo-0001`, `demo-0002`… */
export function demoScenes(count: number): string[] {
  const digits = Math.max(4, String(count).length);
  return Array.from({ length: count }, (_, i) => `demo-${String(i + 1).padStart(digits, '0')}`);
}

/**
 * The newest demo campaign that did not finish, so an interrupted demo resumes; else a new one named by the
 * time. A finished demo is not reused: its codes may have been deleted since, and a new campaign regenerates
 * exactly those (the ones still stored cost no call).
 */
export async function demoCampaign(store: CampaignStore, now = new Date()): Promise<string> {
  const ids = (await store.list()).filter((id) => id.startsWith('demo-'));
  for (const id of ids.reverse()) {
    const state = await store.state(id);
    if (state === 'active' || state === 'enqueuing') return id;
  }
  return `demo-${now.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')}`;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .summary('generate codes into a folder against the built-in mock WeChat API: no account needed')
    .option('--scenes <n>', 'how many codes to generate', '200')
    .option('--out <dir>', 'where the codes go (default WXACODE_STORAGE, else ./wxacode-out)')
    .option('--concurrency <n>', 'jobs in flight (default 16)')
    .addHelpText(
      'after',
      `
Starts the mock WeChat API on a free port, writes a scene list to ${SCENES_FILE}, and runs it as
\`wxacode run\` would, at ${DEMO_RATE} unless WXACODE_RATE_LIMIT says otherwise. Redis as for \`run\`: REDIS_URL, or
127.0.0.1:6379, or a private redis-server with its data in ./.wxacode/redis/. Interrupted (Ctrl-C, exit 130),
it resumes the same demo campaign when run again; once finished, the next demo is a new campaign, whose codes
still in the folder cost no call.

Examples:
  wxacode demo
  wxacode demo --scenes 2000 --out /tmp/codes`,
    )
    .action(async (flags: DemoFlags, command: Command) => {
      const count = parseInteger('--scenes', flags.scenes, 1, 100_000);
      const concurrency = parseConcurrency(flags.concurrency) ?? 16;
      const logger = runLogger(command.optsWithGlobals<GlobalFlags>());
      const [appid, secret] = Object.entries(DEFAULT_MOCK_APPS)[0]!;
      const mock = await startMockServer({ rateLimit: null, logger });
      try {
        // Empty values switch off any other app configured in the environment: the demo has exactly one.
        const config = cliConfig({
          WECHAT_APPID: appid,
          WECHAT_SECRET: secret,
          WECHAT_APPS: '',
          WECHAT_APPS_FILE: '',
          WECHAT_API_BASE_URL: mock.url,
          WXACODE_RATE_LIMIT: process.env.WXACODE_RATE_LIMIT || DEMO_RATE,
          WXACODE_STORAGE: flags.out,
        });
        mock.configure({ rateLimit: config.rateLimit });
        const scenes = demoScenes(count);
        await mkdir(LOCAL_STATE_DIR, { recursive: true });
        await writeFile(SCENES_FILE, `scene\n${scenes.join('\n')}\n`);
        const started = Date.now();
        const result = await withLocalRedis(config, {}, async (config, redis) => {
          const enqueue: EnqueueFlags = {
            campaign: await demoCampaign(new CampaignStore(redis, config.prefix)),
            kind: 'unlimited',
            checkPath: true,
          };
          const run = await runCampaign({
            config,
            redis,
            input: SCENES_FILE,
            flags: enqueue,
            concurrency,
            logger,
          });
          const sample = objectKey({ appid, options: codeOptionsFromFlags(enqueue), value: scenes[0]! });
          return { ...run, folder: `${run.storage}/${path.posix.dirname(sample)}/` };
        });
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        process.stdout.write(
          `codes: ${result.folder} (the mock WeChat API generated ${mock.stats(appid).images} in ${seconds} s; ` +
            'codes already stored cost no call)\n' +
            'next, with your own mini program: WECHAT_APPID=wx... WECHAT_SECRET=... wxacode run scenes.csv --campaign NAME --page pages/...\n',
        );
        process.exitCode = result.code;
      } finally {
        await mock.close();
      }
    });
}
