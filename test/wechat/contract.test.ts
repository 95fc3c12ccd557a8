/**
 * The client against the contract, docs/wechat-api.md. Every expectation here is written by hand from that page and
 * never taken from the client's own tables: the real WechatClient talks to a local HTTP server that records what
 * it is sent and answers what each test tells it to, and then to the mock WeChat server, whose images show
 * which options arrived.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { WechatClient } from '../../src/wechat/client.js';
import { type Reaction, WechatError } from '../../src/wechat/errors.js';
import { type CodeOptions, codeOptions, type Kind } from '../../src/wechat/params.js';
import type { TokenSource } from '../../src/wechat/token.js';
import { colorDistance, decodeImage, inkColor, readImage } from '../helpers/qr.js';
import { caught, JPEG } from './fixtures.js';

const APPID = 'wxcontract0000001';
const KINDS: Kind[] = ['unlimited', 'code', 'qrcode'];
/** A row value each kind accepts: a scene for B, a path for A and C. */
const ROW: Record<Kind, string> = { unlimited: 'a=1', code: 'pages/a/a?id=1', qrcode: 'pages/a/a?id=1' };

interface Received {
  method: string;
  path: string;
  token: string | null;
  contentType: string;
  body: string;
}

/** What the local server was sent, and the answers it gives in turn; after them, a JPEG. */
const received: Received[] = [];
const answers: Buffer[] = [];
let server: http.Server;
let url: string;
const clients: WechatClient[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const target = new URL(req.url ?? '/', 'http://wechat');
      received.push({
        method: req.method ?? '',
        path: target.pathname,
        token: target.searchParams.get('access_token'),
        contentType: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const body = answers.shift() ?? JPEG;
      // WeChat's errors come with HTTP 200, like its images.
      res.writeHead(200, {
        'content-type': body[0] === 0x7b ? 'application/json; encoding=utf-8' : 'image/jpeg',
        'content-length': body.length,
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  received.length = 0;
  answers.length = 0;
  for (const client of clients.splice(0)) await client.close();
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function errorAnswer(errcode: number): Buffer {
  return Buffer.from(JSON.stringify({ errcode, errmsg: `message ${errcode} rid: 1-2-3` }));
}

/** A client whose tokens are `<name>1` until that one is reported rejected, then `<name>2`, and so on. */
function client(name = 'T') {
  let n = 1;
  const invalidated: { rejected: string; stillRejected: boolean }[] = [];
  const tokens: TokenSource = {
    get: async () => `${name}${n}`,
    invalidate: async (_appid, rejected, opts) => {
      invalidated.push({ rejected, stillRejected: opts?.stillRejected ?? false });
      if (rejected === `${name}${n}`) n++;
    },
  };
  const wechat = new WechatClient({ baseUrl: url, tokens });
  clients.push(wechat);
  return { wechat, invalidated };
}

const all = (reaction: Reaction): Record<Kind, Reaction> => ({
  unlimited: reaction,
  code: reaction,
  qrcode: reaction,
});

/** docs/wechat-api.md, "Error codes": the reaction to each errcode, for B (unlimited), A (code) and C (qrcode). */
const REACTIONS: [number, Record<Kind, Reaction>][] = [
  [-1, all('retry')],
  // B: the minute rate limit. A: the daily limit, which C shares through A's count.
  [45009, { unlimited: 'backoff-app', code: 'stop-campaign', qrcode: 'stop-campaign' }],
  [45011, all('backoff-app')],
  [40129, all('fail-row')],
  [40169, all('fail-row')],
  [40159, all('fail-row')],
  [85096, all('fail-row')],
  [40097, all('stop-campaign')],
  [41030, all('stop-campaign')],
  [45063, all('stop-campaign')],
  [47001, all('stop-campaign')],
  [45029, all('stop-ac')],
  [40013, all('stop-app')],
  [40125, all('stop-app')],
  [40164, all('stop-app')],
  [40243, all('stop-app')],
  [89503, all('stop-app')],
  // Not in the contract: only this row is known to be affected.
  [61234, all('fail-row')],
];

describe('errcodes → the reaction, per the contract', () => {
  it.each(
    REACTIONS.flatMap(([errcode, byKind]) => KINDS.map((kind) => [errcode, kind, byKind[kind]] as const)),
  )('errcode %i on %s: %s, after one call and no token refresh', async (errcode, kind, reaction) => {
    const { wechat, invalidated } = client();
    answers.push(errorAnswer(errcode));
    const err = await caught(() => wechat.getCode(APPID, codeOptions({ kind }), ROW[kind]));
    expect(err).toBeInstanceOf(WechatError);
    expect(err).toMatchObject({ errcode, reaction });
    expect(received).toHaveLength(1);
    expect(invalidated).toEqual([]);
  });

  it.each(
    [40001, 42001, 40014].flatMap((errcode) => KINDS.map((kind) => [errcode, kind] as const)),
  )('errcode %i on %s: refresh the token once and send the same call again', async (errcode, kind) => {
    const { wechat, invalidated } = client();
    answers.push(errorAnswer(errcode));
    const image = await wechat.getCode(APPID, codeOptions({ kind }), ROW[kind]);
    expect(image.body).toEqual(JPEG);
    expect(received.map((r) => r.token)).toEqual(['T1', 'T2']);
    expect(received[1]!.body).toBe(received[0]!.body);
    expect(invalidated).toEqual([{ rejected: 'T1', stillRejected: false }]);
  });

  it('gives up with refresh-token when the refreshed token is rejected too, saying it was a fresh one', async () => {
    const { wechat, invalidated } = client();
    answers.push(errorAnswer(40001), errorAnswer(40001));
    const err = await caught(() => wechat.getCode(APPID, codeOptions({ kind: 'unlimited' }), 'a'));
    expect(err).toMatchObject({ errcode: 40001, reaction: 'refresh-token' });
    expect(received.map((r) => r.token)).toEqual(['T1', 'T2']);
    expect(invalidated).toEqual([
      { rejected: 'T1', stillRejected: false },
      { rejected: 'T2', stillRejected: true },
    ]);
  });
});

const darkBlue = { r: 0, g: 40, b: 140 };
const darkRed = { r: 120, g: 0, b: 10 };
const SCENE_PUNCTUATION = "id=42&s=x!#$'()*+,/:;=?@-._~";

/** docs/wechat-api.md, "Endpoints" and "Parameters": options and row value → the URL path and the exact JSON sent. */
const REQUESTS: {
  name: string;
  options: Partial<CodeOptions> & { kind: Kind };
  value: string;
  path: string;
  json: Record<string, unknown>;
}[] = [
  {
    name: 'B with every option left out: the documented defaults, no page (the home page), no line colour',
    options: { kind: 'unlimited' },
    value: 'a=1',
    path: '/wxa/getwxacodeunlimit',
    json: {
      scene: 'a=1',
      check_path: true,
      env_version: 'release',
      width: 430,
      auto_color: false,
      is_hyaline: false,
    },
  },
  {
    name: 'B with every option set, the scene sent as is',
    options: {
      kind: 'unlimited',
      page: 'pages/x/y',
      checkPath: false,
      envVersion: 'trial',
      width: 300,
      lineColor: { r: 1, g: 2, b: 3 },
      isHyaline: true,
    },
    value: SCENE_PUNCTUATION,
    path: '/wxa/getwxacodeunlimit',
    json: {
      scene: SCENE_PUNCTUATION,
      page: 'pages/x/y',
      check_path: false,
      env_version: 'trial',
      width: 300,
      auto_color: false,
      line_color: { r: 1, g: 2, b: 3 },
      is_hyaline: true,
    },
  },
  {
    name: 'B with auto colour',
    options: {
      kind: 'unlimited',
      page: 'pages/index/index',
      envVersion: 'develop',
      width: 1280,
      autoColor: true,
    },
    value: 's',
    path: '/wxa/getwxacodeunlimit',
    json: {
      scene: 's',
      page: 'pages/index/index',
      check_path: true,
      env_version: 'develop',
      width: 1280,
      auto_color: true,
      is_hyaline: false,
    },
  },
  {
    name: 'A with every option left out',
    options: { kind: 'code' },
    value: 'pages/item/detail?id=42',
    path: '/wxa/getwxacode',
    json: {
      path: 'pages/item/detail?id=42',
      width: 430,
      env_version: 'release',
      auto_color: false,
      is_hyaline: false,
    },
  },
  {
    name: 'A with every option set, a non-ASCII path in UTF-8',
    options: {
      kind: 'code',
      envVersion: 'trial',
      width: 280,
      lineColor: darkBlue,
      isHyaline: true,
    },
    value: 'pages/item/detail?name=页面',
    path: '/wxa/getwxacode',
    json: {
      path: 'pages/item/detail?name=页面',
      width: 280,
      env_version: 'trial',
      auto_color: false,
      line_color: darkBlue,
      is_hyaline: true,
    },
  },
  {
    name: 'C with every option left out',
    options: { kind: 'qrcode' },
    value: 'pages/item/detail?id=42',
    path: '/cgi-bin/wxaapp/createwxaqrcode',
    json: { path: 'pages/item/detail?id=42', width: 430 },
  },
  {
    name: 'C: path and width only, whatever else the options say',
    options: { kind: 'qrcode', width: 500, envVersion: 'develop' },
    value: 'pages/item/detail?id=43',
    path: '/cgi-bin/wxaapp/createwxaqrcode',
    json: { path: 'pages/item/detail?id=43', width: 500 },
  },
];

describe('options → the request, per the contract', () => {
  it.each(REQUESTS)('$name', async ({ options, value, path, json }) => {
    const { wechat } = client();
    await wechat.getCode(APPID, codeOptions(options), value);
    expect(received).toHaveLength(1);
    const [request] = received as [Received];
    expect(request).toMatchObject({ method: 'POST', path, token: 'T1' });
    expect(request.contentType).toMatch(/^application\/json\b/);
    expect(JSON.parse(request.body)).toStrictEqual(json);
  });

  it('puts the access token in the query string, encoded so WeChat reads it back whole', async () => {
    const { wechat } = client('a+b/c=d&e ');
    await wechat.getCode(APPID, codeOptions({ kind: 'unlimited' }), 'a');
    expect(received[0]!.token).toBe('a+b/c=d&e 1');
  });
});

describe('options → the picture the mock WeChat draws from what arrived', () => {
  const MOCK_APPID = 'wxmock00000000001';
  let mock: MockServer;
  let wechat: WechatClient;

  beforeAll(async () => {
    mock = await startMockServer({
      rateLimit: null,
      publishedPages: ['pages/index/index', 'pages/item/detail'],
    });
    const answer = await fetch(
      `${mock.url}/cgi-bin/token?grant_type=client_credential&appid=${MOCK_APPID}&secret=mock-secret`,
    );
    const { access_token: token } = (await answer.json()) as { access_token: string };
    wechat = new WechatClient({
      baseUrl: mock.url,
      tokens: { get: async () => token, invalidate: async () => undefined },
    });
  });

  afterAll(async () => {
    await wechat.close();
    await mock.close();
  });

  const black = { r: 0, g: 0, b: 0 };
  it.each([
    {
      name: 'B with the defaults: an opaque black JPEG 430 px wide, of the release version, the scene as sent',
      options: { kind: 'unlimited', page: 'pages/item/detail' },
      value: 'id=1&from=qr',
      picture: { type: 'jpeg', width: 430, transparent: false },
      ink: black,
      text: `wxacode|${MOCK_APPID}|unlimited|page=pages/item/detail|scene=id=1&from=qr|env=release`,
    },
    {
      name: 'B with every option: an unpublished page, trial, 600 px, dark blue on transparent',
      options: {
        kind: 'unlimited',
        page: 'pages/draft/page',
        checkPath: false,
        envVersion: 'trial',
        width: 600,
        lineColor: darkBlue,
        isHyaline: true,
      },
      value: 'row2',
      picture: { type: 'png', width: 600, transparent: true },
      ink: darkBlue,
      text: `wxacode|${MOCK_APPID}|unlimited|page=pages/draft/page|scene=row2|env=trial`,
    },
    {
      name: 'A with every option: develop, 640 px, dark red on transparent',
      options: { kind: 'code', envVersion: 'develop', width: 640, lineColor: darkRed, isHyaline: true },
      value: 'pages/item/detail?id=7',
      picture: { type: 'png', width: 640, transparent: true },
      ink: darkRed,
      text: `wxacode|${MOCK_APPID}|code|path=pages/item/detail?id=7|env=develop`,
    },
    {
      name: 'A with the defaults',
      options: { kind: 'code' },
      value: 'pages/item/detail?id=8',
      picture: { type: 'jpeg', width: 430, transparent: false },
      ink: black,
      text: `wxacode|${MOCK_APPID}|code|path=pages/item/detail?id=8|env=release`,
    },
    {
      name: 'C at 280 px',
      options: { kind: 'qrcode', width: 280 },
      value: 'pages/item/detail?id=9',
      picture: { type: 'jpeg', width: 280, transparent: false },
      ink: black,
      text: `wxacode|${MOCK_APPID}|qrcode|path=pages/item/detail?id=9`,
    },
  ] as const)('$name', async ({ options, value, picture, ink, text }) => {
    const image = await wechat.getCode(MOCK_APPID, codeOptions(options), value);
    const decoded = readImage(image.body)!;
    expect(decoded).toMatchObject({ ...picture, height: picture.width });
    expect(colorDistance(inkColor(decoded), ink)).toBeLessThan(24);
    expect(decodeImage(image.body)).toBe(text);
  });

  it('B checks the page against the published version unless told not to', async () => {
    const err = await caught(() =>
      wechat.getCode(MOCK_APPID, codeOptions({ kind: 'unlimited', page: 'pages/draft/page' }), 'row'),
    );
    expect(err).toMatchObject({ errcode: 41030, reaction: 'stop-campaign' });
  });
});
