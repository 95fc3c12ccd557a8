/** The benchmark table shows the measured baselines, not assumed ones, and names each CPU figure's process. */
import { describe, expect, it } from 'vitest';
import type { EnqueueResult, RecordedEnqueue } from '../../scripts/bench/enqueue.js';
import type { HeadroomResult } from '../../scripts/bench/headroom.js';
import type { ManifestFigures } from '../../scripts/bench/manifest.js';
import type { ManifestChildResult } from '../../scripts/bench/manifest-child.js';
import type { MemoryResult, MemoryRun } from '../../scripts/bench/memory.js';
import { benchTable } from '../../scripts/bench/table.js';
import type { TokenFleetResult, TokensResult } from '../../scripts/bench/tokens.js';

const fleet = (calls: number, knockedOut: number): TokenFleetResult => ({
  calls: { empty: calls, expired: calls + 1, classic: calls },
  expired42001: 8,
  classicKnockedOut: knockedOut,
});

const tokens: TokensResult = {
  processes: 8,
  concurrency: 8,
  codes: 200,
  emptyCache: 1,
  rejectedToken: 1,
  rejected42001: 64,
  unshared: fleet(7, 6),
  shared: fleet(1, 0),
};

const headroom: HeadroomResult = {
  codes: 3000,
  concurrency: 32,
  pipelinePerSecond: 200,
  rawPutPerSecond: 500,
  noopJobsPerSecond: 10_000,
  ofRawPut: 0.4,
  cpuMsPerCode: { worker: 3.5, mock: 2.3, redis: 0.6, s3rver: 2.1, bench: 0.25 },
  baselineCpuMs: { putClient: 1.2, s3rver: 2.2, noopWorker: 0.1 },
  appsPerWorkerCore: 3.4,
};

const recorded = (rows: number, chunkListBytes: number): RecordedEnqueue => ({
  rows,
  recorded: rows,
  duplicates: 0,
  rowsPerSecond: 100_000,
  peakRssMb: 150,
  cpuMs: 1000,
  redisBytes: 2000,
  chunkListBytes,
  chunks: rows / 10_000,
});

const enqueue: EnqueueResult = {
  rows: 1_000_000,
  producerRows: 10_000_000,
  enqueue: recorded(1_000_000, 2048),
  producer: recorded(10_000_000, 20_480),
  addBulk: { rowsPerSecond: 25_000, peakRssMb: 190, bytesPerJob: 300 },
  ofAddBulk: 4,
};

const run = (rows: number, worked: number, peakBytes: number): MemoryRun => ({
  rows,
  worked,
  recordedBytes: 1000,
  peakBytes,
  peakBytesBy: {},
  bytesPerRow: peakBytes / rows,
  codesPerSecond: 200,
  breakdown: {
    window: 400_000,
    jobs: 3_000_000,
    jobCount: 5000,
    queue: 1_000_000,
    campaign: 1200,
    other: 10_000,
  },
});

const memory: MemoryResult = {
  sizes: [10_000, 100_000, 1_000_000],
  worked: [10_000, 10_000, 50_000],
  window: 5000,
  workers: 2,
  concurrency: 16,
  runs: [
    run(10_000, 10_000, 5 * 1024 * 1024),
    run(100_000, 10_000, 6 * 1024 * 1024),
    run(1_000_000, 50_000, 6 * 1024 * 1024),
  ],
  slopeBytesPerRow: 0.001,
  completed: {
    rows: 10_000,
    keys: { 'campaign:memory': 1024, 'campaign:memory:chunks': 200 },
    campaignBytes: 1224,
    chunkListBytes: 200,
    usedMemoryBytes: 2 * 1024 * 1024,
  },
};

const child = (mode: 'stream' | 'join', rows: number, rssGrowthMb: number): ManifestChildResult => ({
  mode,
  rows,
  bytes: rows * 200,
  ms: 100_000,
  baselineRssMb: 120,
  rssGrowthMb,
  peakGrowthMb: rssGrowthMb,
  heapGrowthMb: rssGrowthMb,
});

const manifest: ManifestFigures = {
  target: { rows: 10_000_000, growthMb: 64 },
  stream: child('stream', 10_000_000, 30),
  join: child('join', 1_000_000, 560),
};

const row = (figure: string) => {
  const found = benchTable({ cap: [], headroom, enqueue, memory, tokens, manifest }).find((r) =>
    r.figure.startsWith(figure),
  );
  if (!found) throw new Error(`no row ${figure}`);
  return found;
};

describe('benchTable', () => {
  it('takes the token baselines from the unshared fleet, beside the shared one', () => {
    expect(row('token calls, 8 workers start, nothing cached').baseline).toMatch(/^7\b.*one cache: 1\)$/);
    expect(row('token calls, 8 workers start, token expired').baseline).toMatch(/^8\b.*one cache: 2\)$/);
    expect(row('classic tokens knocked out').baseline).toMatch(/^6 of 8 after 7 calls/);
    expect(row('classic tokens knocked out').measured).toMatch(/^0 of 8 after 1 call,/);
  });

  it('gives s3rver its own CPU and the bench process apart', () => {
    expect(row('other CPU per code').measured).toBe(
      'mock 2.30, s3rver 2.10, redis 0.60 ms; bench polling 0.25 ms',
    );
  });

  it('shows Redis while worked for each campaign size, beside a job per row', () => {
    const largest = row('Redis while queued and worked, 1 M rows (50 k worked, window 5000)');
    expect(largest.measured).toMatch(/^\+6\.0 MB = 6\.3 B\/row: window 390\.6 KB, 5000 jobs 2\.9 MB/);
    expect(largest.baseline).toBe('a job per row: 286.1 MB');
    expect(row('Redis while queued and worked, 10 k rows (all worked').measured).toMatch(/^\+5\.0 MB/);
    expect(row('Redis growth per row added, 100 k → 1 M rows').measured).toBe('0.001 B/row');
  });

  it('counts what a completed campaign keeps at the producer size: its hash and that chunk list', () => {
    expect(row('Redis kept per completed campaign, 10 k rows').measured).toMatch(
      /^1\.2 KB \(hash 1\.0 KB\);.* 21\.0 KB kept at 10 M;/,
    );
  });
});
