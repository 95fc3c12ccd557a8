/**
 * The `wxacode` command line: a thin shell that parses flags, builds the config and calls the library.
 * Every failure ends in one sentence on stderr naming what is at fault, and one of the exit codes below.
 */
import { Command, CommanderError } from 'commander';
import { UnknownCampaignError } from '../campaign/operations.js';
import { EnqueueError } from '../campaign/producer.js';
import { SourceError } from '../campaign/source.js';
import { ConfigError } from '../config.js';
import { StorageError } from '../storage/index.js';
import { isWechatError } from '../wechat/errors.js';
import { registerCampaignCommands } from './campaign.js';
import { registerCampaignsCommands } from './campaigns.js';
import { ServiceError, UsageError } from './context.js';
import { registerDemoCommand } from './demo.js';
import { registerMockServer } from './mock-server.js';
import { registerQuotaCommand } from './quota.js';
import { registerRunCommand } from './run.js';
import { registerServeCommand } from './serve.js';
import { registerWatchCommand } from './watch.js';
import { registerWorkerCommand } from './worker.js';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

const USAGE_ERRORS = [ConfigError, UsageError, EnqueueError, SourceError, UnknownCampaignError];

const PROGRAM_HELP = `
Configuration comes from environment variables (REDIS_URL, WECHAT_APPID, WECHAT_SECRET, WXACODE_STORAGE, ...);
the README's configuration table lists them all. LOG_LEVEL=debug, DEBUG=1 or --verbose for more detail.

Exit codes:
  0  ok
  1  rows failed, or a service (Redis, storage, WeChat) failed or is unreachable
  2  bad usage, configuration or input (a flag, a setting, a file, a row, an unknown campaign)

Examples:
  wxacode demo
  wxacode enqueue scenes.csv --campaign spring-2026 --page pages/item/detail
  wxacode worker --concurrency 16
  wxacode status spring-2026`;

const PREFIX = 'wxacode: ';

function fail(message: string): void {
  process.stderr.write(`${PREFIX}${message}\n`);
}

export function buildProgram(): Command {
  const program = new Command('wxacode')
    .description('Pre-generate WeChat mini program codes in bulk, at the per-app cap, into S3 or a folder.')
    .option('-v, --verbose', 'debug logs, and stack traces for unexpected errors')
    .addHelpText('after', PROGRAM_HELP)
    // Commander's own errors (unknown option, missing argument) read like ours; subcommands inherit this.
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, PREFIX)) })
    .exitOverride();
  registerDemoCommand(program);
  registerRunCommand(program);
  registerCampaignCommands(program);
  registerCampaignsCommands(program);
  registerWatchCommand(program);
  registerQuotaCommand(program);
  registerWorkerCommand(program);
  registerMockServer(program);
  registerServeCommand(program);
  program.showHelpAfterError(`(run "wxacode --help" for usage)`);
  for (const command of program.commands) {
    command.showHelpAfterError(`(run "wxacode ${command.name()} --help" for usage)`);
  }
  return program;
}

/**
 * Note when the reader of our output goes away (`wxacode export c | head`). Without a listener, the EPIPE that
 * follows would crash the process with a stack trace; with it, the command ends quietly, as Unix tools do.
 */
function watchStdout(): () => boolean {
  let closed = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') closed = true;
  });
  return () => closed;
}

export async function main(argv: string[]): Promise<number> {
  const stdoutClosed = watchStdout();
  // The SDK warns on Node 20 about its releases of 2027; this project supports Node 20 (package.json engines),
  // and the multi-line warning would bury the one line an operator needs to read.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError) {
      for (const problem of err.problems) fail(`${problem.setting}: ${problem.message}`);
      return EXIT.usage;
    }
    if (USAGE_ERRORS.some((type) => err instanceof type)) {
      fail((err as Error).message);
      return EXIT.usage;
    }
    if (err instanceof ServiceError || err instanceof StorageError || isWechatError(err)) {
      fail(err.message);
      return EXIT.failed;
    }
    if ((err as NodeJS.ErrnoException).code === 'EPIPE' && stdoutClosed()) return EXIT.ok;
    const verbose = program.opts().verbose || process.env.DEBUG;
    fail(`unexpected error: ${verbose ? (err as Error).stack : (err as Error).message}`);
    return EXIT.failed;
  }
}
