/**
 * The one place that reads configuration: environment variables, with CLI flags layered over them under the same
 * names. Every value is validated here, and each bad one is reported by its name with what was expected;
 * everything else in the project receives the typed `Config`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** A value that must never be printed: logging, JSON.stringify and util.inspect all show a placeholder. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[secret]';
  }
  toJSON(): string {
    return '[secret]';
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[secret]';
  }
}

export interface RateLimit {
  /** Calls allowed per app in any window of `durationMs`. */
  count: number;
  durationMs: number;
}

export type StorageTarget = { type: 's3'; bucket: string; prefix: string } | { type: 'local'; dir: string };

export type TokenMode = 'stable' | 'classic';

export interface S3Settings {
  endpoint?: string;
  forcePathStyle: boolean;
  region: string;
  /** Absent: the SDK's own credential chain (instance roles, profiles). */
  credentials?: { accessKeyId: string; secretAccessKey: Secret };
}

export interface Config {
  redisUrl: string;
  /** False when REDIS_URL was not set and the default applies (`run` may then start a private Redis). */
  redisUrlGiven: boolean;
  /** Namespace of every Redis key the project writes, BullMQ's and the limiter's included. */
  prefix: string;
  /** appid → AppSecret, from WECHAT_APPID/WECHAT_SECRET and WECHAT_APPS / WECHAT_APPS_FILE. */
  apps: Map<string, Secret>;
  wechatBaseUrl: string;
  tokenMode: TokenMode;
  rateLimit: RateLimit;
  /** Most bytes of generated images kept in Redis while storage refuses them (campaign/stash.ts). */
  stashMaxBytes: number;
  storage: StorageTarget;
  publicBaseUrl?: string;
  s3: S3Settings;
  /** How long a completed campaign's Redis records are kept; undefined: forever. */
  retentionMs?: number;
  /** Most rows of one campaign queued at once (campaign/feeder.ts): by default a minute of the rate limit. */
  window: number;
}

/** The settings this module reads, documented in the README's configuration table. */
export const SETTINGS = [
  'REDIS_URL',
  'WXACODE_PREFIX',
  'WECHAT_APPID',
  'WECHAT_SECRET',
  'WECHAT_APPS',
  'WECHAT_APPS_FILE',
  'WECHAT_API_BASE_URL',
  'WECHAT_TOKEN_MODE',
  'WXACODE_RATE_LIMIT',
  'WXACODE_STASH_MAX_MB',
  'WXACODE_STORAGE',
  'WXACODE_PUBLIC_BASE_URL',
  'WXACODE_RETENTION',
  'WXACODE_WINDOW',
  'S3_ENDPOINT',
  'S3_FORCE_PATH_STYLE',
  'AWS_REGION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
] as const;
export type Setting = (typeof SETTINGS)[number];
export type Settings = Partial<Record<Setting, string | undefined>>;

export const DEFAULTS = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  WXACODE_PREFIX: 'wxacode',
  WECHAT_API_BASE_URL: 'https://api.weixin.qq.com',
  WECHAT_TOKEN_MODE: 'stable',
  WXACODE_RATE_LIMIT: '5000/60s',
  WXACODE_STASH_MAX_MB: '32',
  WXACODE_STORAGE: './wxacode-out',
  AWS_REGION: 'us-east-1',
} as const satisfies Settings;

export interface ConfigProblem {
  setting: string;
  message: string;
}

/** The text of the file a setting names, or a problem naming the setting, the file and why it cannot be read. */
export function readSettingFile(
  setting: string,
  file: string,
  problems: ConfigProblem[],
): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    problems.push({
      setting,
      message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    });
    return undefined;
  }
}

/** One or more settings are wrong; `problems` names each. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${p.setting}: ${p.message}`).join('\n'));
  }
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

/** `5000/60s`, `5000/1m`, `250/2500ms` → { count, durationMs }. */
export function parseRateLimit(text: string): RateLimit | undefined {
  const match = /^\s*(\d+)\s*\/\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$/.exec(text);
  if (!match) return undefined;
  const count = Number(match[1]);
  const durationMs = Number(match[2]) * DURATION_UNITS[match[3]!]!;
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isInteger(durationMs) || durationMs < 1) {
    return undefined;
  }
  return { count, durationMs };
}

export function formatRateLimit(rate: RateLimit): string {
  return rate.durationMs % 1000 === 0
    ? `${rate.count}/${rate.durationMs / 1000}s`
    : `${rate.count}/${rate.durationMs}ms`;
}

const RETENTION_UNITS: Record<string, number> = { ...DURATION_UNITS, d: 86_400_000 };

/** `90d`, `12h`, `30m`, `45s`, `500ms` → milliseconds; `forever` → Infinity. */
export function parseRetention(text: string): number | undefined {
  if (/^\s*forever\s*$/i.test(text)) return Number.POSITIVE_INFINITY;
  const match = /^\s*(\d+)\s*(ms|s|m|min|h|d)\s*$/.exec(text);
  if (!match) return undefined;
  const ms = Number(match[1]) * RETENTION_UNITS[match[2]!]!;
  return Number.isSafeInteger(ms) && ms >= 1 ? ms : undefined;
}

/** `s3://bucket/prefix`, `file:///abs/dir` or a folder path (relative to `cwd`). */
export function parseStorage(text: string, cwd: string): StorageTarget | string {
  if (text.startsWith('s3://')) {
    const rest = text.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      return `"${redactUrl(bucket)}" is not a valid S3 bucket name (3-63 characters: a-z 0-9 . -)`;
    }
    if (prefix.split('/').some((part) => part === '.' || part === '..')) {
      return `the key prefix "${prefix}" must not contain "." or ".." segments`;
    }
    return { type: 's3', bucket, prefix };
  }
  if (text.startsWith('file://')) {
    let dir: string;
    try {
      dir = new URL(text).pathname;
    } catch {
      return `"${redactUrl(text)}" is not a valid file:// URL`;
    }
    if (!path.isAbsolute(dir) || new URL(text).host !== '')
      return 'file:// URLs must be absolute: file:///abs/dir';
    return { type: 'local', dir: decodeURIComponent(dir) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    return `unsupported scheme in "${redactUrl(text)}"; expected s3://bucket/prefix, file:///abs/dir or a folder path`;
  }
  if (text.trim() === '') return 'is empty; expected s3://bucket/prefix, file:///abs/dir or a folder path';
  return { type: 'local', dir: path.resolve(cwd, text) };
}

const APPID = /^[A-Za-z0-9_-]{1,64}$/;

/** One appid/secret pair as written; `at` is its 1-based position, the only way to name an entry that is malformed. */
interface AppEntry {
  at: number;
  /** Undefined when the entry has no separator: then the whole entry may be a secret. */
  appid?: string;
  secret: string;
}

function parseApps(text: string, setting: string, problems: ConfigProblem[]): AppEntry[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      // The text may hold secrets: name the setting, never echo its value.
      problems.push({ setting, message: 'is not valid JSON; expected {"appid": "secret", ...}' });
      return [];
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      problems.push({ setting, message: 'must be a JSON object mapping appid to secret' });
      return [];
    }
    return Object.entries(parsed).map(([appid, secret], i) => ({
      at: i + 1,
      appid,
      secret: typeof secret === 'string' ? secret : '',
    }));
  }
  return trimmed
    .split(/[,\n]/)
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const colon = entry.indexOf(':');
      return colon === -1
        ? { at: i + 1, secret: entry }
        : { at: i + 1, appid: entry.slice(0, colon).trim(), secret: entry.slice(colon + 1).trim() };
    });
}

function collectApps(s: Settings, problems: ConfigProblem[]): Map<string, Secret> {
  const apps = new Map<string, Secret>();
  // A malformed entry is named by its position only: `wx…=SECRET`, or a bare AppSecret (32 hex digits, which
  // also pass for an appid), would otherwise be echoed into logs.
  const add = ({ at, appid, secret }: AppEntry, setting: string) => {
    if (appid === undefined) {
      problems.push({ setting, message: `entry ${at} is not appid:secret` });
    } else if (!APPID.test(appid)) {
      problems.push({
        setting,
        message: `entry ${at} does not start with an appid (letters, digits, _ and -)`,
      });
    } else if (secret === '') {
      problems.push({ setting, message: `appid ${appid} has no secret` });
    } else {
      apps.set(appid, new Secret(secret));
    }
  };
  if (s.WECHAT_APPID || s.WECHAT_SECRET) {
    if (!s.WECHAT_APPID)
      problems.push({ setting: 'WECHAT_APPID', message: 'is missing while WECHAT_SECRET is set' });
    else if (!APPID.test(s.WECHAT_APPID))
      problems.push({ setting: 'WECHAT_APPID', message: 'is not an appid (letters, digits, _ and -)' });
    else add({ at: 1, appid: s.WECHAT_APPID, secret: s.WECHAT_SECRET ?? '' }, 'WECHAT_SECRET');
  }
  if (s.WECHAT_APPS) {
    for (const entry of parseApps(s.WECHAT_APPS, 'WECHAT_APPS', problems)) add(entry, 'WECHAT_APPS');
  }
  if (s.WECHAT_APPS_FILE) {
    const text = readSettingFile('WECHAT_APPS_FILE', s.WECHAT_APPS_FILE, problems);
    if (text !== undefined) {
      for (const entry of parseApps(text, 'WECHAT_APPS_FILE', problems)) add(entry, 'WECHAT_APPS_FILE');
    }
  }
  return apps;
}

function parseBoolean(text: string): boolean | undefined {
  if (/^(1|true|yes|on)$/i.test(text)) return true;
  if (/^(0|false|no|off)$/i.test(text)) return false;
  return undefined;
}

function parseHttpUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** Pick the settings this module knows from an environment (or any record of strings). */
/** Why `url` is not a Redis address, with any password in it masked; undefined when it is one. */
export function redisUrlProblem(url: string): string | undefined {
  if (/^rediss?:\/\//.test(url) && URL.canParse(url)) return undefined;
  return `"${redactUrl(url)}" is not a redis:// or rediss:// URL`;
}

export function settingsFrom(env: NodeJS.ProcessEnv): Settings {
  const settings: Settings = {};
  for (const name of SETTINGS) {
    const value = env[name];
    if (value !== undefined && value !== '') settings[name] = value;
  }
  return settings;
}

/**
 * Build the config from `env` with `overrides` (CLI flags, by setting name) on top.
 * Throws a ConfigError naming every bad setting at once.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Settings = {},
  cwd: string = process.cwd(),
): Config {
  const s: Settings = { ...settingsFrom(env) };
  for (const [name, value] of Object.entries(overrides)) {
    if (value !== undefined) s[name as Setting] = value;
  }
  const problems: ConfigProblem[] = [];
  const bad = (setting: Setting, message: string) => problems.push({ setting, message });

  const redisUrl = s.REDIS_URL ?? DEFAULTS.REDIS_URL;
  const redisProblem = redisUrlProblem(redisUrl);
  if (redisProblem) bad('REDIS_URL', redisProblem);

  const prefix = s.WXACODE_PREFIX ?? DEFAULTS.WXACODE_PREFIX;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(prefix)) {
    bad(
      'WXACODE_PREFIX',
      `"${prefix}" must be 1-64 characters of letters, digits, _ . and - (no ":" or braces)`,
    );
  }

  const wechatBaseUrl = s.WECHAT_API_BASE_URL ?? DEFAULTS.WECHAT_API_BASE_URL;
  const base = parseHttpUrl(wechatBaseUrl);
  if (!base) bad('WECHAT_API_BASE_URL', `"${redactUrl(wechatBaseUrl)}" is not an http(s) URL`);

  const tokenMode = s.WECHAT_TOKEN_MODE ?? DEFAULTS.WECHAT_TOKEN_MODE;
  if (tokenMode !== 'stable' && tokenMode !== 'classic') {
    bad('WECHAT_TOKEN_MODE', `must be "stable" or "classic", got "${tokenMode}"`);
  }

  const rateText = s.WXACODE_RATE_LIMIT ?? DEFAULTS.WXACODE_RATE_LIMIT;
  const rateLimit = parseRateLimit(rateText);
  if (!rateLimit) {
    bad(
      'WXACODE_RATE_LIMIT',
      `"${rateText}" is not <count>/<duration>, e.g. 5000/60s, 5000/1m or 250/2500ms`,
    );
  }

  const stashText = s.WXACODE_STASH_MAX_MB ?? DEFAULTS.WXACODE_STASH_MAX_MB;
  const stashMb = /^\d+$/.test(stashText) ? Number(stashText) : Number.NaN;
  if (!(stashMb >= 1 && stashMb <= 4096)) {
    bad('WXACODE_STASH_MAX_MB', `"${stashText}" is not a whole number of MB from 1 to 4096`);
  }

  const storage = parseStorage(s.WXACODE_STORAGE ?? DEFAULTS.WXACODE_STORAGE, cwd);
  if (typeof storage === 'string') bad('WXACODE_STORAGE', storage);

  const publicBaseUrl = s.WXACODE_PUBLIC_BASE_URL;
  if (publicBaseUrl !== undefined && !parseHttpUrl(publicBaseUrl)) {
    bad('WXACODE_PUBLIC_BASE_URL', `"${redactUrl(publicBaseUrl)}" is not an http(s) URL`);
  }

  if (s.S3_ENDPOINT !== undefined && !parseHttpUrl(s.S3_ENDPOINT)) {
    bad('S3_ENDPOINT', `"${redactUrl(s.S3_ENDPOINT)}" is not an http(s) URL`);
  }
  let forcePathStyle = s.S3_ENDPOINT !== undefined;
  if (s.S3_FORCE_PATH_STYLE !== undefined) {
    const parsed = parseBoolean(s.S3_FORCE_PATH_STYLE);
    if (parsed === undefined)
      bad('S3_FORCE_PATH_STYLE', `must be true or false, got "${s.S3_FORCE_PATH_STYLE}"`);
    else forcePathStyle = parsed;
  }
  const region = s.AWS_REGION ?? DEFAULTS.AWS_REGION;
  // The SDK only refuses a bad region at the first request, deep inside an upload.
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(region)) {
    bad('AWS_REGION', `"${region}" is not a region name like us-east-1 or auto`);
  }
  if (Boolean(s.AWS_ACCESS_KEY_ID) !== Boolean(s.AWS_SECRET_ACCESS_KEY)) {
    bad(
      s.AWS_ACCESS_KEY_ID ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID',
      'is missing: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither',
    );
  }

  const retention = s.WXACODE_RETENTION === undefined ? undefined : parseRetention(s.WXACODE_RETENTION);
  if (s.WXACODE_RETENTION !== undefined && retention === undefined) {
    bad(
      'WXACODE_RETENTION',
      `"${s.WXACODE_RETENTION}" is not a duration like 90d, 12h or 30m (or "forever")`,
    );
  }

  const windowText = s.WXACODE_WINDOW;
  const window =
    windowText === undefined ? undefined : /^\d+$/.test(windowText) ? Number(windowText) : Number.NaN;
  if (window !== undefined && !(window >= MIN_WINDOW && window <= MAX_WINDOW)) {
    bad(
      'WXACODE_WINDOW',
      `"${windowText}" is not a whole number of rows from ${MIN_WINDOW} to ${MAX_WINDOW}`,
    );
  }

  const apps = collectApps(s, problems);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    redisUrl,
    redisUrlGiven: s.REDIS_URL !== undefined,
    prefix,
    apps,
    wechatBaseUrl: base!.origin + base!.pathname.replace(/\/+$/, ''),
    tokenMode: tokenMode as TokenMode,
    rateLimit: rateLimit!,
    stashMaxBytes: stashMb * 1024 * 1024,
    storage: storage as StorageTarget,
    publicBaseUrl: publicBaseUrl?.replace(/\/+$/, ''),
    s3: {
      endpoint: s.S3_ENDPOINT,
      forcePathStyle,
      region,
      credentials:
        s.AWS_ACCESS_KEY_ID && s.AWS_SECRET_ACCESS_KEY
          ? { accessKeyId: s.AWS_ACCESS_KEY_ID, secretAccessKey: new Secret(s.AWS_SECRET_ACCESS_KEY) }
          : undefined,
    },
    retentionMs: retention === Number.POSITIVE_INFINITY ? undefined : retention,
    window: window ?? defaultWindow(rateLimit!),
  };
}

/**
 * Bounds of WXACODE_WINDOW. A window much under a few seconds of the cap leaves the queue empty between two
 * feeds; one over a million rows is the unbounded Redis the window is there to prevent.
 */
export const MIN_WINDOW = 100;
export const MAX_WINDOW = 1_000_000;

/** A minute of the rate limit: enough for the feeders to never leave a gap, small enough to share the cap. */
export function defaultWindow(rate: RateLimit): number {
  return Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, Math.ceil((rate.count * 60_000) / rate.durationMs)));
}

/** The apps a worker works for: those named (each must be configured), or every configured app. */
export function workerApps(config: Config, wanted?: string[]): string[] {
  for (const appid of wanted ?? []) {
    if (!config.apps.has(appid)) {
      throw new ConfigError([
        { setting: '--app', message: `appid ${appid} is not configured (WECHAT_APPID or WECHAT_APPS)` },
      ]);
    }
  }
  const apps = wanted ?? [...config.apps.keys()];
  if (apps.length === 0) {
    throw new ConfigError([
      {
        setting: 'WECHAT_APPID',
        message: 'no mini program configured: set WECHAT_APPID and WECHAT_SECRET (or WECHAT_APPS)',
      },
    ]);
  }
  return apps;
}

/** The app a command works for: the one named, or the only one configured. */
export function pickApp(config: Config, appid?: string): string {
  const [first, ...rest] = workerApps(config, appid === undefined ? undefined : [appid]);
  if (rest.length > 0) {
    throw new ConfigError([
      { setting: '--app', message: `several apps are configured (${[first, ...rest].join(', ')}): name one` },
    ]);
  }
  return first!;
}

/**
 * A URL for messages: any password in it is masked, and so is a lone user name (`redis://PASSWORD@host` is a
 * common slip). Text that does not parse as a URL with a host (`user:pass@host:6379`, a password holding `/`
 * or `?`) loses everything up to its last `@`, since where the password ends cannot be known.
 */
export function redactUrl(text: string): string {
  if (URL.canParse(text)) {
    const url = new URL(text);
    if (url.host !== '') {
      // Shown as typed when there is nothing to hide: URL would add a slash the user never wrote.
      if (!url.password && !url.username) return text;
      if (url.password) url.password = '***';
      else url.username = '***';
      return url.toString();
    }
  }
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0] ?? '';
  const at = text.lastIndexOf('@');
  return at < scheme.length ? text : `${scheme}***${text.slice(at)}`;
}
