import { describe, expect, it } from 'vitest';
import { classifyBody } from '../../src/wechat/body.js';
import { isTransientError, TransientError, WechatError } from '../../src/wechat/errors.js';
import { caught, JPEG, PNG } from './fixtures.js';

describe('classifyBody', () => {
  it('recognises JPEG and PNG by their bytes', () => {
    expect(classifyBody(200, JPEG, 'unlimited')).toEqual({
      body: JPEG,
      contentType: 'image/jpeg',
      extension: 'jpg',
    });
    expect(classifyBody(200, PNG, 'code')).toEqual({ body: PNG, contentType: 'image/png', extension: 'png' });
  });

  it('turns a JSON error into a WechatError classified for the kind', async () => {
    const body = Buffer.from('{"errcode":45009,"errmsg":"reach max api daily quota limit rid: 1"}');
    const unlimited = await caught(() => classifyBody(200, body, 'unlimited'));
    expect(unlimited).toBeInstanceOf(WechatError);
    expect(unlimited).toMatchObject({ errcode: 45009, kind: 'unlimited', reaction: 'backoff-app' });
    expect(await caught(() => classifyBody(200, body, 'code'))).toMatchObject({ reaction: 'stop-campaign' });
  });

  it.each([
    [
      'errcode 0 without an image',
      200,
      Buffer.from('{"errcode":0,"errmsg":"ok"}'),
      /errcode 0 without an image/,
    ],
    ['an HTML 502 page', 502, Buffer.from('<html><body>502 Bad Gateway</body></html>'), /HTML page/],
    ['an empty body', 200, Buffer.alloc(0), /empty body/],
    ['text that is not JSON', 200, Buffer.from('upstream connect error'), /neither an image nor JSON/],
    ['a JSON array', 200, Buffer.from('[1,2]'), /neither an image nor JSON/],
    ['a JPEG without its end marker', 200, JPEG.subarray(0, -2), /truncated JPEG/],
    ['a PNG without its IEND chunk', 200, PNG.subarray(0, -12), /truncated PNG/],
    ['a bare JPEG start', 200, JPEG.subarray(0, 4), /truncated JPEG/],
    ['an image with HTTP 500', 500, JPEG, /HTTP 500 with an image/],
  ])('treats %s as transient, with the HTTP status', async (_name, status, body, message) => {
    const err = await caught(() => classifyBody(status, body, 'unlimited'));
    expect(err).toBeInstanceOf(TransientError);
    expect(isTransientError(err)).toBe(true);
    expect(err.message).toMatch(message);
    expect((err as TransientError).status).toBe(status);
  });

  it('never quotes the body, which may echo the URL and its token', async () => {
    const body = Buffer.from('<html>GET /wxa/getwxacodeunlimit?access_token=SECRET-TOKEN failed</html>');
    expect((await caught(() => classifyBody(502, body, 'unlimited'))).message).not.toContain('SECRET-TOKEN');
  });
});
