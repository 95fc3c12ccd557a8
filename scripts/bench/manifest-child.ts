/**
 * Entry of the manifest benchmark's child (manifest.ts): composes a synthetic campaign's manifest and writes it to
 * S3 the way a completed campaign's is written, and reports how far its memory grew while doing it. Rows come from
 * a `ManifestSource` standing in for the campaign's record, so that the figure is the composition's alone.
 */
import { readFileSync } from 'node:fs';
import { type ManifestSource, manifestText } from '../../src/campaign/manifest.js';
import { BATCH_ROWS, CHUNK_ROWS, type RecordRow } from '../../src/campaign/record.js';
import { type CampaignMeta, PRIORITIES } from '../../src/campaign/store.js';
import { loadConfig } from '../../src/config.js';
import { createStorage, manifestKey, type Storage } from '../../src/storage/index.js';
import { codeOptions, MIN_WIDTH } from '../../src/wechat/params.js';

export interface ManifestChildTask {
  /** `stream`: what the lifecycle does; `join`: the whole text in one string, then one put (the version before). */
  mode: 'stream' | 'join';
  rows: number;
  s3Env: Record<string, string>;
  bucket: string;
}

export interface ManifestChildResult {
  mode: ManifestChildTask['mode'];
  rows: number;
  bytes: number;
  ms: number;
  /** RSS once warmed up, just before composing. */
  baselineRssMb: number;
  /** Highest RSS sampled every 20 ms while composing, less the baseline. */
  rssGrowthMb: number;
  /** VmHWM at the end (warm-up included), less the baseline: an upper bound on the growth. */
  peakGrowthMb: number;
  heapGrowthMb: number;
  error?: string;
}

const MB = 1024 * 1024;
const APPID = 'wxbenchmanifest001';

function vmHwmMb(): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

function metaOf(rows: number): CampaignMeta {
  const options = codeOptions({
    kind: 'unlimited',
    page: 'pages/item/detail',
    width: MIN_WIDTH,
    isHyaline: true,
  });
  return {
    id: `bench-manifest-${rows}`,
    appid: APPID,
    kind: 'unlimited',
    options,
    state: 'completed',
    total: rows,
    done: rows,
    failed: 0,
    createdAt: Date.now(),
    priority: PRIORITIES.normal,
    cursor: { chunk: Math.ceil(rows / CHUNK_ROWS), row: 0 },
    queued: 0,
  };
}

/** Rows as the record yields them, BATCH_ROWS at a time: one in a hundred failed, the rest done. */
function syntheticRows(count: number): ManifestSource {
  return async function* () {
    for (let start = 0; start < count; start += BATCH_ROWS) {
      const batch: RecordRow[] = [];
      for (let i = start; i < Math.min(count, start + BATCH_ROWS); i++) {
        batch.push({
          value: `sku=${i}&ch=bench`,
          row:
            i % 100 === 7
              ? { status: 'failed', errcode: 40169, errmsg: 'invalid scene' }
              : { status: 'done' },
        });
      }
      yield batch;
    }
  };
}

async function compose(storage: Storage, mode: ManifestChildTask['mode'], rows: number): Promise<number> {
  const meta = metaOf(rows);
  const key = manifestKey(APPID, meta.id, 'csv');
  let bytes = 0;
  async function* counted() {
    for await (const piece of manifestText(syntheticRows(rows), storage, meta, 'csv')) {
      bytes += Buffer.byteLength(piece);
      yield piece;
    }
  }
  if (mode === 'stream') {
    await storage.putStream(key, counted(), 'text/csv; charset=utf-8');
  } else {
    const parts: string[] = [];
    for await (const piece of counted()) parts.push(piece);
    await storage.put(key, Buffer.from(parts.join('')), 'text/csv; charset=utf-8');
  }
  return bytes;
}

const task = JSON.parse(process.argv[2]!) as ManifestChildTask;
const storage = createStorage(loadConfig({ ...task.s3Env, WXACODE_STORAGE: `s3://${task.bucket}/bench` }));
// Warm up: every module loaded and compiled, the SDK's client and sockets made, with a multipart upload.
await compose(storage, task.mode, 50_000);
globalThis.gc?.();
const baselineRss = process.memoryUsage.rss() / MB;
const baselineHeap = process.memoryUsage().heapUsed / MB;
let maxRss = baselineRss;
let maxHeap = baselineHeap;
const sampler = setInterval(() => {
  maxRss = Math.max(maxRss, process.memoryUsage.rss() / MB);
  maxHeap = Math.max(maxHeap, process.memoryUsage().heapUsed / MB);
}, 20);
const started = performance.now();
let bytes = 0;
let error: string | undefined;
try {
  bytes = await compose(storage, task.mode, task.rows);
} catch (err) {
  // The version before fails past ~2.4 M rows (a string longer than V8 allows): that is a result too.
  error = (err as Error).message;
}
const ms = performance.now() - started;
clearInterval(sampler);
maxRss = Math.max(maxRss, process.memoryUsage.rss() / MB);
await storage.close();
const result: ManifestChildResult = {
  mode: task.mode,
  rows: task.rows,
  bytes,
  ms,
  baselineRssMb: baselineRss,
  rssGrowthMb: maxRss - baselineRss,
  peakGrowthMb: vmHwmMb() - baselineRss,
  heapGrowthMb: maxHeap - baselineHeap,
  error,
};
process.send!({ result }, () => process.exit(0));
