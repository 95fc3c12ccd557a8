/** The benchmark's summary: one row per figure, beside its target and its baseline. */
import type { CapResult } from './cap.js';
import type { EnqueueResult } from './enqueue.js';
import type { HeadroomResult } from './headroom.js';
import type { ManifestFigures } from './manifest.js';
import type { MemoryResult, MemoryRun } from './memory.js';
import type { TokensResult } from './tokens.js';

export interface TableRow {
  figure: string;
  target: string;
  baseline: string;
  measured: string;
}

const f = (value: number, digits = 0) => value.toFixed(digits);
const MB = 1024 * 1024;
const kb = (bytes: number) => `${f(bytes / 1024, 1)} KB`;
/** In MB, or in KB under one. */
const size = (bytes: number) => (Math.abs(bytes) < MB ? kb(bytes) : `${f(bytes / MB, 1)} MB`);
/** 1000000 → "1 M", 20000 → "20 k". */
const count = (n: number) =>
  n >= 1_000_000 && n % 100_000 === 0
    ? `${n / 1_000_000} M`
    : n >= 1000 && n % 100 === 0
      ? `${n / 1000} k`
      : String(n);

function capRow(r: CapResult): TableRow {
  const steady = r.steady
    ? `${f(r.steady.meanOfCap, 3)} (min ${f(r.steady.minOfCap, 3)})`
    : 'run shorter than 2 windows';
  return {
    figure: `cap use ${r.rate}, ${r.workers} worker${r.workers === 1 ? '' : 's'} × ${r.concurrency}, fed ${r.window} at a time`,
    target: `≥ 0.98 of cap, max ≤ ${r.cap}, 0 × 45009`,
    baseline: `limiter ceiling ${f(r.ceilingOfCap, 3)}`,
    measured: `${steady}, max ${r.maxInWindow}, ${r.rateLimited} × 45009`,
  };
}

/**
 * What Redis kept of every row forever before windows (its rows hash and order list), from this bench's enqueue
 * section of 2026-11-25 (72 + 21 B): that version is gone, so it cannot be measured again beside the new one.
 */
const KEPT_PER_ROW_BEFORE = 93;

function memoryRow(m: MemoryResult, run: MemoryRun, e: EnqueueResult, largest: number): TableRow {
  const b = run.breakdown;
  return {
    figure:
      `Redis while queued and worked, ${count(run.rows)} rows` +
      ` (${run.worked >= run.rows ? 'all' : count(m.worked[m.runs.indexOf(run)]!)} worked, window ${m.window})`,
    target: `flat; ≤ 64 MB at ${count(largest)}`,
    baseline: `a job per row: ${size(e.addBulk.bytesPerJob * run.rows)}`,
    measured:
      `+${size(run.peakBytes)} = ${f(run.bytesPerRow, 1)} B/row: window ${size(b.window)}, ` +
      `${b.jobCount} jobs ${size(b.jobs)}, queue ${size(b.queue)}`,
  };
}

export function benchTable(r: {
  cap: CapResult[];
  headroom: HeadroomResult;
  enqueue: EnqueueResult;
  memory: MemoryResult;
  tokens: TokensResult;
  manifest: ManifestFigures;
}): TableRow[] {
  const { headroom: h, enqueue: e, memory: m, tokens: t, manifest: mf } = r;
  const alone = `measured with ${t.processes} processes, a cache each`;
  const largest = m.runs.at(-1)!.rows;
  const kept = m.completed;
  const hash = kept.campaignBytes - kept.chunkListBytes;
  return [
    ...r.cap.map(capRow),
    {
      figure: `codes/s end to end, 1 worker × ${h.concurrency}, no cap`,
      target: '≥ 0.8 × raw S3',
      baseline: `raw PutObject ${f(h.rawPutPerSecond)}/s, BullMQ no-op ${f(h.noopJobsPerSecond)}/s`,
      measured: `${f(h.pipelinePerSecond)}/s = ${f(h.ofRawPut, 2)} × raw S3`,
    },
    {
      figure: 'worker CPU per code',
      target: 'reported',
      baseline: `no-op BullMQ worker ${f(h.baselineCpuMs.noopWorker, 2)} ms/job`,
      measured: `${f(h.cpuMsPerCode.worker, 2)} ms: ${f(h.appsPerWorkerCore, 1)} apps at 5000/min per core`,
    },
    {
      figure: 'other CPU per code',
      target: 'reported',
      baseline: `raw put: client ${f(h.baselineCpuMs.putClient, 2)} ms, s3rver ${f(h.baselineCpuMs.s3rver, 2)} ms`,
      measured:
        `mock ${f(h.cpuMsPerCode.mock, 2)}, s3rver ${f(h.cpuMsPerCode.s3rver, 2)}, ` +
        `redis ${f(h.cpuMsPerCode.redis, 2)} ms; bench polling ${f(h.cpuMsPerCode.bench, 2)} ms`,
    },
    {
      figure: `enqueue rows/s, ${count(e.rows)} rows CSV into a record`,
      target: '≥ 22000/s (a job per row before windows: 22177/s)',
      baseline: `addBulk of a job per row ${f(e.addBulk.rowsPerSecond)}/s`,
      measured: `${f(e.enqueue.rowsPerSecond)}/s = ${f(e.ofAddBulk, 2)} × addBulk`,
    },
    {
      figure: `producer peak RSS, ${count(e.producerRows)} rows TXT, 1% repeats`,
      target: '≤ 200 MB',
      baseline: `addBulk child ${f(e.addBulk.peakRssMb)} MB at ${count(e.rows)}`,
      measured:
        `${f(e.producer.peakRssMb)} MB (${count(e.rows)}: ${f(e.enqueue.peakRssMb)} MB), ` +
        `${f(e.producer.rowsPerSecond)} rows/s, ${e.producer.duplicates} repeats`,
    },
    ...m.runs.map((run) => memoryRow(m, run, e, largest)),
    {
      figure: `Redis growth per row added, ${count(m.runs.at(-2)?.rows ?? largest)} → ${count(largest)} rows`,
      target: '≈ 0',
      baseline: `a job per row: ${f(e.addBulk.bytesPerJob)} B/row`,
      measured: `${f(m.slopeBytesPerRow, 3)} B/row`,
    },
    {
      figure: `Redis kept per completed campaign, ${count(kept.rows)} rows`,
      target: '≤ 16 KB',
      baseline: `before windows ${KEPT_PER_ROW_BEFORE} B/row, forever: ${size(KEPT_PER_ROW_BEFORE * kept.rows)}`,
      measured:
        `${kb(kept.campaignBytes)} (hash ${kb(hash)}); chunk list at ${count(e.rows)} rows ` +
        `${kb(e.enqueue.chunkListBytes)}, at ${count(e.producerRows)} ${kb(e.producer.chunkListBytes)}: ` +
        `${kb(hash + e.producer.chunkListBytes)} kept at ${count(e.producerRows)}; ` +
        `the app's own keys ${size(kept.usedMemoryBytes - kept.campaignBytes)} (used_memory)`,
    },
    {
      figure: `token calls, ${t.processes} workers start, nothing cached`,
      target: '1',
      baseline: `${t.unshared.calls.empty} ${alone} (one cache: ${t.shared.calls.empty})`,
      measured: String(t.emptyCache),
    },
    {
      figure: `token calls, ${t.processes} workers start, token expired at WeChat`,
      target: '1',
      baseline: `${t.unshared.calls.expired} ${alone} (one cache: ${t.shared.calls.expired})`,
      measured: `${t.rejectedToken} (${t.rejected42001} calls answered 42001)`,
    },
    {
      figure: `classic tokens knocked out, ${t.processes} processes fetch at once`,
      target: '0',
      baseline:
        `${t.unshared.classicKnockedOut} of ${t.processes} after ${t.unshared.calls.classic} calls, ` +
        'a cache each',
      measured: `${t.shared.classicKnockedOut} of ${t.processes} after ${t.shared.calls.classic} call${t.shared.calls.classic === 1 ? '' : 's'}, one cache`,
    },
    {
      figure: `manifest of ${count(mf.stream.rows)} rows into S3, memory growth`,
      target: `≤ ${mf.target.growthMb} MB`,
      baseline: `one string: +${f(mf.join.rssGrowthMb)} MB RSS at ${count(mf.join.rows)} rows`,
      measured: `+${f(mf.stream.rssGrowthMb, 1)} MB RSS (${f(mf.stream.bytes / MB)} MB in ${f(mf.stream.ms / 1000)} s)`,
    },
  ];
}

export function printTable(rows: TableRow[]): void {
  const columns = ['figure', 'target', 'baseline', 'measured'] as const;
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ');
  process.stdout.write(
    `${[line([...columns]), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map((row) => line(columns.map((c) => row[c])))].join('\n')}\n`,
  );
}
