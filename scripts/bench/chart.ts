/**
 * The cap-utilisation chart, drawn pixel by pixel with pngjs: one panel per run, calls per second as blue
 * bars, the calls in the trailing window (per second) as a green line, the cap as a red line, and the first
 * window (start-up, left out of the figures) shaded grey. Labels use a 3×5 pixel font of the few characters
 * they need.
 */
import { writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import type { RateLimit } from '../../src/config.js';
import { perSecond, windowCounts } from './analysis.js';

export interface ChartPanel {
  title: string;
  times: number[];
  rate: RateLimit;
}

type Rgb = [number, number, number];

const WHITE: Rgb = [255, 255, 255];
const AXIS: Rgb = [90, 90, 90];
const WARMUP: Rgb = [232, 232, 232];
const BARS: Rgb = [120, 160, 220];
const WINDOW: Rgb = [20, 150, 60];
const CAP: Rgb = [220, 30, 30];
const TEXT: Rgb = [30, 30, 30];

const PANEL = { width: 480, height: 220 };
const PLOT = { left: 44, right: 12, top: 24, bottom: 24 };
const SCALE = 2;

/** Rows of three pixels, top to bottom. */
const GLYPHS: Record<string, string[]> = {
  '0': ['111', '101', '101', '101', '111'],
  '1': ['010', '110', '010', '010', '111'],
  '2': ['111', '001', '111', '100', '111'],
  '3': ['111', '001', '111', '001', '111'],
  '4': ['101', '101', '111', '001', '001'],
  '5': ['111', '100', '111', '001', '111'],
  '6': ['111', '100', '111', '101', '111'],
  '7': ['111', '001', '010', '010', '010'],
  '8': ['111', '101', '111', '101', '111'],
  '9': ['111', '101', '111', '001', '111'],
  '/': ['001', '001', '010', '100', '100'],
  s: ['000', '011', '110', '011', '110'],
  x: ['000', '101', '010', '101', '000'],
  ' ': ['000', '000', '000', '000', '000'],
};

class Canvas {
  readonly png: PNG;
  constructor(width: number, height: number) {
    this.png = new PNG({ width, height });
    this.rect(0, 0, width, height, WHITE);
  }

  dot(x: number, y: number, [r, g, b]: Rgb): void {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.png.width || py >= this.png.height) return;
    const i = (py * this.png.width + px) * 4;
    this.png.data[i] = r;
    this.png.data[i + 1] = g;
    this.png.data[i + 2] = b;
    this.png.data[i + 3] = 255;
  }

  rect(x: number, y: number, width: number, height: number, color: Rgb): void {
    for (let py = Math.round(y); py < Math.round(y + height); py++) {
      for (let px = Math.round(x); px < Math.round(x + width); px++) this.dot(px, py, color);
    }
  }

  /** A line `thickness` pixels wide, drawn as squares along it. */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      this.rect(x - thickness / 2, y - thickness / 2, thickness, thickness, color);
    }
  }

  text(x: number, y: number, text: string, color: Rgb): void {
    for (const [n, char] of [...text].entries()) {
      const glyph = GLYPHS[char] ?? GLYPHS[' ']!;
      for (const [row, bits] of glyph.entries()) {
        for (const [col, bit] of [...bits].entries()) {
          if (bit === '1') this.rect(x + (n * 4 + col) * SCALE, y + row * SCALE, SCALE, SCALE, color);
        }
      }
    }
  }

  textWidth(text: string): number {
    return (text.length * 4 - 1) * SCALE;
  }
}

function drawPanel(canvas: Canvas, ox: number, oy: number, panel: ChartPanel): void {
  const { times, rate } = panel;
  const first = times[0] ?? 0;
  const seconds = perSecond(times, first);
  const capPerSecond = (rate.count * 1000) / rate.durationMs;
  const spanS = Math.max(seconds.length, 1);
  const yMax = capPerSecond * 1.25;
  const plot = {
    x: ox + PLOT.left,
    y: oy + PLOT.top,
    width: PANEL.width - PLOT.left - PLOT.right,
    height: PANEL.height - PLOT.top - PLOT.bottom,
  };
  const xOf = (s: number) => plot.x + (s / spanS) * plot.width;
  const yOf = (perS: number) => plot.y + plot.height - (perS / yMax) * plot.height;

  canvas.rect(xOf(0), plot.y, xOf(Math.min(spanS, rate.durationMs / 1000)) - xOf(0), plot.height, WARMUP);
  for (const [k, n] of seconds.entries()) {
    const left = xOf(k) + 1;
    canvas.rect(left, yOf(n), Math.max(1, xOf(k + 1) - left - 1), yOf(0) - yOf(n), BARS);
  }
  const ends: number[] = [];
  for (let t = first + rate.durationMs; t <= first + spanS * 1000; t += 100) ends.push(t);
  const perS = windowCounts(times, rate.durationMs, ends).map((n) => (n * 1000) / rate.durationMs);
  for (let i = 1; i < ends.length; i++) {
    const s = (t: number) => (t - first) / 1000;
    canvas.line(xOf(s(ends[i - 1]!)), yOf(perS[i - 1]!), xOf(s(ends[i]!)), yOf(perS[i]!), WINDOW, 2);
  }
  canvas.line(xOf(0), yOf(capPerSecond), xOf(spanS), yOf(capPerSecond), CAP, 2);

  canvas.line(plot.x, plot.y, plot.x, plot.y + plot.height, AXIS);
  canvas.line(plot.x, plot.y + plot.height, plot.x + plot.width, plot.y + plot.height, AXIS);
  for (const value of [0, Math.round(capPerSecond)]) {
    const label = String(value);
    canvas.text(plot.x - 6 - canvas.textWidth(label), yOf(value) - 5, label, TEXT);
  }
  const tick = spanS > 30 ? 10 : 5;
  for (let s = 0; s <= spanS; s += tick) {
    const label = `${s}s`;
    canvas.line(xOf(s), plot.y + plot.height, xOf(s), plot.y + plot.height + 3, AXIS);
    canvas.text(xOf(s) - canvas.textWidth(label) / 2, plot.y + plot.height + 6, label, TEXT);
  }
  canvas.text(plot.x, oy + 6, panel.title, TEXT);
}

export function drawCapChart(file: string, panels: ChartPanel[]): void {
  const columns = Math.min(2, panels.length);
  const rows = Math.ceil(panels.length / columns);
  const canvas = new Canvas(columns * PANEL.width, rows * PANEL.height);
  for (const [i, panel] of panels.entries()) {
    drawPanel(canvas, (i % columns) * PANEL.width, Math.floor(i / columns) * PANEL.height, panel);
  }
  writeFileSync(file, PNG.sync.write(canvas.png));
}
