/**
 * The manifest: one line per row of a campaign, in input order, with where its code is stored. `export` writes
 * it to a file or stdout; a completed campaign also gets it in storage next to its codes.
 */
import type { Storage } from '../storage/index.js';
import { objectKey } from '../storage/index.js';
import { rowField } from '../wechat/params.js';
import { type RecordRow, recordRows } from './record.js';
import type { CampaignMeta, CampaignStore } from './store.js';

export type ManifestFormat = 'csv' | 'jsonl';

export interface ManifestRow {
  value: string;
  status: 'done' | 'failed' | 'pending';
  key: string;
  url: string;
  errcode?: number;
  errmsg?: string;
}

const CSV_NEEDS_QUOTES = /[",\r\n]/;

/**
 * What a spreadsheet takes for the start of a formula. Scenes may start with `=`, `+`, `-` or `@`, and manifests
 * are opened in Excel: such a cell gets a leading `'` (OWASP's advice), shown as text and visible to whoever reads
 * the file as data. JSON lines keep the raw value.
 */
const CSV_FORMULA_START = /^[=+\-@\t\r]/;

function csvField(text: string): string {
  const formula = CSV_FORMULA_START.test(text);
  const cell = formula ? `'${text}` : text;
  return formula || CSV_NEEDS_QUOTES.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

export function manifestHeader(meta: CampaignMeta, format: ManifestFormat): string {
  return format === 'csv' ? `${rowField(meta.kind)},status,url,key,errcode,errmsg\n` : '';
}

export function formatManifestRow(meta: CampaignMeta, row: ManifestRow, format: ManifestFormat): string {
  if (format === 'csv') {
    const fields = [row.value, row.status, row.url, row.key, row.errcode?.toString() ?? '', row.errmsg ?? ''];
    return `${fields.map(csvField).join(',')}\n`;
  }
  const { value, ...rest } = row;
  return `${JSON.stringify({ [rowField(meta.kind)]: value, ...rest })}\n`;
}

/**
 * Where a manifest's rows come from, in batches: the campaign's record (record.ts), or anything that yields rows
 * the same way (the bench).
 */
export type ManifestSource = (meta: CampaignMeta) => AsyncIterable<RecordRow[]>;

export function recordSource(store: CampaignStore, storage: Storage): ManifestSource {
  return (meta) => recordRows(store, storage, meta);
}

/** The campaign's rows with their status; key and URL only where a code is stored. */
export async function* manifestRows(
  source: ManifestSource,
  storage: Storage,
  meta: CampaignMeta,
): AsyncGenerator<ManifestRow> {
  for await (const batch of source(meta)) {
    for (const { value, row } of batch) {
      if (row.status === 'done') {
        const key = objectKey({ appid: meta.appid, options: meta.options, value });
        yield { value, status: 'done', key, url: storage.url(key) };
      } else if (row.status === 'failed') {
        yield { value, status: 'failed', key: '', url: '', errcode: row.errcode, errmsg: row.errmsg };
      } else {
        yield { value, status: 'pending', key: '', url: '' };
      }
    }
  }
}

/**
 * The manifest as text in pieces of `rowsPerPiece` rows, the header first: what storage's `putStream` takes, so
 * that composing the manifest of millions of rows holds one piece, never the whole text.
 */
export async function* manifestText(
  source: ManifestSource,
  storage: Storage,
  meta: CampaignMeta,
  format: ManifestFormat,
  rowsPerPiece = 1000,
): AsyncGenerator<string> {
  let piece = manifestHeader(meta, format);
  let rows = 0;
  for await (const row of manifestRows(source, storage, meta)) {
    piece += formatManifestRow(meta, row, format);
    if (++rows % rowsPerPiece === 0) {
      yield piece;
      piece = '';
    }
  }
  if (piece !== '') yield piece;
}

/** Write the whole manifest as text, a row at a time. */
export async function writeManifestTo(
  source: ManifestSource,
  storage: Storage,
  meta: CampaignMeta,
  format: ManifestFormat,
  write: (text: string) => Promise<void> | void,
): Promise<number> {
  let count = 0;
  await write(manifestHeader(meta, format));
  for await (const row of manifestRows(source, storage, meta)) {
    await write(formatManifestRow(meta, row, format));
    count++;
  }
  return count;
}
