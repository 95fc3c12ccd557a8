/** Raw HTTP calls to the mock WeChat API, the way any client would make them, for the mock's own tests. */
import type { Kind } from '../../src/wechat/params.js';

/** Written from docs/wechat-api.md, not taken from the client, so a wrong client path cannot hide here. */
const ENDPOINTS: Record<Kind, string> = {
  unlimited: '/wxa/getwxacodeunlimit',
  code: '/wxa/getwxacode',
  qrcode: '/cgi-bin/wxaapp/createwxaqrcode',
};

export const APPID = 'wxmock00000000001';
export const SECRET = 'mock-secret';

export interface Answer {
  status: number;
  type: string;
  headers: Headers;
  body: Buffer;
}

export async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    headers: res.headers,
    body: Buffer.from(await res.arrayBuffer()),
  };
}

/** The parsed `{errcode, errmsg}` of an error answer. */
export function errorOf(answer: Answer): { errcode: number; errmsg: string } {
  return JSON.parse(answer.body.toString('utf8'));
}

export function classicTokenUrl(base: string, params: Record<string, string> = {}): string {
  const query = new URLSearchParams({
    grant_type: 'client_credential',
    appid: APPID,
    secret: SECRET,
    ...params,
  });
  return `${base}/cgi-bin/token?${query}`;
}

export async function classicToken(base: string, params: Record<string, string> = {}): Promise<string> {
  const answer = await call(classicTokenUrl(base, params));
  return JSON.parse(answer.body.toString('utf8')).access_token;
}

export function stableToken(base: string, body: Record<string, unknown> = {}): Promise<Answer> {
  return call(`${base}/cgi-bin/stable_token`, {
    method: 'POST',
    body: JSON.stringify({
      grant_type: 'client_credential',
      appid: APPID,
      secret: SECRET,
      force_refresh: false,
      ...body,
    }),
  });
}

/** POST a code request; an object body is sent as a JSON string, a string as it is. */
export function code(
  base: string,
  kind: Kind,
  token: string,
  body: unknown,
  init: RequestInit = {},
): Promise<Answer> {
  return call(`${base}${ENDPOINTS[kind]}?access_token=${encodeURIComponent(token)}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}
