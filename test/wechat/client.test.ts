/** The client and token provider against undici's MockAgent (WeChat) and the real test Redis (token cache). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { errors, MockAgent } from 'undici';
import { describe, expect, it, vi } from 'vitest';
import { Secret, type TokenMode } from '../../src/config.js';
import { type CallInfo, WechatClient } from '../../src/wechat/client.js';
import { TransientError, WechatError } from '../../src/wechat/errors.js';
import { codeOptions } from '../../src/wechat/params.js';
import { TokenProvider } from '../../src/wechat/token.js';
import { connect } from '../helpers/redis.js';
import { caught, JPEG, PNG, resources } from './fixtures.js';

const ORIGIN = 'https://api.weixin.qq.com';
const APPID = 'wxclienttest00001';
const SECRET = 'client-test-secret-value';
const B = codeOptions({ kind: 'unlimited', page: 'pages/item/item' });

const redis = connect();
const { prefix: newPrefix, cleanup } = resources(redis);

interface Reply {
  status?: number;
  body: Buffer | string | object;
  contentType?: string;
}

function mockReply(reply: Reply) {
  const body =
    Buffer.isBuffer(reply.body) || typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
  const contentType = reply.contentType ?? (Buffer.isBuffer(reply.body) ? 'image/jpeg' : 'application/json');
  return {
    statusCode: reply.status ?? 200,
    data: body,
    responseOptions: { headers: { 'content-type': contentType } },
  };
}

interface SetupOptions {
  mode?: TokenMode;
  /** Token endpoint answers in turn; after them it hands out T<n> for 2 hours at the n-th request. */
  tokenReplies?: Reply[];
  /** Code endpoint answers in turn after the `failures`; after them, a JPEG. */
  replies?: Reply[];
  /** Code endpoint failures at the socket, one call each, before any reply. */
  failures?: Error[];
  refreshAheadMs?: number;
}

/** A MockAgent WeChat, with a TokenProvider on its own prefix and a client using both. */
function setup(options: SetupOptions = {}) {
  const prefix = newPrefix();
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(ORIGIN);
  const seen = { tokenRequests: [] as { path: string; body: string }[], codeRequests: [] as CodeRequest[] };
  const tokenPath = (path: string) =>
    path.startsWith('/cgi-bin/stable_token') || path.startsWith('/cgi-bin/token');
  const tokenReplies = options.tokenReplies ?? [];
  pool
    .intercept({ path: tokenPath, method: /GET|POST/ })
    .reply((opts) => {
      seen.tokenRequests.push({ path: opts.path, body: String(opts.body ?? '') });
      const n = seen.tokenRequests.length;
      return mockReply(tokenReplies.shift() ?? { body: { access_token: `T${n}`, expires_in: 7200 } });
    })
    .persist();
  for (const failure of options.failures ?? []) {
    pool.intercept({ path: (path) => !tokenPath(path), method: 'POST' }).replyWithError(failure);
  }
  const replies = options.replies ?? [];
  pool
    .intercept({ path: (path) => !tokenPath(path), method: 'POST' })
    .reply((opts) => {
      seen.codeRequests.push({
        path: opts.path,
        body: String(opts.body),
        headers: opts.headers as Record<string, string>,
      });
      return mockReply(replies.shift() ?? { body: JPEG });
    })
    .persist();
  const tokens = new TokenProvider({
    redis,
    prefix,
    apps: new Map([[APPID, new Secret(SECRET)]]),
    mode: options.mode ?? 'stable',
    baseUrl: ORIGIN,
    dispatcher: agent,
    refreshAheadMs: options.refreshAheadMs,
  });
  const calls: CallInfo[] = [];
  const client = new WechatClient({
    baseUrl: ORIGIN,
    tokens,
    dispatcher: agent,
    hooks: { call: (info) => calls.push(info) },
  });
  cleanup(async () => {
    await client.close();
    await tokens.close();
    await agent.close();
  });
  return { prefix, agent, tokens, client, seen, calls };
}

interface CodeRequest {
  path: string;
  body: string;
  headers: Record<string, string>;
}

describe('WechatClient against MockAgent', () => {
  it('POSTs the row as JSON with the shared token and returns the image', async () => {
    const { client, seen, calls } = setup();
    const image = await client.getCode(APPID, B, 'id=42');
    expect(image).toEqual({ body: JPEG, contentType: 'image/jpeg', extension: 'jpg' });
    expect(seen.codeRequests).toHaveLength(1);
    const [request] = seen.codeRequests;
    expect(request!.path).toBe('/wxa/getwxacodeunlimit?access_token=T1');
    expect(JSON.parse(request!.body)).toEqual({
      scene: 'id=42',
      page: 'pages/item/item',
      check_path: true,
      env_version: 'release',
      width: 430,
      auto_color: false,
      is_hyaline: false,
    });
    expect(request!.headers['content-type']).toBe('application/json');
    expect(calls).toEqual([{ appid: APPID, kind: 'unlimited', ms: expect.any(Number), outcome: 'image' }]);
  });

  it('decides by the body, not the Content-Type', async () => {
    const { client } = setup({
      replies: [
        { body: { errcode: 41030, errmsg: 'invalid page rid: 1' }, contentType: 'image/jpeg' },
        { body: JPEG, contentType: 'application/json; encoding=utf-8' },
        { body: PNG, contentType: 'application/json' },
      ],
    });
    const err = await caught(() => client.getCode(APPID, B, 'a'));
    expect(err).toBeInstanceOf(WechatError);
    expect(err).toMatchObject({ errcode: 41030, reaction: 'stop-campaign' });
    expect((await client.getCode(APPID, B, 'b')).contentType).toBe('image/jpeg');
    expect((await client.getCode(APPID, B, 'c')).extension).toBe('png');
  });

  it.each([
    [
      'an HTML 502 page',
      { status: 502, body: '<!DOCTYPE html><html>Bad Gateway</html>', contentType: 'text/html' },
    ],
    ['an empty body', { body: '', contentType: 'image/jpeg' }],
    ['a truncated JPEG', { body: JPEG.subarray(0, 8) }],
    ['a truncated PNG', { body: PNG.subarray(0, 20), contentType: 'image/png' }],
    ['an image with HTTP 503', { status: 503, body: JPEG }],
  ] as [string, Reply][])('reports %s as a TransientError with the HTTP status', async (_name, reply) => {
    const { client, calls } = setup({ replies: [reply] });
    const err = await caught(() => client.getCode(APPID, B, 'a'));
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).status).toBe(reply.status ?? 200);
    expect(err.message).toMatch(/^the unlimited code call for wxclienttest00001 answered HTTP/);
    expect(calls.map((c) => c.outcome)).toEqual(['transient']);
  });

  it.each([
    40001, 40014, 42001,
  ])('on errcode %i refreshes the token once and retries the call once', async (errcode) => {
    const { client, seen, prefix, calls } = setup({ replies: [{ body: { errcode, errmsg: 'token' } }] });
    const image = await client.getCode(APPID, B, 'a');
    expect(image.contentType).toBe('image/jpeg');
    expect(seen.codeRequests.map((r) => r.path)).toEqual([
      '/wxa/getwxacodeunlimit?access_token=T1',
      '/wxa/getwxacodeunlimit?access_token=T2',
    ]);
    expect(seen.tokenRequests).toHaveLength(2);
    expect(calls.map((c) => c.outcome)).toEqual([`errcode:${errcode}`, 'image']);
    expect(JSON.parse((await redis.get(`${prefix}:token:${APPID}`))!).token).toBe('T2');
  });

  it('passes every call through the gate, the retry after a token refresh included', async () => {
    const { client, seen } = setup({ replies: [{ body: { errcode: 40001, errmsg: 'token' } }] });
    const gated: string[] = [];
    const image = await client.getCode(APPID, B, 'a', {
      gate: async (appid, call) => {
        gated.push(appid);
        return call();
      },
    });
    expect(image.contentType).toBe('image/jpeg');
    expect(gated).toEqual([APPID, APPID]);
    expect(seen.codeRequests).toHaveLength(2);
  });

  it('gives up with refresh-token when the refreshed token is rejected too, and forces the next stable fetch', async () => {
    const rejected = { body: { errcode: 40001, errmsg: 'invalid credential' } };
    const { client, seen, prefix } = setup({ replies: [rejected, rejected] });
    const err = await caught(() => client.getCode(APPID, B, 'a'));
    expect(err).toMatchObject({ errcode: 40001, reaction: 'refresh-token' });
    expect(seen.codeRequests).toHaveLength(2);
    expect(seen.tokenRequests.map((r) => JSON.parse(r.body).force_refresh)).toEqual([false, false]);
    expect(await redis.exists(`${prefix}:token:${APPID}`)).toBe(0);

    await client.getCode(APPID, B, 'b');
    expect(seen.tokenRequests.map((r) => JSON.parse(r.body).force_refresh)).toEqual([false, false, true]);
    expect(await redis.pttl(`${prefix}:token:${APPID}:forced`)).toBeGreaterThan(25_000);
  });

  it('turns network errors into TransientErrors with the undici error as cause, naming no token', async () => {
    const { client } = setup({
      failures: [
        new errors.SocketError('other side closed'),
        new errors.ConnectTimeoutError(),
        new errors.HeadersTimeoutError(),
      ],
    });
    for (const code of ['UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']) {
      const err = await caught(() => client.getCode(APPID, B, 'a'));
      expect(err).toBeInstanceOf(TransientError);
      expect(err.message).toBe(`the unlimited code call for ${APPID} got no answer (${code})`);
      expect((err.cause as { code: string }).code).toBe(code);
      expect(err.message).not.toContain('T1');
    }
  });

  it('rethrows an abort through the signal as is', async () => {
    const { client } = setup();
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const err = await caught(() => client.getCode(APPID, B, 'a', { signal: controller.signal }));
    expect(err).not.toBeInstanceOf(TransientError);
    expect(err.message).toBe('shutting down');
  });
});

describe('TokenProvider against MockAgent', () => {
  it('names an appid that is not configured', async () => {
    const { tokens, client } = setup();
    await expect(tokens.get('wxunknown')).rejects.toThrow('appid wxunknown is not configured');
    await expect(client.getCode('wxunknown', B, 'a')).rejects.toThrow('appid wxunknown is not configured');
  });

  it('shares one fetch among concurrent callers and caches the token in Redis with its life as TTL', async () => {
    const { tokens, seen, prefix } = setup();
    const got = await Promise.all(Array.from({ length: 20 }, () => tokens.get(APPID)));
    expect(new Set(got)).toEqual(new Set(['T1']));
    expect(seen.tokenRequests).toHaveLength(1);
    expect(JSON.parse(seen.tokenRequests[0]!.body)).toEqual({
      grant_type: 'client_credential',
      appid: APPID,
      secret: SECRET,
      force_refresh: false,
    });
    const ttl = await redis.pttl(`${prefix}:token:${APPID}`);
    expect(ttl).toBeGreaterThan(7_190_000);
    expect(ttl).toBeLessThanOrEqual(7_200_000);
  });

  it('uses GET /cgi-bin/token in classic mode', async () => {
    const { tokens, seen } = setup({ mode: 'classic' });
    expect(await tokens.get(APPID)).toBe('T1');
    expect(seen.tokenRequests[0]!.path).toBe(
      `/cgi-bin/token?grant_type=client_credential&appid=${APPID}&secret=${SECRET}`,
    );
  });

  it.each([
    [{ errcode: 40125, errmsg: 'invalid appsecret rid: 1' }, WechatError, /errcode 40125/],
    [{ errcode: 40164, errmsg: 'invalid ip 1.2.3.4, not in whitelist' }, WechatError, /errcode 40164/],
    ['<html>502</html>', TransientError, /answered HTTP 200 with an HTML page/],
    [{ access_token: '', expires_in: 7200 }, TransientError, /without access_token and expires_in/],
  ])('turns the token answer %j into an error without the secret', async (answer, type, message) => {
    const { tokens, prefix, seen } = setup({ mode: 'classic', tokenReplies: [{ body: answer }] });
    const err = await caught(() => tokens.get(APPID));
    expect(err).toBeInstanceOf(type);
    expect(err.message).toMatch(message);
    if (err instanceof WechatError) expect(err.reaction).toBe('stop-app');
    expect(`${err.message} ${inspect(err)} ${JSON.stringify(err)}`).not.toContain(SECRET);
    expect(seen.tokenRequests).toHaveLength(1);
    expect(await redis.keys(`${prefix}:*`)).toEqual([]);
  });

  it('keeps serving a valid token while its early refresh fails, until it expires', async () => {
    // The provider dates tokens by Date.now(): a frozen clock the test moves, so the token expires when the test
    // says and never because a busy machine was slow between two calls (Redis's own expiry of the cache key,
    // 7200 s away in real time, plays no part).
    vi.useFakeTimers({ toFake: ['Date'] });
    const advanceClock = (ms: number) => vi.setSystemTime(Date.now() + ms);
    try {
      const html = { status: 502, body: '<html>Bad Gateway</html>', contentType: 'text/html' };
      const { tokens, seen } = setup({
        // A 7200 s token is due for refresh 5 minutes before it expires; then the token endpoint fails.
        tokenReplies: [{ body: { access_token: 'LONG', expires_in: 7200 } }, html, html, html],
        refreshAheadMs: 300_000,
      });
      expect(await tokens.get(APPID)).toBe('LONG');
      advanceClock(6_899_000);
      expect(await tokens.get(APPID)).toBe('LONG');
      expect(seen.tokenRequests).toHaveLength(1);
      advanceClock(2_000);
      // Due: the refresh fails, and the valid token serves on.
      expect(await tokens.get(APPID)).toBe('LONG');
      expect(await tokens.get(APPID)).toBe('LONG');
      expect(seen.tokenRequests).toHaveLength(2);
      // A second before it expires, a retried refresh fails too and it still serves.
      advanceClock(298_000);
      expect(await tokens.get(APPID)).toBe('LONG');
      expect(seen.tokenRequests).toHaveLength(3);
      advanceClock(1_000);
      await expect(tokens.get(APPID)).rejects.toThrow(
        /access token request for wxclienttest00001 answered HTTP 502/,
      );
      expect(seen.tokenRequests).toHaveLength(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drops the cached token only when it still holds the rejected one', async () => {
    const { tokens, seen, prefix } = setup();
    expect(await tokens.get(APPID)).toBe('T1');
    await tokens.invalidate(APPID, 'some-older-token');
    expect(await tokens.get(APPID)).toBe('T1');
    await Promise.all(Array.from({ length: 20 }, () => tokens.invalidate(APPID, 'T1')));
    const got = await Promise.all(Array.from({ length: 20 }, () => tokens.get(APPID)));
    expect(new Set(got)).toEqual(new Set(['T2']));
    expect(seen.tokenRequests).toHaveLength(2);
    expect(JSON.parse((await redis.get(`${prefix}:token:${APPID}`))!)).toMatchObject({ token: 'T2' });
  });
});

describe('WechatClient with its own undici Pool', () => {
  /** A local HTTP server standing in for WeChat's code endpoint; `onRequest` decides what it does. */
  async function serve(onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
    let requests = 0;
    const server = http.createServer((req, res) => {
      requests += 1;
      req.resume();
      req.on('end', () => onRequest(req, res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { tokens } = setup();
    const client = new WechatClient({ baseUrl: url, tokens, headersTimeoutMs: 200 });
    cleanup(async () => {
      await client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    return { client, requests: () => requests };
  }

  it('times out a call whose answer does not come', async () => {
    const { client, requests } = await serve(() => undefined);
    const err = await caught(() => client.getCode(APPID, B, 'a'));
    expect(err).toBeInstanceOf(TransientError);
    expect(err.message).toMatch(/got no answer \(UND_ERR_HEADERS_TIMEOUT\)/);
    expect(requests()).toBe(1);
  });

  it('never re-sends a call whose connection was reset', async () => {
    const { client, requests } = await serve((req) => req.socket.destroy());
    const err = await caught(() => client.getCode(APPID, B, 'a'));
    expect(err).toBeInstanceOf(TransientError);
    expect(err.message).toMatch(/got no answer \(UND_ERR_SOCKET\)/);
    expect(requests()).toBe(1);
  });

  it('reuses the connection for the next call and reads a chunked image', async () => {
    const sockets = new Set<unknown>();
    const { client, requests } = await serve((req, res) => {
      sockets.add(req.socket);
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      res.write(JPEG.subarray(0, 5));
      res.end(JPEG.subarray(5));
    });
    for (const row of ['a', 'b', 'c']) {
      expect((await client.getCode(APPID, B, row)).body).toEqual(JPEG);
      // undici frees the connection just after the body resolves; a call sent at once would open a second one.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(requests()).toBe(3);
    expect(sockets.size).toBe(1);
  });
});
