/**
 * Access tokens as WeChat hands them out (docs/wechat-api.md, "Access tokens"): classic tokens from
 * /cgi-bin/token, each fetch retiring the previous one after an overlap; stable tokens from
 * /cgi-bin/stable_token, the same token while it is valid, isolated from the classic ones.
 */
import { randomBytes } from 'node:crypto';

/** Stable tokens are renewed this early, so a caller never receives one about to expire. */
const STABLE_RENEW_SEC = 300;
const DAY_MS = 86_400_000;
/** Keep dead tokens this long, so their calls still count for their app and expired ones answer 42001. */
const DEAD_KEPT_MS = DAY_MS;

interface TokenRecord {
  appid: string;
  expiresAt: number;
  /** From this time on the token answers 40001; Infinity while it is the latest. */
  retiredAt: number;
}

export interface IssuedToken {
  access_token: string;
  expires_in: number;
}

export interface TokenRefusal {
  errcode: 45009 | 45011;
  /** Why, to follow WeChat's own errmsg. */
  detail: string;
}

export interface TokenCheck {
  /** The token's app, also when it is refused, unless the token is unknown. */
  appid?: string;
  /** Set when the token is refused: 40001 unknown or retired, 42001 expired. */
  errcode?: 40001 | 42001;
}

export interface TokenTimes {
  ttlSec: number;
  classicOverlapSec: number;
  forceRefreshIntervalSec: number;
  forceRefreshDailyLimit: number;
}

/** WeChat's daily quotas reset at midnight Beijing time (UTC+8). */
export function beijingDay(now: number): number {
  return Math.floor((now + 8 * 3_600_000) / DAY_MS);
}

export class TokenStore {
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #classic = new Map<string, string>();
  readonly #stable = new Map<string, string>();
  readonly #forced = new Map<string, { lastAt: number; day: number; count: number }>();
  #prunedAt = 0;

  /** `/cgi-bin/token`: a new token; the previous classic one keeps working for the overlap only. */
  issueClassic(appid: string, times: TokenTimes, now: number): IssuedToken {
    const previous = this.#record(this.#classic.get(appid));
    if (previous) previous.retiredAt = Math.min(previous.retiredAt, now + times.classicOverlapSec * 1000);
    const issued = this.#issue(appid, times.ttlSec, now);
    this.#classic.set(appid, issued.access_token);
    return issued;
  }

  /**
   * `/cgi-bin/stable_token`: the current stable token while it is valid and not about to expire (renewed
   * min(300 s, half the lifetime) early; the old one then lives out its time); `force` retires it at once,
   * at most once per interval (45011) and a limited number of times a day (45009).
   */
  stable(appid: string, force: boolean, times: TokenTimes, now: number): IssuedToken | TokenRefusal {
    const current = this.#stable.get(appid);
    const record = this.#record(current);
    if (force) {
      const day = beijingDay(now);
      let forced = this.#forced.get(appid) ?? { lastAt: -Infinity, day, count: 0 };
      if (forced.day !== day) forced = { ...forced, day, count: 0 };
      if (now - forced.lastAt < times.forceRefreshIntervalSec * 1000) {
        return {
          errcode: 45011,
          detail: `force_refresh is allowed once per ${times.forceRefreshIntervalSec} seconds`,
        };
      }
      if (forced.count >= times.forceRefreshDailyLimit) {
        return {
          errcode: 45009,
          detail: `force_refresh is allowed ${times.forceRefreshDailyLimit} times a day`,
        };
      }
      this.#forced.set(appid, { lastAt: now, day, count: forced.count + 1 });
      if (record) record.retiredAt = Math.min(record.retiredAt, now);
    } else if (current && record && record.retiredAt > now) {
      const renewMs = Math.min(STABLE_RENEW_SEC, times.ttlSec / 2) * 1000;
      if (record.expiresAt - now > renewMs) {
        return { access_token: current, expires_in: Math.floor((record.expiresAt - now) / 1000) };
      }
    }
    const issued = this.#issue(appid, times.ttlSec, now);
    this.#stable.set(appid, issued.access_token);
    return issued;
  }

  /** Which app a token belongs to, and 40001 (unknown or retired) or 42001 (expired) when it is refused. */
  check(token: string, now: number): TokenCheck {
    const record = this.#record(token);
    if (!record || record.retiredAt <= now) return { appid: record?.appid, errcode: 40001 };
    if (record.expiresAt <= now) return { appid: record.appid, errcode: 42001 };
    return { appid: record.appid };
  }

  /** Every current token of the app answers 40001 from now on, as if another server had replaced it. */
  retire(appid: string, now: number): void {
    for (const record of this.#tokens.values()) {
      if (record.appid === appid) record.retiredAt = Math.min(record.retiredAt, now);
    }
  }

  /** Every current token of the app answers 42001 from now on. */
  expire(appid: string, now: number): void {
    for (const record of this.#tokens.values()) {
      if (record.appid === appid) record.expiresAt = Math.min(record.expiresAt, now);
    }
  }

  #record(token: string | undefined): TokenRecord | undefined {
    return token === undefined ? undefined : this.#tokens.get(token);
  }

  #issue(appid: string, ttlSec: number, now: number): IssuedToken {
    // Forget long-dead tokens, once a minute at most, so memory stays flat however often tokens are fetched.
    if (now - this.#prunedAt > 60_000) {
      this.#prunedAt = now;
      for (const [token, record] of this.#tokens) {
        if (Math.min(record.retiredAt, record.expiresAt) + DEAD_KEPT_MS <= now) this.#tokens.delete(token);
      }
    }
    const token = randomBytes(48).toString('base64url');
    this.#tokens.set(token, { appid, expiresAt: now + ttlSec * 1000, retiredAt: Infinity });
    return { access_token: token, expires_in: Math.floor(ttlSec) };
  }
}
