/**
 * The console: an HTTP API (`/v1`) for admin scripts in any language, a dashboard (`/`) and bull-board
 * (`/queues`, read-only), on Fastify. Every API route needs a bearer token of the right scope; the dashboard
 * page itself holds no data and asks for a token.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { Redis } from 'ioredis';
import { CampaignLifecycle } from '../campaign/lifecycle.js';
import { type ManifestFormat, manifestText, recordSource } from '../campaign/manifest.js';
import {
  allCampaignStatuses,
  campaignStatus,
  loadCampaign,
  resumeCampaign,
  retryCampaign,
  UnknownCampaignError,
} from '../campaign/operations.js';
import { LOCAL_ERRCODE } from '../campaign/policy.js';
import { EnqueueError, enqueueCampaign, type InvalidRow, type RowSource } from '../campaign/producer.js';
import { openQueue } from '../campaign/queue.js';
import { SourceError, type SourceFormat } from '../campaign/source.js';
import { type CampaignMeta, CampaignStore, PRIORITIES, type PriorityName } from '../campaign/store.js';
import { codeOptionsFromFlags } from '../cli/campaign.js';
import { UsageError } from '../cli/context.js';
import type { Config } from '../config.js';
import { type Logger, silentLogger } from '../log.js';
import { createStorage, objectKey, type Storage, StorageError } from '../storage/index.js';
import { type CodeOptions, type Kind, rowProblem } from '../wechat/params.js';
import { type ApiToken, allows, type Scope, Sessions, TokenChecker } from './auth.js';
import { DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import {
  CAMPAIGN_PARAMS,
  CREATE_JSON_BODY,
  CREATE_QUERY,
  EXPORT_QUERY,
  openApiDocument,
  RESOLVE_QUERY,
  STOP_BODY,
} from './openapi.js';
import { appReport, FailureGroups, progressOf, Samples } from './stats.js';

export interface ConsoleOptions {
  config: Config;
  tokens: ApiToken[];
  /** Everyone is admin: only for a loopback host (checked by `startConsole` and `wxacode serve`). */
  noAuth?: boolean;
  /** Largest upload (streamed to a temporary file). Default 256 MB. */
  uploadLimitBytes?: number;
  /** Largest JSON body, which is read whole. Default 8 MB. */
  jsonLimitBytes?: number;
  /** How long a client may take to send a whole request. Default 10 minutes. */
  requestTimeoutMs?: number;
  /** How often codes per minute and cap use are sampled. Default 5000 ms. */
  sampleIntervalMs?: number;
  /**
   * Refuse every request to /queues that is not a GET, before bull-board sees it. Bull-board's own read-only
   * mode refuses them too; this fence stays up whatever a later bull-board adds. Tests turn it off to check
   * bull-board's own refusal.
   */
  boardWriteFence?: boolean;
  logger?: Logger;
}

/** The one error shape of the API: `{"error": {"code", "message", "details"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
  }
}

interface RouteConfig {
  /** The scope a route needs; absent: public. */
  scope?: Scope;
}

const ANONYMOUS: ApiToken = {
  name: 'anonymous',
  scope: 'admin',
  token: { reveal: () => '' } as ApiToken['token'],
};

const SESSION_COOKIE = 'wxacode_session';
const MAX_LISTED_INVALID = 1000;

const FORMAT_BY_TYPE: Record<string, SourceFormat> = {
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/x-ndjson': 'jsonl',
  'application/jsonl': 'jsonl',
  'application/x-jsonlines': 'jsonl',
  'text/plain': 'txt',
};
const UPLOAD_TYPES = [...Object.keys(FORMAT_BY_TYPE), 'application/octet-stream'];

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

type EnqueueFields = {
  campaign?: string;
  kind?: Kind;
  app?: string;
  page?: string;
  width?: number;
  autoColor?: boolean;
  lineColor?: string;
  hyaline?: boolean;
  envVersion?: CodeOptions['envVersion'];
  checkPath?: boolean;
  format?: SourceFormat;
  column?: string;
  skipInvalid?: boolean;
  priority?: PriorityName;
};

function optionsOf(fields: EnqueueFields): CodeOptions {
  try {
    return codeOptionsFromFlags({
      kind: fields.kind ?? 'unlimited',
      page: fields.page,
      width: fields.width === undefined ? undefined : String(fields.width),
      autoColor: fields.autoColor,
      lineColor: fields.lineColor,
      hyaline: fields.hyaline,
      envVersion: fields.envVersion,
      checkPath: fields.checkPath ?? true,
    });
  } catch (err) {
    if (err instanceof UsageError) {
      throw new ApiError(400, 'invalid_options', err.message.replaceAll('--line-color', 'lineColor'));
    }
    throw err;
  }
}

function differences(existing: CampaignMeta, appid: string, options: CodeOptions) {
  const diffs: { option: string; existing: unknown; requested: unknown }[] = [];
  if (existing.appid !== appid) diffs.push({ option: 'app', existing: existing.appid, requested: appid });
  const names = new Set([...Object.keys(existing.options), ...Object.keys(options)]);
  for (const name of names) {
    const a = existing.options[name as keyof CodeOptions];
    const b = options[name as keyof CodeOptions];
    if (JSON.stringify(a) !== JSON.stringify(b))
      diffs.push({ option: name, existing: a ?? null, requested: b ?? null });
  }
  return diffs;
}

class PayloadTooLarge extends Error {}

/** Copy the upload to a file, refusing it once it passes `limit` bytes: nothing of it is held in memory. */
async function spool(body: NodeJS.ReadableStream, file: string, limit: number): Promise<number> {
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(bytes > limit ? new PayloadTooLarge() : null, chunk);
    },
  });
  await pipeline(body, count, createWriteStream(file, { mode: 0o600 }));
  return bytes;
}

export interface Console {
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function buildConsole(o: ConsoleOptions): Promise<Console> {
  const { config } = o;
  const logger = o.logger ?? silentLogger;
  const checker = new TokenChecker(o.tokens);
  if (!checker.enabled && !o.noAuth) {
    throw new Error(
      'no API token is configured (WXACODE_API_TOKENS); pass noAuth for a loopback-only console',
    );
  }
  const sessions = new Sessions();
  const uploadLimit = o.uploadLimitBytes ?? 256 * 1024 * 1024;
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  const store = new CampaignStore(redis, config.prefix);
  const storage: Storage = createStorage(config, { logger });
  const lifecycle = new CampaignLifecycle(store, storage, logger);
  const failures = new FailureGroups(store);
  const samples = new Samples(10 * 60_000);
  const queues = new Map<string, Queue>();

  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Requests are not logged one by one: the console logs what was done and by whom instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: o.jsonLimitBytes ?? 8 * 1024 * 1024,
    requestTimeout: o.requestTimeoutMs ?? 600_000,
    connectionTimeout: 0,
    keepAliveTimeout: 5000,
    return503OnClosing: true,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: true } },
  });

  // Uploads reach the handler as the raw stream: spooled to a file there, never buffered by a parser.
  app.addContentTypeParser(UPLOAD_TYPES, (_request, payload, done) => done(null, payload));

  const who = new WeakMap<FastifyRequest, ApiToken>();

  function sendError(reply: FastifyReply, err: ApiError) {
    return reply
      .status(err.status)
      .type('application/json; charset=utf-8')
      .send({ error: { code: err.code, message: err.message, details: err.details } });
  }

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    const e = error as { validation?: unknown; statusCode?: number; code?: string; message: string };
    if (e.validation) {
      return sendError(reply, new ApiError(400, 'invalid_request', e.message, e.validation));
    }
    if (e.statusCode === 413 || e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, new ApiError(413, 'payload_too_large', 'the request body is too large'));
    }
    if (e.statusCode === 415 || e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendError(
        reply,
        new ApiError(
          415,
          'unsupported_media_type',
          `send one of ${[...UPLOAD_TYPES, 'application/json'].join(', ')}`,
        ),
      );
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return sendError(reply, new ApiError(e.statusCode, 'bad_request', e.message));
    }
    if (error instanceof UnknownCampaignError) {
      return sendError(reply, new ApiError(404, 'unknown_campaign', error.message));
    }
    if (error instanceof StorageError) {
      logger.warn({ err: error.message, url: request.url }, 'storage failed a console request');
      return sendError(reply, new ApiError(502, 'storage_unavailable', error.message));
    }
    logger.error(
      { err: e.message, method: request.method, url: request.url.split('?')[0] },
      'console request failed',
    );
    return sendError(reply, new ApiError(500, 'internal', 'the request failed; the console log says why'));
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      new ApiError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
    ),
  );

  app.addHook('onSend', async (request, reply) => {
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('Referrer-Policy', 'no-referrer');
    if (request.url.startsWith('/v1/')) reply.header('Cache-Control', 'no-store');
  });

  /** Who is asking, from the bearer token (or, for GETs of the queue pages, the session cookie). */
  function authenticate(request: FastifyRequest, allowCookie: boolean): ApiToken {
    if (o.noAuth) return ANONYMOUS;
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      const token = match ? checker.check(match[1]!) : undefined;
      if (!token) throw new ApiError(401, 'unauthorized', 'the bearer token is not valid');
      return token;
    }
    const session = allowCookie ? cookieValue(request.headers.cookie, SESSION_COOKIE) : undefined;
    const holder = session ? sessions.get(session) : undefined;
    if (holder) return holder;
    throw new ApiError(401, 'unauthorized', 'send Authorization: Bearer <token>');
  }

  // Errors here are answered here: bull-board's plugin has an error handler of its own that would make them 500s.
  app.addHook('onRequest', async (request, reply) => {
    try {
      return await guard(request, reply);
    } catch (err) {
      if (err instanceof ApiError) return sendError(reply, err);
      throw err;
    }
  });

  async function guard(request: FastifyRequest, reply: FastifyReply) {
    const url = request.url.split('?')[0]!;
    if (url === '/queues' || url.startsWith('/queues/')) {
      const read = request.method === 'GET' || request.method === 'HEAD';
      if (!read && o.boardWriteFence !== false) {
        throw new ApiError(405, 'read_only', 'the queue pages are read-only: rows would stay pending');
      }
      let holder: ApiToken;
      try {
        holder = authenticate(request, read);
      } catch (err) {
        // A browser that lost its session goes back to the dashboard to give its token again.
        if (read && (request.headers.accept ?? '').includes('text/html'))
          return reply.redirect('/?next=queues');
        throw err;
      }
      who.set(request, holder);
      return;
    }
    const scope = (request.routeOptions.config as RouteConfig | undefined)?.scope;
    if (scope === undefined && !url.startsWith('/v1/')) return;
    const holder = authenticate(request, false);
    if (!allows(holder.scope, scope ?? 'read')) {
      throw new ApiError(
        403,
        'forbidden',
        `this route needs a token of scope ${scope}; ${holder.name} is ${holder.scope}`,
      );
    }
    who.set(request, holder);
  }

  function queueOf(appid: string): Queue {
    let queue = queues.get(appid);
    if (!queue) {
      queue = openQueue(redis, config.prefix, appid);
      queues.set(appid, queue);
      board.addQueue(new BullMQAdapter(queue, { readOnlyMode: true }));
    }
    return queue;
  }

  const boardAdapter = new FastifyAdapter();
  boardAdapter.setBasePath('/queues');
  const board = createBullBoard({
    queues: [],
    serverAdapter: boardAdapter,
    options: { uiConfig: { boardTitle: 'wxacode queues' } },
  });
  await app.register(boardAdapter.registerPlugin(), { prefix: '/queues' });

  async function knownApps(): Promise<string[]> {
    const apps = new Set(config.apps.keys());
    for (const id of await store.list()) {
      const appid = await redis.hget(`${config.prefix}:campaign:${id}`, 'appid');
      if (appid) apps.add(appid);
    }
    return [...apps].sort();
  }

  async function sample() {
    for (const appid of await knownApps()) {
      queueOf(appid);
      const calls = await redis.zcard(`${config.prefix}:window:${appid}`);
      samples.add(`app:${appid}`, calls);
    }
    for (const id of await store.list()) {
      const meta = await store.get(id);
      if (meta && meta.state !== 'completed') samples.add(`campaign:${id}`, meta.done + meta.failed);
    }
  }
  const sampler = setInterval(() => {
    sample().catch((err) => logger.debug({ err: (err as Error).message }, 'sampling failed'));
  }, o.sampleIntervalMs ?? 5000);
  sampler.unref();
  await sample().catch(() => undefined);

  async function apps() {
    const list = await knownApps();
    return Promise.all(
      list.map((appid) =>
        appReport({
          redis,
          store,
          prefix: config.prefix,
          appid,
          configured: config.apps.has(appid),
          rate: config.rateLimit,
          queue: queueOf(appid),
          samples,
        }),
      ),
    );
  }

  // --- public: the page, its script, health ---

  app.get('/', async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header(
        'Content-Security-Policy',
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
      )
      .send(DASHBOARD_HTML),
  );
  app.get('/app.js', async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('Cache-Control', 'no-cache').send(DASHBOARD_JS),
  );
  app.get('/healthz', async (_request, reply) => {
    try {
      await redis.ping();
      return { status: 'ok' };
    } catch {
      return reply.status(503).send({ status: 'unavailable' });
    }
  });

  // --- the API ---

  const read: { config: RouteConfig } = { config: { scope: 'read' } };
  const admin: { config: RouteConfig } = { config: { scope: 'admin' } };

  app.get('/v1/openapi.json', read, async () => openApiDocument());

  app.post('/v1/session', read, async (request, reply) => {
    const holder = who.get(request)!;
    const id = sessions.create(holder);
    reply.header(
      'Set-Cookie',
      `${SESSION_COOKIE}=${id}; Path=/queues; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(sessions.ttlMs / 1000)}`,
    );
    return { name: holder.name, scope: holder.scope };
  });

  app.delete('/v1/session', async (request, reply) => {
    const id = cookieValue(request.headers.cookie, SESSION_COOKIE);
    if (id) sessions.delete(id);
    reply.header('Set-Cookie', `${SESSION_COOKIE}=; Path=/queues; HttpOnly; SameSite=Strict; Max-Age=0`);
    return reply.status(204).send();
  });

  app.get('/v1/campaigns', read, async () => ({ campaigns: await allCampaignStatuses(store, storage) }));

  app.get<{ Params: { id: string } }>(
    '/v1/campaigns/:id',
    { ...read, schema: { params: CAMPAIGN_PARAMS } },
    async (request) => campaignStatus(store, request.params.id, storage),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/campaigns/:id/failures',
    { ...read, schema: { params: CAMPAIGN_PARAMS } },
    async (request) => {
      const meta = await loadCampaign(store, request.params.id);
      return { campaign: meta.id, failed: meta.failed, groups: await failures.of(meta.id, meta.failed) };
    },
  );

  app.get('/v1/apps', read, async () => ({ apps: await apps() }));

  app.get('/v1/dashboard', read, async () => {
    const statuses = await allCampaignStatuses(store, storage);
    const now = Date.now();
    return {
      generatedAt: new Date(now).toISOString(),
      campaigns: statuses.map((s) => progressOf(s, samples, now)),
      apps: await apps(),
    };
  });

  app.post<{ Params: { id: string } }>(
    '/v1/campaigns/:id/retry',
    { ...admin, schema: { params: CAMPAIGN_PARAMS } },
    async (request) => {
      const result = await retryCampaign(store, redis, request.params.id, storage);
      logger.info(
        { campaign: request.params.id, by: who.get(request)!.name },
        'campaign retried from the console',
      );
      return result;
    },
  );

  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/v1/campaigns/:id/stop',
    {
      ...admin,
      schema: { params: CAMPAIGN_PARAMS, body: { content: { 'application/json': { schema: STOP_BODY } } } },
    },
    async (request) => {
      const id = request.params.id;
      await loadCampaign(store, id);
      const by = who.get(request)!.name;
      const reason = request.body?.reason;
      const stopped = await lifecycle.stop(
        id,
        LOCAL_ERRCODE,
        `stopped by ${by}${reason ? `: ${reason}` : ''}`,
      );
      if (!stopped) {
        const status = await campaignStatus(store, id, storage);
        throw new ApiError(
          409,
          'not_running',
          `campaign ${id} is ${status.state}: only a running campaign stops`,
        );
      }
      return campaignStatus(store, id, storage);
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/campaigns/:id/resume',
    { ...admin, schema: { params: CAMPAIGN_PARAMS } },
    async (request) => {
      const id = request.params.id;
      const meta = await loadCampaign(store, id);
      if (meta.state !== 'stopped') {
        throw new ApiError(
          409,
          'not_stopped',
          `campaign ${id} is ${meta.state}: only a stopped campaign resumes`,
        );
      }
      // Failed rows stay failed: that is what `retry` is for.
      await resumeCampaign(store, redis, id, { storage });
      logger.info({ campaign: id, by: who.get(request)!.name }, 'campaign resumed from the console');
      return campaignStatus(store, id, storage);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { format?: ManifestFormat } }>(
    '/v1/campaigns/:id/export',
    { ...read, schema: { params: CAMPAIGN_PARAMS, querystring: EXPORT_QUERY } },
    async (request, reply) => {
      const meta = await loadCampaign(store, request.params.id);
      const format = request.query.format ?? 'csv';
      const text = manifestText(recordSource(store, storage), storage, meta, format);
      return reply
        .type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
        .header('Content-Disposition', `attachment; filename="${meta.id}.${format}"`)
        .send(Readable.from(text));
    },
  );

  app.get<{ Querystring: EnqueueFields & { appid: string; scene?: string; path?: string } }>(
    '/v1/codes',
    { ...read, schema: { querystring: RESOLVE_QUERY } },
    async (request) => {
      const q = request.query;
      const options = optionsOf(q);
      const field = options.kind === 'unlimited' ? 'scene' : 'path';
      const value = q[field];
      if (value === undefined) {
        throw new ApiError(400, 'invalid_request', `a ${options.kind} code needs the ${field} parameter`);
      }
      const other = field === 'scene' ? 'path' : 'scene';
      if (q[other] !== undefined) {
        throw new ApiError(
          400,
          'invalid_request',
          `a ${options.kind} code is found by ${field}, not ${other}`,
        );
      }
      const problem = rowProblem(options.kind, value);
      if (problem) throw new ApiError(400, 'invalid_options', problem);
      const key = objectKey({ appid: q.appid, options, value });
      return {
        appid: q.appid,
        kind: options.kind,
        value,
        key,
        url: storage.url(key),
        stored: await storage.exists(key),
      };
    },
  );

  app.post<{ Querystring: EnqueueFields; Body: unknown }>(
    '/v1/campaigns',
    {
      ...admin,
      schema: {
        querystring: CREATE_QUERY,
        body: { content: { 'application/json': { schema: CREATE_JSON_BODY } } },
      },
    },
    async (request, reply) => {
      const mediaType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const json = mediaType === 'application/json';
      const body = request.body as (EnqueueFields & { rows: string[] }) | NodeJS.ReadableStream | undefined;
      const fields: EnqueueFields = json ? { ...request.query, ...(body as EnqueueFields) } : request.query;
      // A refusal before the body is read ends the connection rather than draining a large upload.
      if (!json) reply.header('Connection', 'close');
      if (!fields.campaign) throw new ApiError(400, 'invalid_request', 'the campaign parameter is required');
      const declared = Number(request.headers['content-length']);
      if (!json && declared > uploadLimit) {
        throw new ApiError(
          413,
          'payload_too_large',
          `the upload is over ${uploadLimit} bytes (WXACODE_API_UPLOAD_MAX_MB)`,
        );
      }
      const options = optionsOf(fields);
      const appid = pickAppid(fields.app);
      const existing = await store.get(fields.campaign);
      if (existing) {
        const diffs = differences(existing, appid, options);
        if (diffs.length > 0) {
          throw new ApiError(
            409,
            'campaign_conflict',
            `campaign ${fields.campaign} exists with other options: ${diffs.map((d) => d.option).join(', ')}; use a new campaign id`,
            { differences: diffs },
          );
        }
        if (existing.state === 'stopped') {
          throw new ApiError(
            409,
            'campaign_stopped',
            `campaign ${fields.campaign} is stopped (${existing.stop?.errmsg}); resume or retry it first`,
            {
              stopped: existing.stop,
            },
          );
        }
      }
      let format = fields.format;
      if (!json && !format) {
        format = FORMAT_BY_TYPE[mediaType];
        if (!format)
          throw new ApiError(
            400,
            'invalid_request',
            'name the format (csv, jsonl or txt) for this Content-Type',
          );
      }

      const dir = json ? undefined : await mkdtemp(path.join(tmpdir(), 'wxacode-upload-'));
      try {
        let input: string | RowSource;
        if (json) {
          const rows = (body as { rows: string[] }).rows;
          input = () => rows;
        } else {
          input = path.join(dir!, 'upload');
          try {
            await spool(body as NodeJS.ReadableStream, input, uploadLimit);
            // Read whole: the connection can serve the next request after all.
            reply.removeHeader('Connection');
          } catch (err) {
            if (err instanceof PayloadTooLarge) {
              throw new ApiError(
                413,
                'payload_too_large',
                `the upload is over ${uploadLimit} bytes (WXACODE_API_UPLOAD_MAX_MB)`,
              );
            }
            throw err;
          }
        }
        const invalidRows: InvalidRow[] = [];
        let result: Awaited<ReturnType<typeof enqueueCampaign>>;
        try {
          result = await enqueueCampaign({
            redis,
            prefix: config.prefix,
            campaign: fields.campaign,
            appid,
            options,
            input,
            format,
            column: fields.column,
            skipInvalid: fields.skipInvalid,
            priority: PRIORITIES[fields.priority ?? 'normal'],
            storage,
            onInvalid: (row) => {
              if (invalidRows.length < MAX_LISTED_INVALID) invalidRows.push(row);
            },
          });
        } catch (err) {
          if (err instanceof EnqueueError && err.invalid > 0) {
            throw new ApiError(
              422,
              'invalid_rows',
              `${err.invalid} invalid row${err.invalid === 1 ? '' : 's'}: nothing was enqueued (fix them, or pass skipInvalid=true)`,
              {
                invalid: err.invalid,
                rows: invalidRows,
                truncated: err.invalid > invalidRows.length,
              },
            );
          }
          if (err instanceof EnqueueError) throw new ApiError(409, 'campaign_conflict', err.message);
          if (err instanceof SourceError)
            throw new ApiError(400, 'bad_input', err.message.replace(input as string, 'the upload'));
          throw err;
        }
        logger.info(
          { campaign: result.campaign, enqueued: result.enqueued, by: who.get(request)!.name },
          'campaign enqueued from the console',
        );
        return reply.status(existing ? 200 : 201).send({ ...result, created: !existing, invalidRows });
      } finally {
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    },
  );

  function pickAppid(wanted: string | undefined): string {
    const configured = [...config.apps.keys()];
    if (wanted !== undefined) {
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(wanted))
        throw new ApiError(400, 'invalid_options', 'app is not an appid');
      // The console needs no AppSecret: without configured apps, any appid is taken (workers must know it).
      if (configured.length > 0 && !configured.includes(wanted)) {
        throw new ApiError(400, 'invalid_options', `appid ${wanted} is not configured`);
      }
      return wanted;
    }
    if (configured.length === 1) return configured[0]!;
    throw new ApiError(
      400,
      'invalid_options',
      configured.length === 0
        ? 'name the app (no app is configured)'
        : `several apps are configured (${configured.join(', ')}): name one`,
    );
  }

  return {
    app,
    async close() {
      clearInterval(sampler);
      await app.close();
      for (const queue of queues.values()) await queue.close();
      await storage.close();
      redis.disconnect();
    },
  };
}

export interface StartedConsole extends Console {
  url: string;
}

/** Build and listen. A console without tokens listens on a loopback host only. */
export async function startConsole(
  o: ConsoleOptions & { host?: string; port?: number },
): Promise<StartedConsole> {
  const host = o.host ?? '127.0.0.1';
  if (o.noAuth && !isLoopback(host)) {
    throw new Error(`a console without authentication listens on a loopback host only, not ${host}`);
  }
  const built = await buildConsole(o);
  const address = await built.app.listen({ host, port: o.port ?? 0 });
  const port = new URL(address).port;
  return { ...built, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}` };
}
