/** What every command needs: the config, a checked Redis connection, a logger, the flags and signals they share, and clean errors. */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { type Config, ConfigError, loadConfig, redactUrl, type Settings } from '../config.js';
import { type LocalRedis, type LocalRedisOptions, localRedis } from '../local-redis.js';
import { createLogger, type Logger } from '../log.js';

/** A service the command needs did not answer (Redis, storage, WeChat): one sentence, exit code 1. */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
}

/** A mistake in how the command was called, reported in one line with exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface GlobalFlags {
  verbose?: boolean;
}

export function cliConfig(overrides: Settings = {}): Config {
  return loadConfig(process.env, overrides);
}

const LOG_LEVELS = [...Object.keys(pino.levels.values), 'silent'];

/** The logger of a command: LOG_LEVEL (checked here, since pino's own error is a stack trace), or debug. */
export function cliLogger(flags: GlobalFlags = {}): Logger {
  // An empty LOG_LEVEL (`LOG_LEVEL= wxacode ...`) means the default, as for every other setting.
  const level = flags.verbose ? 'debug' : process.env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(level)) {
    throw new ConfigError([
      { setting: 'LOG_LEVEL', message: `must be one of ${LOG_LEVELS.join(', ')}, got "${level}"` },
    ]);
  }
  return createLogger({ level });
}

/** Connect and PING, failing in one sentence that names the URL (password masked) when Redis is not there. */
export async function connectRedis(url: string, options: { blocking?: boolean } = {}): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    // Commands fail fast while connecting, so a wrong REDIS_URL is reported instead of retried forever; once
    // connected, BullMQ-style use (blocking) needs null here.
    maxRetriesPerRequest: options.blocking ? null : 3,
    // ioredis arms this timer on disconnect() even when the socket is already closed (a refused connection) and
    // never clears it, which holds a failing command's exit for the default 2 s.
    disconnectTimeout: 100,
  });
  // ioredis rejects connect() with a bare "Connection is closed."; the socket's own error says why.
  let socketError: NodeJS.ErrnoException | undefined;
  redis.on('error', (err: NodeJS.ErrnoException) => {
    socketError ??= err;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    const cause = socketError ?? (err as NodeJS.ErrnoException);
    const reason = cause.code ?? cause.message;
    throw new ServiceError(
      `Redis is unreachable at ${redactUrl(url)} (${reason}); check REDIS_URL or start redis-server`,
    );
  }
  return redis;
}

export function parseInteger(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\s*-?\d+\s*$/.test(text) || value < min || value > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

export function parseConcurrency(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseInteger('--concurrency', text, 1, 1000);
}

export function parseInterval(name: string, text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseInteger(name, text, 1, 3600) * 1000;
}

/** Resolve on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * A signal, or an error nothing handled (a bug, a promise nobody awaited): either way a long-running command
 * stops taking work and lets what it holds finish, rather than dying mid-job with every app's jobs in flight.
 * Errors after the first are logged too, so that the graceful stop is not cut short by one of them.
 */
export function untilStopRequest(logger: Logger): Promise<NodeJS.Signals | 'fatal'> {
  return new Promise((resolve) => {
    const onFatal = (err: unknown) => {
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      logger.error({ err: message }, 'unexpected error: stopping gracefully');
      resolve('fatal');
    };
    process.on('unhandledRejection', onFatal);
    process.on('uncaughtException', onFatal);
    void untilSignal().then(resolve);
  });
}

/** Logs stay at warn unless asked for: the progress display and the closing summary tell the story. */
export function runLogger(flags: GlobalFlags): Logger {
  return createLogger({ level: flags.verbose ? 'debug' : (process.env.LOG_LEVEL ?? 'warn') });
}

function describeLocalRedis(redis: LocalRedis): string {
  const how = redis.started ? 'started a private redis-server' : 'using the private redis-server';
  return `REDIS_URL is not set and nothing answers at the default address: ${how} on ${redactUrl(redis.url)}, data in ${redis.dir}/\n`;
}

/**
 * Run `fn` with the Redis a one-machine command should use (see local-redis.ts) and a checked connection to it;
 * a private server is released afterwards, whatever happens in `fn`.
 */
export async function withLocalRedis<T>(
  config: Config,
  options: LocalRedisOptions,
  fn: (config: Config, redis: Redis) => Promise<T>,
): Promise<T> {
  const local = await localRedis(config, options);
  try {
    if (local.source === 'private') process.stderr.write(describeLocalRedis(local));
    const resolved = { ...config, redisUrl: local.url };
    const redis = await connectRedis(resolved.redisUrl);
    try {
      return await fn(resolved, redis);
    } finally {
      redis.disconnect();
    }
  } finally {
    await local.release();
  }
}
