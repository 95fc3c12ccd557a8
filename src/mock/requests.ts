/**
 * Reading a code request's JSON body the way WeChat does: which errcode a bad parameter earns
 * (wechat-api.md, "Parameters" and "Error codes"), with the rules themselves from wechat/params.ts.
 */
import {
  colorProblem,
  DEFAULT_WIDTH,
  isEnvVersion,
  type Kind,
  pageProblem,
  pathProblem,
  type Rgb,
  SCENE_MAX_LENGTH,
  sceneProblem,
  widthProblem,
} from '../wechat/params.js';
import type { CodeStyle } from './image.js';

export interface RequestProblem {
  errcode: number;
  detail: string;
}

/** The reserved word that earns 85096 wherever it appears in page or path. */
const RESERVED_WORD = 'scancode_time';
const BLACK: Rgb = { r: 0, g: 0, b: 0 };

type Body = Record<string, unknown>;

function invalidArgs(detail: string): RequestProblem {
  return { errcode: 40097, detail };
}

function booleanProblem(body: Body, field: string): RequestProblem | undefined {
  const value = body[field];
  return value === undefined || typeof value === 'boolean'
    ? undefined
    : invalidArgs(`${field} must be true or false, got ${JSON.stringify(value)}`);
}

function isRgb(value: unknown): value is Rgb {
  return typeof value === 'object' && value !== null && 'r' in value && 'g' in value && 'b' in value;
}

/** width, env_version, auto_color, line_color, is_hyaline: a bad one is 40097 "invalid args". */
function styleProblem(kind: Kind, body: Body): RequestProblem | undefined {
  if (body.width !== undefined) {
    const problem = typeof body.width === 'number' ? widthProblem(body.width) : 'width must be a number';
    if (problem) return invalidArgs(problem);
  }
  // C takes path and width only; WeChat ignores anything else it is sent.
  if (kind === 'qrcode') return undefined;
  const env = body.env_version;
  if (env !== undefined && (typeof env !== 'string' || !isEnvVersion(env))) {
    return invalidArgs(`env_version must be release, trial or develop, got ${JSON.stringify(env)}`);
  }
  const flag =
    booleanProblem(body, 'auto_color') ??
    booleanProblem(body, 'is_hyaline') ??
    booleanProblem(body, 'check_path');
  if (flag) return flag;
  if (body.line_color !== undefined && body.auto_color !== true) {
    const problem = isRgb(body.line_color)
      ? colorProblem(body.line_color)
      : 'line_color must be {"r":0-255,"g":0-255,"b":0-255}';
    if (problem) return invalidArgs(problem);
  }
  return undefined;
}

function sceneErrcode(scene: string): number {
  return scene.length === 0 || scene.length > SCENE_MAX_LENGTH ? 40169 : 40129;
}

function pageRequestProblem(
  body: Body,
  publishedPages: readonly string[] | null,
): RequestProblem | undefined {
  const page = body.page ?? '';
  if (typeof page !== 'string') return { errcode: 41030, detail: 'page must be a string' };
  if (page !== '') {
    if (page.includes(RESERVED_WORD)) return { errcode: 85096, detail: `page contains ${RESERVED_WORD}` };
    const problem = pageProblem(page);
    if (problem) return { errcode: 41030, detail: problem };
  }
  if (body.check_path === false || publishedPages === null) return undefined;
  if (publishedPages.length === 0) {
    return { errcode: 41030, detail: 'the mini program has no published version; send check_path false' };
  }
  if (page !== '' && !publishedPages.includes(page)) {
    return { errcode: 41030, detail: `page "${page}" is not in the published version` };
  }
  return undefined;
}

/** The errcode WeChat answers a code request with, or undefined when it would draw the code. */
export function codeRequestProblem(
  kind: Kind,
  body: Body,
  publishedPages: readonly string[] | null,
): RequestProblem | undefined {
  if (kind === 'unlimited') {
    const scene = body.scene;
    if (typeof scene !== 'string') return { errcode: 40169, detail: 'scene is missing or not a string' };
    const problem = sceneProblem(scene);
    if (problem) return { errcode: sceneErrcode(scene), detail: problem };
    return pageRequestProblem(body, publishedPages) ?? styleProblem(kind, body);
  }
  const path = body.path;
  if (typeof path !== 'string') return { errcode: 40159, detail: 'path is missing or not a string' };
  if (path.includes(RESERVED_WORD)) return { errcode: 85096, detail: `path contains ${RESERVED_WORD}` };
  const problem = pathProblem(kind, path);
  if (problem) return { errcode: 40159, detail: problem };
  return styleProblem(kind, body);
}

/** How the code of a valid request is drawn. */
export function codeStyle(kind: Kind, body: Body): CodeStyle {
  const line = body.line_color;
  const colored = kind !== 'qrcode' && body.auto_color !== true && isRgb(line);
  return {
    width: typeof body.width === 'number' ? body.width : DEFAULT_WIDTH,
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
