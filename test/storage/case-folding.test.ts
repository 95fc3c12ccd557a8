/**
 * A local folder on a case-insensitive file system (macOS, Windows, Docker Desktop mounts) sees `abc.jpg` and
 * `ABC.jpg` as one file. Linux folders are case-sensitive, so the folding is simulated: every file name the
 * storage writes is lowercased, and no two may meet.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localPath, objectKey } from '../../src/storage/keys.js';
import { LocalStorage } from '../../src/storage/local.js';
import { type CodeOptions, codeOptions } from '../../src/wechat/params.js';
import { HOSTILE_VALUES } from './hostile.js';

const APPID = 'wx0123456789abcdef';
const B: CodeOptions = codeOptions({ kind: 'unlimited' });
const A: CodeOptions = codeOptions({ kind: 'code' });
const key = (value: string, options = B) => objectKey({ appid: APPID, options, value });

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'wxacode-case-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Every case variant of `text` (2^letters of them). */
function caseVariants(text: string): string[] {
  let out = [''];
  for (const ch of text) {
    const forms = ch.toLowerCase() === ch.toUpperCase() ? [ch] : [ch.toLowerCase(), ch.toUpperCase()];
    out = out.flatMap((prefix) => forms.map((form) => prefix + form));
  }
  return out;
}

describe('local file names under case folding', () => {
  it('never meet for values that differ only in case, or in anything else', () => {
    const values = [
      ...caseVariants('abc'),
      ...caseVariants('id=Z9'),
      ...caseVariants('h-ab'),
      ...caseVariants('~3d'),
      '~3D',
      '=',
      'a=b',
      ...HOSTILE_VALUES,
    ];
    for (const options of [B, A]) {
      const folded = new Map<string, string>();
      for (const value of new Set(values)) {
        const file = localPath(key(value, options)).toLowerCase();
        expect(folded.get(file), `${JSON.stringify(value)} meets ${JSON.stringify(folded.get(file))}`).toBe(
          undefined,
        );
        folded.set(file, value);
      }
    }
  });

  it('keeps a lower-case key as it is, so folders written before keep their files', () => {
    expect(localPath(key('abc-123_x'))).toBe(key('abc-123_x'));
    expect(localPath(key('ABC'))).toBe(key('ABC').replace('ABC.jpg', '~41~42~43.jpg'));
  });

  it('stores abc and ABC as two files, each read back as itself', async () => {
    const storage = new LocalStorage(path.join(root, 'two'));
    await storage.put(key('abc'), Buffer.from('code of abc'), 'image/jpeg');
    expect(await storage.exists(key('ABC'))).toBe(false);
    await storage.put(key('ABC'), Buffer.from('code of ABC'), 'image/jpeg');
    expect(String(await storage.get(key('abc')))).toBe('code of abc');
    expect(String(await storage.get(key('ABC')))).toBe('code of ABC');
    const dir = path.join(root, 'two', path.dirname(key('abc')));
    const names = await readdir(dir);
    expect(names).toHaveLength(2);
    expect(new Set(names.map((name) => name.toLowerCase())).size).toBe(2);
    expect(storage.url(key('ABC'))).toBe(pathToFileURL(path.join(root, 'two', localPath(key('ABC')))).href);
  });

  it('finds a code stored under the old name (exact case only) and moves it to the new one, costing no call', async () => {
    const dir = path.join(root, 'legacy');
    const storage = new LocalStorage(dir);
    const folder = path.join(dir, path.dirname(key('ABC')));
    await storage.put(key('abc'), Buffer.from('code of abc'), 'image/jpeg');
    // Written by a version that kept upper-case letters in file names.
    await writeFile(path.join(folder, 'XyZ.jpg'), 'code of XyZ');
    expect(await storage.exists(key('xyz'))).toBe(false);
    expect(await storage.exists(key('XYZ'))).toBe(false);
    expect(await storage.exists(key('XyZ'))).toBe(true);
    expect((await readdir(folder)).sort()).toEqual([path.basename(localPath(key('XyZ'))), 'abc.jpg'].sort());
    expect(String(await storage.get(key('XyZ')))).toBe('code of XyZ');
  });
});
