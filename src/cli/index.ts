/**
 * The `wxacode` command line: a thin shell that parses flags, builds the config and calls the library.
 * Exit codes: 0 ok, 1 failed rows (or a run that could not finish), 2 bad usage or config.
 */
import { Command, CommanderError } from 'commander';
import { UnknownCampaignError } from '../campaign/operations.js';
import { EnqueueError } from '../campaign/producer.js';
import { SourceError } from '../campaign/source.js';
import { ConfigError } from '../config.js';
import { StorageError } from '../storage/index.js';
import { isWechatError } from '../wechat/errors.js';
import { registerCampaignCommands } from './campaign.js';
import { ServiceError, UsageError } from './context.js';
import { registerMockServer } from './mock-server.js';
import { registerWorkerCommand } from './worker.js';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

const USAGE_ERRORS = [ConfigError, UsageError, EnqueueError, SourceError, UnknownCampaignError];

export function buildProgram(): Command {
  const program = new Command('wxacode')
    .description('Pre-generate WeChat mini program codes in bulk, at the per-app cap, into S3 or a folder.')
    .showHelpAfterError('(run with --help for usage)')
    .option('-v, --verbose', 'debug logs, and stack traces for unexpected errors')
    .exitOverride();
  registerCampaignCommands(program);
  registerWorkerCommand(program);
  registerMockServer(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (USAGE_ERRORS.some((type) => err instanceof type)) {
      process.stderr.write(`wxacode: ${(err as Error).message}\n`);
      return EXIT.usage;
    }
    if (err instanceof ServiceError || err instanceof StorageError || isWechatError(err)) {
      process.stderr.write(`wxacode: ${err.message}\n`);
      return EXIT.failed;
    }
    const verbose = program.opts().verbose || process.env.DEBUG;
    process.stderr.write(
      `wxacode: unexpected error: ${verbose ? (err as Error).stack : (err as Error).message}\n`,
    );
    return EXIT.failed;
  }
}
