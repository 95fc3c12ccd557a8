/**
 * Bad input through the real CLI: every kind of invalid row, unreadable files, bad options, unknown campaigns and
 * a clash with an existing campaign. Each gets a message naming what is wrong and exit code 2, and a refused
 * enqueue writes nothing at all, neither to Redis (no campaign, no job, no queue key) nor to storage (no chunk of
 * a record): nothing is half-enqueued.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../../src/campaign/queue.js';
import { CampaignStore } from '../../src/campaign/store.js';
import { loadConfig } from '../../src/config.js';
import { createStorage, manifestKey } from '../../src/storage/index.js';
import { WRITE_CHECK_KEY } from '../../src/storage/storage.js';
import { type CliResult, runCli } from '../../test-support/cli.js';
import { CHAOS_APPID, campaignRows, redisDump, report } from '../helpers/chaos.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';

const SCENE_CHARS = `allowed are 0-9 A-Z a-z and ! # $ & ' ( ) * + , / : ; = ? @ - . _ ~ (map other data to short ids)`;
const NOTHING_ENQUEUED = 'nothing was enqueued (fix them, or pass --skip-invalid to enqueue the valid rows)';

let redis: Redis;
let dir: string;
const prefixes: string[] = [];
const outcomes = { refused: 0, accepted: 0 };

beforeAll(async () => {
  redis = connect();
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-chaos-input-'));
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
  report('bad-input', { cases: outcomes.refused + outcomes.accepted, ...outcomes });
});

/** A namespace of its own for one case (a key prefix and a storage folder), and the environment of a CLI run in it. */
function namespace(): { prefix: string; storage: string; env: Record<string, string> } {
  const prefix = testPrefix();
  prefixes.push(prefix);
  const storage = path.join(dir, `codes-${prefix}`);
  return {
    prefix,
    storage,
    env: {
      REDIS_URL: testRedisUrl(),
      WXACODE_PREFIX: prefix,
      WECHAT_APPID: CHAOS_APPID,
      WECHAT_SECRET: 'chaos-input-secret',
      WXACODE_STORAGE: storage,
    },
  };
}

/**
 * Every file under a storage folder, relative to it; none when the folder was never created. Leaves out the probe
 * an enqueue writes to check storage before it opens a campaign: storage's, not a campaign's.
 */
async function storedFiles(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true }).catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(folder, path.join(entry.parentPath, entry.name)))
    .filter((file) => file !== WRITE_CHECK_KEY)
    .sort();
}

async function file(name: string, content: string | Buffer): Promise<string> {
  const target = path.join(dir, name);
  await writeFile(target, content);
  return target;
}

/** Run a command that must be refused with exit code 2, exactly these stderr lines, and nothing written. */
async function refused(args: string[], lines: (string | RegExp)[]): Promise<CliResult> {
  const { prefix, storage, env } = namespace();
  const result = await runCli(args, { env });
  expect(result.code, result.stderr).toBe(2);
  expect(result.stdout).toBe('');
  const got = result.stderr.trimEnd().split('\n');
  expect(got, result.stderr).toHaveLength(lines.length);
  for (const [i, line] of lines.entries()) expect(got[i]).toMatch(line);
  expect([...(await redisDump(redis, prefix)).keys()], 'keys written by a refused command').toEqual([]);
  expect(await storedFiles(storage), 'files stored by a refused command').toEqual([]);
  outcomes.refused++;
  return result;
}

function exactly(text: string): RegExp {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

describe.concurrent('refused, with a message and exit code 2, leaving no trace in Redis or storage', () => {
  it('invalid scenes of every kind, each listed by line', async () => {
    const scenes = await file(
      'scenes.csv',
      `scene\nok-1\n${'x'.repeat(33)}\nhas space\n中文\n100%\na"b\ntab\tin\n1,2\nok-2\n`,
    );
    await refused(
      ['enqueue', scenes, '--campaign', 'scenes'],
      [
        exactly(`${scenes}:3: scene is 33 characters long; WeChat accepts at most 32`),
        exactly(`${scenes}:4: scene contains a space; ${SCENE_CHARS}`),
        exactly(`${scenes}:5: scene contains "中"; ${SCENE_CHARS}`),
        exactly(`${scenes}:6: scene contains "%"; ${SCENE_CHARS}`),
        exactly(`${scenes}:7: scene contains """; ${SCENE_CHARS}`),
        exactly(`${scenes}:8: scene contains a control character (U+0009); ${SCENE_CHARS}`),
        exactly(`${scenes}:9: row has 2 fields; the header has 1`),
        exactly(`wxacode: 7 invalid rows in ${scenes}: ${NOTHING_ENQUEUED}`),
      ],
    );
  });

  it('invalid paths for A and C codes', async () => {
    const paths = await file(
      'paths.txt',
      `pages/a b\npages/x?scancode_time=1\npages/${'a'.repeat(1019)}\npages/ok\n`,
    );
    await refused(
      ['enqueue', paths, '--campaign', 'paths', '--kind', 'code'],
      [
        exactly(`${paths}:1: path contains white space`),
        exactly(`${paths}:2: path contains the reserved word scancode_time`),
        exactly(`${paths}:3: path is 1025 characters long; code codes accept at most 1024 characters`),
        exactly(`wxacode: 3 invalid rows in ${paths}: ${NOTHING_ENQUEUED}`),
      ],
    );
    const long = await file('c-paths.txt', `pages/${'b'.repeat(123)}\n`);
    await refused(
      ['enqueue', long, '--campaign', 'c-paths', '--kind', 'qrcode'],
      [
        exactly(`${long}:1: path is 129 bytes long; qrcode codes accept at most 128 bytes`),
        exactly(`wxacode: 1 invalid row in ${long}: ${NOTHING_ENQUEUED}`),
      ],
    );
  });

  it('a CSV without the column', async () => {
    const csv = await file('columns.csv', 'id,name\n1,a\n');
    await refused(
      ['enqueue', csv, '--campaign', 'columns'],
      [
        exactly(
          `wxacode: the CSV header of ${csv} has no column "scene"; its columns are "id", "name"; pass --column NAME to read another column`,
        ),
      ],
    );
    await refused(
      ['enqueue', csv, '--campaign', 'columns', '--column', 'code'],
      [
        exactly(
          `wxacode: the CSV header of ${csv} has no column "code"; its columns are "id", "name"; pass --column NAME to read another column`,
        ),
      ],
    );
  });

  it('a 10 MB line', async () => {
    const huge = await file('huge.txt', `ok-1\n${'x'.repeat(10 * 1024 * 1024)}\nok-2\n`);
    await refused(
      ['enqueue', huge, '--campaign', 'huge'],
      [
        exactly(`${huge}:2: line is 10485760 bytes long, over the limit of 65536 bytes`),
        exactly(`wxacode: 1 invalid row in ${huge}: ${NOTHING_ENQUEUED}`),
      ],
    );
  });

  it('binary files, UTF-16 and bytes that are not UTF-8', async () => {
    const binary = await file(
      'binary.csv',
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]),
    );
    await refused(
      ['enqueue', binary, '--campaign', 'binary'],
      [exactly(`wxacode: ${binary} looks binary, not CSV/JSONL/TXT text: line 3 has a NUL byte`)],
    );
    const utf16 = await file('utf16.csv', Buffer.from('\ufeffscene\nx\n', 'utf16le'));
    await refused(
      ['enqueue', utf16, '--campaign', 'utf16'],
      [exactly(`wxacode: ${utf16} is UTF-16 text; save it as UTF-8`)],
    );
    const latin1 = await file('latin1.csv', Buffer.from('scene\nok\ncaf\xe9\n', 'latin1'));
    await refused(
      ['enqueue', latin1, '--campaign', 'latin1'],
      [
        exactly(
          `wxacode: ${latin1} looks binary, not CSV/JSONL/TXT text: line 3 is not valid UTF-8 (if it is text, save it as UTF-8)`,
        ),
      ],
    );
  });

  it('invalid width, colours, env_version, kind, page and campaign id', async () => {
    const scenes = await file('options.csv', 'scene\nopt-1\n');
    const enqueue = (...flags: string[]) => ['enqueue', scenes, '--campaign', 'options', ...flags];
    const usage = '(run "wxacode enqueue --help" for usage)';
    const cases: [string[], (string | RegExp)[]][] = [
      [
        enqueue('--width', '100'),
        [exactly('wxacode: --width must be a whole number from 280 to 1280, got "100"')],
      ],
      [
        enqueue('--width', 'wide'),
        [exactly('wxacode: --width must be a whole number from 280 to 1280, got "wide"')],
      ],
      [
        enqueue('--line-color', '1,2'),
        [exactly('wxacode: --line-color must be three numbers r,g,b from 0 to 255, got "1,2"')],
      ],
      [
        enqueue('--line-color', '300,0,0'),
        [exactly('wxacode: --line-color must be three numbers r,g,b from 0 to 255, got "300,0,0"')],
      ],
      [
        enqueue('--env-version', 'beta'),
        [
          exactly(
            "wxacode: option '--env-version <version>' argument 'beta' is invalid. Allowed choices are release, trial, develop.",
          ),
          exactly(usage),
        ],
      ],
      [
        enqueue('--kind', 'poster'),
        [
          exactly(
            "wxacode: option '--kind <kind>' argument 'poster' is invalid. Allowed choices are unlimited, code, qrcode.",
          ),
          exactly(usage),
        ],
      ],
      [
        enqueue('--page', '/pages/x'),
        [exactly('wxacode: page "/pages/x" starts with "/"; write it as "pages/x"')],
      ],
      [
        ['enqueue', scenes, '--campaign', 'bad id!'],
        [exactly('wxacode: campaign id "bad id!" must be 1-64 letters, digits, _ or -')],
      ],
    ];
    for (const [args, lines] of cases) await refused(args, lines);
  });

  it('an unknown campaign for status, export and retry', async () => {
    for (const command of ['status', 'export', 'retry']) {
      await refused(
        [command, 'no-such'],
        [
          /^wxacode: campaign no-such does not exist \(under prefix test-\w+\); `wxacode status` lists the campaigns$/,
        ],
      );
    }
  });
});

describe('an existing campaign', () => {
  it('refuses more rows with other options, and leaves the campaign exactly as it was', async () => {
    const { prefix, storage, env } = namespace();
    const first = await file('first.csv', 'scene\nc-1\nc-2\n');
    const more = await file('more.csv', 'scene\nc-3\n');
    expect((await runCli(['enqueue', first, '--campaign', 'clash'], { env })).code).toBe(0);
    const before = await redisDump(redis, prefix);
    const storedBefore = await storedFiles(storage);
    expect(storedBefore, 'the record of the first enqueue').toHaveLength(1);
    const result = await runCli(['enqueue', more, '--campaign', 'clash', '--width', '600'], { env });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(
      /^wxacode: campaign clash already exists for app wxchaos00000000001 with options \{.*"width":430.*\}; use a new campaign id for app wxchaos00000000001 with options \{.*"width":600.*\}\n$/,
    );
    expect(await redisDump(redis, prefix)).toEqual(before);
    expect(await storedFiles(storage)).toEqual(storedBefore);
    outcomes.refused++;
  });
});

describe('accepted', () => {
  it('a UTF-8 BOM, CRLF line ends, a quoted field and no final newline, read to the exact values', async () => {
    const { prefix, env } = namespace();
    const crlf = await file('crlf.csv', '\ufeffscene\r\nbom-1\r\n"bom-2"\r\n\r\nbom-3');
    const result = await runCli(['enqueue', crlf, '--campaign', 'crlf'], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      'campaign crlf: enqueued 3, duplicates 0, invalid 0; 3 rows in the campaign (active)\n' +
        `app ${CHAOS_APPID}: 3 codes to go, about 1 s at 5000/60s (codes already stored take no call)\n`,
    );
    const store = new CampaignStore(redis, prefix);
    const codes = createStorage(loadConfig(env));
    try {
      expect(await campaignRows(store, codes, 'crlf')).toEqual(
        ['bom-1', 'bom-2', 'bom-3'].map((value) => ({ value, row: { status: 'pending' } })),
      );
    } finally {
      await codes.close();
    }
    // The rows wait in the record for a worker's feeder: the enqueue itself queues no job.
    expect(await store.get('crlf')).toMatchObject({
      state: 'active',
      queued: 0,
      cursor: { chunk: 0, row: 0 },
    });
    const queue = openQueue(redis, prefix, CHAOS_APPID);
    expect(await queue.count()).toBe(0);
    await queue.close();
    outcomes.accepted++;
  });

  it('an empty file, as a campaign of no rows, complete at once', async () => {
    const { prefix, storage, env } = namespace();
    const empty = await file('empty.csv', '');
    const result = await runCli(['enqueue', empty, '--campaign', 'empty'], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      'campaign empty: enqueued 0, duplicates 0, invalid 0; 0 rows in the campaign (completed)\n' +
        `app ${CHAOS_APPID}: 0 codes to go, about 0 s at 5000/60s (codes already stored take no call)\n`,
    );
    const queue = openQueue(redis, prefix, CHAOS_APPID);
    expect(await queue.count()).toBe(0);
    await queue.close();
    // Completed at once, it has its manifest (of no rows) and no chunk of a record.
    expect(await storedFiles(storage)).toEqual([manifestKey(CHAOS_APPID, 'empty', 'csv')]);
    outcomes.accepted++;
  });
});
