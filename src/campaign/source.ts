/**
 * Streaming readers for the rows of `wxacode enqueue <file|->`: CSV, JSONL and TXT.
 *
 * Input goes through two layers. `LineSplitter` cuts bytes into physical lines with bounded memory: a line over
 * `maxLineBytes` is counted and dropped while it streams past, and each line is checked for valid UTF-8 on its own,
 * so one bad line costs one problem, not the file. The format readers then turn lines into rows.
 *
 * CSV is parsed by hand rather than with csv-parse: csv-parse decodes invalid UTF-8 into U+FFFD without a word, and
 * with `max_record_size` + `skip_records_with_error` it keeps growing the oversized field and reports the error
 * again for every further byte, so it can neither bound memory nor recover cleanly at the next line.
 */
import { isUtf8 } from 'node:buffer';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { type Kind, rowField } from '../wechat/params.js';

export const SOURCE_FORMATS = ['csv', 'jsonl', 'txt'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

/** One value read from the input. `line` is the 1-based physical line where its record starts. */
export interface SourceRow {
  line: number;
  value: string;
}

/** A row that cannot be read; reading goes on with the next one. */
export interface SourceProblem {
  line: number;
  problem: string;
}

export type SourceItem = SourceRow | SourceProblem;

export interface SourceOptions {
  /** Default: from the file extension (.csv, .jsonl/.ndjson, .txt); required for stdin and streams. */
  format?: SourceFormat;
  /** CSV header column or JSONL field holding the value. Default: `scene` for unlimited, `path` for code/qrcode. */
  column?: string;
  kind: Kind;
  /** Longest line read, in bytes (default 64 KiB). Longer lines become problems and are never held whole. */
  maxLineBytes?: number;
  /** What whole-input errors call the input, e.g. "stdin" for a spooled copy. Default: the path, or "stdin". */
  name?: string;
}

/** A problem with the input as a whole (missing file, unknown format, binary data, no such column). */
export class SourceError extends Error {
  override readonly name = 'SourceError';
}

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/** Binary and wrong-encoding input is detected in this much of the start, before any row is handed out. */
const SNIFF_BYTES = 64 * 1024;
const NEWLINE = 0x0a;
const CR = 0x0d;
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

const EXTENSIONS: Record<string, SourceFormat> = {
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.txt': 'txt',
};

export function formatFromPath(file: string): SourceFormat | undefined {
  return EXTENSIONS[extname(file).toLowerCase()];
}

/** Streams the input; never holds it all in memory. Throws SourceError for whole-input problems. */
export async function* readSource(
  input: string | NodeJS.ReadableStream,
  options: SourceOptions,
): AsyncGenerator<SourceItem> {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    throw new SourceError(`maxLineBytes must be a whole number of bytes above 0, got ${maxLineBytes}`);
  }
  const name =
    options.name ?? (typeof input !== 'string' ? 'the input stream' : input === '-' ? 'stdin' : `"${input}"`);
  // A missing file is a more basic mistake than a missing --format, so it is reported first.
  const file = typeof input === 'string' && input !== '-' ? await openFile(input) : undefined;
  try {
    const format = resolveFormat(input, options.format, name);
    const reader = newReader(format, options, name, maxLineBytes);
    const stream = file
      ? file.createReadStream({ highWaterMark: SNIFF_BYTES })
      : typeof input === 'string'
        ? process.stdin
        : input;
    yield* readLines(stream, new LineSplitter(maxLineBytes), reader, name);
  } finally {
    // A stream handed in belongs to the caller; a file opened here is closed here, also on an early break.
    await file?.close();
  }
}

async function* readLines(
  stream: NodeJS.ReadableStream,
  splitter: LineSplitter,
  reader: FormatReader,
  name: string,
): AsyncGenerator<SourceItem> {
  const out: SourceItem[] = [];
  const emit = (line: Line) => reader.line(line, out);
  let head: Buffer[] | undefined = [];
  let headBytes = 0;
  for await (const data of stream) {
    let chunk = typeof data === 'string' ? Buffer.from(data) : data;
    if (head) {
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes < SNIFF_BYTES) continue;
      chunk = sniff(Buffer.concat(head), false, name);
      head = undefined;
    }
    splitter.push(chunk, emit);
    yield* drain(out);
  }
  if (head) splitter.push(sniff(Buffer.concat(head), true, name), emit);
  splitter.end(emit);
  reader.end(out);
  yield* drain(out);
}

function resolveFormat(
  input: string | NodeJS.ReadableStream,
  format: string | undefined,
  name: string,
): SourceFormat {
  if (format !== undefined) {
    if ((SOURCE_FORMATS as readonly string[]).includes(format)) return format as SourceFormat;
    throw new SourceError(`format must be one of ${SOURCE_FORMATS.join(', ')}, got "${format}"`);
  }
  const fromPath = typeof input === 'string' && input !== '-' ? formatFromPath(input) : undefined;
  if (fromPath) return fromPath;
  const why = typeof input === 'string' && input !== '-' ? `from the extension of ${name}` : `of ${name}`;
  throw new SourceError(`cannot tell the format ${why}; pass --format ${SOURCE_FORMATS.join('|')}`);
}

async function openFile(path: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SourceError(`file "${path}" does not exist`);
    if (code === 'EACCES') throw new SourceError(`file "${path}" cannot be read: permission denied`);
    throw new SourceError(`file "${path}" cannot be opened: ${(err as Error).message}`);
  }
  // Opening a directory for reading succeeds on Linux; only the first read would fail, with a vaguer EISDIR.
  if ((await handle.stat()).isDirectory()) {
    await handle.close();
    throw new SourceError(`"${path}" is a directory, not a file`);
  }
  return handle;
}

function* drain(items: SourceItem[]): Generator<SourceItem> {
  yield* items;
  items.length = 0;
}

/**
 * Reject input that is not UTF-8 text before any row is handed out, and drop a UTF-8 BOM. `head` is the first
 * SNIFF_BYTES of the input (all of it when `complete`). Lines that end later are checked one by one instead.
 */
function sniff(head: Buffer, complete: boolean, name: string): Buffer {
  // Excel's "Unicode text" export is UTF-16; its NUL bytes would otherwise make it look binary.
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) {
    throw new SourceError(`${name} is UTF-16 text; save it as UTF-8`);
  }
  const text = head.subarray(0, 3).equals(UTF8_BOM) ? head.subarray(3) : head;
  const nul = text.indexOf(0);
  if (nul !== -1) {
    throw new SourceError(
      `${name} looks binary, not CSV/JSONL/TXT text: line ${lineAt(text, nul)} has a NUL byte`,
    );
  }
  const checked = complete ? text.length : text.lastIndexOf(NEWLINE) + 1;
  if (!isUtf8(text.subarray(0, checked))) {
    throw new SourceError(
      `${name} looks binary, not CSV/JSONL/TXT text: line ${firstInvalidLine(text, checked)} is not valid UTF-8 (if it is text, save it as UTF-8)`,
    );
  }
  return text;
}

function lineAt(buf: Buffer, offset: number): number {
  let line = 1;
  for (let at = buf.indexOf(NEWLINE); at !== -1 && at < offset; at = buf.indexOf(NEWLINE, at + 1)) line++;
  return line;
}

/** The number of the first line in `buf` (up to `end`) that is not valid UTF-8; called only when one is not. */
function firstInvalidLine(buf: Buffer, end: number): number {
  let line = 1;
  for (let start = 0; start < end; line++) {
    const nl = buf.indexOf(NEWLINE, start);
    const stop = nl === -1 || nl > end ? end : nl;
    if (!isUtf8(buf.subarray(start, stop))) break;
    start = stop + 1;
  }
  return line;
}

/** A physical line: its text without the line ending, or why it cannot be read. */
type TextLine = { line: number; text: string; bytes: number };
type Line = TextLine | SourceProblem;

/** Cuts a byte stream into lines (LF or CRLF) holding at most maxLineBytes + 1 bytes of any line. */
class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes of the current line so far once it is known to be too long; -1 while it may still fit. */
  private overBytes = -1;
  /** Whether the last byte taken of an overlong line is a CR, which is not counted in its length. */
  private overEndsInCr = false;
  private lineNo = 1;

  constructor(private readonly maxLineBytes: number) {}

  push(chunk: Buffer, emit: (line: Line) => void): void {
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      if (this.parts.length === 0 && this.overBytes === -1) {
        emit(this.decode(chunk, start, nl));
      } else {
        this.take(chunk, start, nl);
        emit(this.finish());
      }
      this.lineNo++;
      start = nl + 1;
    }
    if (start < chunk.length) this.take(chunk, start, chunk.length);
  }

  end(emit: (line: Line) => void): void {
    if (this.parts.length > 0 || this.overBytes !== -1) emit(this.finish());
  }

  private take(chunk: Buffer, start: number, end: number): void {
    if (end > start) this.overEndsInCr = chunk[end - 1] === CR;
    if (this.overBytes !== -1) {
      this.overBytes += end - start;
    } else if (this.partBytes + end - start > this.maxLineBytes + 1) {
      // +1: the line may still end in a CR that does not count. Past that it cannot fit, so stop holding it.
      this.overBytes = this.partBytes + end - start;
      this.parts = [];
      this.partBytes = 0;
    } else {
      this.parts.push(chunk.subarray(start, end));
      this.partBytes += end - start;
    }
  }

  private finish(): Line {
    const over = this.overBytes;
    const whole = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    this.partBytes = 0;
    this.overBytes = -1;
    if (over !== -1) return this.tooLong(this.overEndsInCr ? over - 1 : over);
    return this.decode(whole, 0, whole.length);
  }

  private decode(buf: Buffer, start: number, end: number): Line {
    const stop = end > start && buf[end - 1] === CR ? end - 1 : end;
    if (stop - start > this.maxLineBytes) return this.tooLong(stop - start);
    // Checked per line so a stray Latin-1 or GBK byte costs its own line, not silent U+FFFD in a scene.
    if (!isUtf8(buf.subarray(start, stop))) return { line: this.lineNo, problem: 'line is not valid UTF-8' };
    return { line: this.lineNo, text: buf.toString('utf8', start, stop), bytes: stop - start };
  }

  private tooLong(bytes: number): SourceProblem {
    return {
      line: this.lineNo,
      problem: `line is ${bytes} bytes long, over the limit of ${this.maxLineBytes} bytes`,
    };
  }
}

interface FormatReader {
  line(line: Line, out: SourceItem[]): void;
  end(out: SourceItem[]): void;
}

function newReader(
  format: SourceFormat,
  options: SourceOptions,
  name: string,
  maxLineBytes: number,
): FormatReader {
  const field = rowField(options.kind);
  const column = options.column ?? field;
  if (format === 'csv') return new CsvReader(column, field, name, maxLineBytes);
  if (format === 'jsonl') return new JsonlReader(column, field);
  return new TxtReader();
}

// Values are trimmed: scenes and paths cannot contain white space at all, so trimming only removes stray
// spaces (Excel padding, `id, scene` headers) that would otherwise fail validation.
function isBlank(text: string): boolean {
  return text.trim().length === 0;
}

function valueOrEmpty(line: number, raw: string, column: string, field: string): SourceItem {
  const value = raw.trim();
  if (value.length > 0) return { line, value };
  return { line, problem: column === field ? `empty ${field}` : `empty ${field} in column "${column}"` };
}

class TxtReader implements FormatReader {
  line(line: Line, out: SourceItem[]): void {
    if ('problem' in line) {
      out.push(line);
      return;
    }
    const value = line.text.trim();
    if (value.length > 0) out.push({ line: line.line, value });
  }

  end(): void {}
}

class JsonlReader implements FormatReader {
  constructor(
    private readonly column: string,
    private readonly field: string,
  ) {}

  line(line: Line, out: SourceItem[]): void {
    if ('problem' in line) out.push(line);
    else if (!isBlank(line.text)) out.push(this.parse(line.line, line.text));
  }

  end(): void {}

  private parse(line: number, text: string): SourceItem {
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (err) {
      return { line, problem: `invalid JSON: ${(err as Error).message}` };
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      return {
        line,
        problem: `line is ${jsonType(record)}, not a JSON object with a "${this.column}" field`,
      };
    }
    if (!Object.hasOwn(record, this.column)) {
      const keys = Object.keys(record);
      const found = keys.length === 0 ? 'the object is empty' : `fields are ${quoteList(keys)}`;
      return { line, problem: `no field "${this.column}"; ${found}` };
    }
    const value = (record as Record<string, unknown>)[this.column];
    if (typeof value === 'string') return valueOrEmpty(line, value, this.column, this.field);
    // Ids are often numbers; whole ones read back exactly, fractions and huge ones would not.
    if (typeof value === 'number' && Number.isSafeInteger(value)) return { line, value: String(value) };
    if (typeof value === 'number' && Number.isInteger(value)) {
      return {
        line,
        problem: `field "${this.column}" is a whole number above 2^53, which JSON readers round; write it as a string`,
      };
    }
    return { line, problem: `field "${this.column}" is ${jsonType(value)}, not a string` };
  }
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function quoteList(names: string[], max = 8): string {
  const shown = names.slice(0, max).map((n) => `"${n}"`);
  return names.length > max ? `${shown.join(', ')} and ${names.length - max} more` : shown.join(', ');
}

/** A CSV record in progress: fields so far, and the lines it spans while a quoted field is open. */
interface OpenRecord {
  fields: string[];
  field: string;
  lines: TextLine[];
  bytes: number;
}

type Parsed = { fields: string[] } | { open: OpenRecord } | { error: string };

/**
 * RFC 4180 CSV: a header row, `,` separators, `"` quoting with `""` for a quote, newlines inside quotes. A `"`
 * inside an unquoted field is kept as written (what csv-parse calls relax_quotes), since Excel writes `5" screen`.
 */
class CsvReader implements FormatReader {
  private columns: { index: number; count: number } | undefined;
  private record: OpenRecord | undefined;

  constructor(
    private readonly column: string,
    private readonly field: string,
    private readonly name: string,
    private readonly maxRecordBytes: number,
  ) {}

  line(line: Line, out: SourceItem[]): void {
    const record = this.record;
    if ('problem' in line) {
      if (record) {
        this.reread(record.lines, `quoted field runs into line ${line.line}, which cannot be read`, out);
        this.line(line, out);
      } else {
        out.push(this.headerChecked(line));
      }
    } else if (!record) {
      if (!isBlank(line.text)) this.settle([line], parseCsvLine(line, undefined), out);
    } else {
      record.lines.push(line);
      record.bytes += line.bytes + 1;
      if (record.bytes > this.maxRecordBytes) {
        this.reread(record.lines, `quoted field does not close within ${this.maxRecordBytes} bytes`, out);
      } else {
        this.settle(record.lines, parseCsvLine(line, record), out);
      }
    }
  }

  end(out: SourceItem[]): void {
    // Reading an abandoned record's later lines again may open another quote that never closes.
    while (this.record)
      this.reread(this.record.lines, 'quoted field does not close before the end of the input', out);
  }

  private settle(lines: TextLine[], parsed: Parsed, out: SourceItem[]): void {
    if ('open' in parsed) {
      this.record = parsed.open;
      return;
    }
    this.record = undefined;
    const line = lines[0]!.line;
    const spanned =
      lines.length > 1
        ? ` (in a quoted field running to line ${lines.at(-1)!.line}; is a quote left open?)`
        : '';
    if ('error' in parsed) {
      this.reread(lines, parsed.error + spanned, out);
      return;
    }
    const { fields } = parsed;
    if (!this.columns) {
      this.columns = { index: this.findColumn(fields.map((f) => f.trim())), count: fields.length };
      return;
    }
    // Excel leaves rows of bare commas below the data: blank rows, not bad ones.
    if (fields.every(isBlank)) return;
    if (fields.length !== this.columns.count) {
      this.reread(
        lines,
        `row has ${fields.length} field${fields.length === 1 ? '' : 's'}; the header has ${this.columns.count}${spanned}`,
        out,
      );
      return;
    }
    out.push(valueOrEmpty(line, fields[this.columns.index]!, this.column, this.field));
  }

  /**
   * Report a record that cannot be read at the line where it starts. When it spans several lines, a stray `"`
   * most likely swallowed them: read them again as records of their own, so that quote costs one row, not many.
   */
  private reread(lines: TextLine[], problem: string, out: SourceItem[]): void {
    this.record = undefined;
    const [first, ...rest] = lines;
    out.push(this.headerChecked({ line: first!.line, problem }));
    for (const line of rest) this.line(line, out);
  }

  /** Problems are per row once the header is known; a header that cannot be read sinks the whole input. */
  private headerChecked(problem: SourceProblem): SourceProblem {
    if (this.columns) return problem;
    throw new SourceError(
      `the CSV header of ${this.name} (line ${problem.line}) cannot be read: ${problem.problem}`,
    );
  }

  private findColumn(names: string[]): number {
    const index = names.indexOf(this.column);
    if (index !== -1) {
      const again = names.indexOf(this.column, index + 1);
      if (again === -1) return index;
      throw new SourceError(
        `the CSV header of ${this.name} has the column "${this.column}" twice (columns ${index + 1} and ${again + 1})`,
      );
    }
    const near = names.find((n) => n.toLowerCase() === this.column.toLowerCase());
    const hint = near ? `pass --column "${near}"` : 'pass --column NAME to read another column';
    throw new SourceError(
      `the CSV header of ${this.name} has no column "${this.column}"; its columns are ${quoteList(names)}; ${hint}`,
    );
  }
}

/** Parse one line of text: a record of its own, or the next line of `open`, whose quoted field spans lines. */
function parseCsvLine(line: TextLine, open: OpenRecord | undefined): Parsed {
  const { text } = line;
  if (!open && text.indexOf('"') === -1) return { fields: text.split(',') };
  const fields = open ? open.fields : [];
  let quoted = open !== undefined;
  let field = open ? `${open.field}\n` : '';
  let i = 0;
  for (;;) {
    if (!quoted) {
      if (text[i] !== '"') {
        const comma = text.indexOf(',', i);
        if (comma === -1) {
          fields.push(text.slice(i));
          return { fields };
        }
        fields.push(text.slice(i, comma));
        i = comma + 1;
        continue;
      }
      quoted = true;
      field = '';
      i++;
    }
    const quote = text.indexOf('"', i);
    if (quote === -1) {
      return {
        open: {
          fields,
          field: field + text.slice(i),
          lines: open?.lines ?? [line],
          bytes: open?.bytes ?? line.bytes,
        },
      };
    }
    field += text.slice(i, quote);
    if (text[quote + 1] === '"') {
      field += '"';
      i = quote + 2;
      continue;
    }
    quoted = false;
    i = quote + 1;
    while (text[i] === ' ' || text[i] === '\t') i++;
    fields.push(field);
    if (i === text.length) return { fields };
    if (text[i] !== ',') return { error: `unexpected "${text[i]}" after a closing quote` };
    i++;
  }
}
