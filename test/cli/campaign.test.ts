/**
 * `wxacode enqueue | status | export | retry` through the CLI, against the harness Redis, the mock WeChat server
 * and a storage folder, with an in-process CodeWorker doing the work between commands.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CampaignStatus, campaignStatus } from '../../src/campaign/operations.js';
import { jobsFor, openQueue } from '../../src/campaign/queue.js';
import { CampaignStore, PRIORITIES, slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { createStorage, objectKey, recordKey } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli } from '../../test-support/cli.js';
import { deletePrefix, testPrefix } from '../helpers/redis.js';
import { useLocalStack } from '../helpers/stack.js';

const APPID = 'wxclicampaign00001';
const SECRET = 'cli-campaign-secret';

const stack = useLocalStack({ [APPID]: SECRET });
const prefixes: string[] = [];
let inputs: string;

beforeAll(async () => {
  inputs = await mkdtemp(path.join(tmpdir(), 'wxacode-cli-campaign-'));
});

afterAll(async () => {
  for (const prefix of prefixes) await deletePrefix(stack.redis, prefix);
  await rm(inputs, { recursive: true, force: true });
});

/** A key namespace of the test's own, and the CLI's and a worker's view of it. */
function setup() {
  const prefix = testPrefix();
  prefixes.push(prefix);
  const env = { ...stack.env(), WXACODE_PREFIX: prefix };
  const store = new CampaignStore(stack.redis, prefix);
  const cli = async (...args: string[]) => {
    const result = await runCli(args, { env });
    expect(result.code, `wxacode ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout;
  };
  const statusJson = async (campaign: string) => {
    const status = JSON.parse(await cli('status', campaign, '--json')) as CampaignStatus;
    expect(Object.keys(status).slice(0, 1)).toEqual(['campaign']);
    expect(status.total).toBe(status.done + status.failed + status.pending);
    return status;
  };
  /** Run a worker until the campaign settles (completed or stopped). */
  const work = async (campaign: string) => {
    const worker = await CodeWorker.start({ config: loadConfig(env), concurrency: 2 });
    try {
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        const { state } = await campaignStatus(store, campaign);
        if (state === 'completed' || state === 'stopped') return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`campaign ${campaign} did not settle`);
    } finally {
      await worker.close();
    }
  };
  return { prefix, env, store, cli, statusJson, work };
}

async function input(name: string, text: string): Promise<string> {
  const file = path.join(inputs, name);
  await writeFile(file, text);
  return file;
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line));
}

// Every command is a process of its own, which tsx compiles at start: seconds each on a busy two-core machine.
describe('a campaign through the CLI', { timeout: 120_000 }, () => {
  it('status follows it from queued to completed; export lists every row with its url and key', async () => {
    const { env, store, cli, statusJson, work } = setup();
    const scenes = ['done-a', 'done-b', 'done-c'];
    const file = await input('done.csv', `scene\n${scenes.join('\n')}\n`);
    expect(await cli('enqueue', file, '--campaign', 'done', '--width', '300')).toBe(
      'campaign done: enqueued 3, duplicates 0, invalid 0; 3 rows in the campaign (active)\n' +
        `app ${APPID}: 3 codes to go, about 1 s at 100/1s (codes already stored take no call)\n`,
    );
    expect(await statusJson('done')).toMatchObject({
      campaign: 'done',
      state: 'active',
      total: 3,
      done: 0,
      failed: 0,
      pending: 3,
    });
    // The rows are in the campaign's record in storage, for the workers' feeders to queue.
    const chunks = await store.chunks('done');
    expect(chunks.map((chunk) => chunk.rows)).toEqual([3]);
    const storage = createStorage(loadConfig(env));
    expect(await storage.exists(recordKey(APPID, 'done', chunks[0]!.name))).toBe(true);
    await storage.close();

    await work('done');
    const status = await statusJson('done');
    expect(status).toMatchObject({ state: 'completed', total: 3, done: 3, failed: 0, pending: 0 });
    const manifest = fileURLToPath(status.manifest!);
    expect(existsSync(manifest)).toBe(true);

    const summary = await cli('status');
    expect(summary.split('\n')).toEqual([
      `campaign done (unlimited, app ${APPID}): completed, 100% settled`,
      '  3 done, 0 failed, 0 pending of 3',
      `  manifest: ${status.manifest}`,
      '',
    ]);

    const csvFile = path.join(inputs, 'done-manifest.csv');
    expect(await cli('export', 'done', '--output', csvFile)).toBe('');
    const csv = readFileSync(csvFile, 'utf8');
    // The manifest stored at completion and the export are the same document.
    expect(csv).toBe(readFileSync(manifest, 'utf8'));
    const [header, ...rows] = csv.trimEnd().split('\n');
    expect(header).toBe('scene,status,url,key,errcode,errmsg');
    const options = codeOptions({ kind: 'unlimited', width: 300 });
    expect(rows.map((row) => row.split(','))).toEqual(
      scenes.map((scene) => {
        const key = objectKey({ appid: APPID, options, value: scene });
        return [scene, 'done', `file://${path.join(stack.dir, key)}`, key, '', ''];
      }),
    );
    for (const row of rows) expect(existsSync(fileURLToPath(row.split(',')[2]!))).toBe(true);

    const jsonl = jsonLines(await cli('export', 'done', '--format', 'jsonl'));
    expect(jsonl).toEqual(
      rows.map((row) => {
        const [scene, state, url, key] = row.split(',');
        return { scene, status: state, url, key };
      }),
    );
  });

  it('export neutralises formula-leading cells in CSV (a leading quote), and keeps the raw values in JSONL', async () => {
    const { cli, work } = setup();
    // Each is a valid scene, and each would be a live formula in a spreadsheet.
    const scenes = ['=1+1', '+cmd', '-2+3', '@SUM(1)', 'plain=ok'];
    await cli('enqueue', await input('formulas.txt', `${scenes.join('\n')}\n`), '--campaign', 'formulas');
    await work('formulas');

    const [header, ...rows] = (await cli('export', 'formulas')).trimEnd().split('\n');
    expect(header).toBe('scene,status,url,key,errcode,errmsg');
    expect(rows.map((row) => row.slice(0, row.indexOf(',done,')))).toEqual([
      `"'=1+1"`,
      `"'+cmd"`,
      `"'-2+3"`,
      `"'@SUM(1)"`,
      'plain=ok',
    ]);
    const jsonl = jsonLines(await cli('export', 'formulas', '--format', 'jsonl'));
    expect(jsonl.map((row) => row.scene)).toEqual(scenes);
  });

  it('a stopped campaign: status says why and how to resume, export shows the rows pending, retry resumes it', async () => {
    const { cli, statusJson, work } = setup();
    const file = await input('stopped.txt', 'stop-a\nstop-b\nstop-c\n');
    stack.mock.configure({ publishedPages: ['pages/index/index'] });
    try {
      await cli('enqueue', file, '--campaign', 'stopped', '--page', 'pages/missing/index');
      await work('stopped');
    } finally {
      stack.mock.configure({ publishedPages: null });
    }
    const status = await statusJson('stopped');
    expect(status).toMatchObject({ state: 'stopped', total: 3, done: 0, failed: 0, pending: 3 });
    expect(status.stopped?.errcode).toBe(41030);

    const summary = (await cli('status', 'stopped')).split('\n');
    expect(summary[0]).toBe(`campaign stopped (unlimited, app ${APPID}): stopped, 0% settled`);
    expect(summary[2]).toBe(`  stopped by errcode 41030: ${status.stopped!.errmsg}`);
    expect(summary[3]).toBe('  fix the cause, then run: wxacode retry stopped');

    expect(await cli('export', 'stopped')).toBe(
      'scene,status,url,key,errcode,errmsg\nstop-a,pending,,,,\nstop-b,pending,,,,\nstop-c,pending,,,,\n',
    );

    expect(await cli('retry', 'stopped')).toBe(
      'campaign stopped: 3 rows queued again (0 failed, 3 pending); resumed after errcode 41030\n',
    );
    await work('stopped');
    expect(await statusJson('stopped')).toMatchObject({ state: 'completed', done: 3, pending: 0 });
  });

  it('failed rows: status points at retry, export carries errcode and errmsg, retry queues them again', async () => {
    const { prefix, store, cli, statusJson, work } = setup();
    const file = await input('failing.txt', 'fail-a\nfail-b\n');
    await cli('enqueue', file, '--campaign', 'failing');
    // Fed here as a worker's feeder would, but with a single attempt a job, so WeChat's "system busy" fails them
    // at once instead of after BullMQ's minutes of backoff. The worker's feeder then finds nothing left to feed.
    const fed = ['fail-a', 'fail-b'].map((value, row) => ({ slot: slotOf({ chunk: 0, row }), value }));
    expect(await store.feed('failing', { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, fed)).toBe(true);
    const queue = openQueue(stack.redis, prefix, APPID);
    await queue.addBulk(
      jobsFor('failing', PRIORITIES.normal, fed).map((job) => ({
        ...job,
        opts: { ...job.opts, attempts: 1 },
      })),
    );
    await queue.close();
    stack.mock.configure({ faults: { busy: 1 } });
    try {
      await work('failing');
    } finally {
      stack.mock.configure({ faults: {} });
    }
    expect(await statusJson('failing')).toMatchObject({ state: 'completed', done: 0, failed: 2, pending: 0 });
    const summary = await cli('status', 'failing');
    expect(summary).toContain('  0 done, 2 failed, 0 pending of 2\n');
    expect(summary).toContain('  to queue the failed rows again: wxacode retry failing\n');

    const rows = jsonLines(await cli('export', 'failing', '--format', 'jsonl'));
    expect(rows).toEqual(
      ['fail-a', 'fail-b'].map((scene) => ({
        scene,
        status: 'failed',
        url: '',
        key: '',
        errcode: -1,
        errmsg: expect.stringContaining('system error'),
      })),
    );

    expect(await cli('retry', 'failing')).toBe(
      'campaign failing: 2 rows queued again (2 failed, 0 pending)\n',
    );
    expect(await statusJson('failing')).toMatchObject({ failed: 0, pending: 2 });
    await work('failing');
    expect(await statusJson('failing')).toMatchObject({ state: 'completed', done: 2, failed: 0 });
  });

  it('enqueue --priority high stores priority 1, which a later enqueue into the campaign keeps', async () => {
    const { prefix, cli } = setup();
    const priority = (campaign: string) => stack.redis.hget(`${prefix}:campaign:${campaign}`, 'priority');
    const file = await input('urgent.txt', 'urgent-a\nurgent-b\n');
    await cli('enqueue', file, '--campaign', 'urgent', '--priority', 'high');
    // BullMQ's priority, 1 first: every job the feeders add for the campaign carries it.
    expect(await priority('urgent')).toBe('1');
    await cli('enqueue', await input('urgent-more.txt', 'urgent-c\n'), '--campaign', 'urgent');
    expect(await priority('urgent')).toBe('1');
    await cli('enqueue', await input('usual.txt', 'usual-a\n'), '--campaign', 'usual');
    expect(await priority('usual')).toBe('2');
  });

  it('status without a campaign lists every campaign of the prefix, or says there is none', async () => {
    const { prefix, cli } = setup();
    expect(await cli('status')).toBe(`no campaigns under prefix ${prefix}\n`);
    expect(JSON.parse(await cli('status', '--json'))).toEqual([]);
    await cli('enqueue', await input('one.txt', 'one-a\n'), '--campaign', 'one');
    await cli('enqueue', await input('two.txt', 'two-a\ntwo-b\n'), '--campaign', 'two');
    const all = JSON.parse(await cli('status', '--json')) as CampaignStatus[];
    expect(all.map((s) => [s.campaign, s.total, s.pending]).sort()).toEqual([
      ['one', 1, 1],
      ['two', 2, 2],
    ]);
  });
});
