/**
 * The `wxacode` command line: a thin shell that parses flags, builds the config and calls the library.
 * Exit codes: 0 ok, 1 failed rows (or a run that could not finish), 2 bad usage or config.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config.js';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** A mistake in how the command was called, reported in one line with exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function buildProgram(): Command {
  const program = new Command('wxacode')
    .description('Pre-generate WeChat mini program codes in bulk, at the per-app cap, into S3 or a folder.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`wxacode: ${err.message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
}
