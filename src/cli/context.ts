/** What every command needs: the config, a checked Redis connection, storage, a logger, and clean errors. */
import { Redis } from 'ioredis';
import { type Config, loadConfig, redactUrl, type Settings } from '../config.js';
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

export function cliLogger(flags: GlobalFlags = {}): Logger {
  return createLogger({ level: flags.verbose ? 'debug' : process.env.LOG_LEVEL });
}

/** Connect and PING, failing in one sentence that names the URL (password masked) when Redis is not there. */
export async function connectRedis(url: string, options: { blocking?: boolean } = {}): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    // Commands fail fast while connecting, so a wrong REDIS_URL is reported instead of retried forever; once
    // connected, BullMQ-style use (blocking) needs null here.
    maxRetriesPerRequest: options.blocking ? null : 3,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
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
