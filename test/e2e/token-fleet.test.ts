/**
 * README: "The access token is cached in Redis, fetched by one process at a time." Several `wxacode worker`
 * processes, each with its own TokenProvider, on one Redis and the mock WeChat API, which counts token calls.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { codeOptions } from '../../src/wechat/params.js';
import { CHAOS_APPID, ChaosRig, settled, WorkerFleet } from '../helpers/chaos.js';

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: { count: 100, durationMs: 1000 } });
});

afterAll(async () => {
  await rig?.close();
});

/** A counter of each worker's /metrics (each serves on `--metrics-port 0`), by its "metrics server listening" log. */
async function perWorker(output: string, name: string): Promise<number[]> {
  const urls = output
    .split('\n')
    .filter((line) => line.includes('"msg":"metrics server listening"'))
    .map((line) => (JSON.parse(line) as { url: string }).url);
  return Promise.all(
    urls.map(async (url) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const sample = new RegExp(`^${name}\\{appid="${CHAOS_APPID}"[^}]*\\} (\\d+)$`, 'm');
      return Number(sample.exec(text)?.[1] ?? 0);
    }),
  );
}

it('fetches the access token once for several worker processes that each need it', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280, isHyaline: true });
  const values = Array.from({ length: 60 }, (_, i) => `token-${i}`);
  rig.mock.reset();
  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '4', '--metrics-port', '0']);
  await fleet.start(3);
  const { generated, fetched } = await fleet.during(async () => {
    // Every worker waits for jobs when the campaign appears, so each asks for a token for its first call.
    await rig.enqueue(prefix, 'tokens', options, values);
    expect(await settled(store, 'tokens', 90_000)).toMatchObject({ state: 'completed', done: 60 });
    return {
      generated: await perWorker(fleet.output, 'wxacode_codes_generated_total'),
      fetched: await perWorker(fleet.output, 'wxacode_token_fetches_total'),
    };
  });
  // Three processes each made calls with a token…
  expect(generated).toHaveLength(3);
  for (const count of generated) expect(count).toBeGreaterThan(0);
  // …and WeChat was asked for one once, by one of them.
  expect(rig.mock.stats(CHAOS_APPID).tokenCalls).toBe(1);
  expect(fetched.reduce((a, b) => a + b, 0)).toBe(1);
}, 120_000);
