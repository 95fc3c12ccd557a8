/**
 * A Redis for one machine without setup. `run`, `demo` and `watch` use REDIS_URL when it is set, else whatever
 * answers on the default address, else a private redis-server started from PATH with its data (AOF on) under
 * `./.wxacode/redis/`: a run that was interrupted finds its campaign and queue there when it is run again.
 *
 * The private server runs in its own process group, so a Ctrl-C meant for the command does not take Redis down
 * while the worker is still finishing its in-flight jobs; the command shuts it down (SHUTDOWN flushes the AOF)
 * once no other command in the same folder uses it. `server.json` records its port and pid: a server left
 * running by a command that was killed outright is found and reused rather than started twice on one folder.
 *
 * Other users of the machine are kept out: the folder is 0700, the server asks for a random password (set in a
 * 0600 `redis.conf`, never on its command line, where `ps` would show it, and kept in the 0600 `server.json`),
 * and listens on 127.0.0.1 only. Finding or starting the server, and stopping it after its last user, happen
 * under a lock file (`start.lock`, holding its owner's pid): two commands started at once share one server.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { type Config, ConfigError, redactUrl, redisUrlProblem } from './config.js';

/** The folder of local state, relative to the working directory (git-ignored). */
export const LOCAL_STATE_DIR = '.wxacode';

/** Where the private redis-server keeps its data, its log, its port/pid and the pids of the commands using it. */
export const PRIVATE_REDIS_DIR = path.join(LOCAL_STATE_DIR, 'redis');

/** Overrides the default address tried when REDIS_URL is not set (tests point it where nothing listens). */
export const DEFAULT_REDIS_URL_ENV = 'WXACODE_DEFAULT_REDIS_URL';

export const INSTALL_REDIS =
  'install it (`sudo apt-get install -y redis-server`, `brew install redis`), run `docker compose up -d redis`, or set REDIS_URL';

export interface LocalRedisOptions {
  /** Data folder of the private server. Default `./.wxacode/redis`. */
  dir?: string;
  /** The address tried when REDIS_URL is not set. Default: WXACODE_DEFAULT_REDIS_URL, else config.redisUrl. */
  defaultUrl?: string;
  /** Start a private server when none is found. Default true; false for commands that only read. */
  start?: boolean;
  /** How long the default address has to answer a PING. Default 300 ms. */
  probeTimeoutMs?: number;
  /** How long a starting server may take to answer (loading a large AOF). Default 30 s. */
  startTimeoutMs?: number;
}

export interface LocalRedis {
  url: string;
  /** REDIS_URL, the default address, or the private server (started now, or found running). */
  source: 'REDIS_URL' | 'default' | 'private';
  /** For the private server: this call started it. */
  started: boolean;
  /** The private server's folder. */
  dir?: string;
  /** Done with it: the private server is shut down unless another command in the folder still uses it. */
  release(): Promise<void>;
}

interface ServerRecord {
  port: number;
  pid: number;
  /** Absent for a server started by a version without one: it is reused as it is until it stops. */
  password?: string;
}

/** The default address for `options`, validated like REDIS_URL. */
export function defaultRedisUrl(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  const url = env[DEFAULT_REDIS_URL_ENV];
  if (url === undefined || url === '') return config.redisUrl;
  const problem = redisUrlProblem(url);
  if (problem) throw new ConfigError([{ setting: DEFAULT_REDIS_URL_ENV, message: problem }]);
  return url;
}

/** True when something at `url` answers a PING within the timeout (an error reply counts: it is a Redis). */
export function redisAnswers(url: string, timeoutMs: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 6379) });
    const done = (answered: boolean) => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', () => done(true));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function privateUrl(record: Omit<ServerRecord, 'pid'>): string {
  const auth = record.password === undefined ? '' : `:${record.password}@`;
  return `redis://${auth}127.0.0.1:${record.port}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A short-lived client of the private server: no retries, so a server that is gone fails at once. */
async function withClient<T>(
  server: Omit<ServerRecord, 'pid'>,
  fn: (redis: Redis) => Promise<T>,
): Promise<T | undefined> {
  const redis = new Redis(privateUrl(server), {
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } catch {
    return undefined;
  } finally {
    // After SHUTDOWN the server has closed the socket: disconnecting again would hold the process for ioredis's
    // 2 s close timeout, waiting for a close that already happened.
    if (redis.status !== 'end') redis.disconnect();
  }
}

/** The pid of the server answering on `port`, so a recorded server is only reused if it is still ours. */
async function serverPid(server: Omit<ServerRecord, 'pid'>): Promise<number | undefined> {
  const info = await withClient(server, (redis) => redis.info('server'));
  const match = info && /^process_id:(\d+)/m.exec(info);
  return match ? Number(match[1]) : undefined;
}

async function readRecord(dir: string): Promise<ServerRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(path.join(dir, 'server.json'), 'utf8')) as ServerRecord;
    const valid =
      Number.isInteger(record.port) &&
      Number.isInteger(record.pid) &&
      (record.password === undefined || typeof record.password === 'string');
    return valid ? record : undefined;
  } catch {
    return undefined;
  }
}

async function runningServer(dir: string): Promise<ServerRecord | undefined> {
  const record = await readRecord(dir);
  if (!record || !alive(record.pid)) return undefined;
  return (await serverPid(record)) === record.pid ? record : undefined;
}

/** The folder, created (or narrowed, if an earlier version made it) readable by its owner only. */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/**
 * Run `fn` holding `start.lock` in `dir`: created exclusively, with our pid in it. A lock whose pid is dead is
 * taken over; a live one is waited for, up to `timeoutMs` (it is held at most for one server start).
 */
async function withLock<T>(dir: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, 'start.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(lock, 'wx', 0o600);
      try {
        await handle.writeFile(String(process.pid));
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // An empty lock is one being written this instant: its owner is alive.
    const owner = Number.parseInt(await readFile(lock, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(owner) && !alive(owner)) {
      await rm(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new ConfigError([
        {
          setting: 'REDIS_URL',
          message: `is not set and the private redis-server in ${dir} stays locked by process ${owner} (${lock})`,
        },
      ]);
    }
    await sleep(25);
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

async function lastLogLine(dir: string): Promise<string> {
  const log = await readFile(path.join(dir, 'redis.log'), 'utf8').catch(() => '');
  return (
    log
      .trim()
      .split('\n')
      .at(-1)
      ?.replace(/^\d+:[A-Z] .*?[*#\-.] /, '') ?? ''
  );
}

async function startServer(dir: string, defaultUrl: string, timeoutMs: number): Promise<ServerRecord> {
  const port = await freePort();
  const password = randomBytes(24).toString('hex');
  const conf = path.join(path.resolve(dir), 'redis.conf');
  await rm(conf, { force: true });
  await writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode yes',
      `requirepass ${password}`,
      `dir "${path.resolve(dir).replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`,
      'appendonly yes',
      'save ""',
      'logfile redis.log',
      'maxmemory-policy noeviction',
      '',
    ].join('\n'),
    { mode: 0o600, flag: 'wx' },
  );
  const child = spawn('redis-server', [conf], { cwd: dir, detached: true, stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConfigError([
      {
        setting: 'REDIS_URL',
        message: missing
          ? `is not set, nothing answers at ${redactUrl(defaultUrl)}, and redis-server is not on PATH to start a private one: ${INSTALL_REDIS}`
          : `is not set and redis-server could not be started (${(err as Error).message})`,
      },
    ]);
  }
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (!(await redisAnswers(privateUrl({ port }), 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      if (child.exitCode === null) child.kill('SIGKILL');
      throw new ConfigError([
        {
          setting: 'REDIS_URL',
          message: `is not set and the private redis-server in ${dir} did not start (${await lastLogLine(dir)}); see ${path.join(dir, 'redis.log')}`,
        },
      ]);
    }
    await sleep(50);
  }
  const record: ServerRecord = { port, pid: child.pid!, password };
  const file = path.join(dir, 'server.json');
  await rm(file, { force: true });
  await writeFile(file, `${JSON.stringify(record)}\n`, { mode: 0o600, flag: 'wx' });
  return record;
}

/**
 * Register a user of the server (a file named `<pid>.<random>`, so one process may hold it twice); returns the
 * release that shuts the server down after the last user. Users whose process died no longer count.
 */
async function use(dir: string, record: ServerRecord, lockTimeoutMs: number): Promise<() => Promise<void>> {
  const users = path.join(dir, 'users');
  await mkdir(users, { recursive: true });
  const mine = `${process.pid}.${randomUUID().slice(0, 8)}`;
  await writeFile(path.join(users, mine), '');
  // Under the lock: a command starting now must not find this server just before it is shut down.
  return () =>
    withLock(dir, lockTimeoutMs, async () => {
      await rm(path.join(users, mine), { force: true });
      let others = 0;
      // The folder may have been deleted under us: then nobody else is registered, and the server must still stop.
      for (const user of await readdir(users).catch(() => [])) {
        if (alive(Number.parseInt(user, 10))) others++;
        else await rm(path.join(users, user), { force: true });
      }
      if (others > 0) return;
      await withClient(record, (redis) => redis.call('SHUTDOWN').catch(() => undefined));
      // The next start opens the same AOF: wait until this server has let go of it.
      for (let i = 0; i < 200 && alive(record.pid); i++) await sleep(50);
      if (!alive(record.pid)) await rm(path.join(dir, 'server.json'), { force: true });
    });
}

/**
 * The Redis a one-machine command should use: REDIS_URL if set, else the default address if it answers, else a
 * private server in `dir` (found running, or started). Throws a ConfigError naming REDIS_URL when redis-server
 * is needed and not on PATH.
 */
export async function localRedis(config: Config, options: LocalRedisOptions = {}): Promise<LocalRedis> {
  const none = async () => undefined;
  if (config.redisUrlGiven) {
    return { url: config.redisUrl, source: 'REDIS_URL', started: false, release: none };
  }
  const defaultUrl = options.defaultUrl ?? defaultRedisUrl(config);
  if (await redisAnswers(defaultUrl, options.probeTimeoutMs ?? 300)) {
    return { url: defaultUrl, source: 'default', started: false, release: none };
  }
  const dir = options.dir ?? PRIVATE_REDIS_DIR;
  if (options.start === false) {
    const record = existsSync(dir) ? await runningServer(dir) : undefined;
    if (!record) return { url: defaultUrl, source: 'default', started: false, release: none };
  }
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  // Another command may hold the lock for a whole start (loading a large AOF), and then some.
  const lockTimeoutMs = startTimeoutMs + 30_000;
  await privateDir(dir);
  return withLock(dir, lockTimeoutMs, async () => {
    let record = await runningServer(dir);
    const started = record === undefined;
    if (!record) {
      if (options.start === false)
        return { url: defaultUrl, source: 'default', started: false, release: none };
      record = await startServer(dir, defaultUrl, startTimeoutMs);
    }
    const release = await use(dir, record, lockTimeoutMs);
    return { url: privateUrl(record), source: 'private', started, dir, release };
  });
}
