import { afterEach, describe, expect, it, vi } from 'vitest';
import { type MockOptions, type MockServer, startMockServer } from '../../src/mock/server.js';
import { decodeImage } from '../helpers/qr.js';
import { APPID, call, classicToken, classicTokenUrl, code, errorOf, SECRET, stableToken } from './calls.js';

const servers: MockServer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const server of servers.splice(0)) await server.close();
});

/**
 * The mock dates tokens by Date.now() (it runs in this process): freeze that clock, so a token expires when the
 * test moves the clock past its time and never because a busy machine was slow between two calls.
 */
function freezeClock(): void {
  vi.useFakeTimers({ toFake: ['Date'] });
}

function advanceClock(ms: number): void {
  vi.setSystemTime(Date.now() + ms);
}

async function mock(options: MockOptions = {}): Promise<MockServer> {
  const server = await startMockServer(options);
  servers.push(server);
  return server;
}

/** The errcode a B call with `token` gets, or 0 when it gets an image. */
async function tokenOutcome(base: string, token: string): Promise<number> {
  const answer = await code(base, 'unlimited', token, { scene: 'token-check' });
  return answer.type.startsWith('image/') ? 0 : errorOf(answer).errcode;
}

async function stable(base: string, body: Record<string, unknown> = {}) {
  const answer = await stableToken(base, body);
  return JSON.parse(answer.body.toString('utf8')) as {
    access_token?: string;
    expires_in?: number;
    errcode?: number;
    errmsg?: string;
  };
}

describe('classic tokens (/cgi-bin/token)', () => {
  it('issues a new token on every call, with expires_in from tokenTtlSec', async () => {
    const server = await mock({ tokenTtlSec: 3600 });
    const first = await call(classicTokenUrl(server.url));
    expect(first.status).toBe(200);
    expect(first.type).toBe('application/json; encoding=utf-8');
    const a = JSON.parse(first.body.toString('utf8'));
    expect(a).toEqual({ access_token: expect.any(String), expires_in: 3600 });
    const b = await classicToken(server.url);
    expect(b).not.toBe(a.access_token);
    expect(server.stats().tokenCalls).toBe(2);
  });

  it('refuses a wrong grant_type (40002), an unknown appid (40013) and a wrong secret (40125)', async () => {
    const server = await mock();
    const cases: [Record<string, string>, number][] = [
      [{ grant_type: 'password' }, 40002],
      [{ appid: 'wxunknown' }, 40013],
      [{ secret: 'not-the-secret' }, 40125],
    ];
    for (const [params, errcode] of cases) {
      const answer = await call(classicTokenUrl(server.url, params));
      expect(answer.status).toBe(200);
      const error = errorOf(answer);
      expect(error.errcode).toBe(errcode);
      expect(error.errmsg).toMatch(/ rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/);
      expect(error.errmsg).not.toContain('not-the-secret');
    }
    // The unknown appid has no counters; the two calls naming the real one do.
    expect(server.stats().errors).toEqual({ '40002': 1, '40125': 1 });
  });

  it('takes GET only (43001)', async () => {
    const server = await mock();
    const answer = await call(classicTokenUrl(server.url), { method: 'POST' });
    expect(errorOf(answer).errcode).toBe(43001);
  });

  it('keeps the previous token working during the overlap, then answers 40001 for it', async () => {
    freezeClock();
    // About five minutes, as WeChat's.
    const server = await mock({ classicOverlapSec: 300 });
    const old = await classicToken(server.url);
    const current = await classicToken(server.url);
    expect(await tokenOutcome(server.url, old)).toBe(0);
    expect(await tokenOutcome(server.url, current)).toBe(0);
    advanceClock(299_000);
    expect(await tokenOutcome(server.url, old)).toBe(0);
    advanceClock(2_000);
    expect(await tokenOutcome(server.url, old)).toBe(40001);
    expect(await tokenOutcome(server.url, current)).toBe(0);
  });

  it('with no overlap, a second fetch knocks the first token out at once', async () => {
    const server = await mock({ classicOverlapSec: 0 });
    const old = await classicToken(server.url);
    await classicToken(server.url);
    expect(await tokenOutcome(server.url, old)).toBe(40001);
    // The refused call still counts for the app that owns the token.
    expect(server.stats().codeCalls).toBe(1);
    expect(server.stats().errors['40001']).toBe(1);
  });

  it('answers 42001 once a token outlives tokenTtlSec', async () => {
    freezeClock();
    const server = await mock({ tokenTtlSec: 60 });
    const token = await classicToken(server.url);
    expect(await tokenOutcome(server.url, token)).toBe(0);
    advanceClock(59_000);
    expect(await tokenOutcome(server.url, token)).toBe(0);
    advanceClock(2_000);
    expect(await tokenOutcome(server.url, token)).toBe(42001);
  });
});

describe('stable tokens (/cgi-bin/stable_token)', () => {
  it('returns the same token while it is valid, expires_in counting down', async () => {
    freezeClock();
    const server = await mock({ tokenTtlSec: 7200 });
    const first = await stable(server.url);
    expect(first.expires_in).toBe(7200);
    advanceClock(1_000_000);
    const second = await stable(server.url);
    expect(second.access_token).toBe(first.access_token);
    expect(second.expires_in).toBe(6200);
    expect(server.stats().tokenCalls).toBe(2);
  });

  it('renews the token early (here half its 2 s life) while the old one lives out its time', async () => {
    freezeClock();
    const server = await mock({ tokenTtlSec: 2 });
    const first = await stable(server.url);
    advanceClock(900);
    expect((await stable(server.url)).access_token).toBe(first.access_token);
    advanceClock(200);
    const renewed = await stable(server.url);
    expect(renewed.access_token).not.toBe(first.access_token);
    expect(renewed.expires_in).toBe(2);
    expect(await tokenOutcome(server.url, first.access_token!)).toBe(0);
    advanceClock(1000);
    expect(await tokenOutcome(server.url, first.access_token!)).toBe(42001);
    expect(await tokenOutcome(server.url, renewed.access_token!)).toBe(0);
  });

  it("renews a token of 7200 s (WeChat's life) five minutes before it expires", async () => {
    freezeClock();
    const server = await mock({ tokenTtlSec: 7200 });
    const first = await stable(server.url);
    advanceClock(6_899_000);
    expect(await stable(server.url)).toEqual({ access_token: first.access_token, expires_in: 301 });
    advanceClock(2_000);
    const renewed = await stable(server.url);
    expect(renewed.access_token).not.toBe(first.access_token);
    expect(renewed.expires_in).toBe(7200);
    expect(await tokenOutcome(server.url, first.access_token!)).toBe(0);
  });

  it('checks grant_type, appid, secret and that the body is JSON', async () => {
    const server = await mock();
    expect((await stable(server.url, { grant_type: 'x' })).errcode).toBe(40002);
    expect((await stable(server.url, { appid: 'wxunknown' })).errcode).toBe(40013);
    expect((await stable(server.url, { secret: 'wrong' })).errcode).toBe(40125);
    const form = await call(`${server.url}/cgi-bin/stable_token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credential&appid=${APPID}&secret=${SECRET}`,
    });
    expect(errorOf(form).errcode).toBe(47001);
  });

  it('force_refresh retires the current token, at most once per interval (45011)', async () => {
    freezeClock();
    const server = await mock({ forceRefreshIntervalSec: 30 });
    const first = await stable(server.url);
    const forced = await stable(server.url, { force_refresh: true });
    expect(forced.access_token).not.toBe(first.access_token);
    expect(await tokenOutcome(server.url, first.access_token!)).toBe(40001);
    expect(await tokenOutcome(server.url, forced.access_token!)).toBe(0);

    const tooSoon = await stable(server.url, { force_refresh: true });
    expect(tooSoon.errcode).toBe(45011);
    expect(tooSoon.errmsg).toContain('once per 30 seconds');
    // A plain call still returns the token the accepted force issued.
    expect((await stable(server.url)).access_token).toBe(forced.access_token);

    advanceClock(29_000);
    expect((await stable(server.url, { force_refresh: true })).errcode).toBe(45011);
    advanceClock(1_000);
    const again = await stable(server.url, { force_refresh: true });
    expect(again.access_token).toEqual(expect.any(String));
    expect(again.access_token).not.toBe(forced.access_token);
    expect(server.stats().forcedRefreshes).toBe(2);
  });

  it('limits force refreshes per day (45009)', async () => {
    const server = await mock({ forceRefreshIntervalSec: 0, forceRefreshDailyLimit: 2 });
    expect((await stable(server.url, { force_refresh: true })).access_token).toEqual(expect.any(String));
    expect((await stable(server.url, { force_refresh: true })).access_token).toEqual(expect.any(String));
    expect((await stable(server.url, { force_refresh: true })).errcode).toBe(45009);
    expect(server.stats().forcedRefreshes).toBe(2);
  });

  it('is isolated from classic tokens: fetching one never retires the other', async () => {
    const server = await mock({ classicOverlapSec: 0, forceRefreshIntervalSec: 0 });
    const stableToken = (await stable(server.url)).access_token!;
    const classic = await classicToken(server.url);
    await classicToken(server.url);
    expect(await tokenOutcome(server.url, stableToken)).toBe(0);
    const latestClassic = await classicToken(server.url);
    await stable(server.url, { force_refresh: true });
    expect(await tokenOutcome(server.url, latestClassic)).toBe(0);
    expect(await tokenOutcome(server.url, classic)).toBe(40001);
  });
});

describe('revokeTokens and expireTokens', () => {
  it('make every current token answer 40001, or 42001, and a plain stable call then brings a new one', async () => {
    const server = await mock();
    const classic = await classicToken(server.url);
    const stableToken = (await stable(server.url)).access_token!;
    server.revokeTokens(APPID);
    expect(await tokenOutcome(server.url, classic)).toBe(40001);
    expect(await tokenOutcome(server.url, stableToken)).toBe(40001);
    const fresh = (await stable(server.url)).access_token!;
    expect(fresh).not.toBe(stableToken);

    server.expireTokens(APPID);
    expect(await tokenOutcome(server.url, fresh)).toBe(42001);
    const renewed = (await stable(server.url)).access_token!;
    const image = await code(server.url, 'unlimited', renewed, { scene: 'after-expiry' });
    expect(decodeImage(image.body)).toBe(`wxacode|${APPID}|unlimited|page=|scene=after-expiry|env=release`);
  });

  it('refuse an appid the server does not know', async () => {
    const server = await mock();
    expect(() => server.revokeTokens('wxother')).toThrow('appid wxother is not an app of this mock server');
    expect(() => server.expireTokens('wxother')).toThrow('wxother');
  });
});
