import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockAdmin } from '../../src/mock/admin.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { call, classicToken, code, errorOf } from './calls.js';

const OTHER = 'wxother0000000002';
let server: MockServer;

beforeAll(async () => {
  server = await startMockServer({ apps: { wxmock00000000001: 'mock-secret', [OTHER]: 'other-secret' } });
});

afterAll(async () => {
  await server.close();
});

describe('admin endpoints under /__mock/', () => {
  it('stats: the first app by default, another by ?appid=', async () => {
    const admin = mockAdmin(server.url);
    const token = await classicToken(server.url);
    await code(server.url, 'unlimited', token, { scene: 'admin' });
    expect(await admin.stats()).toMatchObject({ codeCalls: 1, images: 1, tokenCalls: 1 });
    expect(await admin.stats()).toEqual(server.stats());
    expect(await admin.stats(OTHER)).toMatchObject({ codeCalls: 0, tokenCalls: 0 });
    await expect(admin.stats('wxnobody')).rejects.toThrow('appid wxnobody is not an app of this mock server');
  });

  it('configure: changes limits at runtime, and names a bad value without applying any', async () => {
    const admin = mockAdmin(server.url);
    await admin.configure({ rateLimit: { count: 1, durationMs: 60_000 } });
    const token = await classicToken(server.url, { appid: OTHER, secret: 'other-secret' });
    expect((await code(server.url, 'unlimited', token, { scene: 'one' })).type).toBe('image/jpeg');
    expect(errorOf(await code(server.url, 'unlimited', token, { scene: 'two' })).errcode).toBe(45009);

    await expect(admin.configure({ rateLimit: null, faults: { busy: 2 } })).rejects.toThrow(
      'faults.busy must be a fraction from 0 to 1, got 2',
    );
    expect(errorOf(await code(server.url, 'unlimited', token, { scene: 'three' })).errcode).toBe(45009);
    await expect(admin.configure({ rateLimits: null } as never)).rejects.toThrow(
      'rateLimits is not a mock option',
    );
    await admin.configure({ rateLimit: null });
    expect((await code(server.url, 'unlimited', token, { scene: 'four' })).type).toBe('image/jpeg');
  });

  it('revoke and expire: the current tokens of the app answer 40001, then 42001', async () => {
    const admin = mockAdmin(server.url);
    const revoked = await classicToken(server.url, { appid: OTHER, secret: 'other-secret' });
    await admin.revokeTokens(OTHER);
    expect(errorOf(await code(server.url, 'unlimited', revoked, { scene: 'r' })).errcode).toBe(40001);
    const expired = await classicToken(server.url, { appid: OTHER, secret: 'other-secret' });
    await admin.expireTokens(OTHER);
    expect(errorOf(await code(server.url, 'unlimited', expired, { scene: 'e' })).errcode).toBe(42001);
    // The first app's tokens are untouched.
    const mine = await classicToken(server.url);
    expect((await code(server.url, 'unlimited', mine, { scene: 'mine' })).type).toBe('image/jpeg');
  });

  it('reset: clears the counters of every app', async () => {
    const admin = mockAdmin(server.url);
    expect((await admin.stats()).codeCalls).toBeGreaterThan(0);
    await admin.reset();
    for (const appid of [undefined, OTHER]) {
      expect(await admin.stats(appid)).toEqual({
        codeCalls: 0,
        images: 0,
        rateLimited: 0,
        maxInWindow: 0,
        tokenCalls: 0,
        forcedRefreshes: 0,
        acUsed: 0,
        errors: {},
        faults: {},
        callTimes: [],
      });
    }
  });

  it('answers 405 for the wrong method and 404 for an unknown action', async () => {
    expect((await call(`${server.url}/__mock/reset`)).status).toBe(405);
    expect((await call(`${server.url}/__mock/stats`, { method: 'POST' })).status).toBe(405);
    expect((await call(`${server.url}/__mock/flush`, { method: 'POST' })).status).toBe(404);
    expect((await call(`${server.url}/cgi-bin/unknown`)).status).toBe(404);
  });
});

describe('configure() in process', () => {
  it('throws naming every bad value', () => {
    expect(() => server.configure({ tokenTtlSec: 0, acTotalLimit: -1, apps: {} })).toThrow(
      'Invalid mock options: tokenTtlSec must be a number of seconds > 0, got 0; ' +
        'acTotalLimit must be a whole number >= 0, got -1; apps must name at least one appid',
    );
  });

  it('never puts a secret in its message', () => {
    expect(() => server.configure({ apps: { '': 'hunter2' } })).toThrow(/appid ""/);
    expect(() => server.configure({ apps: { '': 'hunter2' } })).not.toThrow(/hunter2/);
  });
});
