/**
 * One HTTP exchange with WeChat and what its answer means (docs/wechat-api.md, "Responses").
 * WeChat sends its JSON errors with HTTP 200 and a Content-Type that cannot be trusted, so every decision here is
 * made from the body bytes. Messages never quote the body or the request URL: a proxy's HTML page can echo the
 * URL, and the URL carries the access token (or, for classic token requests, the secret).
 */
import type { Dispatcher } from 'undici';
import { TransientError, WechatError } from './errors.js';
import type { Kind } from './params.js';

export interface CodeImage {
  body: Buffer;
  contentType: 'image/jpeg' | 'image/png';
  extension: 'jpg' | 'png';
}

export interface Answer {
  status: number;
  body: Buffer;
}

const JPEG_START = Buffer.from([0xff, 0xd8, 0xff]);
const JPEG_END = Buffer.from([0xff, 0xd9]);
const PNG_START = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** The IEND chunk every complete PNG ends with: length 0, type "IEND", its fixed CRC. */
const PNG_END = Buffer.from([0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);

const IMAGE_TYPES = [
  { start: JPEG_START, end: JPEG_END, contentType: 'image/jpeg', extension: 'jpg', name: 'JPEG' },
  { start: PNG_START, end: PNG_END, contentType: 'image/png', extension: 'png', name: 'PNG' },
] as const;

/**
 * Send one request and read the whole answer. Undici failures (refused, reset, timeouts) become a TransientError
 * carrying the original as `cause`; an abort through `request.signal` is the caller's and is rethrown as is.
 * `what` names the call in messages, e.g. "the unlimited code call for wx1".
 */
export async function exchange(
  dispatcher: Dispatcher,
  request: Dispatcher.RequestOptions,
  what: string,
): Promise<Answer> {
  let status: number | undefined;
  try {
    const response = await dispatcher.request(request);
    status = response.statusCode;
    // arrayBuffer() consumes the body to its end, or destroys it on error, so the socket goes back to the pool.
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status, body };
  } catch (err) {
    if (request.signal && (request.signal as AbortSignal).aborted) throw err;
    const code = (err as { code?: unknown }).code;
    const reason = typeof code === 'string' ? code : err instanceof Error ? err.name : 'error';
    const during = status === undefined ? 'got no answer' : `broke off its HTTP ${status} answer`;
    throw new TransientError(`${what} ${during} (${reason})`, status, { cause: err });
  }
}

/**
 * The JSON object WeChat answered. Throws a WechatError for a non-zero numeric errcode (whatever the HTTP status),
 * and a TransientError for anything that is not a JSON object or came with a status other than 200.
 */
export function jsonAnswer(answer: Answer, what: string, kind?: Kind): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TransientError(
      `${what} answered HTTP ${answer.status} with ${describeBody(answer.body)} instead of WeChat JSON`,
      answer.status,
    );
  }
  const object = parsed as Record<string, unknown>;
  const { errcode, errmsg } = object;
  if (typeof errcode === 'number' && errcode !== 0) {
    throw new WechatError(errcode, typeof errmsg === 'string' ? errmsg : '', kind);
  }
  if (answer.status !== 200) {
    throw new TransientError(
      `${what} answered HTTP ${answer.status} with JSON and no errcode`,
      answer.status,
    );
  }
  return object;
}

/**
 * What a code endpoint's answer is: a complete image, or a thrown WechatError / TransientError.
 * A JSON error is never returned as an image, whatever the Content-Type said.
 */
export function classifyBody(
  status: number,
  body: Buffer,
  kind: Kind,
  what = `the ${kind} code call`,
): CodeImage {
  const type = imageTypeOf(body);
  if (type) {
    if (
      body.length < type.start.length + type.end.length ||
      !body.subarray(-type.end.length).equals(type.end)
    ) {
      throw new TransientError(
        `${what} answered HTTP ${status} with a truncated ${type.name} (${body.length} bytes)`,
        status,
      );
    }
    if (status !== 200) {
      throw new TransientError(
        `${what} answered HTTP ${status} with an image; only 200 is a success`,
        status,
      );
    }
    return { body, contentType: type.contentType, extension: type.extension };
  }
  jsonAnswer({ status, body }, what, kind);
  throw new TransientError(`${what} answered errcode 0 without an image`, status);
}

/** The image type a body starts with, by its magic bytes (whether it is complete is classifyBody's business). */
export function imageTypeOf(body: Buffer): (typeof IMAGE_TYPES)[number] | undefined {
  return IMAGE_TYPES.find((t) => startsWith(body, t.start));
}

function startsWith(body: Buffer, magic: Buffer): boolean {
  return body.length >= magic.length && body.subarray(0, magic.length).equals(magic);
}

function describeBody(body: Buffer): string {
  if (body.length === 0) return 'an empty body';
  if (/^\s*<(!doctype|html|head|body|\?xml)/i.test(body.subarray(0, 64).toString('latin1'))) {
    return `an HTML page (${body.length} bytes)`;
  }
  return `${body.length} bytes that are neither an image nor JSON`;
}
