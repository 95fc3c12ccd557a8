/**
 * Start a private redis-server on a free port. Tests never use a Redis they did not start (or were given with
 * TEST_REDIS_URL), so they can never flush or pollute someone else's data.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitFor } from './wait.js';

export const REDIS_MISSING =
  'redis-server is not on PATH. Install it: `sudo apt-get install -y redis-server` (Debian/Ubuntu), ' +
  '`brew install redis` (macOS), or point TEST_REDIS_URL at a Redis you own.';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
  /** Start it again on the same port and folder (its AOF, when enabled, brings the data back). */
  restart(): Promise<void>;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function untilListening(port: number): Promise<void> {
  await waitFor(`redis-server to listen on ${port}`, () => accepts(port), { timeoutMs: 10_000, everyMs: 25 });
}

export async function startRedis(options: { appendonly?: boolean } = {}): Promise<TestRedis> {
  if (spawnSync('redis-server', ['--version']).error) throw new Error(REDIS_MISSING);
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'wxacode-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    options.appendonly ? 'yes' : 'no',
    '--maxmemory-policy',
    'noeviction',
  ];
  const redis: TestRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    process: spawn('redis-server', args, { stdio: 'ignore' }),
    async stop() {
      const child = redis.process;
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
    async restart() {
      await redis.stop();
      redis.process = spawn('redis-server', args, { stdio: 'ignore' });
      await untilListening(port);
    },
  };
  await untilListening(port);
  return redis;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
