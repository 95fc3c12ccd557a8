/** The benchmark's summary: one row per figure, beside its target and its baseline. */
import type { CapResult } from './cap.js';
import type { EnqueueResult } from './enqueue.js';
import type { HeadroomResult } from './headroom.js';
import type { TokensResult } from './tokens.js';

export interface TableRow {
  figure: string;
  target: string;
  baseline: string;
  measured: string;
}

const f = (value: number, digits = 0) => value.toFixed(digits);

function capRow(r: CapResult): TableRow {
  const steady = r.steady
    ? `${f(r.steady.meanOfCap, 3)} (min ${f(r.steady.minOfCap, 3)})`
    : 'run shorter than 2 windows';
  return {
    figure: `cap use ${r.rate}, ${r.workers} worker${r.workers === 1 ? '' : 's'} × ${r.concurrency}`,
    target: `≥ 0.98 of cap, max ≤ ${r.cap}, 0 × 45009`,
    baseline: `limiter ceiling ${f(r.ceilingOfCap, 3)}`,
    measured: `${steady}, max ${r.maxInWindow}, ${r.rateLimited} × 45009`,
  };
}

export function benchTable(r: {
  cap: CapResult[];
  headroom: HeadroomResult;
  enqueue: EnqueueResult;
  tokens: TokensResult;
}): TableRow[] {
  const { headroom: h, enqueue: e, tokens: t } = r;
  const b = e.breakdown;
  const alone = `measured with ${t.processes} processes, a cache each`;
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
      figure: `enqueue rows/s, ${e.rows} rows CSV`,
      target: '≥ 0.7 × addBulk',
      baseline: `addBulk ${f(e.addBulkPerSecond)}/s`,
      measured: `${f(e.enqueuePerSecond)}/s = ${f(e.ofAddBulk, 2)} × addBulk`,
    },
    {
      figure: 'producer peak RSS',
      target: '≤ 200 MB',
      baseline: `addBulk child ${f(e.peakRssMb.addBulk)} MB`,
      measured: `${f(e.peakRssMb.enqueue)} MB`,
    },
    {
      figure: 'Redis bytes per queued scene',
      target: '≤ 600 B',
      baseline: `addBulk ${f(e.addBulkBytesPerJob)} B/job`,
      measured:
        `${f(e.bytesPerScene)} B: job ${f(b.jobHash)}, rows ${f(b.rowsHash)}, order ${f(b.orderList)}, ` +
        `wait ${f(b.waitList)}, keys ${f(b.keyspace)}`,
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
