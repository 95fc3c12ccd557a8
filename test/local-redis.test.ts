/**
 * The private redis-server of one-machine commands: started when nothing answers, found again while it runs,
 * shut down after its last user, and its data (AOF) back on the next start. The default address is always a
 * free port here, never the machine's own 6379.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import {
  DEFAULT_REDIS_URL_ENV,
  defaultRedisUrl,
  type LocalRedis,
  localRedis,
  redisAnswers,
} from '../src/local-redis.js';
import { freePort } from '../test-support/redis-server.js';
import { testPrefix, testRedisUrl } from './helpers/redis.js';

let root: string;
let nowhere: string;
const prefix = testPrefix();
const held: LocalRedis[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function record(dir: string): Promise<{ port: number; pid: number; password: string }> {
  return JSON.parse(await readFile(path.join(dir, 'server.json'), 'utf8'));
}

async function open(dir: string, options: { start?: boolean } = {}): Promise<LocalRedis> {
  const local = await localRedis(loadConfig({}), { dir, defaultUrl: nowhere, ...options });
  held.push(local);
  return local;
}

async function release(local: LocalRedis): Promise<void> {
  held.splice(held.indexOf(local), 1);
  await local.release();
}

async function client(url: string, work: (redis: Redis) => Promise<void>): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    await work(redis);
  } finally {
    redis.disconnect();
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'wxacode-local-redis-'));
  nowhere = `redis://127.0.0.1:${await freePort()}`;
});

afterAll(async () => {
  for (const local of [...held]) await release(local);
  // A test that failed half-way may leave a server running.
  for (const dir of await readdir(root)) {
    const server = await record(path.join(root, dir)).catch(() => undefined);
    if (server && alive(server.pid)) process.kill(server.pid, 'SIGKILL');
  }
  await rm(root, { recursive: true, force: true });
});

describe('choosing a Redis', () => {
  it('takes REDIS_URL as given, and starts nothing', async () => {
    const dir = path.join(root, 'given');
    const local = await localRedis(loadConfig({ REDIS_URL: nowhere }), { dir });
    expect(local).toMatchObject({ url: nowhere, source: 'REDIS_URL', started: false });
    expect(existsSync(dir)).toBe(false);
  });

  it('uses the default address when something answers there', async () => {
    const dir = path.join(root, 'default');
    const local = await localRedis(loadConfig({}), { dir, defaultUrl: testRedisUrl() });
    expect(local).toMatchObject({ url: testRedisUrl(), source: 'default', started: false });
    expect(existsSync(dir)).toBe(false);
  });

  it('takes the default address from WXACODE_DEFAULT_REDIS_URL, and names it when it is not a URL', () => {
    const config = loadConfig({});
    expect(defaultRedisUrl(config, {})).toBe('redis://127.0.0.1:6379');
    expect(defaultRedisUrl(config, { [DEFAULT_REDIS_URL_ENV]: nowhere })).toBe(nowhere);
    expect(() => defaultRedisUrl(config, { [DEFAULT_REDIS_URL_ENV]: 'localhost:6379' })).toThrow(ConfigError);
    expect(() => defaultRedisUrl(config, { [DEFAULT_REDIS_URL_ENV]: 'localhost:6379' })).toThrow(
      /WXACODE_DEFAULT_REDIS_URL: "localhost:6379" is not a redis:\/\/ or rediss:\/\/ URL/,
    );
  });

  it('tells an answering Redis from a closed port', async () => {
    expect(await redisAnswers(testRedisUrl(), 1000)).toBe(true);
    expect(await redisAnswers(nowhere, 1000)).toBe(false);
  });

  it('does not start a private server for a command that only reads', async () => {
    const dir = path.join(root, 'read-only');
    const local = await open(dir, { start: false });
    expect(local).toMatchObject({ url: nowhere, source: 'default', started: false });
    expect(existsSync(path.join(dir, 'server.json'))).toBe(false);
  });
});

describe('the private redis-server', () => {
  it('starts with AOF in its folder, is shared while in use, stops after its last user, and keeps its data', async () => {
    const dir = path.join(root, 'private');
    const key = `${prefix}:kept`;

    const first = await open(dir);
    expect(first).toMatchObject({ source: 'private', started: true, dir });
    const server = await record(dir);
    expect(first.url).toBe(`redis://:${server.password}@127.0.0.1:${server.port}`);
    expect(alive(server.pid)).toBe(true);
    await client(first.url, async (redis) => {
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', path.resolve(dir)]);
      await redis.set(key, 'survives a restart');
    });

    // A second command in the same folder finds the running server instead of starting another on its data.
    const second = await open(dir);
    expect(second).toMatchObject({ url: first.url, source: 'private', started: false });
    await release(first);
    expect(await redisAnswers(second.url, 1000)).toBe(true);
    await release(second);
    expect(alive(server.pid)).toBe(false);
    expect(existsSync(path.join(dir, 'server.json'))).toBe(false);

    const third = await open(dir);
    expect(third.started).toBe(true);
    expect((await record(dir)).pid).not.toBe(server.pid);
    await client(third.url, async (redis) => {
      expect(await redis.get(key)).toBe('survives a restart');
    });
    await release(third);
  });

  it('two commands started at once share one server, behind a password, in a folder of their own', async () => {
    const dir = path.join(root, 'concurrent');
    const [one, two] = await Promise.all([open(dir), open(dir)]);
    expect(one!.url).toBe(two!.url);
    expect([one!.started, two!.started].sort()).toEqual([false, true]);
    const server = await record(dir);
    expect(server.password).toMatch(/^[0-9a-f]{48}$/);
    expect(one!.url).toBe(`redis://:${server.password}@127.0.0.1:${server.port}`);

    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, 'server.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, 'redis.conf'))).mode & 0o777).toBe(0o600);
    expect(existsSync(path.join(dir, 'start.lock'))).toBe(false);
    // The password is in the 0600 config file, not on the command line that `ps` shows every user.
    const cmdline = await readFile(`/proc/${server.pid}/cmdline`, 'utf8').catch(() => '');
    expect(cmdline).not.toContain(server.password);

    const anonymous = new Redis(`redis://127.0.0.1:${server.port}`, {
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    });
    anonymous.on('error', () => undefined);
    try {
      await expect(anonymous.set(`${prefix}:x`, '1')).rejects.toThrow(/NOAUTH/);
    } finally {
      anonymous.disconnect();
    }
    await client(one!.url, async (redis) => {
      expect(await redis.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
    });

    await Promise.all([release(one!), release(two!)]);
    expect(alive(server.pid)).toBe(false);
    expect(existsSync(path.join(dir, 'server.json'))).toBe(false);
  });

  it('takes over a start lock left by a process that died', async () => {
    const dir = path.join(root, 'stale-lock');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'start.lock'), '999999999');
    const local = await open(dir);
    expect(local.started).toBe(true);
    expect(existsSync(path.join(dir, 'start.lock'))).toBe(false);
    await release(local);
  });

  it('starts afresh when the recorded server is gone, and forgets users that died', async () => {
    const dir = path.join(root, 'stale');
    const first = await open(dir);
    const { pid } = await record(dir);
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
    // The command that used it was killed too: its user file is left behind, under a pid that is gone.
    await rm(path.join(dir, 'users'), { recursive: true });
    await mkdir(path.join(dir, 'users'));
    await writeFile(path.join(dir, 'users', '999999999.dead0000'), '');
    held.splice(held.indexOf(first), 1);

    const second = await open(dir);
    expect(second.started).toBe(true);
    // A new server, whatever port the OS handed out this time (it may well be the dead one's again).
    const { pid: newPid, port: newPort, password } = await record(dir);
    expect(newPid).not.toBe(pid);
    expect(second.url).toBe(`redis://:${password}@127.0.0.1:${newPort}`);
    expect(await redisAnswers(second.url, 1000)).toBe(true);
    await release(second);
    expect(alive(newPid)).toBe(false);
    expect(await readdir(path.join(dir, 'users'))).toEqual([]);
  });
});
