import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import type { Kind } from '../../src/wechat/params.js';
import { colorDistance, decodeImage, inkColor, readImage } from '../helpers/qr.js';
import { APPID, call, classicToken, code, errorOf } from './calls.js';

let server: MockServer;
let token: string;

beforeAll(async () => {
  server = await startMockServer({
    rateLimit: null,
    publishedPages: ['pages/index/index', 'pages/item/detail'],
    acTotalLimit: 3,
    acDailyLimit: 4,
  });
  token = await classicToken(server.url);
});

afterAll(async () => {
  await server.close();
});

async function errcode(kind: Kind, body: unknown, init?: RequestInit): Promise<number> {
  const answer = await code(server.url, kind, token, body, init);
  expect(answer.status).toBe(200);
  expect(answer.type).toBe('application/json; encoding=utf-8');
  const error = errorOf(answer);
  expect(error.errmsg).toMatch(/ rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/);
  return error.errcode;
}

describe('code images', () => {
  it('binds to 127.0.0.1 by default, out of reach of other interfaces', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // Another address of this machine, one that a server on every interface answers on: 127.0.0.2 (Linux
    // routes all of 127/8 to lo) or an external interface, so the check runs on every machine.
    const everywhere = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => everywhere.listen(0, '0.0.0.0', resolve));
    const control = (everywhere.address() as AddressInfo).port;
    const candidates = [
      '127.0.0.2',
      ...Object.values(networkInterfaces())
        .flat()
        .filter((nic) => nic && nic.family === 'IPv4' && !nic.internal)
        .map((nic) => nic!.address),
    ];
    let other: string | undefined;
    for (const address of candidates) {
      const res = await fetch(`http://${address}:${control}/`).catch(() => undefined);
      if (res?.ok) {
        other = address;
        break;
      }
    }
    everywhere.close();
    expect(other, `an address other than 127.0.0.1 among ${candidates.join(', ')}`).toBeDefined();
    const port = new URL(server.url).port;
    await expect(fetch(`http://${other}:${port}/cgi-bin/token`)).rejects.toThrow();
  });

  it('B: an opaque JPEG of width×width (430 by default) in black, whose QR code holds the request', async () => {
    const body = { scene: "id=42&s=x!#$'()*+,/:;=?@-._~", page: 'pages/item/detail', env_version: 'trial' };
    const answer = await code(server.url, 'unlimited', token, body);
    expect(answer.status).toBe(200);
    expect(answer.type).toBe('image/jpeg');
    const image = readImage(answer.body)!;
    expect(image).toMatchObject({ type: 'jpeg', width: 430, height: 430, transparent: false });
    expect(colorDistance(inkColor(image), { r: 0, g: 0, b: 0 })).toBeLessThan(24);
    expect(decodeImage(answer.body)).toBe(
      `wxacode|${APPID}|unlimited|page=pages/item/detail|scene=${body.scene}|env=trial`,
    );
    expect(answer.headers.get('num-used')).toBeNull();
  });

  it('B: a transparent PNG when is_hyaline is true, at the width asked for', async () => {
    const answer = await code(server.url, 'unlimited', token, {
      scene: 'clear',
      is_hyaline: true,
      width: 1280,
    });
    expect(answer.type).toBe('image/png');
    const image = readImage(answer.body)!;
    expect(image).toMatchObject({ type: 'png', width: 1280, height: 1280, transparent: true });
    expect(decodeImage(answer.body)).toBe(`wxacode|${APPID}|unlimited|page=|scene=clear|env=release`);
  });

  it('draws the modules in line_color unless auto_color is true', async () => {
    const darkBlue = { r: 0, g: 40, b: 140 };
    const image = async (body: object) => readImage((await code(server.url, 'unlimited', token, body)).body)!;
    // PNG keeps colours exactly; JPEG only nearly.
    const png = await image({ scene: 'c', line_color: darkBlue, is_hyaline: true });
    expect(inkColor(png)).toEqual(darkBlue);
    expect(colorDistance(inkColor(await image({ scene: 'c', line_color: darkBlue })), darkBlue)).toBeLessThan(
      24,
    );
    const auto = inkColor(
      await image({ scene: 'c', line_color: darkBlue, auto_color: true, is_hyaline: true }),
    );
    expect(auto).toEqual({ r: 0, g: 0, b: 0 });
  });

  it('A: a JPEG with Num-Used, the same parameters counting as one code', async () => {
    const first = await code(server.url, 'code', token, { path: 'pages/item/detail?id=1', width: 280 });
    expect(first.type).toBe('image/jpeg');
    expect(readImage(first.body)).toMatchObject({ width: 280, height: 280 });
    expect(decodeImage(first.body)).toBe(`wxacode|${APPID}|code|path=pages/item/detail?id=1|env=release`);
    const used = Number(first.headers.get('num-used'));
    const again = await code(server.url, 'code', token, { path: 'pages/item/detail?id=1', width: 280 });
    expect(Number(again.headers.get('num-used'))).toBe(used);
  });

  it('C: an opaque black JPEG whatever is_hyaline and line_color say, with no env in its content', async () => {
    const answer = await code(server.url, 'qrcode', token, {
      path: 'pages/item/detail?id=2',
      is_hyaline: true,
      line_color: { r: 0, g: 40, b: 140 },
    });
    expect(answer.type).toBe('image/jpeg');
    const image = readImage(answer.body)!;
    expect(image).toMatchObject({ width: 430, height: 430, transparent: false });
    expect(colorDistance(inkColor(image), { r: 0, g: 0, b: 0 })).toBeLessThan(24);
    expect(decodeImage(answer.body)).toBe(`wxacode|${APPID}|qrcode|path=pages/item/detail?id=2`);
    expect(Number(answer.headers.get('num-used'))).toBeGreaterThan(0);
  });
});

describe('errors, as JSON with HTTP 200', () => {
  it('40001 for a missing or unknown token', async () => {
    const missing = await call(`${server.url}/wxa/getwxacodeunlimit`, {
      method: 'POST',
      body: '{"scene":"a"}',
    });
    expect(errorOf(missing).errcode).toBe(40001);
    const unknown = await code(server.url, 'unlimited', 'not-a-token', { scene: 'a' });
    expect(errorOf(unknown).errcode).toBe(40001);
  });

  it('47001 for a form post or a body that is not a JSON object', async () => {
    const form = { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
    expect(await errcode('unlimited', 'scene=abc&page=pages/index/index', form)).toBe(47001);
    expect(await errcode('unlimited', '["scene"]')).toBe(47001);
    expect(await errcode('code', '')).toBe(47001);
  });

  it('43002 for a GET', async () => {
    const answer = await call(`${server.url}/wxa/getwxacodeunlimit?access_token=${token}`);
    expect(errorOf(answer).errcode).toBe(43002);
  });

  it('40129 for scene characters outside the allowed set, 40169 for its length or absence', async () => {
    expect(await errcode('unlimited', { scene: 'a b' })).toBe(40129);
    expect(await errcode('unlimited', { scene: '中文' })).toBe(40129);
    expect(await errcode('unlimited', { scene: 'a%20b' })).toBe(40129);
    expect(await errcode('unlimited', { scene: 'x'.repeat(33) })).toBe(40169);
    const longest = await code(server.url, 'unlimited', token, { scene: 'x'.repeat(32) });
    expect(longest.type).toBe('image/jpeg');
    expect(await errcode('unlimited', { scene: '' })).toBe(40169);
    expect(await errcode('unlimited', { page: 'pages/index/index' })).toBe(40169);
    expect(await errcode('unlimited', { scene: 42 })).toBe(40169);
  });

  it('41030 for a page with a leading slash or a query, or not in the published version', async () => {
    expect(await errcode('unlimited', { scene: 'a', page: '/pages/index/index' })).toBe(41030);
    expect(await errcode('unlimited', { scene: 'a', page: 'pages/index/index?x=1' })).toBe(41030);
    expect(await errcode('unlimited', { scene: 'a', page: 'pages/missing/index' })).toBe(41030);
    // check_path false lets an unpublished page through.
    const unchecked = await code(server.url, 'unlimited', token, {
      scene: 'a',
      page: 'pages/missing/index',
      check_path: false,
    });
    expect(unchecked.type).toBe('image/jpeg');
  });

  it('41030 even for the home page when nothing is published and check_path is true', async () => {
    server.configure({ publishedPages: [] });
    try {
      expect(await errcode('unlimited', { scene: 'a' })).toBe(41030);
      const unchecked = await code(server.url, 'unlimited', token, { scene: 'a', check_path: false });
      expect(unchecked.type).toBe('image/jpeg');
    } finally {
      server.configure({ publishedPages: ['pages/index/index', 'pages/item/detail'] });
    }
  });

  it('85096 for scancode_time in page or path', async () => {
    expect(await errcode('unlimited', { scene: 'a', page: 'pages/scancode_time/index' })).toBe(85096);
    expect(await errcode('code', { path: 'pages/index/index?scancode_time=1' })).toBe(85096);
    expect(await errcode('qrcode', { path: 'pages/index/index?scancode_time=1' })).toBe(85096);
  });

  it('40159 for a path too long for its kind, or missing', async () => {
    expect(await errcode('code', { path: `pages/a?x=${'1'.repeat(1020)}` })).toBe(40159);
    // C counts bytes: 43 three-byte characters are 129 bytes.
    expect(await errcode('qrcode', { path: '页'.repeat(43) })).toBe(40159);
    expect(await errcode('qrcode', { width: 430 })).toBe(40159);
    const longA = await code(server.url, 'code', token, {
      path: `pages/a?x=${'1'.repeat(1000)}`,
      width: 1280,
    });
    expect(decodeImage(longA.body)).toBe(
      `wxacode|${APPID}|code|path=pages/a?x=${'1'.repeat(1000)}|env=release`,
    );
  });

  it('40097 "invalid args" for env_version, width, line_color or a flag of the wrong type', async () => {
    expect(await errcode('unlimited', { scene: 'a', env_version: 'beta' })).toBe(40097);
    expect(await errcode('code', { path: 'pages/index/index', env_version: 'prod' })).toBe(40097);
    expect(await errcode('unlimited', { scene: 'a', width: 279 })).toBe(40097);
    expect(await errcode('qrcode', { path: 'pages/index/index', width: 1281 })).toBe(40097);
    expect(await errcode('unlimited', { scene: 'a', width: '430' })).toBe(40097);
    expect(await errcode('unlimited', { scene: 'a', line_color: { r: 256, g: 0, b: 0 } })).toBe(40097);
    expect(await errcode('unlimited', { scene: 'a', is_hyaline: 'true' })).toBe(40097);
    const answer = await code(server.url, 'unlimited', token, { scene: 'a', width: 99 });
    expect(errorOf(answer).errmsg).toMatch(/^invalid args hint: \[width must be .* got 99\] rid: /);
  });

  it('45029 for a new A or C code past the lifetime total, while known ones are still served', async () => {
    // acTotalLimit is 3; earlier tests may have used some, so fill up to it with fresh paths.
    let used = 0;
    for (let i = 0; used < 3; i++) {
      const answer = await code(server.url, 'qrcode', token, { path: `pages/fill?i=${i}` });
      used = Number(answer.headers.get('num-used'));
    }
    const refused = await code(server.url, 'code', token, { path: 'pages/item/detail?id=999' });
    expect(errorOf(refused).errcode).toBe(45029);
    expect(refused.headers.get('num-used')).toBe('3');
    expect(await errcode('qrcode', { path: 'pages/item/detail?id=999' })).toBe(45029);
    const known = await code(server.url, 'qrcode', token, {
      path: 'pages/item/detail?id=2',
      is_hyaline: true,
    });
    expect(known.type).toBe('image/jpeg');
  });

  it('45009 on A once its daily limit is spent, repeats included; C is not held to it', async () => {
    // acDailyLimit is 4: the A images of earlier tests count.
    let answer = await code(server.url, 'code', token, { path: 'pages/item/detail?id=1', width: 280 });
    while (answer.type.startsWith('image/')) {
      answer = await code(server.url, 'code', token, { path: 'pages/item/detail?id=1', width: 280 });
    }
    expect(errorOf(answer).errcode).toBe(45009);
    const c = await code(server.url, 'qrcode', token, { path: 'pages/item/detail?id=2' });
    expect(c.type).toBe('image/jpeg');
  });

  it('counts every call, image and errcode for the app', () => {
    const stats = server.stats();
    expect(stats.codeCalls).toBe(stats.images + Object.values(stats.errors).reduce((a, b) => a + b, 0));
    expect(stats.errors).toMatchObject({ '40129': 3, '40169': 4, '41030': 4, '85096': 3, '40097': 8 });
    expect(stats.callTimes).toHaveLength(stats.codeCalls);
  });
});
