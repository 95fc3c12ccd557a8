/**
 * The console's API over real HTTP, against the harness Redis, s3rver and the mock WeChat API: who may call what,
 * row validation with line numbers, idempotent creation, stop and resume, streamed export, resolving one code,
 * bull-board's read-only mode; every answer checked against the server's own OpenAPI document.
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordSource, writeManifestTo } from '../../src/campaign/manifest.js';
import { jobId, jobsFor, openQueue } from '../../src/campaign/queue.js';
import { readChunk } from '../../src/campaign/record.js';
import { CampaignStore, type SlotRow, slotOf } from '../../src/campaign/store.js';
import type { Config } from '../../src/config.js';
import { buildConsole, type StartedConsole, startConsole } from '../../src/console/server.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { createStorage, objectKey, type Storage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';
import {
  ADMIN_TOKEN,
  APPID,
  consoleConfig,
  consoleEnv,
  logSink,
  OpenApiChecker,
  READ_TOKEN,
  SECRET,
  TOKENS,
} from './helpers.js';

let s3: TestS3;
let mock: MockServer;
let redis: Redis;
let store: CampaignStore;
let storage: Storage;
let config: Config;
let server: StartedConsole;
let openapi: OpenApiChecker;
const prefix = testPrefix();
const logs = logSink();

interface Answer {
  status: number;
  type: string;
  body: unknown;
  text: string;
  headers: Headers;
}

async function call(
  method: string,
  path: string,
  o: { token?: string; body?: string | object; type?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  let body: string | undefined;
  if (typeof o.body === 'string') {
    body = o.body;
    headers['content-type'] = o.type ?? 'text/csv';
  } else if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(server.url + path, { method, headers, body });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return {
    status: res.status,
    type,
    text,
    headers: res.headers,
    body: type.startsWith('application/json') ? JSON.parse(text) : undefined,
  };
}

/** Call, and check the answer against the document under the route's template. */
async function checked(method: string, route: string, path: string, o: Parameters<typeof call>[2] = {}) {
  const answer = await call(method, path, o);
  openapi.check(method, route, answer.status, answer.body, answer.type);
  return answer;
}

function csv(rows: string[]): string {
  return `scene\n${rows.join('\n')}\n`;
}

/** The rows of a campaign's record, in input order, with their slots. */
async function recorded(id: string): Promise<SlotRow[]> {
  const meta = (await store.get(id))!;
  const rows: SlotRow[] = [];
  for (const [index, chunk] of (await store.chunks(id)).entries()) {
    const values = await readChunk(storage, meta, chunk);
    rows.push(...values.map((value, row) => ({ slot: slotOf({ chunk: index, row }), value })));
  }
  return rows;
}

/**
 * Queue every row of a campaign as the workers' feeders would (the console runs none): into its window, and
 * with `jobs`, into its app's queue. Answers each row's slot by value.
 */
async function feed(id: string, { jobs }: { jobs: boolean }): Promise<Map<string, string>> {
  const meta = (await store.get(id))!;
  const rows = await recorded(id);
  const end = { chunk: (await store.chunks(id)).length, row: 0 };
  expect(await store.feed(id, meta.cursor, end, rows)).toBe(true);
  if (jobs) {
    const queue = openQueue(redis, prefix, APPID);
    await queue.addBulk(jobsFor(id, meta.priority, rows));
    await queue.close();
  }
  return new Map(rows.map(({ slot, value }) => [value, slot]));
}

/** Which of these rows of a campaign have a job in its app's queue. */
async function withJobs(id: string, slots: Iterable<string>): Promise<string[]> {
  const queue = openQueue(redis, prefix, APPID);
  try {
    const found: string[] = [];
    for (const slot of slots) if (await queue.getJob(jobId(id, slot))) found.push(slot);
    return found;
  } finally {
    await queue.close();
  }
}

beforeAll(async () => {
  s3 = await startS3();
  mock = await startMockServer({ apps: { [APPID]: SECRET }, rateLimit: null });
  redis = connect();
  store = new CampaignStore(redis, prefix);
  config = consoleConfig(consoleEnv({ redisUrl: testRedisUrl(), prefix, mock, s3 }));
  storage = createStorage(config);
  server = await startConsole({
    config,
    tokens: TOKENS,
    logger: pino({ level: 'debug' }, logs.stream),
    sampleIntervalMs: 200,
  });
  const doc = await call('GET', '/v1/openapi.json', { token: READ_TOKEN });
  expect(doc.status).toBe(200);
  openapi = new OpenApiChecker(doc.body as ConstructorParameters<typeof OpenApiChecker>[0]);
});

afterAll(async () => {
  await server?.close();
  await storage?.close();
  await mock?.close();
  await s3?.stop();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('authentication', () => {
  it('answers 401 without or with a wrong token, 403 for a read token on admin routes, and lets each scope through', async () => {
    // A campaign for the routes that need one.
    expect(
      (
        await call('POST', '/v1/campaigns?campaign=auth-target', {
          token: ADMIN_TOKEN,
          body: csv(['a1', 'a2']),
        })
      ).status,
    ).toBe(201);

    const routes: [
      method: string,
      route: string,
      path: string,
      scope: 'read' | 'admin',
      body?: string | object,
    ][] = [
      ['GET', '/v1/campaigns', '/v1/campaigns', 'read'],
      ['GET', '/v1/campaigns/{id}', '/v1/campaigns/auth-target', 'read'],
      ['GET', '/v1/campaigns/{id}/failures', '/v1/campaigns/auth-target/failures', 'read'],
      ['GET', '/v1/campaigns/{id}/export', '/v1/campaigns/auth-target/export', 'read'],
      ['GET', '/v1/codes', `/v1/codes?appid=${APPID}&scene=a1`, 'read'],
      ['GET', '/v1/apps', '/v1/apps', 'read'],
      ['GET', '/v1/dashboard', '/v1/dashboard', 'read'],
      ['GET', '/v1/openapi.json', '/v1/openapi.json', 'read'],
      ['POST', '/v1/session', '/v1/session', 'read'],
      ['POST', '/v1/campaigns', '/v1/campaigns?campaign=auth-created', 'admin', csv(['b1'])],
      ['POST', '/v1/campaigns/{id}/retry', '/v1/campaigns/auth-target/retry', 'admin'],
      ['POST', '/v1/campaigns/{id}/stop', '/v1/campaigns/auth-target/stop', 'admin', {}],
      ['POST', '/v1/campaigns/{id}/resume', '/v1/campaigns/auth-target/resume', 'admin'],
    ];
    const seen: string[] = [];
    for (const [method, route, path, scope, body] of routes) {
      const none = await checked(method, route, path, { body });
      const wrong = await checked(method, route, path, { body, token: `${ADMIN_TOKEN}x` });
      const lowercaseScheme = await call(method, path, {
        body,
        headers: { authorization: `Basic ${ADMIN_TOKEN}` },
      });
      expect([none.status, wrong.status, lowercaseScheme.status], `${method} ${path}`).toEqual([
        401, 401, 401,
      ]);
      expect((none.body as { error: { code: string } }).error.code).toBe('unauthorized');

      const asRead = await checked(method, route, path, { body, token: READ_TOKEN });
      if (scope === 'admin') {
        expect(asRead.status, `${method} ${path} as read`).toBe(403);
        expect((asRead.body as { error: { code: string } }).error.code).toBe('forbidden');
      } else {
        expect(asRead.status, `${method} ${path} as read`).toBe(200);
      }
      const asAdmin = await checked(method, route, path, { body, token: ADMIN_TOKEN });
      expect(asAdmin.status, `${method} ${path} as admin: ${asAdmin.text}`).toBeLessThan(300);
      seen.push(`${method} ${route}`);
    }
    // Every route of the document is in the matrix, so a new route cannot skip authentication unnoticed.
    const documented = Object.entries(openapi.doc.paths).flatMap(([route, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${route}`),
    );
    expect(documented.filter((r) => r !== 'DELETE /v1/session').sort()).toEqual([...new Set(seen)].sort());

    // The queue pages: same tokens, read scope, and a cookie only for GETs.
    expect(
      (await call('GET', '/queues/api/queues', { headers: { accept: 'application/json' } })).status,
    ).toBe(401);
    expect((await call('GET', '/queues/api/queues', { token: 'nope-nope-nope-nope' })).status).toBe(401);
    expect((await call('GET', '/queues/api/queues', { token: READ_TOKEN })).status).toBe(200);
    const session = await call('POST', '/v1/session', { token: READ_TOKEN });
    const cookie = session.headers.get('set-cookie')!.split(';')[0]!;
    expect(session.headers.get('set-cookie')).toMatch(/HttpOnly/);
    expect(session.headers.get('set-cookie')).toMatch(/SameSite=Strict/);
    expect((await call('GET', '/queues/api/queues', { headers: { cookie } })).status).toBe(200);
    expect((await call('GET', '/v1/campaigns', { headers: { cookie } })).status).toBe(401);
    expect(
      (await call('GET', '/queues/api/queues', { headers: { cookie: 'wxacode_session=forged' } })).status,
    ).toBe(401);
  });

  it('refuses to build without tokens unless told so, and only on a loopback host', async () => {
    await expect(buildConsole({ config, tokens: [] })).rejects.toThrow(/no API token/);
    await expect(startConsole({ config, tokens: [], noAuth: true, host: '0.0.0.0' })).rejects.toThrow(
      /loopback/,
    );
  });
});

describe('creating a campaign', () => {
  it('lists each invalid row with its line number and why, and enqueues nothing', async () => {
    const body = 'scene\nok-1\nbad scene\nok-2\nthis-scene-is-far-too-long-for-wechat-0123\nok-3\n';
    const answer = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=invalid-rows', {
      token: ADMIN_TOKEN,
      body,
    });
    expect(answer.status).toBe(422);
    const error = (answer.body as { error: { code: string; details: { invalid: number; rows: unknown[] } } })
      .error;
    expect(error.code).toBe('invalid_rows');
    expect(error.details.invalid).toBe(2);
    expect(error.details.rows).toEqual([
      { line: 3, problem: expect.stringContaining('a space') },
      { line: 5, problem: expect.stringContaining('42 characters') },
    ]);
    expect(await store.get('invalid-rows')).toBeUndefined();

    const skipped = await checked(
      'POST',
      '/v1/campaigns',
      '/v1/campaigns?campaign=invalid-rows&skipInvalid=true',
      {
        token: ADMIN_TOKEN,
        body,
      },
    );
    expect(skipped.status).toBe(201);
    expect(skipped.body).toMatchObject({
      enqueued: 3,
      invalid: 2,
      total: 3,
      invalidRows: [{ line: 3 }, { line: 5 }],
    });
  });

  it('is idempotent under the same id and options, and names the difference otherwise', async () => {
    const body = csv(['i1', 'i2', 'i3', 'i2']);
    const first = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=idem&width=600', {
      token: ADMIN_TOKEN,
      body,
    });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ created: true, enqueued: 3, duplicates: 1, total: 3 });
    const again = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=idem&width=600', {
      token: ADMIN_TOKEN,
      body,
    });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, enqueued: 0, duplicates: 4, total: 3 });
    // The same options as JSON fields, rows in the body.
    const json = await checked('POST', '/v1/campaigns', '/v1/campaigns', {
      token: ADMIN_TOKEN,
      body: { campaign: 'idem', width: 600, rows: ['i4'] },
    });
    expect(json.status).toBe(200);
    expect(json.body).toMatchObject({ enqueued: 1, total: 4 });
    // Each row once, in the campaign's record, for the workers' feeders to queue.
    expect((await recorded('idem')).map(({ value }) => value)).toEqual(['i1', 'i2', 'i3', 'i4']);

    const conflict = await checked(
      'POST',
      '/v1/campaigns',
      '/v1/campaigns?campaign=idem&width=700&checkPath=false',
      {
        token: ADMIN_TOKEN,
        body,
      },
    );
    expect(conflict.status).toBe(409);
    expect((conflict.body as { error: unknown }).error).toMatchObject({
      code: 'campaign_conflict',
      details: {
        differences: [
          { option: 'checkPath', existing: true, requested: false },
          { option: 'width', existing: 600, requested: 700 },
        ],
      },
    });
    expect((await store.get('idem'))!.total).toBe(4);
  });

  it('takes a priority, as a query field or a JSON one, and refuses a level it does not know', async () => {
    const high = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=urgent&priority=high', {
      token: ADMIN_TOKEN,
      body: csv(['u1', 'u2']),
    });
    expect(high.status).toBe(201);
    const low = await checked('POST', '/v1/campaigns', '/v1/campaigns', {
      token: ADMIN_TOKEN,
      body: { campaign: 'whenever', priority: 'low', rows: ['w1'] },
    });
    expect(low.status).toBe(201);
    const usual = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=usual', {
      token: ADMIN_TOKEN,
      body: csv(['n1']),
    });
    expect(usual.status).toBe(201);
    // BullMQ's priority, 1 first, which every job of the campaign carries.
    expect((await store.get('urgent'))!.priority).toBe(1);
    expect((await store.get('whenever'))!.priority).toBe(3);
    expect((await store.get('usual'))!.priority).toBe(2);
    const queue = openQueue(redis, prefix, APPID);
    try {
      // The jobs a retry queues again carry it too.
      const slots = await feed('urgent', { jobs: false });
      const retried = await checked('POST', '/v1/campaigns/{id}/retry', '/v1/campaigns/urgent/retry', {
        token: ADMIN_TOKEN,
      });
      expect(retried.body).toMatchObject({ requeued: 2 });
      for (const slot of slots.values()) {
        expect((await queue.getJob(jobId('urgent', slot)))?.opts.priority).toBe(1);
      }
    } finally {
      await queue.close();
    }

    const bad = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=odd&priority=urgent', {
      token: ADMIN_TOKEN,
      body: csv(['o1']),
    });
    expect(bad.status).toBe(400);
    expect((bad.body as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('priority'),
    });
    expect(await store.get('odd')).toBeUndefined();
  });

  it('refuses bad options, an unknown format, and an upload over the limit', async () => {
    const bad = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=opts&width=99', {
      token: ADMIN_TOKEN,
      body: csv(['x']),
    });
    expect(bad.status).toBe(400);
    expect((bad.body as { error: { code: string } }).error.code).toBe('invalid_request');
    const page = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=opts&page=/pages/a', {
      token: ADMIN_TOKEN,
      body: csv(['x']),
    });
    expect(page.status).toBe(400);
    expect((page.body as { error: { message: string } }).error.message).toMatch(/starts with "\/"/);
    const column = await checked('POST', '/v1/campaigns', '/v1/campaigns?campaign=opts&column=nope', {
      token: ADMIN_TOKEN,
      body: csv(['x']),
    });
    expect(column.status).toBe(400);
    expect((column.body as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'bad_input',
    });
    expect(await store.get('opts')).toBeUndefined();

    const small = await startConsole({ config, tokens: TOKENS, uploadLimitBytes: 1024 });
    try {
      const res = await fetch(`${small.url}/v1/campaigns?campaign=too-big&format=txt`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/octet-stream' },
        // Chunked, so the size is only known as it arrives.
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 100; i++) controller.enqueue(new TextEncoder().encode(`row-${i}-padding\n`));
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      expect(res.status).toBe(413);
      const body = await res.json();
      openapi.check('POST', '/v1/campaigns', 413, body);
      expect(await store.get('too-big')).toBeUndefined();
    } finally {
      await small.close();
    }
  });
});

describe('operations', () => {
  it('stops a running campaign naming who stopped it; resume queues its rows again, failed ones only on retry', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => `s${i}`);
    expect(
      (await call('POST', '/v1/campaigns?campaign=stoppable', { token: ADMIN_TOKEN, body: csv(rows) }))
        .status,
    ).toBe(201);
    const slots = await feed('stoppable', { jobs: true });
    const failedSlots = [slots.get('s0')!, slots.get('s1')!];
    for (const slot of failedSlots) {
      await store.markRow('stoppable', slot, { status: 'failed', errcode: 40129, errmsg: 'invalid scene' });
    }
    const stopped = await checked('POST', '/v1/campaigns/{id}/stop', '/v1/campaigns/stoppable/stop', {
      token: ADMIN_TOKEN,
      body: { reason: 'wrong page' },
    });
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({
      state: 'stopped',
      stopped: { errcode: -2, errmsg: 'stopped by admin-bot: wrong page' },
    });
    const twice = await checked('POST', '/v1/campaigns/{id}/stop', '/v1/campaigns/stoppable/stop', {
      token: ADMIN_TOKEN,
    });
    expect(twice.status).toBe(409);
    // Drop the queued jobs, as workers do for a stopped campaign: resume must queue the rows again.
    const queue = openQueue(redis, prefix, APPID);
    await queue.drain();
    await queue.close();
    expect(await withJobs('stoppable', slots.values())).toEqual([]);

    const resumed = await checked('POST', '/v1/campaigns/{id}/resume', '/v1/campaigns/stoppable/resume', {
      token: ADMIN_TOKEN,
    });
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ state: 'active', pending: 48, failed: 2 });
    expect((resumed.body as { stopped?: unknown }).stopped).toBeUndefined();
    // Failed rows stay failed, without a job: queuing them again is what retry is for.
    const pendingSlots = [...slots.values()].filter((slot) => !failedSlots.includes(slot));
    expect(await withJobs('stoppable', slots.values())).toEqual(pendingSlots);
    const failures = await checked('GET', '/v1/campaigns/{id}/failures', '/v1/campaigns/stoppable/failures', {
      token: READ_TOKEN,
    });
    expect(failures.body).toMatchObject({ failed: 2, groups: [{ errcode: 40129, count: 2 }] });
    const notStopped = await checked('POST', '/v1/campaigns/{id}/resume', '/v1/campaigns/stoppable/resume', {
      token: ADMIN_TOKEN,
    });
    expect(notStopped.status).toBe(409);

    const retried = await checked('POST', '/v1/campaigns/{id}/retry', '/v1/campaigns/stoppable/retry', {
      token: ADMIN_TOKEN,
    });
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ campaign: 'stoppable', requeued: 50 });
    expect(await withJobs('stoppable', slots.values())).toEqual([...slots.values()]);
    const status = await checked('GET', '/v1/campaigns/{id}', '/v1/campaigns/stoppable', {
      token: READ_TOKEN,
    });
    expect(status.body).toMatchObject({ state: 'active', pending: 50, failed: 0 });

    const unknown = await checked('GET', '/v1/campaigns/{id}', '/v1/campaigns/no-such-campaign', {
      token: READ_TOKEN,
    });
    expect(unknown.status).toBe(404);
  });

  it('answers a campaign as `status --json` does, and groups its failures by errcode with advice', async () => {
    expect(
      (
        await call('POST', '/v1/campaigns?campaign=failing', {
          token: ADMIN_TOKEN,
          body: csv(['f1', 'f2', 'f3']),
        })
      ).status,
    ).toBe(201);
    const slots = await feed('failing', { jobs: false });
    await store.markRow('failing', slots.get('f1')!, {
      status: 'failed',
      errcode: 40129,
      errmsg: 'invalid scene',
    });
    await store.markRow('failing', slots.get('f2')!, {
      status: 'failed',
      errcode: 40129,
      errmsg: 'invalid scene',
    });
    await store.markRow('failing', slots.get('f3')!, { status: 'done' });
    const status = await checked('GET', '/v1/campaigns/{id}', '/v1/campaigns/failing', { token: READ_TOKEN });
    expect(status.body).toMatchObject({
      campaign: 'failing',
      appid: APPID,
      state: 'completed',
      total: 3,
      done: 1,
      failed: 2,
      pending: 0,
    });
    const failures = await checked('GET', '/v1/campaigns/{id}/failures', '/v1/campaigns/failing/failures', {
      token: READ_TOKEN,
    });
    expect(failures.body).toEqual({
      campaign: 'failing',
      failed: 2,
      groups: [
        { errcode: 40129, count: 2, errmsg: 'invalid scene', advice: expect.stringContaining('short ids') },
      ],
    });
    const list = await checked('GET', '/v1/campaigns', '/v1/campaigns', { token: READ_TOKEN });
    expect((list.body as { campaigns: { campaign: string }[] }).campaigns.map((c) => c.campaign)).toContain(
      'failing',
    );
    const dash = await checked('GET', '/v1/dashboard', '/v1/dashboard', { token: READ_TOKEN });
    expect((dash.body as { apps: { appid: string }[] }).apps.map((a) => a.appid)).toEqual([APPID]);
  });

  it('streams the export row by row, the same text as `wxacode export`', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => (i === 7 ? '=1+1' : `e${i}`));
    expect(
      (await call('POST', '/v1/campaigns?campaign=exported', { token: ADMIN_TOKEN, body: csv(rows) })).status,
    ).toBe(201);
    const slots = await feed('exported', { jobs: false });
    for (let i = 0; i < 5000; i += 3)
      await store.markRow('exported', slots.get(rows[i]!)!, { status: 'done' });
    await store.markRow('exported', slots.get(rows[1]!)!, {
      status: 'failed',
      errcode: 40169,
      errmsg: 'invalid scene length',
    });
    const meta = (await store.get('exported'))!;
    for (const format of ['csv', 'jsonl'] as const) {
      let expected = '';
      await writeManifestTo(recordSource(store, storage), storage, meta, format, (text) => {
        expected += text;
      });
      const res = await fetch(`${server.url}/v1/campaigns/exported/export?format=${format}`, {
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      });
      expect(res.status).toBe(200);
      openapi.check('GET', '/v1/campaigns/{id}/export', 200, undefined, res.headers.get('content-type')!);
      // Streamed: no length known up front, sent in chunks.
      expect(res.headers.get('content-length')).toBeNull();
      expect(res.headers.get('transfer-encoding')).toBe('chunked');
      let chunks = 0;
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        chunks++;
        text += decoder.decode(chunk, { stream: true });
      }
      expect(text).toBe(expected);
      expect(chunks).toBeGreaterThan(1);
    }
    const bad = await checked(
      'GET',
      '/v1/campaigns/{id}/export',
      '/v1/campaigns/exported/export?format=xml',
      {
        token: READ_TOKEN,
      },
    );
    expect(bad.status).toBe(400);
  });

  it('resolves one code to its key and URL, and says whether it is stored, without calling WeChat', async () => {
    const options = codeOptions({ kind: 'unlimited', page: 'pages/item/detail', width: 600 });
    const key = objectKey({ appid: APPID, options, value: 'sku=42' });
    await storage.put(key, Buffer.from('not really a jpeg'), 'image/jpeg');
    const before = mock.stats(APPID);
    const q = `appid=${APPID}&scene=${encodeURIComponent('sku=42')}&page=pages/item/detail&width=600`;
    const stored = await checked('GET', '/v1/codes', `/v1/codes?${q}`, { token: READ_TOKEN });
    expect(stored.body).toEqual({
      appid: APPID,
      kind: 'unlimited',
      value: 'sku=42',
      key,
      url: storage.url(key),
      stored: true,
    });
    const missing = await checked('GET', '/v1/codes', `/v1/codes?${q.replace('sku%3D42', 'sku%3D43')}`, {
      token: READ_TOKEN,
    });
    expect(missing.body).toMatchObject({ value: 'sku=43', stored: false });
    // Another width is another image, under another key.
    const other = await checked('GET', '/v1/codes', `/v1/codes?${q.replace('width=600', 'width=430')}`, {
      token: READ_TOKEN,
    });
    expect(other.body).toMatchObject({ stored: false });
    expect((other.body as { key: string }).key).not.toBe(key);
    const path = await checked('GET', '/v1/codes', `/v1/codes?appid=${APPID}&kind=qrcode&path=pages/a?id=1`, {
      token: READ_TOKEN,
    });
    expect(path.body).toMatchObject({ kind: 'qrcode', value: 'pages/a?id=1', stored: false });
    const noScene = await checked('GET', '/v1/codes', `/v1/codes?appid=${APPID}`, { token: READ_TOKEN });
    expect(noScene.status).toBe(400);
    const badScene = await checked('GET', '/v1/codes', `/v1/codes?appid=${APPID}&scene=a%20b`, {
      token: READ_TOKEN,
    });
    expect(badScene.status).toBe(400);
    expect(mock.stats(APPID).codeCalls).toBe(before.codeCalls);
    expect(mock.stats(APPID).tokenCalls).toBe(before.tokenCalls);
  });
});

describe('bull-board', () => {
  it('is read-only: its own read-only mode refuses changes, and the console refuses them before it', async () => {
    expect(
      (
        await call('POST', '/v1/campaigns?campaign=board', {
          token: ADMIN_TOKEN,
          body: csv(['q1', 'q2', 'q3']),
        })
      ).status,
    ).toBe(201);
    const slots = await feed('board', { jobs: true });
    const queue = openQueue(redis, prefix, APPID);
    const queued = await queue.getPrioritizedCount();
    expect(queued).toBeGreaterThanOrEqual(3);
    const job = await queue.getJob(jobId('board', slots.get('q1')!));
    const name = queue.name;
    const changes = [
      ['PUT', `/queues/api/queues/${name}/clean/waiting`],
      ['PUT', `/queues/api/queues/${name}/clean/failed`],
      ['PUT', `/queues/api/queues/${name}/retry/failed`],
      ['PUT', `/queues/api/queues/${name}/empty`],
      ['PUT', `/queues/api/queues/${name}/obliterate`],
      ['PUT', `/queues/api/queues/${name}/pause`],
      ['PUT', `/queues/api/queues/${name}/promote`],
      ['PUT', `/queues/api/queues/${name}/${job!.id}/clean`],
      ['PUT', `/queues/api/queues/${name}/${job!.id}/retry`],
      ['PUT', `/queues/api/queues/${name}/${job!.id}/promote`],
      ['PATCH', `/queues/api/queues/${name}/${job!.id}/update-data`],
      ['POST', `/queues/api/queues/${name}/add`],
      ['PUT', `/queues/api/queues/${name}/rate-limit`],
      ['PUT', `/queues/api/queues/${name}/rate-limit/release`],
    ] as const;

    // bull-board alone (the console's own fence off): its read-only mode must refuse each change itself.
    const bare = await buildConsole({ config, tokens: TOKENS, boardWriteFence: false });
    try {
      const list = await bare.app.inject({
        method: 'GET',
        url: '/queues/api/queues',
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      });
      const listed = (list.json() as { queues: { name: string; readOnlyMode: boolean }[] }).queues;
      expect(listed.find((q) => q.name === name)).toMatchObject({ readOnlyMode: true });
      for (const [method, url] of changes) {
        const res = await bare.app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          // bull-board checks a body before it checks read-only mode: each is a valid one.
          payload: url.endsWith('/update-data')
            ? { jobData: { c: 'board', v: 'changed' } }
            : url.endsWith('/add')
              ? { name: 'code', data: { c: 'board', v: 'added' } }
              : url.endsWith('/rate-limit')
                ? { max: 1, duration: 1000 }
                : {},
        });
        expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(405);
      }
      // Pausing every queue at once skips read-only queues rather than refusing: check nothing paused.
      await bare.app.inject({
        method: 'PUT',
        url: '/queues/api/queues/pause',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(await queue.isPaused()).toBe(false);
    } finally {
      await bare.close();
    }
    // The console: refused before bull-board, in the API's error shape.
    for (const [method, url] of changes) {
      const res = await call(method, url, { token: ADMIN_TOKEN, body: {} });
      expect(res.status, `${method} ${url}`).toBe(405);
      expect((res.body as { error: { code: string } }).error.code).toBe('read_only');
    }
    expect(await queue.getPrioritizedCount()).toBe(queued);
    expect(await queue.getJob(job!.id!)).toBeDefined();
    await queue.close();

    // The page itself, for a browser with the session cookie.
    const session = await call('POST', '/v1/session', { token: READ_TOKEN });
    const cookie = session.headers.get('set-cookie')!.split(';')[0]!;
    const page = await call('GET', '/queues', { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/text\/html/);
    const anonymous = await fetch(`${server.url}/queues`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    });
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.get('location')).toBe('/?next=queues');
  });
});

describe('secrets', () => {
  it('never shows a token, the AppSecret or a storage credential in an answer, the page or the logs', async () => {
    const answers = [
      await call('GET', '/v1/dashboard', { token: READ_TOKEN }),
      await call('GET', '/v1/campaigns', { token: READ_TOKEN }),
      await call('GET', '/v1/openapi.json', { token: READ_TOKEN }),
      await call('GET', '/'),
      await call('GET', '/app.js'),
      await call('GET', '/v1/campaigns', { token: 'wrong-token-wrong-token' }),
    ];
    const s3Secret = config.s3.credentials!.secretAccessKey.reveal();
    const secrets = [READ_TOKEN, ADMIN_TOKEN, SECRET, s3Secret];
    const everything = answers.map((a) => a.text).join('\n') + logs.text();
    expect(logs.text()).toContain('campaign enqueued from the console');
    for (const secret of secrets) expect(everything).not.toContain(secret);
    expect(openapi.checked).toBeGreaterThan(60);
  });
});
