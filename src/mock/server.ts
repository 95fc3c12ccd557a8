/**
 * A standalone fake of the WeChat API (docs/wechat-api.md) on plain node:http, for development, tests, the
 * demo and benchmarks: the token endpoints, the three code endpoints with WeChat's errcodes, quotas and rate
 * cap, configurable faults, and admin endpoints under `/__mock/` so another process can drive it.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatRateLimit } from '../config.js';
import { silentLogger } from '../log.js';
import type { Kind } from '../wechat/params.js';
import { codeContent } from './content.js';
import { FaultDice } from './faults.js';
import { type CodeImage, renderCode } from './image.js';
import {
  MOCK_DEFAULTS,
  type MockOptions,
  type MockPatch,
  type MockSettings,
  mockPatchProblems,
} from './options.js';
import { AppQuota } from './quota.js';
import { acKey, codeRequestProblem, codeStyle, KIND_BY_PATH } from './requests.js';
import { AppStats, type MockStats } from './stats.js';
import { TokenStore, type TokenTimes } from './tokens.js';

export type { FaultKind, MockFaults, MockOptions, MockPatch } from './options.js';
export type { MockStats } from './stats.js';

export interface MockServer {
  /** `http://127.0.0.1:PORT`: the base URL to give the client instead of https://api.weixin.qq.com. */
  url: string;
  /** One app's counters; default the first app. Throws for an appid the server does not know. */
  stats(appid?: string): MockStats;
  /** Change limits, apps or faults while running; throws naming every bad value. */
  configure(patch: MockPatch): void;
  /** Every current token of the app answers 40001 from now on, as when another server replaced it. */
  revokeTokens(appid: string): void;
  /** Every current token of the app answers 42001 from now on. */
  expireTokens(appid: string): void;
  /** Clear every app's counters (tokens, quotas and the rate cap's window carry on). */
  reset(): void;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; encoding=utf-8';
/** A code request body is a few hundred bytes; anything this large is not one. */
const MAX_BODY_BYTES = 64 * 1024;
const DEFAULT_WINDOW_MS = 60_000;

/** WeChat's own wording, so messages in logs look like the real ones. */
const ERRMSG: Record<number, string> = {
  [-1]: 'system error',
  40001: 'invalid credential, access_token is invalid or not latest',
  40002: 'invalid grant_type',
  40013: 'invalid appid',
  40097: 'invalid args',
  40125: 'invalid appsecret',
  40129: 'invalid scene',
  40159: 'invalid length for path, or the data is not json string',
  40169: 'invalid length for scene, or the data is not json string',
  41030: 'invalid page',
  42001: 'access_token expired',
  43001: 'require GET method',
  43002: 'require POST method',
  45009: 'reach max api daily quota limit',
  45011: 'api minute-quota reach limit  mustslower  retry next minute',
  45029: 'qrcode count out of limit',
  47001: 'data format error',
  85096: 'not allow include scancode_time field',
};

const HTML_502 =
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n' +
  '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

/** WeChat's request id: three groups of hex, e.g. `66a0b1c2-0d1e2f30-4a5b6c7d`. */
function rid(): string {
  const hex = randomBytes(12).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 16)}-${hex.slice(16)}`;
}

let sampleImage: CodeImage | undefined;

/** The first half of a real JPEG, for the `truncated` fault: it starts like an image and is not one. */
function truncatedImage(): Buffer {
  sampleImage ??= renderCode('wxacode|truncated', {
    width: 430,
    color: { r: 0, g: 0, b: 0 },
    transparent: false,
  });
  return sampleImage.body.subarray(0, sampleImage.body.length >> 1);
}

/** The body, or undefined when it is larger than any request the API takes. */
async function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  }
  return size <= MAX_BODY_BYTES ? Buffer.concat(chunks) : undefined;
}

/** WeChat takes the body as JSON whatever the Content-Type says; anything but an object is 47001. */
function parseObject(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (body === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

interface AppState {
  stats: AppStats;
  quota: AppQuota;
}

class MockWechat {
  readonly #tokens = new TokenStore();
  readonly #apps = new Map<string, AppState>();
  readonly #closing = new AbortController();
  readonly #logger;
  #settings: MockSettings;
  #dice: FaultDice;
  /** The window of `maxInWindow`: the cap's duration, or the last one configured when the cap is off. */
  #windowMs: number;

  constructor(options: MockOptions) {
    const { host: _host, port: _port, logger, ...patch } = options;
    this.#logger = logger ?? silentLogger;
    this.#settings = { ...MOCK_DEFAULTS };
    this.#windowMs = DEFAULT_WINDOW_MS;
    this.#dice = new FaultDice({});
    this.configure(patch);
  }

  configure(patch: MockPatch): void {
    const problems = mockPatchProblems(patch);
    if (problems.length > 0) throw new Error(`Invalid mock options: ${problems.join('; ')}`);
    // A copy, so a caller changing its arrays or objects later does not change the server behind its back.
    const defined = structuredClone(
      Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined)),
    );
    this.#settings = { ...this.#settings, ...defined };
    if (patch.faults) this.#dice = new FaultDice(patch.faults);
    if (patch.rateLimit) {
      this.#windowMs = patch.rateLimit.durationMs;
      for (const app of this.#apps.values()) app.stats.windowMs = this.#windowMs;
    }
  }

  /** What the server was set up with, for its start-up log line: never the secrets. */
  get summary() {
    const { apps, rateLimit, faults, publishedPages } = this.#settings;
    return { apps: Object.keys(apps), rateLimit, faults, publishedPages };
  }

  stats(appid?: string): MockStats {
    const app = this.#app(this.#knownAppid(appid));
    return { ...app.stats.snapshot(), acUsed: app.quota.acUsed };
  }

  revokeTokens(appid?: string): void {
    this.#tokens.retire(this.#knownAppid(appid), Date.now());
  }

  expireTokens(appid?: string): void {
    this.#tokens.expire(this.#knownAppid(appid), Date.now());
  }

  reset(): void {
    for (const app of this.#apps.values()) app.stats = new AppStats(this.#windowMs);
  }

  /** Stop waiting on slow answers, so closing never waits for a fault's delay. */
  abort(): void {
    this.#closing.abort();
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mock');
    try {
      const kind = KIND_BY_PATH.get(url.pathname);
      if (kind) await this.#code(kind, req, res, url);
      else if (url.pathname === '/cgi-bin/token') await this.#classicToken(req, res, url);
      else if (url.pathname === '/cgi-bin/stable_token') await this.#stableToken(req, res);
      else if (url.pathname.startsWith('/__mock/')) await this.#admin(req, res, url);
      else sendJson(res, 404, { error: `no such endpoint: ${url.pathname}` });
    } catch (err) {
      if (this.#closing.signal.aborted) return;
      this.#logger.error({ err, path: url.pathname }, 'mock server failed to answer');
      if (!res.headersSent) sendJson(res, 500, { error: 'mock server error' });
      else res.destroy();
    }
  }

  #app(appid: string): AppState {
    let app = this.#apps.get(appid);
    if (!app) {
      app = { stats: new AppStats(this.#windowMs), quota: new AppQuota() };
      this.#apps.set(appid, app);
    }
    return app;
  }

  /** The appid named (default: the first app), checked to be one this server knows. */
  #knownAppid(appid?: string): string {
    const id = appid ?? Object.keys(this.#settings.apps)[0]!;
    if (!Object.hasOwn(this.#settings.apps, id) && !this.#apps.has(id)) {
      throw new Error(`appid ${id} is not an app of this mock server`);
    }
    return id;
  }

  #error(
    res: http.ServerResponse,
    app: AppState | undefined,
    errcode: number,
    detail?: string,
    headers: http.OutgoingHttpHeaders = {},
  ): void {
    app?.stats.error(errcode);
    const hint = detail ? ` hint: [${detail}]` : '';
    const body = JSON.stringify({ errcode, errmsg: `${ERRMSG[errcode] ?? 'error'}${hint} rid: ${rid()}` });
    res.writeHead(200, { ...headers, 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  #tokenTimes(): TokenTimes {
    const s = this.#settings;
    return {
      ttlSec: s.tokenTtlSec,
      classicOverlapSec: s.classicOverlapSec,
      forceRefreshIntervalSec: s.forceRefreshIntervalSec,
      forceRefreshDailyLimit: s.forceRefreshDailyLimit,
    };
  }

  /** Checks shared by both token endpoints; returns the app when the credentials are right. */
  #credentials(
    res: http.ServerResponse,
    grantType: unknown,
    appid: unknown,
    secret: unknown,
  ): AppState | undefined {
    const known = typeof appid === 'string' && Object.hasOwn(this.#settings.apps, appid);
    const app = known ? this.#app(appid) : undefined;
    if (app) app.stats.counts.tokenCalls++;
    if (grantType !== 'client_credential') this.#error(res, app, 40002);
    else if (!known) this.#error(res, app, 40013);
    else if (secret !== this.#settings.apps[appid]) this.#error(res, app, 40125);
    else return app;
    return undefined;
  }

  async #classicToken(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    await readBody(req);
    if (req.method !== 'GET') return this.#error(res, undefined, 43001);
    const q = url.searchParams;
    const appid = q.get('appid');
    if (!this.#credentials(res, q.get('grant_type'), appid, q.get('secret'))) return;
    sendJson(res, 200, this.#tokens.issueClassic(appid!, this.#tokenTimes(), Date.now()));
  }

  async #stableToken(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = await readBody(req);
    if (req.method !== 'POST') return this.#error(res, undefined, 43002);
    const body = parseObject(raw);
    if (!body) return this.#error(res, undefined, 47001, 'the body must be a JSON object');
    const app = this.#credentials(res, body.grant_type, body.appid, body.secret);
    if (!app) return;
    const force = body.force_refresh === true;
    const answer = this.#tokens.stable(body.appid as string, force, this.#tokenTimes(), Date.now());
    if ('errcode' in answer) return this.#error(res, app, answer.errcode, answer.detail);
    if (force) app.stats.counts.forcedRefreshes++;
    sendJson(res, 200, answer);
  }

  async #code(kind: Kind, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const raw = await readBody(req);
    const arrived = Date.now();
    const token = this.#tokens.check(url.searchParams.get('access_token') ?? '', arrived);
    const app = token.appid === undefined ? undefined : this.#app(token.appid);
    app?.stats.codeCall(arrived);

    const fault = this.#dice.draw();
    if (fault.delayMs > 0) {
      app?.stats.fault('slow');
      await sleep(fault.delayMs, undefined, { signal: this.#closing.signal });
    }
    if (fault.kind) {
      app?.stats.fault(fault.kind);
      switch (fault.kind) {
        case 'drop':
          req.socket.destroy();
          return;
        case 'html502':
          res.writeHead(502, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(HTML_502) });
          res.end(HTML_502);
          return;
        case 'busy':
          return this.#error(res, app, -1);
        case 'empty':
          return this.#image(res, { type: 'jpeg', body: Buffer.alloc(0) });
        case 'truncated':
          return this.#image(res, { type: 'jpeg', body: truncatedImage() });
      }
    }

    if (req.method !== 'POST') return this.#error(res, app, 43002);
    if (token.errcode !== undefined || !app) return this.#error(res, app, token.errcode ?? 40001);
    const now = Date.now();
    const rate = this.#settings.rateLimit;
    if (rate && !app.quota.admit(rate, now)) {
      app.stats.counts.rateLimited++;
      // 45009 is B's minute limit; on A it would mean the daily limit, so A and C get the minute-quota code.
      const errcode = kind === 'unlimited' ? 45009 : 45011;
      return this.#error(res, app, errcode, `the cap of ${formatRateLimit(rate)} calls per app is reached`);
    }
    const body = parseObject(raw);
    if (!body) return this.#error(res, app, 47001, 'the body must be a JSON object');
    const problem = codeRequestProblem(kind, body, this.#settings.publishedPages);
    if (problem) return this.#error(res, app, problem.errcode, problem.detail);

    const appid = token.appid!;
    const headers: http.OutgoingHttpHeaders = {};
    if (kind !== 'unlimited') {
      const key = acKey(kind, body);
      const limits = { total: this.#settings.acTotalLimit, daily: this.#settings.acDailyLimit };
      const refusal = app.quota.acRefusal(kind, key, limits, now);
      if (refusal) return this.#error(res, app, refusal, undefined, { 'Num-Used': app.quota.acUsed });
      app.quota.acServed(kind, key, now);
      headers['Num-Used'] = app.quota.acUsed;
    }
    const image = renderCode(codeContent(appid, kind, body), codeStyle(kind, body));
    app.stats.counts.images++;
    this.#image(res, image, headers);
  }

  #image(res: http.ServerResponse, image: CodeImage, headers: http.OutgoingHttpHeaders = {}): void {
    res.writeHead(200, {
      ...headers,
      'Content-Type': image.type === 'png' ? 'image/png' : 'image/jpeg',
      'Content-Length': image.body.length,
    });
    res.end(image.body);
  }

  async #admin(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const raw = await readBody(req);
    const action = url.pathname.slice('/__mock/'.length);
    const appid = url.searchParams.get('appid') || undefined;
    const expected = action === 'stats' ? 'GET' : 'POST';
    if (!['stats', 'configure', 'revoke', 'expire', 'reset'].includes(action)) {
      return sendJson(res, 404, { error: `no such admin action: ${action}` });
    }
    if (req.method !== expected) {
      return sendJson(res, 405, { error: `/__mock/${action} takes ${expected}` });
    }
    try {
      if (action === 'stats') return sendJson(res, 200, this.stats(appid));
      if (action === 'configure') {
        const patch = parseObject(raw);
        if (!patch) throw new Error('the body must be a JSON object of mock options');
        this.configure(patch as MockPatch);
      } else if (action === 'revoke') this.revokeTokens(appid);
      else if (action === 'expire') this.expireTokens(appid);
      else this.reset();
    } catch (err) {
      return sendJson(res, 400, { error: (err as Error).message });
    }
    this.#logger.info({ action, appid }, 'mock server admin action');
    sendJson(res, 200, { ok: true });
  }
}

/** Start a mock WeChat API; it listens on 127.0.0.1 and a free port unless told otherwise. */
export async function startMockServer(options: MockOptions = {}): Promise<MockServer> {
  const mock = new MockWechat(options);
  const server = http.createServer((req, res) => void mock.handle(req, res));
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  // The address actually bound; a wildcard one is reached through the loopback interface.
  const reachable = address === '0.0.0.0' || address === '::' ? '127.0.0.1' : address;
  const url = `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
  (options.logger ?? silentLogger).info({ url, ...mock.summary }, 'mock WeChat API listening');
  return {
    url,
    stats: (appid) => mock.stats(appid),
    configure: (patch) => mock.configure(patch),
    revokeTokens: (appid) => mock.revokeTokens(appid),
    expireTokens: (appid) => mock.expireTokens(appid),
    reset: () => mock.reset(),
    close: async () => {
      mock.abort();
      const closed = new Promise<void>((resolve, reject) =>
        server.close((err) => (err ? reject(err) : resolve())),
      );
      server.closeAllConnections();
      await closed;
    },
  };
}
