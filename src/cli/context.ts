/** What every command needs: the config, a checked Redis connection, storage, a logger, and clean errors. */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { type Config, ConfigError, loadConfig, redactUrl, type Settings } from '../config.js';
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
