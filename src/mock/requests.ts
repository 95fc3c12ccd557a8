/**
 * Reading a code request the way WeChat does: which errcode a bad parameter earns, and how a good one is drawn
 * (docs/wechat-api.md, "Endpoints", "Parameters" and "Error codes").
 * These rules are written from the contract alone and share nothing but types with wechat/params.ts, so a client
 * that builds a request wrongly meets a server that disagrees with it rather than one that repeats its mistake.
 */
import type { Kind, Rgb } from '../wechat/params.js';
import type { CodeStyle } from './image.js';

export interface RequestProblem {
  errcode: number;
  detail: string;
}

/** The code endpoints by URL path; the access token comes in the query string. */
export const KIND_BY_PATH: ReadonlyMap<string, Kind> = new Map<string, Kind>([
  ['/wxa/getwxacodeunlimit', 'unlimited'],
  ['/wxa/getwxacode', 'code'],
  ['/cgi-bin/wxaapp/createwxaqrcode', 'qrcode'],
]);

const SCENE_PUNCTUATION = "!#$&'()*+,/:;=?@-._~";
const SCENE_MAX = 32;
const RESERVED_WORD = 'scancode_time';
const ENV_VERSIONS: readonly string[] = ['release', 'trial', 'develop'];
const WIDTH_MIN = 280;
const WIDTH_MAX = 1280;
const WIDTH_DEFAULT = 430;
/** C counts UTF-8 bytes; A follows the current docs' 1024 characters rather than the 2018 page's 128. */
const PATH_FITS: Record<'code' | 'qrcode', (path: string) => boolean> = {
  code: (path) => [...path].length <= 1024,
  qrcode: (path) => Buffer.byteLength(path, 'utf8') <= 128,
};
const BLACK: Rgb = { r: 0, g: 0, b: 0 };

type Body = Record<string, unknown>;

function invalidArgs(detail: string): RequestProblem {
  return { errcode: 40097, detail };
}

function isSceneChar(ch: string): boolean {
  return /^[0-9A-Za-z]$/.test(ch) || SCENE_PUNCTUATION.includes(ch);
}

function isByte(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 255;
}

function isRgb(value: unknown): value is Rgb {
  if (typeof value !== 'object' || value === null) return false;
  const { r, g, b } = value as Record<string, unknown>;
  return isByte(r) && isByte(g) && isByte(b);
}

function sceneProblem(scene: unknown): RequestProblem | undefined {
  if (typeof scene !== 'string') return { errcode: 40169, detail: 'scene is missing or not a string' };
  if (scene.length === 0 || scene.length > SCENE_MAX) {
    return { errcode: 40169, detail: `scene must be 1 to ${SCENE_MAX} characters, got ${scene.length}` };
  }
  const bad = [...scene].find((ch) => !isSceneChar(ch));
  return bad === undefined ? undefined : { errcode: 40129, detail: `scene contains ${JSON.stringify(bad)}` };
}

/** An absent or empty page is the home page, which exists once anything is published. */
function pageProblem(body: Body, publishedPages: readonly string[] | null): RequestProblem | undefined {
  const page = body.page ?? '';
  if (typeof page !== 'string') return { errcode: 41030, detail: 'page must be a string' };
  if (page.includes(RESERVED_WORD)) return { errcode: 85096, detail: `page contains ${RESERVED_WORD}` };
  if (page.startsWith('/')) return { errcode: 41030, detail: `page "${page}" starts with "/"` };
  if (page.includes('?')) return { errcode: 41030, detail: `page "${page}" has a query string` };
  if (body.check_path === false || publishedPages === null) return undefined;
  if (publishedPages.length === 0) {
    return { errcode: 41030, detail: 'the mini program has no published version; send check_path false' };
  }
  if (page !== '' && !publishedPages.includes(page)) {
    return { errcode: 41030, detail: `page "${page}" is not in the published version` };
  }
  return undefined;
}

function pathProblem(kind: 'code' | 'qrcode', path: unknown): RequestProblem | undefined {
  if (typeof path !== 'string' || path === '') {
    return { errcode: 40159, detail: 'path is missing or empty' };
  }
  if (path.includes(RESERVED_WORD)) return { errcode: 85096, detail: `path contains ${RESERVED_WORD}` };
  if (!PATH_FITS[kind](path)) return { errcode: 40159, detail: `path is too long for a ${kind} code` };
  return undefined;
}

function widthProblem(width: unknown): RequestProblem | undefined {
  if (width === undefined) return undefined;
  const fits = Number.isInteger(width) && (width as number) >= WIDTH_MIN && (width as number) <= WIDTH_MAX;
  return fits
    ? undefined
    : invalidArgs(`width must be ${WIDTH_MIN} to ${WIDTH_MAX} pixels, got ${JSON.stringify(width)}`);
}

/** env_version, the flags and line_color: C takes path and width only, and WeChat ignores anything else. */
function argsProblem(body: Body): RequestProblem | undefined {
  const env = body.env_version;
  if (env !== undefined && (typeof env !== 'string' || !ENV_VERSIONS.includes(env))) {
    return invalidArgs(`env_version must be release, trial or develop, got ${JSON.stringify(env)}`);
  }
  for (const flag of ['check_path', 'auto_color', 'is_hyaline']) {
    const value = body[flag];
    if (value !== undefined && typeof value !== 'boolean') {
      return invalidArgs(`${flag} must be true or false, got ${JSON.stringify(value)}`);
    }
  }
  if (body.line_color !== undefined && body.auto_color !== true && !isRgb(body.line_color)) {
    return invalidArgs(
      `line_color must be {"r":0-255,"g":0-255,"b":0-255}, got ${JSON.stringify(body.line_color)}`,
    );
  }
  return undefined;
}

/** The errcode WeChat answers a code request's JSON object with, or undefined when it would draw the code. */
export function codeRequestProblem(
  kind: Kind,
  body: Body,
  publishedPages: readonly string[] | null,
): RequestProblem | undefined {
  if (kind === 'qrcode') return pathProblem(kind, body.path) ?? widthProblem(body.width);
  const row =
    kind === 'unlimited'
      ? (sceneProblem(body.scene) ?? pageProblem(body, publishedPages))
      : pathProblem(kind, body.path);
  return row ?? widthProblem(body.width) ?? argsProblem(body);
}

/** How the code of a valid request is drawn: everything in it that changes the picture. */
export function codeStyle(kind: Kind, body: Body): CodeStyle {
  const line = body.line_color;
  const colored = kind !== 'qrcode' && body.auto_color !== true && isRgb(line);
  return {
    width: typeof body.width === 'number' ? body.width : WIDTH_DEFAULT,
    color: colored ? { r: line.r, g: line.g, b: line.b } : BLACK,
    transparent: kind !== 'qrcode' && body.is_hyaline === true,
  };
}

/** What makes two A or C requests "identical parameters", which count as one code. */
export function acKey(kind: 'code' | 'qrcode', body: Body): string {
  const env = kind === 'code' ? (body.env_version ?? 'release') : '';
  const { width, color, transparent } = codeStyle(kind, body);
  return JSON.stringify([kind, body.path, env, width, color.r, color.g, color.b, transparent]);
}
