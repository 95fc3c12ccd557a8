/**
 * Mock code images: a standard QR code (error correction M) drawn into exactly `width`×`width` pixels with a
 * quiet zone, as JPEG, or as PNG with a transparent background when `is_hyaline` is true
 * (docs/wechat-api.md, "Responses"). Benchmarks ask for hundreds a second, so modules are filled straight
 * into the pixel buffer.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import vm from 'node:vm';
import { PNG } from 'pngjs';
import QRCode from 'qrcode';
import type { Rgb } from '../wechat/params.js';

export interface CodeStyle {
  width: number;
  /** Colour of the dark modules. */
  color: Rgb;
  /** PNG with a transparent background instead of JPEG on white. */
  transparent: boolean;
}

export interface CodeImage {
  type: 'jpeg' | 'png';
  body: Buffer;
}

/** Modules of white around the symbol, as the QR standard asks, so any reader finds it. */
const QUIET_ZONE = 4;
const JPEG_QUALITY = 90;

interface JpegEncoder {
  encode(image: { data: Uint8Array; width: number; height: number }, quality: number): Buffer;
}

/**
 * jpeg-js's `encode()` builds a new encoder per call, and its tables take ~19 ms to build against ~9 ms for
 * the encoding itself. The package does not export the encoder class, so load its encoder file (pinned 0.4.4)
 * with a module wrapper that also returns the class, and keep one instance: encoding is synchronous, so one is
 * never shared by two calls at once.
 */
function loadJpegEncoder(): JpegEncoder {
  const require = createRequire(import.meta.url);
  const filename = require.resolve('jpeg-js/lib/encoder.js');
  const wrapper = vm.compileFunction(
    `${readFileSync(filename, 'utf8')}\nreturn JPEGEncoder;`,
    ['module', 'exports', 'require'],
    { filename },
  );
  const JPEGEncoder = wrapper({ exports: {} }, {}, require) as new (quality: number) => JpegEncoder;
  return new JPEGEncoder(JPEG_QUALITY);
}

let jpegEncoder: JpegEncoder | undefined;

/** Draw the QR code of `text` into `pixels` (RGBA, width×width), over the background already in it. */
function drawModules(pixels: Buffer, text: string, width: number, color: Rgb): void {
  const { size, data } = QRCode.create(text, { errorCorrectionLevel: 'M' }).modules;
  const scale = Math.max(1, Math.floor(width / (size + 2 * QUIET_ZONE)));
  const offset = Math.max(0, Math.floor((width - size * scale) / 2));
  const ink = Buffer.from([color.r, color.g, color.b, 255]);
  const rowBytes = width * 4;
  for (let row = 0; row < size; row++) {
    const rowStart = (offset + row * scale) * rowBytes;
    let col = 0;
    while (col < size) {
      if (!data[row * size + col]) {
        col++;
        continue;
      }
      const runStart = col;
      while (col < size && data[row * size + col]) col++;
      pixels.fill(ink, rowStart + (offset + runStart * scale) * 4, rowStart + (offset + col * scale) * 4);
    }
    for (let line = 1; line < scale; line++) {
      pixels.copyWithin(rowStart + line * rowBytes, rowStart, rowStart + rowBytes);
    }
  }
}

export function renderCode(text: string, style: CodeStyle): CodeImage {
  const { width, color } = style;
  if (style.transparent) {
    const png = new PNG({ width, height: width });
    png.data.fill(Buffer.from([255, 255, 255, 0]));
    drawModules(png.data, text, width, color);
    // Filter "Up" turns the repeated pixel rows of each module row into zeros that even level 1 packs small.
    return { type: 'png', body: PNG.sync.write(png, { deflateLevel: 1, filterType: 2 }) };
  }
  const pixels = Buffer.alloc(width * width * 4, 255);
  drawModules(pixels, text, width, color);
  jpegEncoder ??= loadJpegEncoder();
  return { type: 'jpeg', body: jpegEncoder.encode({ data: pixels, width, height: width }, JPEG_QUALITY) };
}
