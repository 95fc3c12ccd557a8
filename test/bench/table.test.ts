/** The benchmark table shows the measured baselines, not assumed ones, and names each CPU figure's process. */
import { describe, expect, it } from 'vitest';
import type { EnqueueResult } from '../../scripts/bench/enqueue.js';
import type { HeadroomResult } from '../../scripts/bench/headroom.js';
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

const enqueue: EnqueueResult = {
  rows: 1000,
  enqueuePerSecond: 100,
  addBulkPerSecond: 100,
  ofAddBulk: 1,
  peakRssMb: { enqueue: 100, addBulk: 100 },
  bytesPerScene: 400,
  addBulkBytesPerJob: 300,
  breakdown: { jobHash: 300, rowsHash: 70, orderList: 20, waitList: 10, keyspace: 0 },
  jobHashAsListpack: { hashMaxListpackValue: 256, bytes: 300 },
};

const row = (figure: string) => {
  const found = benchTable({ cap: [], headroom, enqueue, tokens }).find((r) => r.figure.startsWith(figure));
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
});
