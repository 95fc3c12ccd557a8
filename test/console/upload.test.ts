/**
 * A 200 000-row upload to `wxacode serve` running as its own process, as in production: the body is spooled to
 * a file and enqueued in a stream, so the server's memory grows by far less than the upload's size. The figure
 * is printed and written to test/artifacts/upload-memory.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CampaignStore } from '../../src/campaign/store.js';
import { type RunningCli, startCli } from '../../test-support/cli.js';
import { wxacodeEnv } from '../../test-support/env.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';
import { ADMIN_TOKEN, APPID, SECRET } from './helpers.js';

const ROWS = 200_000;
const HEAP_MB = 96;
/** A wide second column, so that holding the upload in memory would show: about 80 MB in all. */
const PADDING = 'x'.repeat(400);
const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts');

let s3: TestS3;
let redis: Redis;
let serve: RunningCli;
let url: string;
const prefix = testPrefix();

function rssKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]);
}

function csvBody(rows: number): { stream: ReadableStream<Uint8Array>; bytes: () => number } {
  const encoder = new TextEncoder();
  let i = 0;
  let bytes = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i === 0) controller.enqueue(encoder.encode('scene,note\n'));
      // 1000 rows a chunk: the client holds one chunk at a time.
      const lines: string[] = [];
      for (let n = 0; n < 1000 && i < rows; n++, i++) lines.push(`u${i},${PADDING}\n`);
      const chunk = encoder.encode(lines.join(''));
      bytes += chunk.length;
      controller.enqueue(chunk);
      if (i >= rows) controller.close();
    },
  });
  return { stream, bytes: () => bytes };
}

async function upload(campaign: string, rows: number) {
  const body = csvBody(rows);
  const res = await fetch(`${url}/v1/campaigns?campaign=${campaign}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'text/csv' },
    body: body.stream,
    duplex: 'half',
  } as RequestInit);
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, bytes: body.bytes() };
}

beforeAll(async () => {
  s3 = await startS3();
  redis = connect();
  serve = startCli(['serve', '--port', '0'], {
    env: {
      ...wxacodeEnv({
        redisUrl: testRedisUrl(),
        prefix,
        apps: { [APPID]: SECRET },
        wechatUrl: 'http://127.0.0.1:9',
        rate: '100/1s',
        storage: `s3://${s3.bucket}/upload`,
      }),
      ...s3.env,
      WXACODE_API_TOKENS: `admin-bot:admin:${ADMIN_TOKEN}`,
      // V8 grows its heap lazily up to this cap whatever is live: capped near what production needs, RSS growth
      // shows what the server holds, not garbage not yet collected. A buffered upload would still show in full
      // (as a Buffer, outside the heap), and its text would not fit.
      // Both generations capped, so RSS shows what is held rather than how lazily V8 collects: Node 24's young
      // generation alone grew RSS by 80 MB during this upload with nothing held.
      NODE_OPTIONS: `--max-old-space-size=${HEAP_MB} --max-semi-space-size=1`,
    },
  });
  url = await waitFor(
    'the console to listen',
    () => /console on (http:\/\/\S+?)\/ /.exec(serve.output.stderr)?.[1],
    {
      timeoutMs: 20_000,
    },
  );
});

afterAll(async () => {
  serve?.child.kill('SIGTERM');
  const exit = await serve?.done;
  await s3?.stop();
  await deletePrefix(redis, prefix);
  redis.disconnect();
  expect(exit?.code).toBe(0);
});

it(
  'takes a 200 000-row upload with the server memory growing by far less than the upload',
  { timeout: 180_000 },
  async () => {
    const pid = serve.child.pid!;
    // Warm up (code loaded, JIT, pools), then measure from there.
    expect((await upload('warm-up', 2000)).status).toBe(201);
    const baseline = rssKb(pid, 'VmRSS');
    let peak = baseline;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssKb(pid, 'VmRSS'));
      } catch {}
    }, 20);
    const started = Date.now();
    let result: Awaited<ReturnType<typeof upload>>;
    try {
      result = await upload('big-upload', ROWS);
    } finally {
      clearInterval(sampler);
    }
    const seconds = (Date.now() - started) / 1000;
    expect(result.status, JSON.stringify(result.body)).toBe(201);
    expect(result.body).toMatchObject({ enqueued: ROWS, total: ROWS, invalid: 0 });
    const store = new CampaignStore(redis, prefix);
    expect((await store.get('big-upload'))?.total).toBe(ROWS);
    // Every row is in the campaign's record, for the workers' feeders to queue.
    const chunks = await store.chunks('big-upload');
    expect(chunks.reduce((rows, chunk) => rows + chunk.rows, 0)).toBe(ROWS);

    const growthMb = (peak - baseline) / 1024;
    const uploadMb = result.bytes / 1024 / 1024;
    const figure = {
      rows: ROWS,
      maxOldSpaceMb: HEAP_MB,
      uploadMb: Math.round(uploadMb * 10) / 10,
      baselineRssMb: Math.round(baseline / 102.4) / 10,
      peakRssMb: Math.round(peak / 102.4) / 10,
      growthMb: Math.round(growthMb * 10) / 10,
      seconds: Math.round(seconds * 10) / 10,
    };
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(path.join(ARTIFACTS, 'upload-memory.json'), `${JSON.stringify(figure, null, 2)}\n`);
    console.log(`200 000-row upload: ${JSON.stringify(figure)}`);
    // Holding the body (a Buffer of it, then its text) would cost at least its size; streaming costs chunks.
    expect(growthMb).toBeLessThan(uploadMb * 0.75);
  },
);
