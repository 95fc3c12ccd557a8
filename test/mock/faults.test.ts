import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockFaults, type MockServer, startMockServer } from '../../src/mock/server.js';
import { decodeImage } from '../helpers/qr.js';
import { type Answer, call, classicToken, classicTokenUrl, code, errorOf, stableToken } from './calls.js';

let server: MockServer;
let token: string;

beforeAll(async () => {
  server = await startMockServer({ rateLimit: null });
  token = await classicToken(server.url);
});

afterAll(async () => {
  await server.close();
});

function withFaults(faults: MockFaults): void {
  server.configure({ faults });
  server.reset();
}

const scene = () => code(server.url, 'unlimited', token, { scene: 'fault' });

/** What kind of answer a call got, the way a client must tell them apart: by status and body. */
async function outcome(request: Promise<Answer>): Promise<string> {
  try {
    const answer = await request;
    if (answer.status !== 200) return `http ${answer.status}`;
    if (answer.type.startsWith('application/json')) return `errcode ${errorOf(answer).errcode}`;
    return decodeImage(answer.body) === null ? 'broken image' : 'image';
  } catch {
    return 'dropped';
  }
}

describe('faults on the code endpoints', () => {
  it('busy: errcode -1 "system error" with HTTP 200', async () => {
    withFaults({ busy: 1 });
    const answer = await scene();
    expect(answer.status).toBe(200);
    expect(errorOf(answer)).toMatchObject({
      errcode: -1,
      errmsg: expect.stringMatching(/^system error rid: /),
    });
    expect(server.stats()).toMatchObject({
      codeCalls: 1,
      images: 0,
      errors: { '-1': 1 },
      faults: { busy: 1 },
    });
  });

  it('html502: an HTTP 502 text/html page', async () => {
    withFaults({ html502: 1 });
    const answer = await scene();
    expect(answer.status).toBe(502);
    expect(answer.type).toBe('text/html');
    expect(answer.body.toString()).toContain('502 Bad Gateway');
  });

  it('drop: the connection closes without an answer', async () => {
    withFaults({ drop: 1 });
    await expect(scene()).rejects.toThrow();
    expect(server.stats()).toMatchObject({ codeCalls: 1, faults: { drop: 1 } });
  });

  it('empty: HTTP 200, image/jpeg, no bytes', async () => {
    withFaults({ empty: 1 });
    const answer = await scene();
    expect(answer.status).toBe(200);
    expect(answer.type).toBe('image/jpeg');
    expect(answer.body).toHaveLength(0);
  });

  it('truncated: HTTP 200, image/jpeg, the first half of a real JPEG', async () => {
    withFaults({ truncated: 1 });
    const answer = await scene();
    expect(answer.type).toBe('image/jpeg');
    expect([...answer.body.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    expect([...answer.body.subarray(-2)]).not.toEqual([0xff, 0xd9]);
    expect(decodeImage(answer.body)).toBeNull();
  });

  it('slow: the normal answer, after slowMs', async () => {
    withFaults({ slow: 1, slowMs: 300 });
    const started = Date.now();
    const answer = await scene();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(decodeImage(answer.body)).toContain('scene=fault');
    expect(server.stats().faults).toEqual({ slow: 1 });
  });

  it('never touches the token endpoints', async () => {
    withFaults({ drop: 1, busy: 1, html502: 1 });
    expect((await call(classicTokenUrl(server.url))).status).toBe(200);
    expect(JSON.parse((await stableToken(server.url)).body.toString()).access_token).toEqual(
      expect.any(String),
    );
  });

  it('draws independently per call: the same seed repeats the same mix of outcomes', async () => {
    const run = async () => {
      withFaults({ busy: 0.3, html502: 0.2, empty: 0.2, seed: 42 });
      const outcomes: string[] = [];
      for (let i = 0; i < 30; i++) outcomes.push(await outcome(scene()));
      return outcomes;
    };
    const first = await run();
    expect(new Set(first)).toEqual(new Set(['image', 'errcode -1', 'http 502', 'broken image']));
    expect(await run()).toEqual(first);
    const stats = server.stats();
    expect(
      stats.images + (stats.faults.busy ?? 0) + (stats.faults.html502 ?? 0) + (stats.faults.empty ?? 0),
    ).toBe(30);
  });

  it('close() does not wait for a slow answer', async () => {
    const slow = await startMockServer({ faults: { slow: 1, slowMs: 600_000 } });
    const slowToken = await classicToken(slow.url);
    const pending = outcome(code(slow.url, 'unlimited', slowToken, { scene: 'never' }));
    while (slow.stats().faults.slow !== 1) await new Promise((resolve) => setTimeout(resolve, 10));
    await slow.close();
    expect(await pending).toBe('dropped');
  });
});
