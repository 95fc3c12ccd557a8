/**
 * Parameter rules of the three code endpoints (docs/wechat-api.md, "Parameters").
 * Enqueue-time validation and the client use these, so a row that passes here is one WeChat accepts, and a person
 * gets the same message before spending a call as after. The mock server reads requests by its own rules
 * (mock/requests.ts), written apart from these, so that a wrong rule here is caught rather than agreed with.
 */

export const KINDS = ['unlimited', 'code', 'qrcode'] as const;
/** `unlimited` = B (getwxacodeunlimit), `code` = A (getwxacode), `qrcode` = C (createwxaqrcode). */
export type Kind = (typeof KINDS)[number];

export const ENV_VERSIONS = ['release', 'trial', 'develop'] as const;
export type EnvVersion = (typeof ENV_VERSIONS)[number];

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

/** Everything about a code that is the same for every row of a campaign. */
export interface CodeOptions {
  kind: Kind;
  /** B only: the page the code opens; undefined means the home page. */
  page?: string;
  /** B only, default true: the page must exist in the published version (else 41030). */
  checkPath: boolean;
  /** B and A, default `release`. */
  envVersion: EnvVersion;
  /** 280–1280 px, default 430. */
  width: number;
  /** A and B, default false. */
  autoColor: boolean;
  /** A and B, used only when autoColor is false; default black. */
  lineColor?: Rgb;
  /** A and B: transparent background, answered as PNG. Default false. */
  isHyaline: boolean;
}

export const DEFAULT_WIDTH = 430;
export const MIN_WIDTH = 280;
export const MAX_WIDTH = 1280;
export const SCENE_MAX_LENGTH = 32;
/** C: 128 bytes. A: the current docs allow 1024 characters (the 2018 page said 128). */
export const PATH_LIMITS: Record<
  Exclude<Kind, 'unlimited'>,
  { max: number; unit: 'bytes' | 'characters' }
> = {
  qrcode: { max: 128, unit: 'bytes' },
  code: { max: 1024, unit: 'characters' },
};

/** The URL path of each kind's endpoint; the access token goes in the query string. */
export const ENDPOINTS: Record<Kind, string> = {
  unlimited: '/wxa/getwxacodeunlimit',
  code: '/wxa/getwxacode',
  qrcode: '/cgi-bin/wxaapp/createwxaqrcode',
};

/** The row field of each kind: B codes differ by scene, A and C codes by path. */
export function rowField(kind: Kind): 'scene' | 'path' {
  return kind === 'unlimited' ? 'scene' : 'path';
}

const SCENE_CHARS = /^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+$/;
export const RESERVED_WORD = 'scancode_time';

export function isKind(value: string): value is Kind {
  return (KINDS as readonly string[]).includes(value);
}

export function isEnvVersion(value: string): value is EnvVersion {
  return (ENV_VERSIONS as readonly string[]).includes(value);
}

/** Why `scene` is not acceptable to WeChat (errcodes 40129/40169), or undefined when it is. */
export function sceneProblem(scene: string): string | undefined {
  if (scene.length === 0) return 'scene is empty';
  if (scene.length > SCENE_MAX_LENGTH) {
    return `scene is ${scene.length} characters long; WeChat accepts at most ${SCENE_MAX_LENGTH}`;
  }
  if (!SCENE_CHARS.test(scene)) {
    const bad = [...scene].find((ch) => !SCENE_CHARS.test(ch)) ?? '';
    return `scene contains ${describeChar(bad)}; allowed are 0-9 A-Z a-z and ! # $ & ' ( ) * + , / : ; = ? @ - . _ ~ (map other data to short ids)`;
  }
  return undefined;
}

/** Why `page` (B) is not acceptable (41030 for a leading `/` or a query, 85096 for scancode_time). */
export function pageProblem(page: string): string | undefined {
  if (page.length === 0) return 'page is empty; leave it out to open the home page';
  if (page.startsWith('/'))
    return `page "${page}" starts with "/"; write it as "${page.replace(/^\/+/, '')}"`;
  if (page.includes('?')) return `page "${page}" has a query string; B codes pass data in scene, not in page`;
  if (page.includes(RESERVED_WORD)) return `page "${page}" contains the reserved word ${RESERVED_WORD}`;
  if (/\s/.test(page)) return `page "${page}" contains white space`;
  return undefined;
}

/** Why `path` (A or C) is not acceptable (40159 for its length, 85096 for scancode_time). */
export function pathProblem(kind: Exclude<Kind, 'unlimited'>, path: string): string | undefined {
  if (path.length === 0) return 'path is empty';
  const limit = PATH_LIMITS[kind];
  const size = limit.unit === 'bytes' ? Buffer.byteLength(path, 'utf8') : path.length;
  if (size > limit.max) {
    return `path is ${size} ${limit.unit} long; ${kind} codes accept at most ${limit.max} ${limit.unit}`;
  }
  if (path.includes(RESERVED_WORD)) return `path contains the reserved word ${RESERVED_WORD}`;
  if (/[\s]/.test(path)) return 'path contains white space';
  return undefined;
}

/** Why a row value (scene for B, path for A/C) is not acceptable, or undefined. */
export function rowProblem(kind: Kind, value: string): string | undefined {
  return kind === 'unlimited' ? sceneProblem(value) : pathProblem(kind, value);
}

export function widthProblem(width: number): string | undefined {
  if (!Number.isInteger(width) || width < MIN_WIDTH || width > MAX_WIDTH) {
    return `width must be a whole number of pixels from ${MIN_WIDTH} to ${MAX_WIDTH}, got ${width}`;
  }
  return undefined;
}

export function colorProblem(color: Rgb): string | undefined {
  for (const channel of ['r', 'g', 'b'] as const) {
    const v = color[channel];
    if (!Number.isInteger(v) || v < 0 || v > 255) {
      return `line colour ${channel} must be a whole number from 0 to 255, got ${v}`;
    }
  }
  return undefined;
}

/** Every problem with campaign-wide options, each a sentence naming the option. */
export function codeOptionsProblems(options: CodeOptions): string[] {
  const problems: string[] = [];
  if (!isKind(options.kind)) problems.push(`kind must be one of ${KINDS.join(', ')}, got "${options.kind}"`);
  if (!isEnvVersion(options.envVersion)) {
    problems.push(`env version must be one of ${ENV_VERSIONS.join(', ')}, got "${options.envVersion}"`);
  }
  const width = widthProblem(options.width);
  if (width) problems.push(width);
  if (options.lineColor) {
    const color = colorProblem(options.lineColor);
    if (color) problems.push(color);
    if (options.autoColor) problems.push('line colour and auto colour exclude each other');
  }
  if (options.page !== undefined) {
    if (options.kind !== 'unlimited')
      problems.push('page applies to unlimited codes only; A and C rows carry a path');
    const page = pageProblem(options.page);
    if (page) problems.push(page);
  }
  if (options.kind === 'qrcode') {
    if (options.isHyaline) problems.push('qrcode (C) codes have no transparent variant');
    if (options.lineColor || options.autoColor) problems.push('qrcode (C) codes have no colour options');
  }
  return problems;
}

/** Fill in WeChat's defaults for what a caller left out. */
export function codeOptions(partial: Partial<CodeOptions> & { kind: Kind }): CodeOptions {
  return {
    kind: partial.kind,
    page: partial.page,
    checkPath: partial.checkPath ?? true,
    envVersion: partial.envVersion ?? 'release',
    width: partial.width ?? DEFAULT_WIDTH,
    autoColor: partial.autoColor ?? false,
    lineColor: partial.lineColor,
    isHyaline: partial.isHyaline ?? false,
  };
}

/** The JSON body WeChat expects for one row of a campaign. */
export function requestBody(options: CodeOptions, value: string): Record<string, unknown> {
  const body: Record<string, unknown> = { width: options.width };
  if (options.kind === 'qrcode') {
    body.path = value;
    return body;
  }
  if (options.kind === 'unlimited') {
    body.scene = value;
    if (options.page !== undefined) body.page = options.page;
    body.check_path = options.checkPath;
  } else {
    body.path = value;
  }
  body.env_version = options.envVersion;
  body.auto_color = options.autoColor;
  if (options.lineColor && !options.autoColor) body.line_color = options.lineColor;
  body.is_hyaline = options.isHyaline;
  return body;
}

/** What a code image is encoded as: PNG for transparent backgrounds, JPEG otherwise. */
export function expectedImageType(options: CodeOptions): 'png' | 'jpeg' {
  return options.isHyaline ? 'png' : 'jpeg';
}

function describeChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f)
    return `a control character (U+${code.toString(16).padStart(4, '0').toUpperCase()})`;
  if (ch === ' ') return 'a space';
  return `"${ch}"`;
}
