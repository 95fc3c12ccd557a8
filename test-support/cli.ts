/** Run the CLI from source in a child process, as a user would run `wxacode`. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ENTRY = path.resolve(import.meta.dirname, '../src/cli/main.ts');
// Resolved here rather than from the child's working directory, so the CLI can run in any folder (`cwd`).
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function spawnCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string } = {},
): ChildProcess {
  return spawn(process.execPath, ['--import', TSX, ENTRY, ...args], {
    cwd: options.cwd,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export interface RunningCli {
  child: ChildProcess;
  /** What it has written so far. */
  output: { stdout: string; stderr: string };
  /** Settles when it exits, with everything it wrote. */
  done: Promise<CliResult>;
}

/** Start it and collect its output, for a test that acts while it runs; `input` is its standard input. */
export function startCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; input?: string } = {},
): RunningCli {
  const child = spawnCli(args, options);
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => {
    output.stdout += d;
  });
  child.stderr!.on('data', (d) => {
    output.stderr += d;
  });
  child.stdin!.end(options.input ?? '');
  const done = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, ...output })),
  );
  return { child, output, done };
}

/** Run to completion; `input` is written to its standard input. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; input?: string } = {},
): Promise<CliResult> {
  return startCli(args, options).done;
}
