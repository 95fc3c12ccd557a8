/**
 * Enqueue a campaign: validate every row, then write the valid ones, each once, to the campaign's record in
 * storage (campaign/record.ts), a chunk at a time. The workers' feeders queue them from there.
 *
 * Validation is a full pass over the input before anything is written, so a file with a bad row enqueues
 * nothing (unless `skipInvalid`). The same pass finds the repeated rows (campaign/dedupe.ts, on disk beyond a
 * few MB, against the rows an earlier enqueue recorded too). The input is then read a second time to write
 * the record: streaming twice keeps memory flat for ten million rows, where holding the rows between the passes
 * would not. Standard input is spooled to a temporary file first so it can be read twice.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Redis } from 'ioredis';
import { recordKey, type Storage } from '../storage/index.js';
import { type CodeOptions, codeOptionsProblems, rowProblem } from '../wechat/params.js';
import { RowDeduper } from './dedupe.js';
import { CampaignLifecycle } from './lifecycle.js';
import { CHUNK_BYTES, CHUNK_CONTENT_TYPE, CHUNK_ROWS, encodeChunk, readChunk } from './record.js';
import { readSource, type SourceFormat, type SourceItem } from './source.js';
import {
  type CampaignMeta,
  CampaignStore,
  campaignIdProblem,
  PRIORITIES,
  type ProducerLease,
  producerLease,
} from './store.js';

export interface InvalidRow {
  line: number;
  problem: string;
}

export interface EnqueueOptions {
  /** Connection for the campaign records (ioredis). */
  redis: Redis;
  prefix: string;
  /** Where the campaign's record goes (the same storage as its codes), and its manifest if it completes at once. */
  storage: Storage;
  campaign: string;
  appid: string;
  options: CodeOptions;
  /**
   * A file path, `-` for standard input, or a function that yields the row values (a database query, say).
   * The function is called twice, once to validate and once to enqueue, and must yield the same rows each time.
   */
  input: string | RowSource;
  format?: SourceFormat;
  column?: string;
  /** Enqueue the valid rows even when some are invalid. Default false: any invalid row enqueues nothing. */
  skipInvalid?: boolean;
  /** Called for each invalid row as it is found, so a caller can list them without holding them all. */
  onInvalid?: (row: InvalidRow) => void;
  /** Rows per chunk of the record. Default CHUNK_ROWS. */
  chunkRows?: number;
  /** BullMQ's priority of the campaign's jobs (PRIORITIES; 1 first), when this enqueue creates it. */
  priority?: number;
  /** Standard input, for `-`. Default process.stdin. */
  stdin?: NodeJS.ReadableStream;
  /** How long the campaign stays open for this enqueue if it dies before finishing. Default 30 s. */
  producerLeaseMs?: number;
  /**
   * Sees each valid row of the validation pass, then `done`, before anything is written: what either throws
   * stops the enqueue (the quota ledger's check, `acQuotaPrecheck`).
   */
  precheck?: { row(value: string): Promise<void>; done(): Promise<void> };
}

/** Row values from the caller's own code; `line` in messages is the 1-based position in what it yields. */
export type RowSource = () => AsyncIterable<string> | Iterable<string>;

export interface EnqueueResult {
  campaign: string;
  /** New rows recorded by this call, for the feeders to queue. */
  enqueued: number;
  /** Rows seen again: within the input or already in the campaign's record. */
  duplicates: number;
  invalid: number;
  /** Rows the campaign holds now. */
  total: number;
  state: CampaignMeta['state'];
}

/** Nothing was enqueued: the options, the campaign or some rows are wrong. */
export class EnqueueError extends Error {
  override readonly name = 'EnqueueError';
  constructor(
    message: string,
    /** Invalid rows found (0 when the problem is not with rows). */
    readonly invalid = 0,
  ) {
    super(message);
  }
}

function describeOptions(options: CodeOptions): string {
  return JSON.stringify(options);
}

async function spoolStdin(
  stdin: NodeJS.ReadableStream,
): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wxacode-stdin-'));
  const file = path.join(dir, 'input');
  await pipeline(stdin, createWriteStream(file));
  return { file, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

function inputName(o: EnqueueOptions): string {
  if (typeof o.input === 'function') return 'the row source';
  return o.input === '-' ? 'standard input' : o.input;
}

async function* fromRowSource(source: RowSource): AsyncGenerator<SourceItem> {
  let line = 0;
  for await (const value of source()) yield { line: ++line, value };
}

function items(input: string | RowSource, o: EnqueueOptions): AsyncIterable<SourceItem> {
  if (typeof input === 'function') return fromRowSource(input);
  return readSource(input, { format: o.format, column: o.column, kind: o.options.kind, name: inputName(o) });
}

/** The first pass: count the invalid rows, let the precheck see the valid ones, and find the repeats. */
async function validate(input: string | RowSource, o: EnqueueOptions, dedupe: RowDeduper): Promise<number> {
  let invalid = 0;
  for await (const item of items(input, o)) {
    const problem = 'problem' in item ? item.problem : rowProblem(o.options.kind, item.value);
    if (problem !== undefined) {
      invalid++;
      o.onInvalid?.({ line: item.line, problem });
    } else if ('value' in item) {
      await dedupe.add(item.line, item.value);
      await o.precheck?.row(item.value);
    }
  }
  await dedupe.finish();
  return invalid;
}

/** What an earlier enqueue recorded in the campaign: those rows are repeats in this input. */
async function seedRecorded(o: EnqueueOptions, store: CampaignStore, dedupe: RowDeduper): Promise<void> {
  const meta = await store.get(o.campaign);
  if (!meta || meta.appid !== o.appid) return;
  for (const chunk of await store.chunks(o.campaign)) {
    for (const value of await readChunk(o.storage, meta, chunk)) await dedupe.seen(value);
  }
}

/**
 * Writes the record a chunk at a time: each chunk is stored under a name of its own (this producer's and a
 * number), then registered at the end of the campaign's chunk list, so concurrent producers never overwrite
 * each other and a chunk is never listed before it is stored.
 */
class RecordWriter {
  #values: string[] = [];
  #bytes = 0;
  #chunks = 0;
  written = 0;

  constructor(
    private readonly o: EnqueueOptions,
    private readonly store: CampaignStore,
    private readonly lease: ProducerLease,
  ) {}

  async add(value: string): Promise<void> {
    this.#values.push(value);
    this.#bytes += value.length + 3;
    if (this.#values.length >= (this.o.chunkRows ?? CHUNK_ROWS) || this.#bytes >= CHUNK_BYTES)
      await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#values.length === 0) return;
    const name = `${this.lease.id.slice(0, 8)}-${this.#chunks++}`;
    const { storage, appid, campaign } = this.o;
    await storage.put(recordKey(appid, campaign, name), encodeChunk(this.#values), CHUNK_CONTENT_TYPE);
    await this.store.addChunk(campaign, appid, { name, rows: this.#values.length }, this.lease);
    this.written += this.#values.length;
    this.#values = [];
    this.#bytes = 0;
  }
}

export async function enqueueCampaign(o: EnqueueOptions): Promise<EnqueueResult> {
  const idProblem = campaignIdProblem(o.campaign);
  if (idProblem) throw new EnqueueError(idProblem);
  const optionProblems = codeOptionsProblems(o.options);
  if (optionProblems.length > 0) throw new EnqueueError(optionProblems.join('; '));

  const store = new CampaignStore(o.redis, o.prefix);
  const spooled = o.input === '-' ? await spoolStdin(o.stdin ?? process.stdin) : undefined;
  const input = spooled?.file ?? o.input;
  const dedupe = await RowDeduper.create();
  try {
    await seedRecorded(o, store, dedupe);
    const invalid = await validate(input, o, dedupe);
    if (invalid > 0 && !o.skipInvalid) {
      throw new EnqueueError(
        `${invalid} invalid row${invalid === 1 ? '' : 's'} in ${inputName(o)}: nothing was enqueued (fix them, or pass --skip-invalid to enqueue the valid rows)`,
        invalid,
      );
    }
    await o.precheck?.done();
    // Checked before the campaign is opened: storage that is down or refuses writes then leaves nothing behind.
    await o.storage.checkWritable();

    const lease = producerLease(o.producerLeaseMs);
    const opened = await store.open(o.campaign, o.appid, o.options, lease, o.priority ?? PRIORITIES.normal);
    if ('existing' in opened) {
      const e = opened.existing;
      throw new EnqueueError(
        opened.outcome === 'conflict'
          ? `campaign ${o.campaign} already exists for app ${e.appid} with options ${describeOptions(e.options)}; ` +
              `use a new campaign id for app ${o.appid} with options ${describeOptions(o.options)}`
          : `campaign ${o.campaign} is stopped (errcode ${e.stop?.errcode}: ${e.stop?.errmsg}); fix the cause and run \`wxacode retry ${o.campaign}\` first`,
      );
    }
    const lifecycle = new CampaignLifecycle(store, o.storage);
    const release = lifecycle.holdOpen(o.campaign, lease);
    const record = new RecordWriter(o, store, lease);
    try {
      for await (const item of items(input, o)) {
        if ('problem' in item || rowProblem(o.options.kind, item.value) !== undefined) continue;
        if (!dedupe.isRepeat(item.line)) await record.add(item.value);
      }
      await record.flush();
    } finally {
      // A producer that fails keeps its lease until it runs out, and the campaign enqueuing with it; what it
      // recorded stays, and an enqueue of the same input run again records only the rest.
      release();
    }

    await lifecycle.finishEnqueue(o.campaign, lease.id);
    const meta = (await store.get(o.campaign))!;
    return {
      campaign: o.campaign,
      enqueued: record.written,
      duplicates: dedupe.repeats,
      invalid,
      total: meta.total,
      state: meta.state,
    };
  } finally {
    await Promise.all([dedupe.close(), spooled?.cleanup()]);
  }
}
