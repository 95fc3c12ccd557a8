/**
 * Enqueue a campaign: validate every row, then record and queue the valid ones in chunks.
 *
 * Validation is a full pass over the input before anything is written, so a file with a bad row enqueues
 * nothing (unless `skipInvalid`). The input is then read a second time to enqueue: streaming twice keeps memory
 * flat for a million rows, where holding the rows between the passes would not. Standard input is spooled to a
 * temporary file first so it can be read twice.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Storage } from '../storage/index.js';
import { type CodeOptions, codeOptionsProblems, rowProblem } from '../wechat/params.js';
import { CampaignLifecycle } from './lifecycle.js';
import { jobsFor, openQueue } from './queue.js';
import { readSource, type SourceFormat, type SourceItem } from './source.js';
import { type CampaignMeta, CampaignStore, campaignIdProblem, producerLease } from './store.js';

export interface InvalidRow {
  line: number;
  problem: string;
}

export interface EnqueueOptions {
  /** Connection for the campaign records (ioredis). */
  redis: Redis;
  /** Connection for BullMQ; default: `redis`. */
  connection?: ConnectionOptions;
  prefix: string;
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
  /** Rows per addBulk. Default 1000. */
  chunkSize?: number;
  /** When given and the campaign turns out complete (every row already done), its manifest is stored. */
  storage?: Storage;
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
  /** New rows queued by this call. */
  enqueued: number;
  /** Rows seen again: within the input or already in the campaign. */
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

async function validate(input: string | RowSource, o: EnqueueOptions): Promise<number> {
  let invalid = 0;
  for await (const item of items(input, o)) {
    const problem = 'problem' in item ? item.problem : rowProblem(o.options.kind, item.value);
    if (problem !== undefined) {
      invalid++;
      o.onInvalid?.({ line: item.line, problem });
    } else if (o.precheck && 'value' in item) await o.precheck.row(item.value);
  }
  return invalid;
}

export async function enqueueCampaign(o: EnqueueOptions): Promise<EnqueueResult> {
  const idProblem = campaignIdProblem(o.campaign);
  if (idProblem) throw new EnqueueError(idProblem);
  const optionProblems = codeOptionsProblems(o.options);
  if (optionProblems.length > 0) throw new EnqueueError(optionProblems.join('; '));

  const spooled = o.input === '-' ? await spoolStdin(o.stdin ?? process.stdin) : undefined;
  const input = spooled?.file ?? o.input;
  try {
    const invalid = await validate(input, o);
    if (invalid > 0 && !o.skipInvalid) {
      throw new EnqueueError(
        `${invalid} invalid row${invalid === 1 ? '' : 's'} in ${inputName(o)}: nothing was enqueued (fix them, or pass --skip-invalid to enqueue the valid rows)`,
        invalid,
      );
    }
    await o.precheck?.done();

    const store = new CampaignStore(o.redis, o.prefix);
    const lease = producerLease(o.producerLeaseMs);
    const opened = await store.open(o.campaign, o.appid, o.options, lease);
    if ('existing' in opened) {
      const e = opened.existing;
      throw new EnqueueError(
        opened.outcome === 'conflict'
          ? `campaign ${o.campaign} already exists for app ${e.appid} with options ${describeOptions(e.options)}; ` +
              `use a new campaign id for app ${o.appid} with options ${describeOptions(o.options)}`
          : `campaign ${o.campaign} is stopped (errcode ${e.stop?.errcode}: ${e.stop?.errmsg}); fix the cause and run \`wxacode retry ${o.campaign}\` first`,
      );
    }
    const { resumed } = opened;
    const lifecycle = new CampaignLifecycle(store, o.storage);
    const release = lifecycle.holdOpen(o.campaign, lease);
    const queue = openQueue(o.connection ?? o.redis, o.prefix, o.appid);
    let enqueued = 0;
    let duplicates = 0;
    try {
      const chunkSize = o.chunkSize ?? 1000;
      let chunk: string[] = [];
      const flush = async () => {
        const flags = await store.addRows(o.campaign, chunk, lease);
        // A resumed enqueue re-queues rows an interrupted one recorded: their deterministic job ids make this
        // a no-op for those that did reach the queue.
        const toQueue = chunk.filter((_, i) => flags[i] === 1 || (resumed && flags[i] === 0));
        const fresh = flags.filter((f) => f === 1).length;
        enqueued += fresh;
        duplicates += chunk.length - fresh;
        if (toQueue.length > 0) await queue.addBulk(jobsFor(o.campaign, toQueue));
        chunk = [];
      };
      for await (const item of items(input, o)) {
        if ('problem' in item || rowProblem(o.options.kind, item.value) !== undefined) continue;
        chunk.push(item.value);
        if (chunk.length >= chunkSize) await flush();
      }
      if (chunk.length > 0) await flush();
    } finally {
      // A producer that fails keeps its lease until it runs out, and the campaign enqueuing with it: an enqueue
      // run again meanwhile queues again the rows this one recorded but may not have queued.
      release();
      await queue.close();
    }

    await lifecycle.finishEnqueue(o.campaign, lease.id);
    const meta = (await store.get(o.campaign))!;
    return { campaign: o.campaign, enqueued, duplicates, invalid, total: meta.total, state: meta.state };
  } finally {
    await spooled?.cleanup();
  }
}
