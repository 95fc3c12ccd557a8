/**
 * What an attacker or a careless log reader could get. The AppSecret and the access tokens never appear in any
 * command's output, the workers' logs (debug level), BullMQ's job data and failure reasons, rows' error
 * messages or any Redis value but the token cache; hostile scenes and paths stay inside the storage prefix or
 * folder; the mock and metrics servers listen on 127.0.0.1 unless told otherwise.
 */
import { randomBytes } from 'node:crypto';
import { type Dirent, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CampaignStore } from '../../src/campaign/store.js';
import { loadConfig } from '../../src/config.js';
import { createStorage } from '../../src/storage/index.js';
import { codeOptions, type Kind, rowField, rowProblem } from '../../src/wechat/params.js';
import { type CliResult, runCli, spawnCli } from '../../test-support/cli.js';
import { freePort } from '../../test-support/redis-server.js';
import {
  auditCampaign,
  byScale,
  CHAOS_APPID,
  ChaosRig,
  doneAtLeast,
  redisDump,
  report,
  s3Keys,
  settled,
  WorkerFleet,
} from '../helpers/chaos.js';
import { HOSTILE_VALUES } from '../storage/hostile.js';

const RATE = { count: 50, durationMs: 1000 };
const ROWS = byScale(150, 600);
const SECRET = `chaos-secret-${randomBytes(12).toString('hex')}`;
const WRONG_SECRET = `chaos-wrong-${randomBytes(12).toString('hex')}`;

let rig: ChaosRig;
let dir: string;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: RATE, secret: SECRET });
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-chaos-security-'));
});

afterAll(async () => {
  await rig?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Every redis value under `prefix` but the token cache, one text per key; and whether a job holds an error. */
async function redisTexts(prefix: string): Promise<{ texts: string[]; failedReasons: number }> {
  const texts: string[] = [];
  let failedReasons = 0;
  for (const [key, value] of await redisDump(rig.redis, prefix)) {
    if (key === `${prefix}:token:${CHAOS_APPID}`) continue;
    texts.push(`${key} ${value}`);
    if (/(^|\n)failedReason\n./.test(value)) failedReasons++;
  }
  return { texts, failedReasons };
}

describe('secrets', () => {
  it('never show the secret or a token in output, logs, job data, errors or Redis', async () => {
    // Classic tokens: the secret travels in the token request's URL, the likeliest way into a message.
    const extra = { WECHAT_TOKEN_MODE: 'classic', LOG_LEVEL: 'debug' };
    const prefix = rig.prefix();
    const env = rig.env(prefix, extra);
    const outputs: string[] = [];
    const run = async (args: string[], more: Record<string, string> = {}): Promise<CliResult> => {
      const result = await runCli(args, { env: { ...env, ...more } });
      outputs.push(result.stdout, result.stderr);
      return result;
    };
    const values = Array.from({ length: ROWS }, (_, i) => `sec-${i}`);
    const input = path.join(dir, 'secrets.txt');
    await writeFile(input, `${values.join('\n')}\n`);
    expect((await run(['enqueue', input, '--campaign', 'secrets'])).code).toBe(0);

    // Faults put error texts into BullMQ's job hashes while the run lasts: sample everything as it goes.
    rig.mock.reset();
    rig.mock.configure({ faults: { busy: 0.05, html502: 0.05, drop: 0.05, seed: 11 } });
    const tokens = new Set<string>();
    const seen: string[] = [];
    let failedReasons = 0;
    let watching = true;
    const watcher = (async () => {
      for (let i = 0; watching; i++) {
        const cached = await rig.redis.get(`${prefix}:token:${CHAOS_APPID}`);
        if (cached) tokens.add((JSON.parse(cached) as { token: string }).token);
        if (i % 5 === 0) {
          const sample = await redisTexts(prefix);
          seen.push(...sample.texts);
          failedReasons += sample.failedReasons;
        }
        await sleep(100);
      }
    })();
    const store = rig.store(prefix);
    const fleet = new WorkerFleet(env, ['worker', '--concurrency', '4']);
    await fleet.start(2);
    let account: Awaited<ReturnType<ChaosRig['audit']>>;
    try {
      account = await fleet.during(async () => {
        await doneAtLeast(store, 'secrets', ROWS / 2);
        rig.mock.revokeTokens(CHAOS_APPID);
        await settled(store, 'secrets');
        return rig.audit(prefix, 'secrets', codeOptions({ kind: 'unlimited' }), values);
      });
    } finally {
      watching = false;
      await watcher;
      rig.mock.configure({ faults: {} });
    }
    outputs.push(fleet.output);
    expect(account.lost).toBe(0);
    for (const args of [
      ['status'],
      ['status', 'secrets', '--json'],
      ['export', 'secrets'],
      ['retry', 'secrets'],
    ]) {
      expect((await run(args)).code).toBe(0);
    }
    await run(['export', 'secrets', '--format', 'jsonl']);
    const final = await redisTexts(prefix);
    seen.push(...final.texts);

    // Failures, in a namespace with no cached token: WeChat unreachable (jobs fail and are retried), then a
    // secret WeChat refuses (the worker stops for the app and exits 1).
    const failing = rig.prefix();
    const failingEnv = { ...rig.env(failing, extra) };
    const stuck = path.join(dir, 'stuck.txt');
    await writeFile(stuck, 'stuck-1\nstuck-2\nstuck-3\n');
    const queued = await runCli(['enqueue', stuck, '--campaign', 'stuck'], { env: failingEnv });
    outputs.push(queued.stdout, queued.stderr);
    const unreachable = new WorkerFleet({
      ...failingEnv,
      WECHAT_API_BASE_URL: `http://127.0.0.1:${await freePort()}`,
    });
    unreachable.spawn();
    await unreachable.during(() =>
      vi.waitUntil(async () => (await redisTexts(failing)).failedReasons > 0, {
        timeout: 30_000,
        interval: 200,
      }),
    );
    const failed = await redisTexts(failing);
    seen.push(...failed.texts);
    failedReasons += failed.failedReasons;
    outputs.push(unreachable.output);
    const refusedRun = await runCli(['worker'], { env: { ...failingEnv, WECHAT_SECRET: WRONG_SECRET } });
    outputs.push(refusedRun.stdout, refusedRun.stderr);
    expect(refusedRun.code).toBe(1);
    expect(refusedRun.stderr).toContain('errcode 40125');
    seen.push(...(await redisTexts(failing)).texts);

    // A new token after the revocation: at least two to look for, and error texts were in the job hashes.
    expect(tokens.size).toBeGreaterThanOrEqual(2);
    expect(failedReasons).toBeGreaterThan(0);
    const places = { outputs, redis: seen };
    for (const [name, needle] of [
      ['the secret', SECRET],
      ['the refused secret', WRONG_SECRET],
      ...[...tokens].map((token, i) => [`access token ${i + 1}`, token]),
    ] as [string, string][]) {
      for (const [where, texts] of Object.entries(places)) {
        const leak = texts.find((text) => text.includes(needle));
        expect(leak, `${name} appears in ${where}`).toBeUndefined();
      }
    }
    report('security-secrets', {
      rows: account.rows,
      lost: account.lost,
      needles: 2 + tokens.size,
      outputsScanned: outputs.length,
      redisValuesScanned: seen.length,
      jobErrorsSeen: failedReasons,
      faults: rig.mock.stats(CHAOS_APPID).faults,
    });
  });
});

describe('hostile scenes and paths', () => {
  /** The hostile values each kind accepts, as a JSONL input enqueued with --skip-invalid. */
  async function hostileCampaigns(env: Record<string, string>) {
    const campaigns = (['unlimited', 'code'] as Kind[]).map((kind) => ({
      kind,
      campaign: `hostile-${kind}`,
      options: codeOptions({ kind }),
      values: HOSTILE_VALUES.filter((value) => rowProblem(kind, value) === undefined),
    }));
    for (const c of campaigns) {
      const input = path.join(dir, `${c.campaign}.jsonl`);
      const field = rowField(c.kind);
      await writeFile(input, HOSTILE_VALUES.map((value) => JSON.stringify({ [field]: value })).join('\n'));
      const args = ['enqueue', input, '--campaign', c.campaign, '--kind', c.kind, '--skip-invalid'];
      const result = await runCli(args, { env });
      expect(result.code, result.stderr).toBe(0);
      expect(c.values.length).toBeGreaterThan(8);
    }
    return campaigns;
  }

  it('stay inside the S3 key prefix', async () => {
    const prefix = rig.prefix();
    const env = rig.env(prefix);
    const campaigns = await hostileCampaigns(env);
    const fleet = new WorkerFleet(env);
    fleet.spawn();
    const accounts = await fleet.during(async () => {
      const done = [];
      for (const c of campaigns) {
        await settled(rig.store(prefix), c.campaign);
        done.push(await rig.audit(prefix, c.campaign, c.options, c.values));
      }
      return done;
    });
    for (const account of accounts) expect(account).toMatchObject({ failed: 0, lost: 0 });
    // Nothing anywhere in the bucket but under the prefixes of this file's campaigns.
    const everything = await s3Keys(rig.s3, '');
    const outside = everything.filter((key) => !rig.prefixes.some((p) => key.startsWith(`${p}/`)));
    expect(outside).toEqual([]);
    expect(everything.filter((key) => key.startsWith(`${prefix}/`)).length).toBeGreaterThan(
      accounts[0]!.done + accounts[1]!.done,
    );
    report('security-hostile-s3', {
      rows: accounts.map((a) => a.rows),
      objects: accounts.map((a) => a.objects),
    });
  });

  it('stay inside the storage folder', async () => {
    const root = await mkdtemp(path.join(dir, 'folder-'));
    const folder = path.join(root, 'codes');
    const prefix = rig.prefix();
    const env = rig.env(prefix, { WXACODE_STORAGE: folder });
    const campaigns = await hostileCampaigns(env);
    const storage = createStorage(loadConfig(env));
    const fleet = new WorkerFleet(env);
    fleet.spawn();
    const accounts = await fleet.during(async () => {
      const done = [];
      for (const c of campaigns) {
        const store = new CampaignStore(rig.redis, prefix);
        await settled(store, c.campaign);
        const storedKeys = (readdirSync(folder, { recursive: true, withFileTypes: true }) as Dirent[])
          .filter((entry) => entry.isFile())
          .map((entry) =>
            path.relative(folder, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'),
          );
        done.push(
          await auditCampaign({
            store,
            storage,
            campaign: c.campaign,
            appid: CHAOS_APPID,
            options: c.options,
            values: c.values,
            storedKeys,
          }),
        );
      }
      return done;
    });
    await storage.close();
    for (const account of accounts) expect(account).toMatchObject({ failed: 0, lost: 0 });
    expect(readdirSync(root)).toEqual(['codes']);
    report('security-hostile-folder', {
      rows: accounts.map((a) => a.rows),
      objects: accounts.map((a) => a.objects),
    });
  });
});

/** The local addresses listening on `port` (Linux: from /proc/net/tcp and tcp6). */
function listeningOn(port: number): string[] {
  const found: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [hex, portHex] = local!.split(':');
      if (state !== '0A' || Number.parseInt(portHex!, 16) !== port) continue;
      // Each 32-bit word of the address is stored little-endian.
      const bytes = (hex!.match(/.{8}/g) ?? []).flatMap((word) => (word.match(/../g) ?? []).reverse());
      const numbers = bytes.map((byte) => Number.parseInt(byte, 16));
      found.push(
        numbers.length === 4
          ? numbers.join('.')
          : Array.from({ length: 8 }, (_, i) =>
              ((numbers[2 * i]! << 8) | numbers[2 * i + 1]!).toString(16),
            ).join(':'),
      );
    }
  }
  return found;
}

describe.runIf(process.platform === 'linux')('listening addresses', () => {
  async function mockServerListensOn(args: string[]): Promise<string[]> {
    const child = spawnCli(['mock-server', ...args]);
    try {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      const { url } = await vi.waitUntil(() => out.includes('\n') && (JSON.parse(out) as { url: string }), {
        timeout: 30_000,
      });
      return listeningOn(Number(new URL(url).port));
    } finally {
      child.kill('SIGTERM');
    }
  }

  it('the mock server: 127.0.0.1, unless told otherwise', async () => {
    expect(await mockServerListensOn(['--port', '0'])).toEqual(['127.0.0.1']);
    expect(await mockServerListensOn(['--port', '0', '--host', '0.0.0.0'])).toEqual(['0.0.0.0']);
  });

  it('the metrics server: 127.0.0.1, unless told otherwise', async () => {
    const prefix = rig.prefix();
    for (const [flags, expected] of [
      [[], '127.0.0.1'],
      [['--metrics-host', '0.0.0.0'], '0.0.0.0'],
    ] as [string[], string][]) {
      const port = await freePort();
      const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--metrics-port', String(port), ...flags]);
      fleet.spawn();
      await fleet.during(async () => {
        await fleet.oldestWorkingFor(0);
        expect(listeningOn(port)).toEqual([expected]);
      });
    }
  });
});
