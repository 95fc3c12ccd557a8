/**
 * The token lock against the mock WeChat and the real test Redis. The mock's faults never touch its token
 * endpoints, so a small proxy in front of it slows or holds the token answers these tests need.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { Secret } from '../../src/config.js';
import { startMockServer } from '../../src/mock/server.js';
import { TransientError } from '../../src/wechat/errors.js';
import { TokenProvider } from '../../src/wechat/token.js';
import { connect } from '../helpers/redis.js';
import { APPID, code, SECRET } from '../mock/calls.js';
import { caught, resources } from './fixtures.js';

const redis = connect();
const { prefix: newPrefix, cleanup } = resources(redis);

/** How the proxy answers the n-th token request, given the mock's answer; default: at once. */
type Answerer = (n: number, res: http.ServerResponse, body: Buffer) => Promise<void>;

/** The mock (classic tokens knocked out at once by the next fetch) behind a proxy that counts what is in flight. */
async function slowTokenEndpoint(answer: Answerer) {
  const mock = await startMockServer({ classicOverlapSec: 0 });
  let requests = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const proxy = http.createServer(async (req, res) => {
    const n = ++requests;
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    res.on('close', () => inFlight--);
    const upstream = await fetch(`${mock.url}${req.url}`, { method: req.method });
    const body = Buffer.from(await upstream.arrayBuffer());
    res.writeHead(upstream.status, { 'content-type': 'application/json' });
    await answer(n, res, body);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const prefix = newPrefix();
  const providers: TokenProvider[] = [];
  const provider = (lockTtlMs?: number) => {
    const tokens = new TokenProvider({
      redis,
      prefix,
      apps: new Map([[APPID, new Secret(SECRET)]]),
      mode: 'classic',
      baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      lockTtlMs,
    });
    providers.push(tokens);
    return tokens;
  };
  cleanup(async () => {
    for (const tokens of providers) await tokens.close();
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
    await mock.close();
  });
  return {
    mock,
    prefix,
    provider,
    requests: () => requests,
    maxInFlight: () => maxInFlight,
    /** Whether the mock still accepts `token` for a code call. */
    accepted: async (token: string) =>
      (await code(mock.url, 'unlimited', token, { scene: 'token-check' })).type.startsWith('image/'),
  };
}

describe('TokenProvider lock', () => {
  it('gives up a token fetch slower than its lock, so a second process never fetches alongside it', async () => {
    const endpoint = await slowTokenEndpoint(async (n, res, body) => {
      if (n > 1) return void res.end(body);
      // Headers at once, then the body a byte at a time, slower in all than the lock lives.
      for (const byte of body) {
        if (res.destroyed) return;
        res.write(Buffer.from([byte]));
        await sleep(1_500 / body.length);
      }
      res.end();
    });
    const lockTtlMs = 400;
    const first = caught(() => endpoint.provider(lockTtlMs).get(APPID));
    await vi.waitFor(() => expect(endpoint.requests()).toBe(1));
    const second = endpoint.provider(lockTtlMs).get(APPID);

    const err = await first;
    expect(err).toBeInstanceOf(TransientError);
    expect(err.message).toMatch(/access token request for wxmock00000000001 took longer than 200 ms/);
    const token = await second;
    expect(endpoint.requests()).toBe(2);
    expect(endpoint.maxInFlight()).toBe(1);
    const cached = JSON.parse((await redis.get(`${endpoint.prefix}:token:${APPID}`))!) as { token: string };
    expect(cached.token).toBe(token);
    expect(await endpoint.accepted(token)).toBe(true);
  });

  it('stores no token once its lock is lost, leaving the new holder lock and cache', async () => {
    let answerHeld: (() => void) | undefined;
    const endpoint = await slowTokenEndpoint(async (n, res, body) => {
      if (n === 1) await new Promise<void>((resolve) => (answerHeld = resolve));
      res.end(body);
    });
    const lock = `${endpoint.prefix}:token:${APPID}:lock`;
    const fetching = caught(() => endpoint.provider().get(APPID));
    await vi.waitFor(() => expect(answerHeld).toBeDefined());
    // As if the lock expired during the fetch and another process took it.
    await redis.set(lock, 'another-process', 'PX', 60_000);
    answerHeld!();

    const err = await fetching;
    expect(err).toBeInstanceOf(TransientError);
    expect(err.message).toMatch(/lost the token lock of wxmock00000000001/);
    expect(await redis.get(`${endpoint.prefix}:token:${APPID}`)).toBeNull();
    expect(await redis.get(lock)).toBe('another-process');
  });
});
