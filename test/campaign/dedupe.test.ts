/**
 * The row deduper against a plain in-memory Set: the same repeats, whatever the values hold, however few the
 * partitions (so that distinct values share them) and however often partitions are split again.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RowDeduper, type RowDeduperOptions } from '../../src/campaign/dedupe.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wxacode-dedupe-test-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Row = [line: number, value: string];

/** The lines a Set finds repeated: seeded values, then the rows in order. */
function reference(rows: Row[], seeded: string[] = []): number[] {
  const values = new Set(seeded);
  const repeats: number[] = [];
  for (const [line, value] of rows) {
    if (values.has(value)) repeats.push(line);
    values.add(value);
  }
  return repeats;
}

/** The lines the deduper finds repeated, asking about every line up to past the last. */
async function dedupe(rows: Row[], options: RowDeduperOptions = {}, seeded: string[] = []) {
  const deduper = await RowDeduper.create({ dir, ...options });
  try {
    for (const value of seeded) await deduper.seen(value);
    for (const [line, value] of rows) await deduper.add(line, value);
    await deduper.finish();
    const last = rows.at(-1)?.[0] ?? 0;
    const repeats: number[] = [];
    for (let line = 0; line <= last + 9; line++) if (deduper.isRepeat(line)) repeats.push(line);
    return { repeats, count: deduper.repeats };
  } finally {
    await deduper.close();
  }
}

/** Rows numbered with gaps, as when invalid rows are skipped. */
function numbered(values: string[]): Row[] {
  return values.map((value, i) => [3 * i + 1 + (i % 2), value]);
}

/** A deterministic sequence, so a failure can be run again. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const LONG_PATH = `pages/detail/index?${'x'.repeat(1024 - 'pages/detail/index?'.length)}`;

const AWKWARD = [
  'a,b',
  '"quoted"',
  "it's",
  'line\nbreak',
  'line\r\nbreak',
  'tab\there',
  '场景',
  'emoji-😀',
  'é',
  'e\u0301',
  '',
  ' ',
  LONG_PATH,
  `${LONG_PATH.slice(0, -1)}y`,
  '\u0000',
  // Lone surrogates all become U+FFFD in UTF-8: they must stay apart from each other and from U+FFFD itself.
  'a\ud800',
  'a\udbff',
  'a\ufffd',
  'a\ud83d\ude00',
  '\\u0100',
  'a\u0100',
];

/** Few partitions make distinct values share them; a tiny memory makes every partition split again. */
const LAYOUTS: [string, RowDeduperOptions][] = [
  ['the default partitions', {}],
  ['one partition', { partitions: 1 }],
  ['partitions split again', { partitions: 3, partitionMemory: 1 }],
];

describe('RowDeduper', () => {
  it.each(LAYOUTS)('keeps the first of each value and marks the later ones, with %s', async (_, options) => {
    const values = [...AWKWARD, ...AWKWARD.slice().reverse(), 'a,b', 'tab\there'];
    const rows = numbered(values);
    const { repeats, count } = await dedupe(rows, options);
    expect(repeats).toEqual(reference(rows));
    expect(repeats).toHaveLength(AWKWARD.length + 2);
    expect(count).toBe(AWKWARD.length + 2);
    // Every first occurrence is kept.
    expect(repeats).not.toContain(rows[AWKWARD.length - 1]![0]);
  });

  it.each(LAYOUTS)('makes rows equal to a seeded value repeats, with %s', async (_, options) => {
    const rows = numbered(['new-1', 'old-1', 'new-2', 'old-2', 'new-1', 'old-1', LONG_PATH, 'a\ud800']);
    const seeded = ['old-1', 'old-2', 'old-1', LONG_PATH, 'a\udbff', 'never-in-input'];
    const { repeats, count } = await dedupe(rows, options, seeded);
    expect(repeats).toEqual(reference(rows, seeded));
    expect(repeats).toEqual([rows[1]![0], rows[3]![0], rows[4]![0], rows[5]![0], rows[6]![0]]);
    expect(count).toBe(5);
  });

  it('never takes distinct values for repeats when their hashes collide', async () => {
    // These two share the 32-bit hash of the set finish() builds: told apart only by their bytes.
    const colliding = numbered(['scene-1422789', 'scene-1639192', 'scene-1422783', 'scene-1639198']);
    expect((await dedupe(colliding, { partitions: 1 })).repeats).toEqual([]);
    // 200 000 distinct values in one partition: a few pairs of them collide in any 32-bit hash.
    const distinct = Array.from({ length: 200_000 }, (_, i): Row => [i + 1, `v${i}`]);
    const { repeats, count } = await dedupe(distinct, { partitions: 1 });
    expect(repeats).toEqual([]);
    expect(count).toBe(0);
  });

  it('finds the same repeats as a Set among 300 000 rows', async () => {
    const next = random(20240611);
    const rows: Row[] = [];
    let line = 0;
    for (let i = 0; i < 300_000; i++) {
      line += 1 + Math.floor(next() * 3);
      const n = Math.floor(next() * 250_000);
      rows.push([line, n % 7 === 0 ? `pages/item/index?id=${n}&from=${n % 13}` : `s${n}`]);
    }
    const seeded = Array.from({ length: 1000 }, (_, i) => `s${i * 97}`);
    const { repeats, count } = await dedupe(rows, {}, seeded);
    const expected = reference(rows, seeded);
    expect(expected.length).toBeGreaterThan(50_000);
    expect(repeats).toEqual(expected);
    expect(count).toBe(expected.length);
  });

  it('splits partitions again, even when one value fills a partition', async () => {
    const next = random(7);
    const values = Array.from({ length: 20_000 }, (_, i) =>
      i % 4 === 0 ? LONG_PATH : `v${Math.floor(next() * 5000)}`,
    );
    const rows = numbered(values);
    const { repeats } = await dedupe(rows, { partitions: 4, partitionMemory: 64 * 1024 });
    expect(repeats).toEqual(reference(rows));
  });

  it('removes its temporary folder on close, finished or not, and closes twice', async () => {
    const finished = await RowDeduper.create({ dir });
    const unfinished = await RowDeduper.create({ dir });
    expect(path.dirname(finished.dir)).toBe(dir);
    for (let line = 1; line <= 50_000; line++) {
      await finished.add(line, `row-${line % 1000}`);
      await unfinished.add(line, `row-${line}`);
    }
    await finished.finish();
    expect(finished.repeats).toBe(49_000);
    await finished.close();
    await unfinished.close();
    await finished.close();
    expect(await readdir(dir)).toEqual([]);
    expect(() => finished.add(50_001, 'late')).toThrow(/closed/);
  });

  it('refuses lines out of order and seeds after rows', async () => {
    const deduper = await RowDeduper.create({ dir });
    try {
      await deduper.add(5, 'a');
      expect(() => deduper.add(5, 'b')).toThrow(RangeError);
      expect(() => deduper.add(4, 'b')).toThrow(RangeError);
      expect(() => deduper.add(6.5, 'b')).toThrow(RangeError);
      expect(() => deduper.seen('b')).toThrow(/before the first add/);
      expect(() => deduper.isRepeat(5)).toThrow(/finish/);
      await deduper.finish();
      expect(deduper.isRepeat(5)).toBe(false);
      await expect(deduper.finish()).rejects.toThrow(/finished/);
    } finally {
      await deduper.close();
    }
  });
});
