/**
 * API tokens of the console: where they come from (WXACODE_API_TOKENS, WXACODE_API_TOKENS_FILE) and how a
 * presented token is checked. Tokens are held as `Secret`s, so no log line or JSON ever shows one.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConfigError, type ConfigProblem, readSettingFile, Secret } from '../config.js';

export const SCOPES = ['read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiToken {
  /** Who holds it: shown in logs and in `stopped by <name>`, never the token itself. */
  name: string;
  scope: Scope;
  token: Secret;
}

/** Shorter tokens can be guessed; 16 characters of base64 is 96 bits. */
export const MIN_TOKEN_LENGTH = 16;

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

/**
 * `name:scope:token` entries separated by commas or new lines (the file may hold one a line, `#` comments
 * allowed). A malformed entry is named by its position: its text may be a token.
 */
export function parseTokens(text: string, setting: string, problems: ConfigProblem[]): ApiToken[] {
  const tokens: ApiToken[] = [];
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e !== '' && !e.startsWith('#'));
  entries.forEach((entry, i) => {
    const at = i + 1;
    const [name, scope, ...rest] = entry.split(':');
    const token = rest.join(':');
    if (name === undefined || scope === undefined || rest.length === 0) {
      problems.push({ setting, message: `entry ${at} is not name:scope:token` });
    } else if (!NAME.test(name)) {
      problems.push({ setting, message: `entry ${at}: the name must be 1-64 letters, digits, _ . @ or -` });
    } else if (!(SCOPES as readonly string[]).includes(scope)) {
      problems.push({ setting, message: `entry ${at} (${name}): the scope must be read or admin` });
    } else if (token.length < MIN_TOKEN_LENGTH) {
      problems.push({
        setting,
        message: `entry ${at} (${name}): the token must be at least ${MIN_TOKEN_LENGTH} characters`,
      });
    } else if (tokens.some((t) => t.name === name)) {
      problems.push({ setting, message: `entry ${at}: the name ${name} is used twice` });
    } else {
      tokens.push({ name, scope: scope as Scope, token: new Secret(token) });
    }
  });
  return tokens;
}

export interface ConsoleSettings {
  tokens: ApiToken[];
  /** Largest upload accepted by `POST /v1/campaigns`. */
  uploadLimitBytes: number;
}

export const CONSOLE_DEFAULTS = { WXACODE_API_UPLOAD_MAX_MB: '256' } as const;

/** The console's settings from the environment; each bad one named, as loadConfig does for the rest. */
export function loadConsoleSettings(env: NodeJS.ProcessEnv = process.env): ConsoleSettings {
  const problems: ConfigProblem[] = [];
  const tokens: ApiToken[] = [];
  if (env.WXACODE_API_TOKENS) {
    tokens.push(...parseTokens(env.WXACODE_API_TOKENS, 'WXACODE_API_TOKENS', problems));
  }
  if (env.WXACODE_API_TOKENS_FILE) {
    const text = readSettingFile('WXACODE_API_TOKENS_FILE', env.WXACODE_API_TOKENS_FILE, problems);
    if (text !== undefined) {
      for (const t of parseTokens(text, 'WXACODE_API_TOKENS_FILE', problems)) {
        if (tokens.some((o) => o.name === t.name)) {
          problems.push({ setting: 'WXACODE_API_TOKENS_FILE', message: `the name ${t.name} is used twice` });
        } else tokens.push(t);
      }
    }
  }
  const mbText = env.WXACODE_API_UPLOAD_MAX_MB || CONSOLE_DEFAULTS.WXACODE_API_UPLOAD_MAX_MB;
  const mb = /^\d+$/.test(mbText) ? Number(mbText) : Number.NaN;
  if (!(mb >= 1 && mb <= 65536)) {
    problems.push({
      setting: 'WXACODE_API_UPLOAD_MAX_MB',
      message: `"${mbText}" is not a whole number of MB from 1 to 65536`,
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { tokens, uploadLimitBytes: mb * 1024 * 1024 };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Checks presented tokens. Both sides are hashed first so that timingSafeEqual compares equal lengths, and
 * every configured token is compared whatever matched, so the time taken says nothing about which one did.
 */
export class TokenChecker {
  readonly #hashes: { token: ApiToken; hash: Buffer }[];

  constructor(tokens: ApiToken[]) {
    this.#hashes = tokens.map((token) => ({ token, hash: digest(token.token.reveal()) }));
  }

  get enabled(): boolean {
    return this.#hashes.length > 0;
  }

  check(presented: string): ApiToken | undefined {
    const hash = digest(presented);
    let found: ApiToken | undefined;
    for (const entry of this.#hashes) {
      if (timingSafeEqual(entry.hash, hash) && found === undefined) found = entry.token;
    }
    return found;
  }
}

/** Whether a token of `scope` may do what needs `needed`. */
export function allows(scope: Scope, needed: Scope): boolean {
  return scope === 'admin' || needed === 'read';
}

/**
 * Browser sessions for pages that cannot send an Authorization header (bull-board's own UI): an opaque random id
 * in an HttpOnly, SameSite=Strict cookie, mapped here to the token's holder. Only GET requests accept it, so a
 * cookie never authorises a change (no cross-site request forgery).
 */
export class Sessions {
  readonly #sessions = new Map<string, { who: ApiToken; expires: number }>();

  constructor(readonly ttlMs = 12 * 3600_000) {}

  create(who: ApiToken): string {
    const id = randomBytes(32).toString('base64url');
    this.#sessions.set(id, { who, expires: Date.now() + this.ttlMs });
    return id;
  }

  get(id: string): ApiToken | undefined {
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    if (session.expires < Date.now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session.who;
  }

  delete(id: string): void {
    this.#sessions.delete(id);
  }
}
