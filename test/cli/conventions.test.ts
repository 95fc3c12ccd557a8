/**
 * CLI conventions every command keeps: help with examples, one-line errors that name what is at fault, the
 * documented exit codes (0 ok, 1 failed rows or a service, 2 bad usage, configuration or input), and no secret in
 * any output, --verbose included. Errors are provoked through the real CLI, as an operator would meet them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/index.js';
import { SETTINGS, type Setting, type Settings } from '../../src/config.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { type CliResult, runCli } from '../../test-support/cli.js';
import { freePort } from '../../test-support/redis-server.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const APPID = 'wxconventions00001';
const SECRET = 'conventions-secret';

/**
 * For tests that run the CLI: every run is a process of its own, which tsx compiles at start, seconds each on a
 * busy two-core machine.
 */
const CLI_RUNS = { timeout: 90_000 };

/** The runner's own settings must not leak into these runs. */
const CLEAN: Record<string, undefined> = Object.fromEntries(
  [...SETTINGS, 'LOG_LEVEL', 'DEBUG'].map((name) => [name, undefined]),
);

const prefix = testPrefix();
let redis: Redis;
let dir: string;

function env(extra: Settings & Record<string, string | undefined> = {}) {
  return {
    ...CLEAN,
    REDIS_URL: testRedisUrl(),
    WXACODE_PREFIX: prefix,
    WECHAT_APPID: APPID,
    WECHAT_SECRET: SECRET,
    WXACODE_STORAGE: path.join(dir, 'codes'),
    ...extra,
  };
}

async function file(name: string, content: string | Buffer): Promise<string> {
  const target = path.join(dir, name);
  await writeFile(target, content);
  return target;
}

function stderrLines(result: CliResult): string[] {
  return result.stderr.trimEnd().split('\n');
}

/** Exactly one line on stderr (so no stack trace), matching `message`, and the exit code. */
function expectOneLine(result: CliResult, code: number, message: string | RegExp): void {
  expect(result.code, result.stderr).toBe(code);
  const lines = stderrLines(result);
  expect(lines, result.stderr).toHaveLength(1);
  if (typeof message === 'string') expect(lines[0]).toBe(message);
  else expect(lines[0]).toMatch(message);
}

/** A Commander error: our prefix, the problem, and the hint to the command's help as the last line. */
function expectUsage(result: CliResult, command: string, message: string | RegExp): void {
  expect(result.code, result.stderr).toBe(2);
  const lines = stderrLines(result);
  if (typeof message === 'string') expect(lines[0]).toBe(message);
  else expect(lines[0]).toMatch(message);
  expect(lines.at(-1)).toBe(`(run "wxacode ${command}--help" for usage)`);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

beforeAll(async () => {
  redis = connect();
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-conventions-'));
});

afterAll(async () => {
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

/** The help text of `args --help`, produced in-process by the program main() runs. */
async function helpOf(args: string[]): Promise<string> {
  const program = buildProgram();
  let out = '';
  for (const command of [program, ...program.commands]) {
    command.configureOutput({
      writeOut: (text) => {
        out += text;
      },
    });
  }
  await expect(program.parseAsync([...args, '--help'], { from: 'user' })).rejects.toMatchObject({
    exitCode: 0,
  });
  return out;
}

function longFlags(command: Command): string[] {
  return command.options.map((option) => option.long).filter((long) => long !== undefined);
}

describe('help', CLI_RUNS, () => {
  const program = buildProgram();
  const globalFlags = [...longFlags(program), '--help'];

  it.each(
    program.commands.map((c) => c.name()),
  )('%s --help shows usage and runnable examples', async (name) => {
    const help = await helpOf([name]);
    expect(help).toMatch(new RegExp(`^Usage: wxacode ${name} `));
    const examples = help.split(/^Examples:\n/m)[1];
    expect(examples, `${name} --help has an "Examples:" block`).toBeDefined();
    expect(examples).toMatch(/^ {2}.*\bwxacode [a-z]/m);
    // Every flag an example uses is one the command (or the program) has, so examples do not rot.
    for (const [, used, rest] of help.matchAll(/wxacode ([a-z][a-z-]*)([^|#\n]*)/g)) {
      const command = program.commands.find((c) => c.name() === used);
      expect(command, `an example runs "wxacode ${used}", which is not a command`).toBeDefined();
      for (const [flag] of rest!.matchAll(/--[a-z][a-z-]*/g)) {
        expect([...longFlags(command!), ...globalFlags], `example of ${name}: ${used} ${flag}`).toContain(
          flag,
        );
      }
    }
  });

  it('documents the exit codes in the program help, as the README does', async () => {
    const help = await helpOf([]);
    const codes = help.split(/^Exit codes:\n/m)[1]!.split('\n\n')[0]!;
    expect(codes).toMatch(/^ {2}0 {2}ok$/m);
    expect(codes).toMatch(/^ {2}1 {2}rows failed, or a service \(Redis, storage, WeChat\)/m);
    expect(codes).toMatch(/^ {2}2 {2}bad usage, configuration or input/m);
    expect(help).toMatch(/^Examples:\n {2}wxacode /m);
    const readme = readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8').replace(
      /\s+/g,
      ' ',
    );
    expect(readme).toContain(
      'Exit codes: `0` ok, `1` rows failed or a service (Redis, storage, WeChat) failed, `2` bad usage, configuration or input.',
    );
    for (const command of program.commands) {
      expect(readme, `README's command table`).toContain(`| \`wxacode ${command.name()}`);
    }
  });

  it('exits 0 for --help and the help command, printing to stdout', async () => {
    for (const args of [['--help'], ['help', 'status']]) {
      const result = await runCli(args, { env: env() });
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stdout).toMatch(/^Usage: wxacode /);
      expect(result.stderr).toBe('');
    }
  });
});

describe('bad configuration: one line naming the setting, exit 2', CLI_RUNS, () => {
  /** A wrong value for every setting; the Record type makes a new setting fail to compile until it has one. */
  const BAD: Record<Setting, { env: Record<string, string>; says: string }> = {
    REDIS_URL: { env: { REDIS_URL: 'localhost:6379' }, says: '"localhost:6379" is not a redis://' },
    WXACODE_PREFIX: { env: { WXACODE_PREFIX: 'a:b' }, says: '"a:b" must be 1-64 characters' },
    WECHAT_APPID: {
      env: { WECHAT_APPID: '', WECHAT_SECRET: 'x' },
      says: 'is missing while WECHAT_SECRET is set',
    },
    WECHAT_SECRET: { env: { WECHAT_APPID: 'wx1', WECHAT_SECRET: '' }, says: 'appid wx1 has no secret' },
    WECHAT_APPS: { env: { WECHAT_APPS: '{"wx1": ' }, says: 'is not valid JSON' },
    WECHAT_APPS_FILE: {
      env: { WECHAT_APPS_FILE: '/nonexistent/apps.json' },
      says: 'cannot read /nonexistent/apps.json (ENOENT)',
    },
    WECHAT_API_BASE_URL: {
      env: { WECHAT_API_BASE_URL: 'ftp://api' },
      says: '"ftp://api" is not an http(s) URL',
    },
    WECHAT_TOKEN_MODE: { env: { WECHAT_TOKEN_MODE: 'shared' }, says: 'must be "stable" or "classic"' },
    WXACODE_RATE_LIMIT: { env: { WXACODE_RATE_LIMIT: 'fast' }, says: '"fast" is not <count>/<duration>' },
    WXACODE_STASH_MAX_MB: {
      env: { WXACODE_STASH_MAX_MB: '0.5' },
      says: '"0.5" is not a whole number of MB from 1 to 4096',
    },
    WXACODE_STORAGE: { env: { WXACODE_STORAGE: 'ftp://x/y' }, says: 'unsupported scheme in "ftp://x/y"' },
    WXACODE_PUBLIC_BASE_URL: {
      env: { WXACODE_PUBLIC_BASE_URL: 'cdn.example.com' },
      says: '"cdn.example.com" is not an http(s) URL',
    },
    WXACODE_RETENTION: {
      env: { WXACODE_RETENTION: '90 days' },
      says: '"90 days" is not a duration like 90d, 12h or 30m (or "forever")',
    },
    WXACODE_WINDOW: {
      env: { WXACODE_WINDOW: '50' },
      says: '"50" is not a whole number of rows from 100 to 1000000',
    },
    S3_ENDPOINT: { env: { S3_ENDPOINT: 'minio:9000' }, says: '"minio:9000" is not an http(s) URL' },
    S3_FORCE_PATH_STYLE: {
      env: { S3_FORCE_PATH_STYLE: 'maybe' },
      says: 'must be true or false, got "maybe"',
    },
    AWS_REGION: { env: { AWS_REGION: 'us east 1' }, says: '"us east 1" is not a region name' },
    AWS_ACCESS_KEY_ID: { env: { AWS_SECRET_ACCESS_KEY: 'x' }, says: 'is missing: set both' },
    AWS_SECRET_ACCESS_KEY: { env: { AWS_ACCESS_KEY_ID: 'AKIA' }, says: 'is missing: set both' },
  };

  it.each(Object.entries(BAD))('%s', async (setting, bad) => {
    const result = await runCli(['status'], { env: env(bad.env) });
    expectOneLine(result, 2, /^wxacode: /);
    expect(stderrLines(result)[0]!.startsWith(`wxacode: ${setting}: ${bad.says}`), result.stderr).toBe(true);
  });

  it('reports several bad settings one per line', async () => {
    const result = await runCli(['status'], {
      env: env({ WXACODE_RATE_LIMIT: 'fast', WECHAT_TOKEN_MODE: 'shared' }),
    });
    expect(result.code).toBe(2);
    expect(stderrLines(result)).toEqual([
      expect.stringMatching(/^wxacode: WECHAT_TOKEN_MODE: /),
      expect.stringMatching(/^wxacode: WXACODE_RATE_LIMIT: /),
    ]);
  });

  it('checks LOG_LEVEL too', async () => {
    const result = await runCli(['worker'], { env: env({ LOG_LEVEL: 'loud' }) });
    expectOneLine(result, 2, /^wxacode: LOG_LEVEL: must be one of trace, debug, .* got "loud"$/);
  });
});

describe('bad usage: one line naming the flag, exit 2, before Redis is contacted', CLI_RUNS, () => {
  let deadRedis: Record<string, string | undefined>;
  beforeAll(async () => {
    deadRedis = env({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
  });
  const enqueue = (...flags: string[]) =>
    runCli(['enqueue', 'scenes.csv', '--campaign', 'c1', ...flags], { env: deadRedis });

  it('names --width and the value, never NaN', async () => {
    expectOneLine(
      await enqueue('--width', 'abc'),
      2,
      'wxacode: --width must be a whole number from 280 to 1280, got "abc"',
    );
    expectOneLine(
      await enqueue('--width', '2000'),
      2,
      'wxacode: --width must be a whole number from 280 to 1280, got "2000"',
    );
  });

  it('names --line-color', async () => {
    for (const color of ['0,0', '0,0,256']) {
      expectOneLine(
        await enqueue('--line-color', color),
        2,
        `wxacode: --line-color must be three numbers r,g,b from 0 to 255, got "${color}"`,
      );
    }
  });

  it('names options that exclude each other, and an app that is not configured', async () => {
    expectOneLine(
      await enqueue('--auto-color', '--line-color', '0,0,0'),
      2,
      'wxacode: line colour and auto colour exclude each other',
    );
    expectOneLine(await enqueue('--app', 'wxother'), 2, /^wxacode: --app: appid wxother is not configured/);
  });

  it('names the missing app when a worker has none to work for', async () => {
    expectOneLine(
      await runCli(['worker'], { env: { ...deadRedis, WECHAT_APPID: undefined, WECHAT_SECRET: undefined } }),
      2,
      'wxacode: WECHAT_APPID: no mini program configured: set WECHAT_APPID and WECHAT_SECRET (or WECHAT_APPS)',
    );
  });

  it('names --priority and the levels it takes', async () => {
    expectUsage(
      await enqueue('--priority', 'urgent'),
      'enqueue ',
      "wxacode: option '--priority <level>' argument 'urgent' is invalid. Allowed choices are high, normal, low.",
    );
  });

  it('reports Commander errors in the same form, with the hint to the help', async () => {
    expectUsage(
      await enqueue('--kind', 'barcode'),
      'enqueue ',
      "wxacode: option '--kind <kind>' argument 'barcode' is invalid. Allowed choices are unlimited, code, qrcode.",
    );
    expectUsage(
      await runCli(['enqueue', 'scenes.csv'], { env: deadRedis }),
      'enqueue ',
      "wxacode: required option '-c, --campaign <id>' not specified",
    );
    expectUsage(
      await runCli(['status', '--bogus'], { env: deadRedis }),
      'status ',
      "wxacode: unknown option '--bogus'",
    );
    expectUsage(
      await runCli(['export', 'c1', '--format', 'xml'], { env: deadRedis }),
      'export ',
      /^wxacode: option '--format <format>' argument 'xml' is invalid/,
    );
    expectUsage(await runCli(['stauts'], { env: deadRedis }), '', "wxacode: unknown command 'stauts'");
  });
});

describe('services', CLI_RUNS, () => {
  it('names the Redis URL that does not answer (exit 1), password masked', async () => {
    const port = await freePort();
    for (const args of [['status'], ['enqueue', 'x.csv', '--campaign', 'c1']]) {
      const result = await runCli(args, { env: env({ REDIS_URL: `redis://:pw-in-url@127.0.0.1:${port}` }) });
      expectOneLine(
        result,
        1,
        `wxacode: Redis is unreachable at redis://:***@127.0.0.1:${port} (ECONNREFUSED); check REDIS_URL or start redis-server`,
      );
    }
  });

  it('names the bucket when S3 is down, and an enqueue then leaves no campaign behind', async () => {
    const port = await freePort();
    const s3 = {
      WXACODE_STORAGE: 's3://codes/conventions',
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: 'AKIA',
      AWS_SECRET_ACCESS_KEY: 'not-used',
    };
    // The rows go to the campaign's record in storage, where every worker reads them: storage is checked
    // before the campaign is created.
    const scenes = await file('s3-down.csv', 'scene\ns3-a\ns3-b\n');
    const down = await runCli(['enqueue', scenes, '--campaign', 's3-down'], { env: env(s3) });
    expect(down.code, down.stderr).toBe(1);
    expect(stderrLines(down)).toHaveLength(1);
    expect(stderrLines(down)[0]).toMatch(
      new RegExp(
        `^wxacode: Cannot [a-z ]+ s3://codes/conventions at http://127\\.0\\.0\\.1:${port} .*ECONNREFUSED`,
      ),
    );
    const status = await runCli(['status', 's3-down'], { env: env(s3) });
    expect(status.code).toBe(2);
    expect(status.stderr).toContain('campaign s3-down does not exist');

    // Once storage answers, the same enqueue records the rows, and an empty campaign, complete at once, has its
    // manifest stored right away.
    const up = await startS3('codes');
    try {
      const queued = await runCli(['enqueue', scenes, '--campaign', 's3-down'], {
        env: env({ ...s3, ...up.env }),
      });
      expect(queued.code, queued.stderr).toBe(0);
      expect(queued.stdout).toContain('enqueued 2');
      expect(queued.stderr).toBe('');
      const empty = await file('empty.csv', 'scene\n');
      const stored = await runCli(['enqueue', empty, '--campaign', 's3-empty'], {
        env: env({ ...s3, ...up.env }),
      });
      expect(stored.code, stored.stderr).toBe(0);
      const emptyStatus = await runCli(['status', 's3-empty'], { env: env({ ...s3, ...up.env }) });
      expect(emptyStatus.stdout).toContain(
        `manifest: ${up.endpoint}/codes/conventions/${APPID}/manifests/s3-empty.csv`,
      );
    } finally {
      await up.stop();
    }
  });
});

describe('bad input: one line naming the file, line or campaign, exit 2', CLI_RUNS, () => {
  it('names a missing file, a binary file and a missing column (listing the columns)', async () => {
    const missing = path.join(dir, 'missing.csv');
    expectOneLine(
      await runCli(['enqueue', missing, '--campaign', 'in-1'], { env: env() }),
      2,
      `wxacode: file "${missing}" does not exist`,
    );
    const binary = await file('image.csv', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46]));
    expectOneLine(
      await runCli(['enqueue', binary, '--campaign', 'in-1'], { env: env() }),
      2,
      `wxacode: ${binary} looks binary, not CSV/JSONL/TXT text: line 1 has a NUL byte`,
    );
    const ids = await file('ids.csv', 'id,Scene,name\n1,a,b\n');
    expectOneLine(
      await runCli(['enqueue', ids, '--campaign', 'in-1'], { env: env() }),
      2,
      `wxacode: the CSV header of ${ids} has no column "scene"; its columns are "id", "Scene", "name"; pass --column "Scene"`,
    );
  });

  it('lists every invalid row as file:line: problem, then a summary, and enqueues nothing', async () => {
    const scenes = await file('bad-rows.csv', `scene\nok-1\nhas space\n\n${'x'.repeat(33)}\nok-2\n`);
    const result = await runCli(['enqueue', scenes, '--campaign', 'bad-rows'], { env: env() });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(stderrLines(result)).toEqual([
      `${scenes}:3: scene contains a space; allowed are 0-9 A-Z a-z and ! # $ & ' ( ) * + , / : ; = ? @ - . _ ~ (map other data to short ids)`,
      `${scenes}:5: scene is 33 characters long; WeChat accepts at most 32`,
      `wxacode: 2 invalid rows in ${scenes}: nothing was enqueued (fix them, or pass --skip-invalid to enqueue the valid rows)`,
    ]);
    expectOneLine(
      await runCli(['status', 'bad-rows'], { env: env() }),
      2,
      `wxacode: campaign bad-rows does not exist (under prefix ${prefix}); \`wxacode status\` lists the campaigns`,
    );

    const skipped = await runCli(['enqueue', scenes, '--campaign', 'bad-rows', '--skip-invalid'], {
      env: env(),
    });
    expect(skipped.code).toBe(0);
    expect(stderrLines(skipped)).toHaveLength(2);
    const [summary, estimate] = skipped.stdout.split('\n');
    expect(summary).toBe(
      'campaign bad-rows: enqueued 2, duplicates 0, invalid 2; 2 rows in the campaign (active)',
    );
    // Other tests of this file enqueue rows for the same app: the estimate counts them too.
    expect(estimate).toMatch(
      new RegExp(
        `^app ${APPID}: \\d+ codes to go, about \\d+ s at 5000/60s \\(codes already stored take no call\\)$`,
      ),
    );
  });

  it('names an unknown campaign in status, export and retry', async () => {
    for (const command of ['status', 'export', 'retry']) {
      expectOneLine(
        await runCli([command, 'no-such-campaign'], { env: env() }),
        2,
        `wxacode: campaign no-such-campaign does not exist (under prefix ${prefix}); \`wxacode status\` lists the campaigns`,
      );
    }
  });

  it('names an --output file that cannot be written, and creates nothing for an unknown campaign', async () => {
    const scenes = await file('out.csv', 'scene\nout-1\n');
    expect((await runCli(['enqueue', scenes, '--campaign', 'out'], { env: env() })).code).toBe(0);
    const target = path.join(dir, 'no-such-folder', 'manifest.csv');
    expectOneLine(
      await runCli(['export', 'out', '--output', target], { env: env() }),
      2,
      `wxacode: cannot write --output ${target} (ENOENT)`,
    );
    const unwritten = path.join(dir, 'unknown.csv');
    expect((await runCli(['export', 'unknown', '--output', unwritten], { env: env() })).code).toBe(2);
    expect(existsSync(unwritten)).toBe(false);
  });
});

describe('secrets', () => {
  const WECHAT = 'wechat-secret-DO-NOT-PRINT';
  const AWS = 'aws-secret-DO-NOT-PRINT';
  const REDIS_PASSWORD = 'redis-password-DO-NOT-PRINT';
  let mock: MockServer;
  let s3: TestS3;

  beforeAll(async () => {
    // WeChat knows the app under another secret: every token request is refused with 40125.
    mock = await startMockServer({ apps: { [APPID]: 'the-real-secret' }, rateLimit: null });
    s3 = await startS3();
  });

  afterAll(async () => {
    await mock.close();
    await s3.stop();
  });

  it(
    'never appear in any output when things fail, --verbose and debug logs included',
    { timeout: 120_000 },
    async () => {
      const secrets = { WECHAT_SECRET: WECHAT, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: AWS };
      const verbose = (extra: Record<string, string> = {}) =>
        env({ ...secrets, LOG_LEVEL: 'debug', ...extra });
      const scenes = await file('secrets.csv', 'scene\nsecret-1\nsecret-2\n');
      const runs: [string[], Record<string, string | undefined>][] = [
        // Redis refuses the connection.
        [
          ['--verbose', 'status'],
          verbose({ REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${await freePort()}` }),
        ],
        // Malformed app lists, whose text holds secrets.
        [['--verbose', 'status'], verbose({ WECHAT_APPS: `{"wx2": "${WECHAT}"` })],
        [['--verbose', 'status'], verbose({ WECHAT_APPS: `not an appid:${WECHAT}` })],
        // S3 answers NoSuchBucket to a request signed with the secret (s3rver does not check signatures).
        [
          ['--verbose', 'worker'],
          verbose({ WXACODE_STORAGE: 's3://no-such-bucket/secrets', S3_ENDPOINT: s3.endpoint }),
        ],
        [
          ['--verbose', 'enqueue', await file('none.csv', 'scene\n'), '--campaign', 'secret-empty'],
          verbose({ WXACODE_STORAGE: 's3://no-such-bucket/secrets', S3_ENDPOINT: s3.endpoint }),
        ],
        // WeChat refuses the secret; the worker gives up on the app and exits 1.
        [['enqueue', scenes, '--campaign', 'secrets'], verbose()],
        [['--verbose', 'worker'], verbose({ WECHAT_API_BASE_URL: mock.url })],
      ];
      const codes: (number | null)[] = [];
      for (const [args, runEnv] of runs) {
        const result = await runCli(args, { env: runEnv });
        codes.push(result.code);
        const output = result.stdout + result.stderr;
        for (const secret of [WECHAT, AWS, REDIS_PASSWORD]) {
          expect(output, `${args.join(' ')} printed a secret`).not.toContain(secret);
        }
      }
      expect(codes).toEqual([1, 2, 2, 1, 1, 0, 1]);
      expect(mock.stats(APPID).errors['40125']).toBeGreaterThan(0);
    },
  );
});
