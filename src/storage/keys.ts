/**
 * Object keys: where each code image and manifest lives, relative to the storage root (the S3 key prefix or the
 * folder).
 *
 *   <appid>/<kind>/<variant>/<name>.<ext>
 *
 * - `appid`: the mini program's appid, written with `encodeSegment` (appids are already safe, so unchanged).
 * - `kind`: `unlimited` (B), `code` (A) or `qrcode` (C).
 * - `variant`: the first 12 hex characters of the SHA-256 of a canonical JSON (keys sorted) of everything besides
 *   the row value that changes the image: kind, width; for A and B also env_version, auto_color, is_hyaline and
 *   line_color (only when auto_color is false, black when not given, as WeChat defaults it); for B also page
 *   when given. check_path is left out: it decides whether WeChat accepts the request, not what the image looks
 *   like. Same options, same variant, always; any difference that changes the image, a different variant.
 * - `name`: the row value (B scene, A/C path) written with `encodeSegment`: `A-Z a-z 0-9 _ -` stay, every other
 *   byte of its UTF-8 becomes `~XX` (uppercase hex; `~` itself is `~7E`). `../x` becomes `~2E~2E~2Fx`: never a
 *   path separator, never `.` or `..`, never a leading dot, and safe in a URL. When the encoded value would be
 *   longer than 180 characters (long A paths), the name is `h-` followed by the SHA-256 hex of the value
 *   instead; an encoded value that itself starts with `h-` writes its `h` as `~68`, so the two forms never meet.
 * - `ext`: `png` for transparent codes (is_hyaline), `jpg` otherwise: what WeChat answers with.
 *
 * Manifests: `<appid>/manifests/<campaign>.<csv|jsonl>`, the campaign name written with `encodeSegment`.
 * `manifests` cannot collide with a kind.
 *
 * In a local folder the file name (the last segment) is `localPath`'s: each upper-case letter A-Z is written as
 * `~XX` too, so `abc` and `ABC` stay two files on a case-insensitive file system. S3 keys are case-sensitive and
 * keep their letters.
 */
import { createHash } from 'node:crypto';
import { type CodeOptions, expectedImageType } from '../wechat/params.js';

/** Longest encoded name kept readable; beyond it the name is a hash (file systems allow 255 bytes). */
const MAX_NAME_LENGTH = 180;
const HASHED_NAME_PREFIX = 'h-';
const KEPT = /^[A-Za-z0-9_-]$/;
const VARIANT_LENGTH = 12;
const BLACK = { r: 0, g: 0, b: 0 };

/** A string as one safe key segment, reversibly (see the key scheme above). */
export function encodeSegment(text: string): string {
  let out = '';
  for (const ch of text) {
    if (KEPT.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of Buffer.from(ch, 'utf8')) {
      out += `~${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  return out;
}

/** The text `encodeSegment` wrote; throws on a segment it could not have written. */
export function decodeSegment(segment: string): string {
  if (!/^(?:[A-Za-z0-9_-]|~[0-9A-F]{2})*$/.test(segment)) {
    throw new Error(`"${segment}" is not an encoded key segment (A-Z a-z 0-9 _ - and ~XX only)`);
  }
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '~') {
      bytes.push(Number.parseInt(segment.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(segment.charCodeAt(i));
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    throw new Error(`"${segment}" is not an encoded key segment (its bytes are not UTF-8 text)`);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The options that change the image, as WeChat would apply them; see the key scheme above. */
function imageParameters(options: CodeOptions): Record<string, unknown> {
  const params: Record<string, unknown> = { kind: options.kind, width: options.width };
  if (options.kind === 'qrcode') return params;
  params.env_version = options.envVersion;
  params.auto_color = options.autoColor;
  params.is_hyaline = options.isHyaline;
  if (!options.autoColor) {
    const { r, g, b } = options.lineColor ?? BLACK;
    params.line_color = { r, g, b };
  }
  if (options.kind === 'unlimited' && options.page !== undefined) params.page = options.page;
  return params;
}

/** JSON with object keys sorted, so equal options always hash alike. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function objectName(value: string): string {
  const encoded = encodeSegment(value);
  if (encoded.length > MAX_NAME_LENGTH) return HASHED_NAME_PREFIX + sha256(value);
  return encoded.startsWith(HASHED_NAME_PREFIX) ? `~68${encoded.slice(1)}` : encoded;
}

/** Where the image of one row goes: `<appid>/<kind>/<variant>/<name>.<ext>`. */
export function objectKey(input: { appid: string; options: CodeOptions; value: string }): string {
  const { appid, options, value } = input;
  if (appid === '') throw new Error('cannot build an object key: the appid is empty');
  if (value === '') throw new Error('cannot build an object key: the row value is empty');
  const variant = sha256(canonicalJson(imageParameters(options))).slice(0, VARIANT_LENGTH);
  const ext = expectedImageType(options) === 'png' ? 'png' : 'jpg';
  return `${encodeSegment(appid)}/${options.kind}/${variant}/${objectName(value)}.${ext}`;
}

/** Where a campaign's manifest goes: `<appid>/manifests/<campaign>.<ext>`. */
export function manifestKey(appid: string, campaign: string, ext: 'csv' | 'jsonl'): string {
  if (appid === '' || campaign === '') {
    throw new Error(`cannot build a manifest key from appid "${appid}" and campaign "${campaign}"`);
  }
  return `${encodeSegment(appid)}/manifests/${encodeSegment(campaign)}.${ext}`;
}

/** Where a chunk of a campaign's record goes: `<appid>/records/<campaign>/<chunk name>.jsonl`. */
export function recordKey(appid: string, campaign: string, chunk: string): string {
  if (appid === '' || campaign === '' || chunk === '') {
    throw new Error(
      `cannot build a record key from appid "${appid}", campaign "${campaign}", chunk "${chunk}"`,
    );
  }
  return `${encodeSegment(appid)}/records/${encodeSegment(campaign)}/${encodeSegment(chunk)}.jsonl`;
}

/**
 * A key as a path in a local folder: its file name with every upper-case letter A-Z written as `~XX`, the escape
 * `encodeSegment` uses, so the name still decodes to the same value. What is left is lower-case letters, digits,
 * `_ - .` and escapes whose hex is always upper-case; lowercasing such names is one-to-one, so no two keys meet
 * on a file system that ignores case. A name without upper-case letters is unchanged. The folders (appid, kind,
 * variant, `manifests`) are left alone: WeChat appids, kinds and variants are lower-case already.
 */
export function localPath(key: string): string {
  const slash = key.lastIndexOf('/');
  const name = key
    .slice(slash + 1)
    .replace(/~[0-9A-F]{2}|[A-Z]/g, (m) =>
      m.length === 1 ? `~${m.charCodeAt(0).toString(16).toUpperCase()}` : m,
    );
  return key.slice(0, slash + 1) + name;
}
