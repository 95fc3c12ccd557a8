/**
 * A campaign's record: its validated, de-duplicated rows in input order, as chunk files in storage next to its
 * codes, listed in order by the campaign's `chunks` list in Redis. Redis never holds the rows themselves: the
 * feeders (campaign/feeder.ts) read the record a window at a time, and the manifest and `export` read it whole,
 * a chunk at a time, with each row's status from the little Redis keeps (store.ts).
 */
import { recordKey, type Storage } from '../storage/index.js';
import {
  type CampaignMeta,
  type CampaignStore,
  type ChunkEntry,
  fed,
  type RowStatus,
  slotOf,
} from './store.js';

/**
 * Rows per chunk, at most; a chunk also ends at CHUNK_BYTES, so that one of long paths stays small. The chunk list
 * a completed campaign keeps in Redis has a line per chunk (about 2 KB a million rows); larger chunks would shorten
 * it, and cost the producer more memory than it has to spare at ten million rows (bench: 167 MB at 10 000 rows a
 * chunk, 208 MB at 25 000).
 */
export const CHUNK_ROWS = 10_000;
export const CHUNK_BYTES = 1024 * 1024;

/** Rows handed on at a time when reading a record: short-lived, so that V8 collects them young. */
export const BATCH_ROWS = 1000;

export const CHUNK_CONTENT_TYPE = 'application/x-ndjson';

/** One JSON string per line: values are free text (paths), and JSON keeps any of them on one line. */
export function encodeChunk(values: readonly string[]): Buffer {
  return Buffer.from(values.map((value) => `${JSON.stringify(value)}\n`).join(''));
}

export function decodeChunk(body: Buffer): string[] {
  return body
    .toString('utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as string);
}

/** The record lost a chunk: storage no longer has it (deleted by hand, a lifecycle rule). */
export class MissingChunkError extends Error {
  override readonly name = 'MissingChunkError';
  constructor(
    readonly campaign: string,
    readonly key: string,
  ) {
    super(`the record of campaign ${campaign} lost its chunk ${key}: storage no longer has it`);
  }
}

export async function readChunk(
  storage: Storage,
  meta: Pick<CampaignMeta, 'id' | 'appid'>,
  chunk: ChunkEntry,
) {
  const key = recordKey(meta.appid, meta.id, chunk.name);
  const body = await storage.get(key);
  if (!body) throw new MissingChunkError(meta.id, key);
  return decodeChunk(body);
}

export interface RecordRow {
  value: string;
  row: RowStatus;
}

/**
 * The campaign's rows in input order with their status, BATCH_ROWS at a time: memory holds one chunk whatever the
 * size of the campaign.
 */
export async function* recordRows(
  store: CampaignStore,
  storage: Storage,
  meta: CampaignMeta,
): AsyncGenerator<RecordRow[]> {
  const chunks = await store.chunks(meta.id);
  const cursor = (await store.get(meta.id))?.cursor ?? meta.cursor;
  for (const [index, chunk] of chunks.entries()) {
    const values = await readChunk(storage, meta, chunk);
    for (let start = 0; start < values.length; start += BATCH_ROWS) {
      const batch = values.slice(start, start + BATCH_ROWS);
      const slots = batch
        .map((_, i) => ({ chunk: index, row: start + i }))
        .filter((at) => fed(at, cursor))
        .map(slotOf);
      const statuses = await store.fedStatuses(meta.id, slots);
      yield batch.map((value, i) => ({ value, row: statuses[i] ?? { status: 'pending' } }));
    }
  }
}

/** The storage keys of the record's chunk files. */
export async function recordKeys(store: CampaignStore, meta: Pick<CampaignMeta, 'id' | 'appid'>) {
  return (await store.chunks(meta.id)).map((chunk) => recordKey(meta.appid, meta.id, chunk.name));
}
