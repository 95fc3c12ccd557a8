/**
 * Exact de-duplication of an input's rows in bounded memory, for inputs of millions of rows.
 *
 * The producer reads its input twice: the first pass hands every row to `add`, the second asks `isRepeat` per
 * line. Holding every value between the passes would take gigabytes at 10 million rows, and a hash kept in place
 * of the value would take a row for a repeat whenever two values collide: a row lost. So the values are spilled
 * to partition files by a hash of the value, and `finish` reads them back one partition at a time into a set of
 * the values' bytes: a hash only decides where a value goes, never alone whether it is a repeat. What stays in
 * memory is one bit per line.
 *
 * The set is a hash table over typed arrays rather than a `Set<string>`: millions of short strings promoted to
 * V8's old space and dropped partition after partition let the heap grow by tens of megabytes before a full
 * collection, where typed arrays are reused from one partition to the next.
 */
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface RowDeduperOptions {
  /** Folder in which the deduper makes its own temporary folder. Default: the OS temporary folder. */
  dir?: string;
  /** Partition files the values are spread over. Default 64: 160 000 rows each at 10 million. */
  partitions?: number;
  /**
   * Roughly how many bytes the set of one partition may take in `finish`; a partition that could take more is
   * split again by another hash first. Default 32 MB.
   */
  partitionMemory?: number;
}

/**
 * A record is the line (0 for a seeded value), then a size word, the value's byte length times two plus a flag,
 * then the value's bytes: UTF-8, or UTF-16 when the flag is set. Length-prefixed, so any character is safe in a
 * value. The size word and the bytes together are the value's key: equal keys, equal values.
 */
const HEADER = 8;
/** Per flushed write: large enough that 64 partitions cost few system calls, small enough to hold 64 of. */
const WRITE_SIZE = 64 * 1024;
const READ_SIZE = 256 * 1024;
/** What the set spends on a value beyond its bytes: table slots, hash and offset, with room to grow. */
const ENTRY_COST = 32;
/** A partition still too big after this many splits is mostly one value repeated: its set stays small anyway. */
const MAX_SPLITS = 3;
const MAX_LINE = 0xffff_ffff;
/** Seeds the set's own hash apart from the partitions', which would otherwise crowd a partition into few slots. */
const SET_SEED = 0x5bd1_e995;
/**
 * UTF-8 turns every lone surrogate into U+FFFD, which would make distinct values equal; a row source can yield
 * such strings (a path is checked for length and white space only), so those values are kept as UTF-16.
 */
const LONE_SURROGATE = /\p{Cs}/u;

/** FNV-1a, then murmur3's finalizer so that the low bits taken by `%` and the table's mask are mixed. */
function hash(buf: Buffer, start: number, end: number, seed: number): number {
  let h = seed;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x0100_0193);
  h = Math.imul(h ^ (h >>> 16), 0x85eb_ca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2_ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Each split hashes with its own seed: values that shared a partition at one level spread at the next. */
function seed(level: number): number {
  return (0x811c_9dc5 ^ Math.imul(level, 0x9e37_79b9)) >>> 0;
}

/** Reads partition files record by record through one buffer, kept for the next file. */
class RecordReader {
  private buf = Buffer.allocUnsafe(READ_SIZE);

  /** Calls `visit` with each record in turn, as a span of a buffer valid until what it returns settles. */
  async each(
    file: string,
    visit: (buf: Buffer, at: number, end: number) => Promise<void> | void,
  ): Promise<void> {
    const handle = await open(file, 'r');
    try {
      let kept = 0;
      for (;;) {
        let buf = this.buf;
        const { bytesRead } = await handle.read(buf, kept, buf.length - kept, null);
        const end = kept + bytesRead;
        let at = 0;
        while (end - at >= HEADER) {
          const next = at + HEADER + (buf.readUInt32LE(at + 4) >>> 1);
          if (next > end) break;
          const writing = visit(buf, at, next);
          if (writing) await writing;
          at = next;
        }
        if (bytesRead === 0) {
          if (at !== end) throw new Error(`${file} ends inside a record`);
          return;
        }
        kept = end - at;
        const needed = kept >= HEADER ? HEADER + (buf.readUInt32LE(at + 4) >>> 1) : HEADER;
        if (needed > buf.length) {
          buf = Buffer.allocUnsafe(needed);
          this.buf.copy(buf, 0, at, end);
          this.buf = buf;
        } else buf.copy(buf, 0, at, end);
      }
    } finally {
      await handle.close();
    }
  }
}

/** A set of partition files, each written through its own buffer. */
class Partitions {
  readonly records: number[];
  /** Bytes written or buffered: a partition's file size once closed. */
  readonly bytes: number[];
  private readonly buffers: Buffer[];
  private readonly used: number[];
  /** Buffers whose writes are done, for the next flush: fresh ones each time would pile up until a collection. */
  private readonly spare: Buffer[] = [];
  private readonly writes = new Set<Promise<void>>();

  private constructor(
    readonly files: string[],
    private readonly handles: FileHandle[],
  ) {
    this.records = files.map(() => 0);
    this.bytes = files.map(() => 0);
    this.used = files.map(() => 0);
    this.buffers = files.map(() => Buffer.allocUnsafe(WRITE_SIZE));
  }

  static async create(prefix: string, count: number): Promise<Partitions> {
    const files = Array.from({ length: count }, (_, i) => `${prefix}.${i}`);
    const handles: FileHandle[] = [];
    try {
      for (const file of files) handles.push(await open(file, 'wx'));
    } catch (error) {
      await Promise.all(handles.map((h) => h.close()));
      throw error;
    }
    return new Partitions(files, handles);
  }

  /** Makes room for a record of `size` bytes in partition `p`, returning the write that made it if one did. */
  reserve(p: number, size: number): Promise<void> | undefined {
    if (this.used[p]! + size <= this.buffers[p]!.length) return undefined;
    return this.flush(p, size);
  }

  /** Where the record made room for goes. */
  target(p: number): { buf: Buffer; at: number } {
    return { buf: this.buffers[p]!, at: this.used[p]! };
  }

  wrote(p: number, size: number): void {
    this.used[p]! += size;
    this.bytes[p]! += size;
    this.records[p]!++;
  }

  /** Writes out what is buffered and closes the files. */
  async close(): Promise<void> {
    for (let p = 0; p < this.handles.length; p++) this.flush(p, 0);
    while (this.writes.size > 0) await Promise.all(this.writes);
    await Promise.all(this.handles.map((h) => h.close()));
  }

  /** Closes the files without waiting for writes that failed or were left behind (on an error path). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.writes);
    await Promise.allSettled(this.handles.map((h) => h.close()));
  }

  /**
   * Hands the buffer to a write at its own file position and takes another, so that a write still running never
   * sees its buffer change, and writes finishing out of order still land where they belong.
   */
  private flush(p: number, room: number): Promise<void> | undefined {
    const used = this.used[p]!;
    const full = this.buffers[p]!;
    if (room > 0) {
      this.buffers[p] =
        room > WRITE_SIZE ? Buffer.allocUnsafe(room) : (this.spare.pop() ?? Buffer.allocUnsafe(WRITE_SIZE));
    }
    this.used[p] = 0;
    if (used === 0) return undefined;
    const writing = this.handles[p]!.write(full, 0, used, this.bytes[p]! - used).then(() => {
      this.writes.delete(writing);
      if (full.length === WRITE_SIZE) this.spare.push(full);
    });
    this.writes.add(writing);
    return writing;
  }
}

/**
 * The distinct values of one partition: their keys one after another in an arena, found through an
 * open-addressing table of entry numbers. Kept from one partition to the next, grown as a partition needs.
 */
class ValueSet {
  /** Entry number + 1 per slot, 0 when free; at most half full. */
  private slots = new Int32Array(1 << 16);
  private hashes = new Uint32Array(1 << 15);
  private starts = new Uint32Array(1 << 15);
  private arena = Buffer.allocUnsafe(1 << 20);
  private count = 0;
  private used = 0;

  clear(): void {
    this.slots.fill(0);
    this.count = 0;
    this.used = 0;
  }

  /** Adds the value of the record at `buf[at, end)`; false when it was there already. */
  add(buf: Buffer, at: number, end: number): boolean {
    const h = hash(buf, at + HEADER, end, SET_SEED);
    const size = buf.readUInt32LE(at + 4);
    const mask = this.slots.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = this.slots[i]! - 1;
      if (e < 0) break;
      const start = this.starts[e]!;
      if (
        this.hashes[e] === h &&
        this.arena.readUInt32LE(start) === size &&
        buf.compare(this.arena, start + 4, start + 4 + end - at - HEADER, at + HEADER, end) === 0
      ) {
        return false;
      }
    }
    this.insert(h, buf, at + 4, end);
    return true;
  }

  private insert(h: number, buf: Buffer, keyStart: number, keyEnd: number): void {
    if (this.count === this.hashes.length) {
      this.hashes = grown(this.hashes, this.count * 2);
      this.starts = grown(this.starts, this.count * 2);
    }
    const keySize = keyEnd - keyStart;
    if (this.used + keySize > this.arena.length) {
      const arena = Buffer.allocUnsafe(Math.max(this.arena.length * 2, this.used + keySize));
      this.arena.copy(arena, 0, 0, this.used);
      this.arena = arena;
    }
    buf.copy(this.arena, this.used, keyStart, keyEnd);
    this.hashes[this.count] = h;
    this.starts[this.count] = this.used;
    this.used += keySize;
    this.count++;
    if (this.count * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    else this.place(this.count - 1);
  }

  private rehash(slotCount: number): void {
    this.slots = new Int32Array(slotCount);
    for (let e = 0; e < this.count; e++) this.place(e);
  }

  private place(e: number): void {
    const mask = this.slots.length - 1;
    let i = this.hashes[e]! & mask;
    while (this.slots[i] !== 0) i = (i + 1) & mask;
    this.slots[i] = e + 1;
  }
}

function grown(array: Uint32Array, length: number): Uint32Array<ArrayBuffer> {
  const bigger = new Uint32Array(length);
  bigger.set(array);
  return bigger;
}

/**
 * Tells, for each line of an input read twice, whether its value was seen before: seeded as already in the
 * campaign, or on an earlier line. Call `seen` for the seeded values, then `add` for every row of the first pass,
 * awaiting what either returns, then `finish`, then `isRepeat` per line during the second pass; `close` in a
 * `finally` removes the temporary files.
 */
export class RowDeduper {
  private lastLine = 0;
  private closed = false;
  private level0: Partitions | undefined;
  private scratch = Buffer.allocUnsafe(4096);
  private bitset: Uint8Array | undefined;
  private repeatCount = 0;

  private constructor(
    /** The deduper's own temporary folder, removed by `close`. */
    readonly dir: string,
    private readonly partitions: number,
    private readonly partitionMemory: number,
    level0: Partitions,
  ) {
    this.level0 = level0;
  }

  static async create(options: RowDeduperOptions = {}): Promise<RowDeduper> {
    const partitions = options.partitions ?? 64;
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new RangeError(`partitions must be a whole number from 1, got ${partitions}`);
    }
    const dir = await mkdtemp(path.join(options.dir ?? tmpdir(), 'wxacode-dedupe-'));
    try {
      const level0 = await Partitions.create(path.join(dir, 'p'), partitions);
      return new RowDeduper(dir, partitions, options.partitionMemory ?? 32 * 1024 * 1024, level0);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** A value already in the campaign: every row of the input equal to it is a repeat. Before any `add`. */
  seen(value: string): Promise<void> | undefined {
    if (this.lastLine > 0) throw new Error('seen() must come before the first add()');
    return this.put(0, value);
  }

  /** A row of the first pass; lines must increase (gaps are fine). */
  add(line: number, value: string): Promise<void> | undefined {
    if (!Number.isInteger(line) || line <= this.lastLine || line > MAX_LINE) {
      throw new RangeError(
        `lines must be whole numbers increasing up to ${MAX_LINE}: got ${line} after ${this.lastLine}`,
      );
    }
    const writing = this.put(line, value);
    this.lastLine = line;
    return writing;
  }

  /** Works out the repeats, one partition at a time; after the last `add`. */
  async finish(): Promise<void> {
    const level0 = this.open();
    this.level0 = undefined;
    await level0.close();
    this.bitset = new Uint8Array((this.lastLine >>> 3) + 1);
    const work = { reader: new RecordReader(), set: new ValueSet() };
    for (let p = 0; p < this.partitions; p++) {
      await this.resolve(work, level0.files[p]!, level0.records[p]!, level0.bytes[p]!, 1);
    }
  }

  /** Whether the row on `line` repeats a seeded value or an earlier line's; lines never added are not. */
  isRepeat(line: number): boolean {
    if (!this.bitset) throw new Error('isRepeat() needs finish() first');
    return ((this.bitset[line >>> 3] ?? 0) & (1 << (line & 7))) !== 0;
  }

  /** How many added lines are repeats, once finished. */
  get repeats(): number {
    if (!this.bitset) throw new Error('repeats needs finish() first');
    return this.repeatCount;
  }

  /** Removes the temporary files; safe to call more than once, and after a failure. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.level0?.abandon();
    this.level0 = undefined;
    await rm(this.dir, { recursive: true, force: true });
  }

  private open(): Partitions {
    if (this.closed) throw new Error('the deduper is closed');
    if (!this.level0) throw new Error('the deduper is finished');
    return this.level0;
  }

  /** Encodes first, as the partition is chosen by a hash of the bytes that splits and the set hash too. */
  private put(line: number, value: string): Promise<void> | undefined {
    const level0 = this.open();
    if (this.scratch.length < value.length * 3) this.scratch = Buffer.allocUnsafe(value.length * 3);
    const utf16 = LONE_SURROGATE.test(value);
    const size = this.scratch.write(value, utf16 ? 'utf16le' : 'utf8');
    const p = hash(this.scratch, 0, size, seed(0)) % this.partitions;
    const writing = level0.reserve(p, HEADER + size);
    const { buf, at } = level0.target(p);
    buf.writeUInt32LE(line, at);
    buf.writeUInt32LE(size * 2 + (utf16 ? 1 : 0), at + 4);
    this.scratch.copy(buf, at + HEADER, 0, size);
    level0.wrote(p, HEADER + size);
    return writing;
  }

  private async resolve(
    work: { reader: RecordReader; set: ValueSet },
    file: string,
    records: number,
    bytes: number,
    level: number,
  ): Promise<void> {
    if (records * ENTRY_COST + bytes > this.partitionMemory && this.partitions > 1 && level <= MAX_SPLITS) {
      const parts = await Partitions.create(file, this.partitions);
      try {
        const s = seed(level);
        await work.reader.each(file, (buf, at, end) => {
          const p = hash(buf, at + HEADER, end, s) % this.partitions;
          const writing = parts.reserve(p, end - at);
          const target = parts.target(p);
          buf.copy(target.buf, target.at, at, end);
          parts.wrote(p, end - at);
          return writing;
        });
        await parts.close();
      } catch (error) {
        await parts.abandon();
        throw error;
      }
      await rm(file);
      for (let p = 0; p < this.partitions; p++) {
        await this.resolve(work, parts.files[p]!, parts.records[p]!, parts.bytes[p]!, level + 1);
      }
    } else {
      await this.scan(work, file);
      await rm(file);
    }
  }

  /** Records of a partition are in line order, seeded values first: a value already in the set is a repeat. */
  private async scan(work: { reader: RecordReader; set: ValueSet }, file: string): Promise<void> {
    const bitset = this.bitset!;
    work.set.clear();
    await work.reader.each(file, (buf, at, end) => {
      const line = buf.readUInt32LE(at);
      if (!work.set.add(buf, at, end) && line > 0) {
        bitset[line >>> 3]! |= 1 << (line & 7);
        this.repeatCount++;
      }
    });
  }
}
