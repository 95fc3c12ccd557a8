/**
 * Structured logs on stderr (JSON for machines, pretty on a TTY). Keys that could carry a secret are redacted
 * wherever they appear, as a second fence behind never logging them in the first place.
 */
import { type Logger, pino } from 'pino';

export type { Logger };

export const REDACTED_KEYS = [
  'secret',
  'access_token',
  'accessToken',
  'token',
  'secretAccessKey',
  'password',
];

export interface LoggerOptions {
  level?: string;
  /** Pretty, human-readable lines; default: when stderr is a TTY. */
  pretty?: boolean;
  /** Where to write; default stderr. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  const redact = { paths: REDACTED_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), censor: '[redacted]' };
  const pretty = options.pretty ?? (options.destination === undefined && process.stderr.isTTY === true);
  if (pretty) {
    return pino({
      level,
      redact,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, colorize: true, ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level, redact, base: undefined }, options.destination ?? pino.destination(2));
}

/** A logger that drops everything, for library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
