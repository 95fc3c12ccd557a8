import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { codeContent } from '../../src/mock/content.js';
import { renderCode } from '../../src/mock/image.js';
import { decodeImage, readImage } from '../helpers/qr.js';

const BLACK = { r: 0, g: 0, b: 0 };

describe('codeContent', () => {
  it('encodes kind, row value, page and env, with the documented defaults', () => {
    expect(codeContent('wxa', 'unlimited', { scene: 'id=1' })).toBe(
      'wxacode|wxa|unlimited|page=|scene=id=1|env=release',
    );
    expect(
      codeContent('wxa', 'unlimited', { scene: 's', page: 'pages/a/a', env_version: 'develop', width: 600 }),
    ).toBe('wxacode|wxa|unlimited|page=pages/a/a|scene=s|env=develop');
    expect(codeContent('wxa', 'code', { path: 'pages/a?x=1', env_version: 'trial' })).toBe(
      'wxacode|wxa|code|path=pages/a?x=1|env=trial',
    );
    expect(codeContent('wxa', 'qrcode', { path: 'pages/a?x=1', env_version: 'trial' })).toBe(
      'wxacode|wxa|qrcode|path=pages/a?x=1',
    );
  });
});

describe('renderCode', () => {
  it('draws exactly width×width pixels at both ends of the allowed range, readable at each', () => {
    for (const width of [280, 431, 1280]) {
      for (const transparent of [false, true]) {
        const image = renderCode(`size ${width}`, { width, color: BLACK, transparent });
        expect(readImage(image.body)).toMatchObject({
          type: transparent ? 'png' : 'jpeg',
          width,
          height: width,
        });
        expect(decodeImage(image.body)).toBe(`size ${width}`);
      }
    }
  });

  it('keeps a transparent background and opaque modules in PNG', () => {
    const png = PNG.sync.read(
      renderCode('alpha', { width: 300, color: { r: 10, g: 20, b: 30 }, transparent: true }).body,
    );
    expect(png.data[3]).toBe(0);
    const ink = png.data.findIndex((_, i) => i % 4 === 3 && png.data[i] === 255);
    expect([...png.data.subarray(ink - 3, ink + 1)]).toEqual([10, 20, 30, 255]);
  });

  it('encodes non-ASCII text as UTF-8', () => {
    expect(decodeImage(renderCode('页面 ✓', { width: 430, color: BLACK, transparent: false }).body)).toBe(
      '页面 ✓',
    );
  });
});
