/**
 * `wxacode mock-server`: run the mock WeChat API until SIGINT/SIGTERM. Prints one JSON line with its URL on
 * stdout, so a script can start it and read where it listens; logs go to stderr.
 */
import type { Command } from 'commander';
import { parseRateLimit } from '../config.js';
import { FAULT_KINDS, type MockFaults, type MockOptions } from '../mock/options.js';
import { startMockServer } from '../mock/server.js';
import { cliLogger, type GlobalFlags, parseInteger, UsageError, untilSignal } from './context.js';

interface MockServerFlags {
  host: string;
  port: string;
  apps?: string;
  rate: string;
  publishedPages?: string;
  acTotal?: string;
  busy?: string;
  html502?: string;
  drop?: string;
  slow?: string;
  slowMs?: string;
  empty?: string;
  truncated?: string;
  seed?: string;
}

const EXAMPLE = `
Examples:
  # a mock on port 8080 with a 250/10s cap, 5% busy answers and 1% dropped connections
  wxacode mock-server --port 8080 --rate 250/10s --busy 0.05 --drop 0.01 --seed 7
  # then, in another shell, point the worker at it
  WECHAT_API_BASE_URL=http://127.0.0.1:8080 WECHAT_APPID=wxmock00000000001 WECHAT_SECRET=mock-secret \\
    wxacode worker`;

function parseFraction(name: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value <= 1)) {
    throw new UsageError(`${name} must be a fraction from 0 to 1, got "${text}"`);
  }
  return value;
}

function parseApps(text: string): Record<string, string> {
  const apps: Record<string, string> = {};
  for (const [i, entry] of text
    .split(',')
    .map((part) => part.trim())
    .entries()) {
    const colon = entry.indexOf(':');
    // Without a colon the whole entry may be a secret (`wx…=SECRET`): name it by its position. With one, name
    // the appid only: the rest is the secret.
    if (colon === -1) throw new UsageError(`--apps entry ${i + 1} is not appid:secret`);
    if (colon === 0 || colon === entry.length - 1) {
      throw new UsageError(`--apps entry "${entry.slice(0, colon)}" is not appid:secret`);
    }
    apps[entry.slice(0, colon)] = entry.slice(colon + 1);
  }
  return apps;
}

/** The mock's options from the command's flags; a bad flag is a UsageError naming it. */
function mockOptionsFromFlags(flags: MockServerFlags): MockOptions {
  const options: MockOptions = { host: flags.host, port: parseInteger('--port', flags.port, 0, 65_535) };
  if (flags.apps !== undefined) options.apps = parseApps(flags.apps);
  if (flags.rate.trim() !== 'none') {
    const rate = parseRateLimit(flags.rate);
    if (!rate) {
      throw new UsageError(
        `--rate must be <count>/<duration> (e.g. 5000/60s, 250/2500ms) or none, got "${flags.rate}"`,
      );
    }
    options.rateLimit = rate;
  } else {
    options.rateLimit = null;
  }
  if (flags.publishedPages !== undefined) {
    options.publishedPages = flags.publishedPages
      .split(',')
      .map((page) => page.trim())
      .filter(Boolean);
  }
  if (flags.acTotal !== undefined) {
    options.acTotalLimit = parseInteger('--ac-total', flags.acTotal, 0, Number.MAX_SAFE_INTEGER);
  }
  const faults: MockFaults = {};
  for (const key of FAULT_KINDS) {
    const text = flags[key];
    if (text !== undefined) faults[key] = parseFraction(`--${key}`, text);
  }
  if (flags.slowMs !== undefined) faults.slowMs = parseInteger('--slow-ms', flags.slowMs, 0, 3_600_000);
  if (flags.seed !== undefined) faults.seed = parseInteger('--seed', flags.seed, 0, 2 ** 32 - 1);
  options.faults = faults;
  return options;
}

export function registerMockServer(program: Command): void {
  program
    .command('mock-server')
    .description('Run a fake WeChat API (tokens, the three code endpoints, quotas, faults) until stopped.')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on; 0 picks a free one', '0')
    .option('--apps <list>', 'appid:secret pairs, comma separated (default wxmock00000000001:mock-secret)')
    .option('--rate <rate>', 'per-app cap on the code endpoints, <count>/<duration> or none', '5000/60s')
    .option(
      '--published-pages <pages>',
      'pages of the published version, comma separated (default: all exist)',
    )
    .option('--ac-total <n>', 'distinct A + C codes per app, ever (default 100000)')
    .option('--busy <fraction>', 'fraction of code calls answered errcode -1 (system busy)')
    .option('--html502 <fraction>', 'fraction answered with an HTML 502 page')
    .option('--drop <fraction>', 'fraction whose connection is dropped without an answer')
    .option('--slow <fraction>', 'fraction answered after --slow-ms')
    .option('--slow-ms <ms>', 'delay of slow answers (default 2000)')
    .option('--empty <fraction>', 'fraction answered with an empty image/jpeg body')
    .option('--truncated <fraction>', 'fraction answered with half a JPEG')
    .option('--seed <n>', 'seed of the fault draws, for repeatable runs')
    .addHelpText('after', EXAMPLE)
    .action(async (flags: MockServerFlags, command: Command) => {
      const options = mockOptionsFromFlags(flags);
      const logger = cliLogger(command.optsWithGlobals<GlobalFlags>());
      const mock = await startMockServer({ ...options, logger });
      const stopped = untilSignal();
      process.stdout.write(`${JSON.stringify({ url: mock.url })}\n`);
      const signal = await stopped;
      logger.info({ signal }, 'stopping the mock WeChat API');
      await mock.close();
    });
}
