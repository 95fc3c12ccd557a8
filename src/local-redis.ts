/**
 * A Redis for one machine without setup. `run`, `demo` and `watch` use REDIS_URL when it is set, else whatever
 * answers on the default address, else a private redis-server started from PATH with its data (AOF on) under
 * `./.wxacode/redis/`: a run that was interrupted finds its campaign and queue there when it is run again.
 *
 * The private server runs in its own process group, so a Ctrl-C meant for the command does not take Redis down
 * while the worker is still finishing its in-flight jobs; the command shuts it down (SHUTDOWN flushes the AOF)
 * once no other command in the same folder uses it. `server.json` records its port and pid: a server left
 * running by a command that was killed outright is found and reused rather than started twice on one folder.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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

function privateUrl(port: number): string {
  return `redis://127.0.0.1:${port}`;
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
async function withClient<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T | undefined> {
  const redis = new Redis(privateUrl(port), {
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
async function serverPid(port: number): Promise<number | undefined> {
  const info = await withClient(port, (redis) => redis.info('server'));
  const match = info && /^process_id:(\d+)/m.exec(info);
  return match ? Number(match[1]) : undefined;
}

async function readRecord(dir: string): Promise<ServerRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(path.join(dir, 'server.json'), 'utf8')) as ServerRecord;
    return Number.isInteger(record.port) && Number.isInteger(record.pid) ? record : undefined;
  } catch {
    return undefined;
  }
}

async function runningServer(dir: string): Promise<ServerRecord | undefined> {
  const record = await readRecord(dir);
  if (!record || !alive(record.pid)) return undefined;
  return (await serverPid(record.port)) === record.pid ? record : undefined;
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
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const args = [
    ...['--port', String(port), '--bind', '127.0.0.1', '--dir', path.resolve(dir)],
    ...['--appendonly', 'yes', '--save', '', '--logfile', 'redis.log', '--maxmemory-policy', 'noeviction'],
  ];
  const child = spawn('redis-server', args, { cwd: dir, detached: true, stdio: 'ignore' });
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
  while (!(await redisAnswers(privateUrl(port), 200))) {
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
  const record = { port, pid: child.pid! };
  await writeFile(path.join(dir, 'server.json'), `${JSON.stringify(record)}\n`);
  return record;
}

/**
 * Register a user of the server (a file named `<pid>.<random>`, so one process may hold it twice); returns the
 * release that shuts the server down after the last user. Users whose process died no longer count.
 */
async function use(dir: string, record: ServerRecord): Promise<() => Promise<void>> {
  const users = path.join(dir, 'users');
  await mkdir(users, { recursive: true });
  const mine = `${process.pid}.${randomUUID().slice(0, 8)}`;
  await writeFile(path.join(users, mine), '');
  return async () => {
    await rm(path.join(users, mine), { force: true });
    let others = 0;
    // The folder may have been deleted under us: then nobody else is registered, and the server must still stop.
    for (const user of await readdir(users).catch(() => [])) {
      if (alive(Number.parseInt(user, 10))) others++;
      else await rm(path.join(users, user), { force: true });
    }
    if (others > 0) return;
    await withClient(record.port, (redis) => redis.call('SHUTDOWN').catch(() => undefined));
    // The next start opens the same AOF: wait until this server has let go of it.
    for (let i = 0; i < 200 && alive(record.pid); i++) await sleep(50);
    if (!alive(record.pid)) await rm(path.join(dir, 'server.json'), { force: true });
  };
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
  let record = await runningServer(dir);
  const started = record === undefined;
  if (!record) {
    if (options.start === false) return { url: defaultUrl, source: 'default', started: false, release: none };
    record = await startServer(dir, defaultUrl, options.startTimeoutMs ?? 30_000);
  }
  const release = await use(dir, record);
  return { url: privateUrl(record.port), source: 'private', started, dir, release };
}
