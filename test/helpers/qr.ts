/** Read mock code images back: their type and size, and the text their QR code holds. */
import jpeg from 'jpeg-js';
import jsqr from 'jsqr';
import { PNG } from 'pngjs';

// jsqr is CommonJS with its function under `default`, which is where NodeNext typing expects it.
const jsQR = jsqr.default;

export interface DecodedImage {
  type: 'jpeg' | 'png';
  width: number;
  height: number;
  /** RGBA, transparent pixels already composited onto white. */
  rgba: Uint8ClampedArray;
  /** Whether the background (the top-left pixel, always in the quiet zone) is fully transparent. */
  transparent: boolean;
}

/** Decode a JPEG or PNG (told apart by magic bytes, as the client must); undefined when it is neither. */
export function readImage(buf: Buffer): DecodedImage | undefined {
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
    const image = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
    return {
      type: 'jpeg',
      width: image.width,
      height: image.height,
      rgba: new Uint8ClampedArray(image.data),
      transparent: false,
    };
  }
  if (buf.length >= 4 && buf.readUInt32BE(0) === 0x89504e47) {
    const png = PNG.sync.read(buf);
    const transparent = png.data[3] === 0;
    const rgba = new Uint8ClampedArray(png.data);
    for (let i = 0; i < rgba.length; i += 4) {
      const alpha = rgba[i + 3]! / 255;
      for (let c = i; c < i + 3; c++) rgba[c] = rgba[c]! * alpha + 255 * (1 - alpha);
      rgba[i + 3] = 255;
    }
    return { type: 'png', width: png.width, height: png.height, rgba, transparent };
  }
  return undefined;
}

/**
 * The colour of the dark modules: sampled in the middle of the top edge of the top-left finder pattern, away
 * from the module edges JPEG blurs. Needs a line colour well darker than the background.
 */
export function inkColor({ rgba, width }: DecodedImage): { r: number; g: number; b: number } {
  const dark = (pixel: number) => rgba[pixel * 4]! + rgba[pixel * 4 + 1]! + rgba[pixel * 4 + 2]! < 600;
  let first = 0;
  while (!dark(first)) first++;
  // The finder's top edge is 7 modules wide, which gives the module size.
  let run = 0;
  while (dark(first + run)) run++;
  const half = Math.floor(run / 14);
  const inside = (first + half + half * width) * 4;
  return { r: rgba[inside]!, g: rgba[inside + 1]!, b: rgba[inside + 2]! };
}

/** The text of the QR code in a JPEG or PNG, or null when it is not an image or holds no readable code. */
export function decodeImage(buf: Buffer): string | null {
  let image: DecodedImage | undefined;
  try {
    image = readImage(buf);
  } catch {
    return null;
  }
  if (!image) return null;
  return jsQR(image.rgba, image.width, image.height)?.data ?? null;
}

/** The largest difference of one channel: JPEG keeps colours only nearly, so compare within a margin. */
export function colorDistance(
  a: { r: number; g: number; b: number },
  b: { r: number; g: number; b: number },
): number {
  return Math.max(Math.abs(a.r - b.r), Math.abs(a.g - b.g), Math.abs(a.b - b.b));
}

/**
 * The text a mock code image holds, as the mock documents it (src/mock/content.ts, test/mock/codes.test.ts),
 * written out here by hand so that no test takes its expectation from the code under test:
 *
 * - B (`unlimited`): `wxacode|<appid>|unlimited|page=<page, "" for the home page>|scene=<scene>|env=<env>`
 * - A (`code`):      `wxacode|<appid>|code|path=<path>|env=<env>`
 * - C (`qrcode`):    `wxacode|<appid>|qrcode|path=<path>` (C has no env)
 *
 * `value` is the row (the scene of B, the path of A and C); `env` is the campaign's env version, release when
 * left out. Width and colours do not change the text.
 */
export function expectedCodeText(
  appid: string,
  code: { kind: 'unlimited' | 'code' | 'qrcode'; page?: string; envVersion?: string },
  value: string,
): string {
  const env = code.envVersion ?? 'release';
  if (code.kind === 'unlimited')
    return `wxacode|${appid}|unlimited|page=${code.page ?? ''}|scene=${value}|env=${env}`;
  if (code.kind === 'code') return `wxacode|${appid}|code|path=${value}|env=${env}`;
  return `wxacode|${appid}|qrcode|path=${value}`;
}
