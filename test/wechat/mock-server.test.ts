/**
 * The client and shared tokens against the real mock WeChat server and the real test Redis. Each "process" is a
 * TokenProvider + WechatClient on its own ioredis connection, sharing one key prefix as a fleet does.
 */
import { inspect } from 'node:util';
import type { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { Secret, type TokenMode } from '../../src/config.js';
import { type MockOptions, type MockServer, startMockServer } from '../../src/mock/server.js';
import { WechatClient } from '../../src/wechat/client.js';
import { WechatError } from '../../src/wechat/errors.js';
import { type CodeOptions, codeOptions } from '../../src/wechat/params.js';
import { TokenProvider } from '../../src/wechat/token.js';
import { decodeImage } from '../helpers/qr.js';
import { connect } from '../helpers/redis.js';
import { caught, resources } from './fixtures.js';

const APPID = 'wxmock00000000001';
const SECRET = 'mock-secret';
const B = codeOptions({ kind: 'unlimited', page: 'pages/item/item' });

const admin = connect();
const { prefix: newPrefix, cleanup } = resources(admin);

interface Process {
  redis: Redis;
  tokens: TokenProvider;
  client: WechatClient;
}

interface FleetOptions {
  mode?: TokenMode;
  processes?: number;
  secret?: string;
  /** Called after each token fetch, before the token is stored: the test's window into WeChat's timing. */
  fetched?: (forced: boolean) => void;
  mock?: MockOptions;
  refreshAheadMs?: number;
}

/** A fresh mock server and `processes` processes sharing one prefix. */
async function fleet(options: FleetOptions = {}) {
  const mock: MockServer = await startMockServer(options.mock ?? {});
  const prefix = newPrefix();
  const processes: Process[] = Array.from({ length: options.processes ?? 2 }, () => {
    const redis = connect();
    const tokens = new TokenProvider({
      redis,
      prefix,
      apps: new Map([[APPID, new Secret(options.secret ?? SECRET)]]),
      mode: options.mode ?? 'stable',
      baseUrl: mock.url,
      hooks: { fetched: (_appid, _mode, forced) => options.fetched?.(forced) },
      refreshAheadMs: options.refreshAheadMs,
    });
    return { redis, tokens, client: new WechatClient({ baseUrl: mock.url, tokens }) };
  });
  cleanup(async () => {
    for (const p of processes) {
      await p.client.close();
      await p.tokens.close();
      p.redis.disconnect();
    }
    await mock.close();
  });
  return { mock, prefix, processes };
}

/** `n` calls spread over the processes, all at once. */
function callsAtOnce(processes: Process[], n: number, options: CodeOptions = B) {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      processes[i % processes.length]!.client.getCode(APPID, options, `row${i}`),
    ),
  );
}

describe('WechatClient + TokenProvider against the mock server', () => {
  it('returns an image that decodes to its scene, through a token both processes share', async () => {
    const { mock, processes } = await fleet();
    const images = await callsAtOnce(processes, 20);
    expect(images.every((image) => image.contentType === 'image/jpeg')).toBe(true);
    expect(decodeImage(images[7]!.body)).toBe(
      `wxacode|${APPID}|unlimited|page=pages/item/item|scene=row7|env=release`,
    );
    expect(mock.stats(APPID)).toMatchObject({ tokenCalls: 1, codeCalls: 20, images: 20 });
  });

  it.each([
    'stable',
    'classic',
  ] as TokenMode[])('in %s mode, 8 processes asking 20 times each at once cause one token call', async (mode) => {
    const { mock, processes } = await fleet({ mode, processes: 8 });
    const got = await Promise.all(
      processes.flatMap((p) => Array.from({ length: 20 }, () => p.tokens.get(APPID))),
    );
    expect(new Set(got).size).toBe(1);
    expect(mock.stats(APPID).tokenCalls).toBe(1);
  });

  it('answers a transparent code as a PNG', async () => {
    const { processes } = await fleet({ processes: 1 });
    const image = await processes[0]!.client.getCode(APPID, { ...B, isHyaline: true }, 'clear');
    expect(image).toMatchObject({ contentType: 'image/png', extension: 'png' });
    expect(decodeImage(image.body)).toContain('|scene=clear|');
  });

  it.each([
    ['revokeTokens', 40001, (mock: MockServer) => mock.revokeTokens(APPID)],
    ['expireTokens', 42001, (mock: MockServer) => mock.expireTokens(APPID)],
  ])('after %s, 20 calls at once refetch one token between them', async (_name, errcode, reject) => {
    const { mock, processes } = await fleet();
    await callsAtOnce(processes, 2);
    expect(mock.stats(APPID).tokenCalls).toBe(1);
    reject(mock);
    const images = await callsAtOnce(processes, 20);
    expect(images).toHaveLength(20);
    const stats = mock.stats(APPID);
    expect(stats.tokenCalls).toBe(2);
    expect(stats.forcedRefreshes).toBe(0);
    expect(stats.errors[errcode]).toBe(20);
    expect(stats.codeCalls).toBe(2 + 20 + 20);
  });

  it('refreshes a token ahead of its expiry with one call while the old one still serves', async () => {
    // The mock and the providers both date tokens by Date.now() in this process: a frozen clock the test moves,
    // so where a token stands in its life never depends on how fast a busy machine runs.
    vi.useFakeTimers({ toFake: ['Date'] });
    const advanceClock = (ms: number) => vi.setSystemTime(Date.now() + ms);
    try {
      // WeChat's 7200 s; the providers refresh 5 minutes ahead, when the mock also renews a stable token.
      const { mock, processes, prefix } = await fleet({
        mock: { tokenTtlSec: 7200 },
        refreshAheadMs: 300_000,
      });
      const old = await processes[0]!.tokens.get(APPID);
      advanceClock(6_899_000);
      expect(await processes[1]!.tokens.get(APPID)).toBe(old);
      expect(mock.stats(APPID).tokenCalls).toBe(1);
      advanceClock(2_000);
      const got = await Promise.all(
        processes.flatMap((p) => Array.from({ length: 10 }, () => p.tokens.get(APPID))),
      );
      expect(mock.stats(APPID).tokenCalls).toBe(2);
      const renewed = JSON.parse((await admin.get(`${prefix}:token:${APPID}`))!).token;
      expect(renewed).not.toBe(old);
      expect(got.every((token) => token === old || token === renewed)).toBe(true);
      await callsAtOnce(processes, 4);
      expect(await processes[1]!.tokens.get(APPID)).toBe(renewed);
      expect(mock.stats(APPID)).toMatchObject({ tokenCalls: 2, images: 4 });
      // The old token lives out its time: WeChat still takes it 299 s before it expires.
      const answer = await fetch(`${mock.url}/wxa/getwxacodeunlimit?access_token=${old}`, {
        method: 'POST',
        body: JSON.stringify({ scene: 'old-token' }),
      });
      expect(answer.headers.get('content-type')).toBe('image/jpeg');
    } finally {
      vi.useRealTimers();
    }
  });

  it('in classic mode, refetches from /cgi-bin/token after a revocation', async () => {
    const { mock, processes, prefix } = await fleet({ mode: 'classic' });
    const before = await processes[0]!.tokens.get(APPID);
    mock.revokeTokens(APPID);
    await callsAtOnce(processes, 10);
    expect(mock.stats(APPID)).toMatchObject({ tokenCalls: 2, forcedRefreshes: 0 });
    const cached = JSON.parse((await admin.get(`${prefix}:token:${APPID}`))!);
    expect(cached.token).not.toBe(before);
  });

  it('forces a stable refresh only when a fresh token is still rejected, and not twice in 30 s', async () => {
    let revokeFresh = false;
    const { mock, processes, prefix } = await fleet({
      // WeChat revoking each new token as soon as it is issued: the refetched token is rejected too.
      fetched: (forced) => {
        if (revokeFresh && !forced) mock.revokeTokens(APPID);
      },
    });
    const [first, second] = processes as [Process, Process];
    await first.client.getCode(APPID, B, 'warm');

    revokeFresh = true;
    mock.revokeTokens(APPID);
    const err = await caught(() => first.client.getCode(APPID, B, 'a'));
    expect(err).toBeInstanceOf(WechatError);
    expect(err).toMatchObject({ errcode: 40001, reaction: 'refresh-token' });
    expect(mock.stats(APPID)).toMatchObject({ tokenCalls: 2, forcedRefreshes: 0 });

    revokeFresh = false;
    await first.client.getCode(APPID, B, 'b');
    expect(mock.stats(APPID)).toMatchObject({ tokenCalls: 3, forcedRefreshes: 1 });
    expect(await admin.pttl(`${prefix}:token:${APPID}:forced`)).toBeGreaterThan(20_000);

    // The same again within 30 s, on the other process: the fleet-wide slot is taken, so no second force.
    revokeFresh = true;
    mock.revokeTokens(APPID);
    await expect(second.client.getCode(APPID, B, 'c')).rejects.toMatchObject({ errcode: 40001 });
    revokeFresh = false;
    await second.client.getCode(APPID, B, 'd');
    const stats = mock.stats(APPID);
    expect(stats).toMatchObject({ tokenCalls: 5, forcedRefreshes: 1 });
    expect(stats.errors[45011]).toBeUndefined();
  });

  it('follows the body rules on faulty answers', async () => {
    const { mock, processes } = await fleet({ processes: 1 });
    const { client } = processes[0]!;
    const expectations: [keyof NonNullable<MockOptions['faults']>, unknown][] = [
      ['html502', { name: 'TransientError', status: 502 }],
      ['empty', { name: 'TransientError', status: 200 }],
      [
        'truncated',
        { name: 'TransientError', status: 200, message: expect.stringMatching(/truncated JPEG/) },
      ],
      ['drop', { name: 'TransientError', status: undefined }],
      ['busy', { name: 'WechatError', errcode: -1, reaction: 'retry' }],
    ];
    for (const [fault, expected] of expectations) {
      mock.configure({ faults: { [fault]: 1 } });
      expect([fault, await caught(() => client.getCode(APPID, B, 'f'))]).toEqual([
        fault,
        expect.objectContaining(expected),
      ]);
    }
    mock.configure({ faults: {}, publishedPages: ['pages/index/index'] });
    await expect(client.getCode(APPID, B, 'g')).rejects.toMatchObject({
      errcode: 41030,
      reaction: 'stop-campaign',
    });
  });

  it('stops the app on a bad secret', async () => {
    const { processes } = await fleet({ processes: 1, secret: 'not-the-secret' });
    const err = await caught(() => processes[0]!.client.getCode(APPID, B, 'a'));
    expect(err).toMatchObject({ errcode: 40125, reaction: 'stop-app' });
  });
});

describe('secrets and tokens', () => {
  /** Every key under `prefix` with its string value, found with SCAN. */
  async function redisValues(prefix: string): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for await (const keys of admin.scanStream({ match: `${prefix}:*` })) {
      for (const key of keys as string[]) values.set(key, (await admin.get(key)) ?? '');
    }
    return values;
  }

  it('never appear in an error, nor in Redis outside the token cache key', async () => {
    let revokeFresh = false;
    const { mock, processes, prefix } = await fleet({
      processes: 1,
      fetched: () => revokeFresh && mock.revokeTokens(APPID),
    });
    const { tokens } = processes[0]!;
    // The client's token source, recording every token it is handed.
    const issued: string[] = [];
    const client = new WechatClient({
      baseUrl: mock.url,
      tokens: {
        get: async (appid) => {
          const token = await tokens.get(appid);
          issued.push(token);
          return token;
        },
        invalidate: (appid, rejected, opts) => tokens.invalidate(appid, rejected, opts),
      },
    });
    cleanup(() => client.close());
    const errors: Error[] = [];

    for (const fault of ['html502', 'empty', 'truncated', 'drop', 'busy'] as const) {
      mock.configure({ faults: { [fault]: 1 } });
      errors.push(await caught(() => client.getCode(APPID, B, 'x')));
    }
    mock.configure({ faults: {} });
    revokeFresh = true;
    mock.revokeTokens(APPID);
    errors.push(await caught(() => client.getCode(APPID, B, 'y')));
    revokeFresh = false;
    await client.getCode(APPID, B, 'forced');

    const wrong = await fleet({ processes: 1, secret: 'wrong-secret-value' });
    errors.push(await caught(() => wrong.processes[0]!.client.getCode(APPID, B, 'z')));

    expect(errors.map((e) => e.name)).toEqual([
      ...Array(4).fill('TransientError'),
      ...Array(3).fill('WechatError'),
    ]);
    expect(new Set(issued).size).toBe(3);
    const secrets = [SECRET, 'wrong-secret-value', ...issued];
    for (const err of errors) {
      const printed = `${err.message}\n${inspect(err, { depth: 5 })}\n${JSON.stringify(err)}`;
      for (const secret of secrets) expect(printed).not.toContain(secret);
    }

    const values = await redisValues(prefix);
    expect([...values.keys()].sort()).toEqual([
      `${prefix}:token:${APPID}`,
      `${prefix}:token:${APPID}:forced`,
    ]);
    for (const [key, value] of [...values, ...(await redisValues(wrong.prefix))]) {
      for (const secret of key === `${prefix}:token:${APPID}` ? [SECRET] : secrets) {
        expect(value).not.toContain(secret);
      }
    }
  });
});
