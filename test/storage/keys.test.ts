import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeSegment, encodeSegment, manifestKey, objectKey } from '../../src/storage/keys.js';
import { type CodeOptions, codeOptions, type Kind } from '../../src/wechat/params.js';
import { HOSTILE_VALUES } from './hostile.js';

const APPID = 'wx0123456789abcdef';
const SCENE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$&'()*+,/:;=?@-._~";

function key(options: Partial<CodeOptions> & { kind: Kind }, value = 'id=42'): string {
  return objectKey({ appid: APPID, options: codeOptions(options), value });
}

function nameOf(objectKeyText: string): string {
  return objectKeyText.split('/')[3]!.replace(/\.(jpg|png)$/, '');
}

describe('encodeSegment / decodeSegment', () => {
  it('keeps letters, digits, _ and - and writes every other UTF-8 byte as ~XX', () => {
    expect(encodeSegment('Ab9_-')).toBe('Ab9_-');
    expect(encodeSegment('../x')).toBe('~2E~2E~2Fx');
    expect(encodeSegment('~')).toBe('~7E');
    expect(encodeSegment('a b')).toBe('a~20b');
    expect(encodeSegment('é')).toBe('~C3~A9');
    expect(encodeSegment('😀')).toBe('~F0~9F~98~80');
  });

  it('round-trips every allowed scene character, alone and together', () => {
    for (const ch of SCENE_CHARS) {
      const encoded = encodeSegment(ch);
      expect(encoded).toMatch(/^(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+$/);
      expect(decodeSegment(encoded)).toBe(ch);
    }
    expect(decodeSegment(encodeSegment(SCENE_CHARS))).toBe(SCENE_CHARS);
  });

  it('round-trips paths with queries and non-ASCII text', () => {
    for (const text of ['pages/index/index?id=1&from=poster', '页面/首页?名=值', 'a\u0000b', '~7E', '%2F']) {
      expect(decodeSegment(encodeSegment(text))).toBe(text);
    }
  });

  it('refuses segments it could not have written', () => {
    for (const bad of ['~2', '~zz', '~2e', 'a/b', 'a.b', '~FF']) {
      expect(() => decodeSegment(bad), bad).toThrow(`"${bad}" is not an encoded key segment`);
    }
  });
});

describe('objectKey', () => {
  it('is <appid>/<kind>/<variant>/<name>.<ext>', () => {
    expect(key({ kind: 'unlimited' })).toMatch(/^wx0123456789abcdef\/unlimited\/[0-9a-f]{12}\/id~3D42\.jpg$/);
    expect(key({ kind: 'code', isHyaline: true }, 'pages/a?x=1')).toMatch(
      /^wx0123456789abcdef\/code\/[0-9a-f]{12}\/pages~2Fa~3Fx~3D1\.png$/,
    );
    expect(key({ kind: 'qrcode' }, 'pages/a')).toMatch(
      /^wx0123456789abcdef\/qrcode\/[0-9a-f]{12}\/pages~2Fa\.jpg$/,
    );
  });

  it('is the same for the same inputs, however the options object was built', () => {
    const a = key({ kind: 'unlimited', page: 'pages/a', lineColor: { r: 1, g: 2, b: 3 } });
    const b = objectKey({
      appid: APPID,
      value: 'id=42',
      options: {
        isHyaline: false,
        lineColor: { b: 3, g: 2, r: 1 },
        autoColor: false,
        width: 430,
        envVersion: 'release',
        checkPath: true,
        page: 'pages/a',
        kind: 'unlimited',
      },
    });
    expect(b).toBe(a);
  });

  it('changes with every option that changes the image', () => {
    const base = { kind: 'unlimited' } as const;
    const variants = [
      key(base),
      key({ ...base, page: 'pages/a' }),
      key({ ...base, page: 'pages/b' }),
      key({ ...base, width: 431 }),
      key({ ...base, autoColor: true }),
      key({ ...base, lineColor: { r: 255, g: 0, b: 0 } }),
      key({ ...base, lineColor: { r: 0, g: 255, b: 0 } }),
      key({ ...base, isHyaline: true }),
      key({ ...base, envVersion: 'trial' }),
      key({ ...base, envVersion: 'develop' }),
      key({ kind: 'code' }),
      key({ kind: 'code', envVersion: 'trial' }),
      key({ kind: 'qrcode' }),
      key(base, 'id=43'),
      objectKey({ appid: 'wxother', options: codeOptions(base), value: 'id=42' }),
    ];
    expect(new Set(variants).size).toBe(variants.length);
  });

  it('ignores what does not change the image', () => {
    expect(key({ kind: 'unlimited', checkPath: false })).toBe(key({ kind: 'unlimited', checkPath: true }));
    expect(key({ kind: 'code', lineColor: { r: 0, g: 0, b: 0 } })).toBe(key({ kind: 'code' }));
    // C codes take neither env_version nor colours.
    expect(key({ kind: 'qrcode', envVersion: 'trial' })).toBe(key({ kind: 'qrcode' }));
  });

  it('keeps hostile values to one safe segment', () => {
    const hostile = HOSTILE_VALUES.filter((value) => value.length < 100);
    const names = hostile.map((value) => nameOf(key({ kind: 'code' }, value)));
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9_~-]+$/);
    }
    expect(names.map(decodeSegment)).toEqual(hostile);
    expect(new Set(names).size).toBe(hostile.length);
  });

  it('hashes long values into a short, deterministic name', () => {
    const long = `pages/detail/index?${'q=1&'.repeat(200)}`;
    const name = nameOf(key({ kind: 'code' }, long));
    expect(name).toBe(`h-${createHash('sha256').update(long).digest('hex')}`);
    expect(nameOf(key({ kind: 'code' }, `${long}x`))).not.toBe(name);
    expect(nameOf(key({ kind: 'code' }, 'x'.repeat(180)))).toBe('x'.repeat(180));
    expect(nameOf(key({ kind: 'code' }, 'x'.repeat(181)))).toMatch(/^h-[0-9a-f]{64}$/);
  });

  it('never gives a short value the name of a hashed long one', () => {
    const long = 'p'.repeat(500);
    const hashed = key({ kind: 'code' }, long);
    const lookalike = key({ kind: 'code' }, nameOf(hashed));
    expect(lookalike).not.toBe(hashed);
    expect(decodeSegment(nameOf(lookalike))).toBe(nameOf(hashed));
  });

  it('refuses empty values', () => {
    expect(() => key({ kind: 'unlimited' }, '')).toThrow('row value is empty');
  });
});

describe('manifestKey', () => {
  it('is <appid>/manifests/<campaign>.<ext> with the campaign encoded', () => {
    expect(manifestKey(APPID, 'spring-2026', 'csv')).toBe(`${APPID}/manifests/spring-2026.csv`);
    expect(manifestKey(APPID, '../etc/passwd', 'jsonl')).toBe(
      `${APPID}/manifests/~2E~2E~2Fetc~2Fpasswd.jsonl`,
    );
  });
});
