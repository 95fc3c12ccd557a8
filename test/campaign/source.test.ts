import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  formatFromPath,
  readSource,
  SourceError,
  type SourceItem,
  type SourceOptions,
} from '../../src/campaign/source.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wxacode-source-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function collect(
  input: string | NodeJS.ReadableStream,
  options: Partial<SourceOptions> = {},
): Promise<SourceItem[]> {
  const items: SourceItem[] = [];
  for await (const item of readSource(input, { kind: 'unlimited', ...options })) items.push(item);
  return items;
}

async function read(name: string, content: string | Buffer, options: Partial<SourceOptions> = {}) {
  return collect(await file(name, content), options);
}

/** A stream that hands out `content` in pieces of `size` bytes, cutting characters and CRLFs apart. */
function pieces(content: string | Buffer, size: number): Readable {
  const bytes = Buffer.from(content);
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return Readable.from(chunks);
}

/** Enough valid lines to get past the part of the input that is checked for binary data as a whole. */
const PAST_SNIFF = 'ok\n'.repeat(30_000);
const PAST_SNIFF_LINES = 30_000;

describe('formatFromPath', () => {
  it('knows the formats by extension, in any case', () => {
    expect(formatFromPath('rows.csv')).toBe('csv');
    expect(formatFromPath('/data/ROWS.CSV')).toBe('csv');
    expect(formatFromPath('rows.jsonl')).toBe('jsonl');
    expect(formatFromPath('rows.ndjson')).toBe('jsonl');
    expect(formatFromPath('rows.txt')).toBe('txt');
    expect(formatFromPath('rows.xlsx')).toBeUndefined();
    expect(formatFromPath('rows')).toBeUndefined();
  });
});

describe('readSource: TXT', () => {
  it('reads one trimmed value per line, skipping blank lines but counting them', async () => {
    const items = await read('a.txt', 'a1\n\n  b2  \n \t \nc3');
    expect(items).toEqual([
      { line: 1, value: 'a1' },
      { line: 3, value: 'b2' },
      { line: 5, value: 'c3' },
    ]);
  });

  it('drops a UTF-8 BOM and reads CRLF line endings', async () => {
    const items = await read('bom.txt', '\uFEFFa1\r\nb2\r\n\r\nc3\r\n');
    expect(items).toEqual([
      { line: 1, value: 'a1' },
      { line: 2, value: 'b2' },
      { line: 4, value: 'c3' },
    ]);
  });

  it('reads a stream whose chunks cut a BOM, a character and a CRLF apart', async () => {
    const items = await collect(pieces('\uFEFFé1\r\nb2\r\n€3', 1), { format: 'txt' });
    expect(items).toEqual([
      { line: 1, value: 'é1' },
      { line: 2, value: 'b2' },
      { line: 3, value: '€3' },
    ]);
  });
});

describe('readSource: CSV', () => {
  it('reads the scene column by header name, with BOM and CRLF', async () => {
    const items = await read('a.csv', '\uFEFFid,scene,note\r\n1,a1,x\r\n\r\n2, b2 ,y\r\n');
    expect(items).toEqual([
      { line: 2, value: 'a1' },
      { line: 4, value: 'b2' },
    ]);
  });

  it('reads the path column for code and qrcode kinds', async () => {
    const csv = 'scene,path\nx,pages/a?id=1\n';
    expect(await read('code.csv', csv, { kind: 'code' })).toEqual([{ line: 2, value: 'pages/a?id=1' }]);
    expect(await read('qr.csv', csv, { kind: 'qrcode' })).toEqual([{ line: 2, value: 'pages/a?id=1' }]);
  });

  it('reads the column named by --column', async () => {
    const items = await read('col.csv', 'id,code\n1,c1\n2,c2\n', { column: 'code' });
    expect(items).toEqual([
      { line: 2, value: 'c1' },
      { line: 3, value: 'c2' },
    ]);
  });

  it('follows RFC 4180 quoting; a record spanning lines is numbered by its first line', async () => {
    const csv = [
      'scene,note',
      '"a,1","say ""hi"""',
      'b2,"two',
      'lines"',
      '"c""3",plain',
      'd4,5" screen',
    ].join('\n');
    expect(await read('quoted.csv', csv)).toEqual([
      { line: 2, value: 'a,1' },
      { line: 3, value: 'b2' },
      { line: 5, value: 'c"3' },
      { line: 6, value: 'd4' },
    ]);
    expect(await read('quoted-note.csv', csv, { column: 'note' })).toEqual([
      { line: 2, value: 'say "hi"' },
      { line: 3, value: 'two\nlines' },
      { line: 5, value: 'plain' },
      { line: 6, value: '5" screen' },
    ]);
  });

  it('reports rows with the wrong number of fields and empty values, and reads on', async () => {
    const items = await read('count.csv', 'id,scene\n1,a1\n2\n3,c3,extra\n4,\n,,\n5,e5\n');
    expect(items).toEqual([
      { line: 2, value: 'a1' },
      { line: 3, problem: 'row has 1 field; the header has 2' },
      { line: 4, problem: 'row has 3 fields; the header has 2' },
      { line: 5, problem: 'empty scene' },
      { line: 7, value: 'e5' },
    ]);
  });

  it('names the column in "empty" problems when --column is used', async () => {
    const items = await read('empty-col.csv', 'id,code\n1,\n', { column: 'code' });
    expect(items).toEqual([{ line: 2, problem: 'empty scene in column "code"' }]);
  });

  it('costs one row for a quote that never closes, and reads the lines after it again', async () => {
    const items = await read('open-quote.csv', 'id,scene\n1,"a1\n2,b2\n3,c3\n');
    expect(items).toEqual([
      { line: 2, problem: 'quoted field does not close before the end of the input' },
      { line: 3, value: 'b2' },
      { line: 4, value: 'c3' },
    ]);
  });

  it('costs one row for a quote that closes on a later line in a record that does not parse', async () => {
    const items = await read('late-quote.csv', 'id,scene\n1,"a1\n2,b2\n3,"c3"\n4,d4\n');
    expect(items[0]).toEqual({
      line: 2,
      problem:
        'unexpected "c" after a closing quote (in a quoted field running to line 4; is a quote left open?)',
    });
    expect(items.slice(1)).toEqual([
      { line: 3, value: 'b2' },
      { line: 4, value: 'c3' },
      { line: 5, value: 'd4' },
    ]);
  });

  it('gives up on a quoted field that grows past maxLineBytes', async () => {
    const items = await read('runaway.csv', `id,scene\n1,"a1\n${'2,b2\n'.repeat(20)}`, { maxLineBytes: 40 });
    expect(items[0]).toEqual({ line: 2, problem: 'quoted field does not close within 40 bytes' });
    expect(items.slice(1)).toHaveLength(20);
    expect(items.slice(1).every((item) => 'value' in item && item.value === 'b2')).toBe(true);
  });

  it('rejects a header without the column, listing the columns found', async () => {
    const path = await file('nocol.csv', 'id,code,page\n1,a,b\n');
    await expect(collect(path)).rejects.toThrow(SourceError);
    await expect(collect(path)).rejects.toThrow(
      `the CSV header of "${path}" has no column "scene"; its columns are "id", "code", "page"; pass --column NAME to read another column`,
    );
    await expect(collect(path, { kind: 'code' })).rejects.toThrow(/no column "path"/);
  });

  it('suggests the column that differs only in case', async () => {
    await expect(read('case.csv', 'ID,Scene\n1,a\n')).rejects.toThrow(
      /no column "scene".*pass --column "Scene"/,
    );
  });

  it('rejects a header with the column twice', async () => {
    await expect(read('twice.csv', 'scene,id,scene\n')).rejects.toThrow(
      /has the column "scene" twice \(columns 1 and 3\)/,
    );
  });
});

describe('readSource: JSONL', () => {
  it('reads the scene field of each object, accepting whole-number ids', async () => {
    const jsonl = '{"scene":" a1 ","n":1}\n\n{"scene":42}\r\n{"scene":-7}\n';
    expect(await read('a.jsonl', jsonl)).toEqual([
      { line: 1, value: 'a1' },
      { line: 3, value: '42' },
      { line: 4, value: '-7' },
    ]);
  });

  it('reads the field named by --column, and the path field for code kinds', async () => {
    const jsonl = '{"id":"x1","path":"pages/a"}\n';
    expect(await read('col.ndjson', jsonl, { column: 'id' })).toEqual([{ line: 1, value: 'x1' }]);
    expect(await read('path.ndjson', jsonl, { kind: 'code' })).toEqual([{ line: 1, value: 'pages/a' }]);
  });

  it('reports a JSON syntax error at its line and reads on', async () => {
    const items = await read('syntax.jsonl', '{"scene":"a1"}\n{"scene":"b2"\n{"scene":"c3"}\n');
    expect(items[0]).toEqual({ line: 1, value: 'a1' });
    expect(items[1]).toMatchObject({ line: 2, problem: expect.stringMatching(/^invalid JSON: /) });
    expect(items[2]).toEqual({ line: 3, value: 'c3' });
  });

  it('reports fields that are not strings or whole numbers, naming their type', async () => {
    const lines = [
      '{"scene":true}',
      '{"scene":1.5}',
      '{"scene":null}',
      '{"scene":{"id":1}}',
      '{"scene":["a"]}',
      '{"scene":12345678901234567890}',
      '{"scene":""}',
      '{"id":1,"page":"x"}',
      '{}',
      '["a1"]',
      '"a1"',
    ];
    expect(await read('types.jsonl', lines.join('\n'))).toEqual([
      { line: 1, problem: 'field "scene" is a boolean, not a string' },
      { line: 2, problem: 'field "scene" is the number 1.5, not a string' },
      { line: 3, problem: 'field "scene" is null, not a string' },
      { line: 4, problem: 'field "scene" is an object, not a string' },
      { line: 5, problem: 'field "scene" is an array, not a string' },
      {
        line: 6,
        problem: 'field "scene" is a whole number above 2^53, which JSON readers round; write it as a string',
      },
      { line: 7, problem: 'empty scene' },
      { line: 8, problem: 'no field "scene"; fields are "id", "page"' },
      { line: 9, problem: 'no field "scene"; the object is empty' },
      { line: 10, problem: 'line is an array, not a JSON object with a "scene" field' },
      { line: 11, problem: 'line is a string, not a JSON object with a "scene" field' },
    ]);
  });
});

describe('readSource: input', () => {
  it('reads a stream when given its format, and needs the format to do so', async () => {
    const items = await collect(pieces('scene\r\na1\r\n"b,2"\r\n', 3), { format: 'csv' });
    expect(items).toEqual([
      { line: 2, value: 'a1' },
      { line: 3, value: 'b,2' },
    ]);
    await expect(collect(Readable.from(['a1\n']))).rejects.toThrow(
      'cannot tell the format of the input stream; pass --format csv|jsonl|txt',
    );
    await expect(collect('-')).rejects.toThrow(
      'cannot tell the format of stdin; pass --format csv|jsonl|txt',
    );
  });

  it('takes --format over the extension, and asks for it when the extension is unknown', async () => {
    expect(await read('rows.dat', '{"scene":"a1"}\n', { format: 'jsonl' })).toEqual([
      { line: 1, value: 'a1' },
    ]);
    const path = await file('rows.xlsx', 'a1\n');
    await expect(collect(path)).rejects.toThrow(
      `cannot tell the format from the extension of "${path}"; pass --format csv|jsonl|txt`,
    );
  });

  it('rejects a file that does not exist, naming it, and a directory', async () => {
    const missing = join(dir, 'missing.csv');
    await expect(collect(missing)).rejects.toThrow(new SourceError(`file "${missing}" does not exist`));
    const folder = join(dir, 'folder.csv');
    await mkdir(folder);
    await expect(collect(folder)).rejects.toThrow(new SourceError(`"${folder}" is a directory, not a file`));
  });

  it('reads an empty input, or one with only blank lines, as zero rows', async () => {
    for (const format of ['csv', 'jsonl', 'txt'] as const) {
      expect(await read(`empty.${format}`, '')).toEqual([]);
      expect(await read(`blank.${format}`, '\uFEFF\r\n  \n\n')).toEqual([]);
    }
  });

  it('rejects binary input before handing out any row', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(64)]);
    await expect(read('image.csv', png)).rejects.toThrow(
      /looks binary, not CSV\/JSONL\/TXT text: line 3 has a NUL byte/,
    );
    const items: SourceItem[] = [];
    const late = Buffer.concat([Buffer.from('a1\nb2\n'), Buffer.from([0, 1, 2])]);
    await expect(
      (async () => {
        for await (const item of readSource(pieces(late, 2), { kind: 'unlimited', format: 'txt' })) {
          items.push(item);
        }
      })(),
    ).rejects.toThrow(/line 3 has a NUL byte/);
    expect(items).toEqual([]);
  });

  it('rejects input that is not UTF-8 at its start, naming the line', async () => {
    const latin1 = Buffer.from('scene\na1\ncaf\xe9\n', 'latin1');
    await expect(read('latin1.csv', latin1)).rejects.toThrow(
      /looks binary, not CSV\/JSONL\/TXT text: line 3 is not valid UTF-8/,
    );
    await expect(read('latin1-end.txt', Buffer.from('a1\nb\xe9', 'latin1'))).rejects.toThrow(
      /line 2 is not valid UTF-8/,
    );
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('scene\r\na1\r\n', 'utf16le')]);
    await expect(read('utf16.csv', utf16)).rejects.toThrow(/is UTF-16 text; save it as UTF-8/);
  });

  it('reports a line of invalid UTF-8 further on as a problem for that line', async () => {
    const bad = Buffer.concat([Buffer.from(`${PAST_SNIFF}caf`), Buffer.from([0xe9]), Buffer.from('\nz9\n')]);
    const items = await read('late-latin1.txt', bad);
    expect(items).toHaveLength(PAST_SNIFF_LINES + 2);
    expect(items.at(-2)).toEqual({ line: PAST_SNIFF_LINES + 1, problem: 'line is not valid UTF-8' });
    expect(items.at(-1)).toEqual({ line: PAST_SNIFF_LINES + 2, value: 'z9' });
  });
});

describe('readSource: long lines', () => {
  const tenMegabytes = 10 * 1024 * 1024;

  it('reports a 10 MB line as a problem for its line and reads the lines after it', async () => {
    const txt = `a1\n${'x'.repeat(tenMegabytes)}\nb2\n`;
    expect(await read('long.txt', txt)).toEqual([
      { line: 1, value: 'a1' },
      { line: 2, problem: `line is ${tenMegabytes} bytes long, over the limit of 65536 bytes` },
      { line: 3, value: 'b2' },
    ]);
    const csv = `scene\na1\n${'x'.repeat(tenMegabytes)}\r\nb2\n`;
    expect(await read('long.csv', csv)).toEqual([
      { line: 2, value: 'a1' },
      { line: 3, problem: `line is ${tenMegabytes} bytes long, over the limit of 65536 bytes` },
      { line: 4, value: 'b2' },
    ]);
  });

  it('counts maxLineBytes without the line ending, over chunks of any size', async () => {
    const txt = `${'a'.repeat(10)}\r\n${'b'.repeat(11)}\r\n${'c'.repeat(10)}`;
    for (const size of [1, 4, 64]) {
      expect(await collect(pieces(txt, size), { format: 'txt', maxLineBytes: 10 })).toEqual([
        { line: 1, value: 'a'.repeat(10) },
        { line: 2, problem: 'line is 11 bytes long, over the limit of 10 bytes' },
        { line: 3, value: 'c'.repeat(10) },
      ]);
    }
  });

  it('sinks the whole input when the CSV header is too long to read', async () => {
    await expect(read('long-header.csv', `${'h'.repeat(100)}\na1\n`, { maxLineBytes: 50 })).rejects.toThrow(
      /the CSV header of ".*long-header\.csv" \(line 1\) cannot be read: line is 100 bytes long/,
    );
  });
});
