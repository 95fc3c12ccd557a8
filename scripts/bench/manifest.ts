/**
 * Manifest composition at scale (issue 12): a completed campaign's manifest of 10 million rows, composed and
 * written to s3rver as the lifecycle writes it (a multipart upload of 8 MiB parts), in a child process that
 * reports how far its memory grew. Target: 64 MB. The baseline is the version before, the whole text in one
 * string, at a tenth of the rows (at 10 M rows that string is past what V8 allows, and the campaign got no
 * manifest at all).
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import type { ManifestChildResult, ManifestChildTask } from './manifest-child.js';
import { type Bench, startS3Process } from './services.js';

export interface ManifestFigures {
  target: { rows: number; growthMb: number };
  stream: ManifestChildResult;
  join: ManifestChildResult;
}

function runManifestChild(task: ManifestChildTask): Promise<ManifestChildResult> {
  const child = fork(path.join(import.meta.dirname, 'manifest-child.ts'), [JSON.stringify(task)], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve((message as { result: ManifestChildResult }).result));
    child.once('exit', (code) =>
      reject(new Error(`manifest child exited with code ${code} before reporting`)),
    );
  });
}

export async function manifestAtScale(
  _bench: Bench,
  quick: boolean,
  log: (line: string) => void,
): Promise<ManifestFigures> {
  const rows = quick ? 300_000 : 10_000_000;
  const s3 = await startS3Process();
  try {
    log(`manifest: composing ${rows} rows into s3rver, streamed`);
    const stream = await runManifestChild({ mode: 'stream', rows, s3Env: s3.env, bucket: s3.bucket });
    log(
      `manifest: ${(stream.bytes / 1024 / 1024).toFixed(0)} MB in ${(stream.ms / 1000).toFixed(1)} s, ` +
        `RSS +${stream.rssGrowthMb.toFixed(1)} MB (peak +${stream.peakGrowthMb.toFixed(1)} MB)`,
    );
    const joinRows = Math.round(rows / 10);
    log(`manifest: composing ${joinRows} rows in one string, as before`);
    const join = await runManifestChild({ mode: 'join', rows: joinRows, s3Env: s3.env, bucket: s3.bucket });
    log(`manifest: one string, RSS +${join.rssGrowthMb.toFixed(1)} MB for ${joinRows} rows`);
    return { target: { rows, growthMb: 64 }, stream, join };
  } finally {
    await s3.stop();
  }
}
