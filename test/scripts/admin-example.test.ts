/**
 * scripts/admin-example.ts runs as a user would run it (`tsx`, settings from the environment) while a worker
 * drains the queue: every product gets the URL of a stored code that decodes to its own scene.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { CodeWorker } from '../../src/campaign/worker.js';
import { loadConfig } from '../../src/config.js';
import { decodeImage } from '../helpers/qr.js';
import { useLocalStack } from '../helpers/stack.js';

const SCRIPT = path.resolve(import.meta.dirname, '../../scripts/admin-example.ts');
const APPID = 'wxadminexample0001';
const SECRET = 'admin-example-secret';

const stack = useLocalStack({ [APPID]: SECRET });

function runScript(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

it('enqueues from a paginated query, waits for the fleet, and reads every URL from the manifest', async () => {
  const env = stack.env();
  const worker = await CodeWorker.start({ config: loadConfig(env), concurrency: 8 });
  let result: Awaited<ReturnType<typeof runScript>>;
  try {
    // 230 products: three pages of the stand-in query.
    result = await runScript(['--campaign', 'products', '--products', '230', '--poll-ms', '100'], env);
  } finally {
    await worker.close();
  }
  expect(result.stderr).toContain('campaign products: 230 rows queued, 230 in all');
  expect(result.code).toBe(0);

  const rows = result.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { id: number; url: string });
  expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 230 }, (_, i) => 1001 + i));
  for (const row of [rows[0]!, rows[100]!, rows[229]!]) {
    const image = await readFile(fileURLToPath(row.url));
    // The script's default page; B codes of the release version.
    expect(decodeImage(image)).toBe(
      `wxacode|${APPID}|unlimited|page=pages/product/detail|scene=id=${row.id}|env=release`,
    );
  }
}, 60_000);
