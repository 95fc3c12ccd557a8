/**
 * The console's OpenAPI 3.1 document, and the request schemas Fastify validates with: one source, so the
 * document cannot drift from what the routes accept. Response schemas are the ones the tests check real
 * answers against (test/console/api.test.ts).
 */
import { CAMPAIGN_ID } from '../campaign/store.js';
import { ENV_VERSIONS, KINDS, MAX_WIDTH, MIN_WIDTH } from '../wechat/params.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const stop = {
  type: 'object',
  required: ['errcode', 'errmsg', 'at'],
  properties: {
    errcode: { type: 'integer' },
    errmsg: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
  },
  additionalProperties: false,
};

/** The options of `wxacode enqueue`, as query-string fields (or JSON fields of an `application/json` body). */
export const ENQUEUE_FIELDS = {
  campaign: { type: 'string', pattern: CAMPAIGN_ID.source, description: '1-64 letters, digits, _ or -' },
  kind: { type: 'string', enum: [...KINDS], description: 'unlimited (B, default), code (A), qrcode (C)' },
  app: { type: 'string', description: 'the appid; default: the only configured app' },
  page: { type: 'string', description: 'B: the page the code opens' },
  width: { type: 'integer', minimum: MIN_WIDTH, maximum: MAX_WIDTH },
  autoColor: { type: 'boolean' },
  lineColor: { type: 'string', pattern: '^\\d{1,3},\\d{1,3},\\d{1,3}$', description: 'r,g,b' },
  hyaline: { type: 'boolean' },
  envVersion: { type: 'string', enum: [...ENV_VERSIONS] },
  checkPath: { type: 'boolean', description: 'B: false allows pages not published yet (default true)' },
  format: {
    type: 'string',
    enum: ['csv', 'jsonl', 'txt'],
    description: 'default: from the Content-Type (text/csv, application/x-ndjson, text/plain)',
  },
  column: { type: 'string', description: 'CSV column or JSONL field (default scene, or path for A/C)' },
  skipInvalid: { type: 'boolean', description: 'enqueue the valid rows even when some are invalid' },
  priority: {
    type: 'string',
    enum: ['high', 'normal', 'low'],
    description: "high goes before the app's other campaigns; one level shares the cap (default normal)",
  },
} as const;

export const CREATE_QUERY = { type: 'object', properties: ENQUEUE_FIELDS, additionalProperties: false };

/** Small campaigns as JSON: the rows travel in the body, read whole (so it has a lower limit). */
export const CREATE_JSON_BODY = {
  type: 'object',
  required: ['campaign', 'rows'],
  properties: { ...ENQUEUE_FIELDS, rows: { type: 'array', items: { type: 'string' } } },
  additionalProperties: false,
};

export const CAMPAIGN_PARAMS = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: CAMPAIGN_ID.source } },
};

export const EXPORT_QUERY = {
  type: 'object',
  properties: { format: { type: 'string', enum: ['csv', 'jsonl'] } },
  additionalProperties: false,
};

export const RESOLVE_QUERY = {
  type: 'object',
  required: ['appid'],
  properties: {
    appid: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
    kind: ENQUEUE_FIELDS.kind,
    scene: { type: 'string', description: 'B: the scene' },
    path: { type: 'string', description: 'A and C: the path' },
    page: ENQUEUE_FIELDS.page,
    width: ENQUEUE_FIELDS.width,
    autoColor: ENQUEUE_FIELDS.autoColor,
    lineColor: ENQUEUE_FIELDS.lineColor,
    hyaline: ENQUEUE_FIELDS.hyaline,
    envVersion: ENQUEUE_FIELDS.envVersion,
  },
  additionalProperties: false,
};

export const STOP_BODY = {
  type: 'object',
  properties: { reason: { type: 'string', maxLength: 200 } },
  additionalProperties: false,
};

const SCHEMAS = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message', 'details'],
        properties: {
          code: { type: 'string' },
          message: { type: 'string' },
          details: {},
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  InvalidRows: {
    description: 'details of an `invalid_rows` error',
    type: 'object',
    required: ['invalid', 'rows', 'truncated'],
    properties: {
      invalid: { type: 'integer', minimum: 1 },
      rows: {
        type: 'array',
        items: {
          type: 'object',
          required: ['line', 'problem'],
          properties: { line: { type: 'integer', minimum: 1 }, problem: { type: 'string' } },
          additionalProperties: false,
        },
      },
      truncated: { type: 'boolean', description: 'true when more rows were invalid than are listed' },
    },
    additionalProperties: false,
  },
  CampaignStatus: {
    description: 'the same object as `wxacode status ID --json`',
    type: 'object',
    required: ['campaign', 'appid', 'kind', 'state', 'total', 'done', 'failed', 'pending', 'createdAt'],
    properties: {
      campaign: { type: 'string' },
      appid: { type: 'string' },
      kind: { type: 'string', enum: [...KINDS] },
      state: { type: 'string', enum: ['enqueuing', 'active', 'stopped', 'completed'] },
      total: { type: 'integer', minimum: 0 },
      done: { type: 'integer', minimum: 0 },
      failed: { type: 'integer', minimum: 0 },
      pending: { type: 'integer', minimum: 0 },
      createdAt: { type: 'string', format: 'date-time' },
      stopped: stop,
      appStopped: stop,
      manifest: { type: 'string' },
      waitingOnStorage: {
        type: 'object',
        required: ['target', 'code', 'error', 'since'],
        properties: {
          target: { type: 'string' },
          code: { type: 'string' },
          error: { type: 'string' },
          since: { type: 'string', format: 'date-time' },
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  CampaignList: {
    type: 'object',
    required: ['campaigns'],
    properties: { campaigns: { type: 'array', items: ref('CampaignStatus') } },
    additionalProperties: false,
  },
  EnqueueResult: {
    type: 'object',
    required: ['campaign', 'created', 'enqueued', 'duplicates', 'invalid', 'total', 'state', 'invalidRows'],
    properties: {
      campaign: { type: 'string' },
      created: { type: 'boolean', description: 'false: the campaign existed with the same options' },
      enqueued: { type: 'integer', minimum: 0 },
      duplicates: { type: 'integer', minimum: 0 },
      invalid: { type: 'integer', minimum: 0 },
      total: { type: 'integer', minimum: 0 },
      state: { type: 'string', enum: ['enqueuing', 'active', 'stopped', 'completed'] },
      invalidRows: {
        description: 'with skipInvalid: the rows left out (at most 1000)',
        type: 'array',
        items: {
          type: 'object',
          required: ['line', 'problem'],
          properties: { line: { type: 'integer' }, problem: { type: 'string' } },
          additionalProperties: false,
        },
      },
    },
    additionalProperties: false,
  },
  RetryResult: {
    type: 'object',
    required: ['campaign', 'requeued'],
    properties: {
      campaign: { type: 'string' },
      requeued: { type: 'integer', minimum: 0 },
      resumedFrom: stop,
      manifestStored: { type: 'string' },
    },
    additionalProperties: false,
  },
  Failures: {
    type: 'object',
    required: ['campaign', 'failed', 'groups'],
    properties: {
      campaign: { type: 'string' },
      failed: { type: 'integer', minimum: 0 },
      groups: {
        type: 'array',
        items: {
          type: 'object',
          required: ['errcode', 'count', 'errmsg', 'advice'],
          properties: {
            errcode: { type: 'integer' },
            count: { type: 'integer', minimum: 1 },
            errmsg: { type: 'string', description: 'one of the messages, as an example' },
            advice: { type: 'string' },
          },
          additionalProperties: false,
        },
      },
    },
    additionalProperties: false,
  },
  ResolvedCode: {
    type: 'object',
    required: ['appid', 'kind', 'value', 'key', 'url', 'stored'],
    properties: {
      appid: { type: 'string' },
      kind: { type: 'string', enum: [...KINDS] },
      value: { type: 'string', description: 'the scene (B) or path (A/C)' },
      key: { type: 'string' },
      url: { type: 'string' },
      stored: { type: 'boolean' },
    },
    additionalProperties: false,
  },
  App: {
    type: 'object',
    required: ['appid', 'configured', 'rate', 'window', 'backedOffMs', 'stops', 'queue'],
    properties: {
      appid: { type: 'string' },
      configured: { type: 'boolean', description: 'this console has the app in its configuration' },
      rate: {
        type: 'object',
        required: ['count', 'durationMs'],
        properties: { count: { type: 'integer' }, durationMs: { type: 'integer' } },
        additionalProperties: false,
      },
      window: {
        description: 'calls started in the current window (the Redis call log), and samples of it',
        type: 'object',
        required: ['calls', 'history'],
        properties: {
          calls: { type: 'integer', minimum: 0 },
          history: {
            type: 'array',
            items: {
              type: 'object',
              required: ['at', 'calls'],
              properties: { at: { type: 'string', format: 'date-time' }, calls: { type: 'integer' } },
              additionalProperties: false,
            },
          },
        },
        additionalProperties: false,
      },
      backedOffMs: { type: 'integer', minimum: 0, description: 'ms left of a 45009/45011 back-off, or 0' },
      stops: {
        type: 'object',
        properties: { credentials: stop, acQuota: stop },
        additionalProperties: false,
      },
      queue: {
        type: 'object',
        required: ['waiting', 'active', 'delayed'],
        properties: {
          waiting: { type: 'integer' },
          active: { type: 'integer' },
          delayed: { type: 'integer' },
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  Dashboard: {
    type: 'object',
    required: ['generatedAt', 'campaigns', 'apps'],
    properties: {
      generatedAt: { type: 'string', format: 'date-time' },
      campaigns: {
        type: 'array',
        items: {
          type: 'object',
          required: ['status', 'codesPerMinute', 'etaSeconds'],
          properties: {
            status: ref('CampaignStatus'),
            codesPerMinute: { type: 'number', minimum: 0, description: 'rows settled per minute, last 60 s' },
            etaSeconds: { type: ['integer', 'null'], description: 'null: nothing left, or no progress seen' },
          },
          additionalProperties: false,
        },
      },
      apps: { type: 'array', items: ref('App') },
    },
    additionalProperties: false,
  },
  Session: {
    type: 'object',
    required: ['name', 'scope'],
    properties: { name: { type: 'string' }, scope: { type: 'string', enum: ['read', 'admin'] } },
    additionalProperties: false,
  },
};

function jsonResponse(description: string, schema: unknown) {
  return { description, content: { 'application/json': { schema } } };
}

const errorResponse = (description: string) => jsonResponse(description, ref('Error'));

const AUTH_ERRORS = {
  '400': errorResponse('`invalid_request`: a parameter does not match its schema (details lists each)'),
  '401': errorResponse('no token, or a token that is not configured'),
  '403': errorResponse('the token lacks the scope this route needs (admin)'),
};

function queryParameters(schema: { properties: Record<string, unknown>; required?: readonly string[] }) {
  return Object.entries(schema.properties).map(([name, s]) => ({
    name,
    in: 'query',
    required: schema.required?.includes(name) ?? false,
    schema: s,
  }));
}

const idParameter = { name: 'id', in: 'path', required: true, schema: CAMPAIGN_PARAMS.properties.id };

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'wxacode console',
      version: '1',
      description:
        'Campaigns of WeChat mini program codes: create from a file, follow, stop, resume, retry, export; ' +
        'resolve one code. Every route needs `Authorization: Bearer <token>`; `admin` tokens may change things.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: SCHEMAS,
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/campaigns': {
        get: {
          summary: 'List campaigns, oldest first',
          'x-scope': 'read',
          responses: { '200': jsonResponse('the campaigns', ref('CampaignList')), ...AUTH_ERRORS },
        },
        post: {
          summary: 'Create a campaign from an uploaded file (or add rows to one with the same options)',
          description:
            'The body is streamed to a temporary file (never held in memory), validated whole, then enqueued ' +
            'exactly as `wxacode enqueue` does. Send it as text/csv, application/x-ndjson or text/plain (or ' +
            'name the format), with the options in the query string; or send application/json with the ' +
            'options and a `rows` array. The same campaign id and options again is not an error (200, rows ' +
            'already there counted as duplicates).',
          'x-scope': 'admin',
          parameters: queryParameters(CREATE_QUERY),
          requestBody: {
            required: true,
            content: {
              'text/csv': { schema: { type: 'string' } },
              'application/x-ndjson': { schema: { type: 'string' } },
              'text/plain': { schema: { type: 'string' } },
              'application/octet-stream': { schema: { type: 'string' } },
              'application/json': { schema: CREATE_JSON_BODY },
            },
          },
          responses: {
            '200': jsonResponse('the campaign existed with the same options', ref('EnqueueResult')),
            '201': jsonResponse('the campaign was created', ref('EnqueueResult')),
            ...AUTH_ERRORS,
            '400': errorResponse(
              'bad options (`invalid_request`, `invalid_options`) or a bad file (`bad_input`)',
            ),
            '409': errorResponse(
              '`campaign_conflict`: the id exists with other options (details.differences); `campaign_stopped`',
            ),
            '413': errorResponse('the upload is larger than WXACODE_API_UPLOAD_MAX_MB'),
            '415': errorResponse('a Content-Type the route does not take'),
            '422': {
              description: '`invalid_rows`: nothing was enqueued; details lists each bad row (InvalidRows)',
              content: { 'application/json': { schema: ref('Error') } },
            },
          },
        },
      },
      '/v1/campaigns/{id}': {
        get: {
          summary: 'One campaign, as `wxacode status ID --json`',
          'x-scope': 'read',
          parameters: [idParameter],
          responses: {
            '200': jsonResponse('the campaign', ref('CampaignStatus')),
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
          },
        },
      },
      '/v1/campaigns/{id}/failures': {
        get: {
          summary: 'Failed rows grouped by errcode, with what to do about each',
          'x-scope': 'read',
          parameters: [idParameter],
          responses: {
            '200': jsonResponse('the groups', ref('Failures')),
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
          },
        },
      },
      '/v1/campaigns/{id}/retry': {
        post: {
          summary: 'Queue failed rows again; resume a stopped campaign (as `wxacode retry`)',
          'x-scope': 'admin',
          parameters: [idParameter],
          responses: {
            '200': jsonResponse('queued again', ref('RetryResult')),
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
          },
        },
      },
      '/v1/campaigns/{id}/stop': {
        post: {
          summary: 'Stop a running campaign: workers drop its jobs; its rows stay pending until resume',
          'x-scope': 'admin',
          parameters: [idParameter],
          requestBody: { required: false, content: { 'application/json': { schema: STOP_BODY } } },
          responses: {
            '200': jsonResponse('stopped (errcode -2, "stopped by <token name>")', ref('CampaignStatus')),
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
            '409': errorResponse('`not_running`: the campaign is stopped or completed already'),
          },
        },
      },
      '/v1/campaigns/{id}/resume': {
        post: {
          summary: 'Resume a stopped campaign: its pending rows are queued again (failed rows stay failed)',
          'x-scope': 'admin',
          parameters: [idParameter],
          responses: {
            '200': jsonResponse('resumed', ref('CampaignStatus')),
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
            '409': errorResponse('`not_stopped`'),
          },
        },
      },
      '/v1/campaigns/{id}/export': {
        get: {
          summary: 'The manifest, streamed: one row per scene or path (as `wxacode export`)',
          'x-scope': 'read',
          parameters: [idParameter, ...queryParameters(EXPORT_QUERY)],
          responses: {
            '200': {
              description: 'CSV (default) or JSON lines',
              content: {
                'text/csv': { schema: { type: 'string' } },
                'application/x-ndjson': { schema: { type: 'string' } },
              },
            },
            ...AUTH_ERRORS,
            '404': errorResponse('`unknown_campaign`'),
          },
        },
      },
      '/v1/codes': {
        get: {
          summary:
            'Where one code is (its deterministic key and URL) and whether it is stored; no WeChat call',
          'x-scope': 'read',
          parameters: queryParameters(RESOLVE_QUERY),
          responses: {
            '200': jsonResponse('the code', ref('ResolvedCode')),
            ...AUTH_ERRORS,
            '400': errorResponse('`invalid_request` or `invalid_options`'),
            '502': errorResponse('`storage_unavailable`: storage did not answer the lookup'),
          },
        },
      },
      '/v1/apps': {
        get: {
          summary: 'Per app: cap use, back-off, stops, queue',
          'x-scope': 'read',
          responses: {
            '200': jsonResponse('the apps', {
              type: 'object',
              required: ['apps'],
              properties: { apps: { type: 'array', items: ref('App') } },
              additionalProperties: false,
            }),
            ...AUTH_ERRORS,
          },
        },
      },
      '/v1/dashboard': {
        get: {
          summary: 'What the dashboard shows: campaigns with rate and ETA, and apps',
          'x-scope': 'read',
          responses: { '200': jsonResponse('the dashboard', ref('Dashboard')), ...AUTH_ERRORS },
        },
      },
      '/v1/session': {
        post: {
          summary: 'Trade the bearer token for an HttpOnly cookie, for the queue pages (GET only)',
          'x-scope': 'read',
          responses: { '200': jsonResponse('the token holder', ref('Session')), ...AUTH_ERRORS },
        },
        delete: {
          summary: 'End the cookie session',
          security: [],
          responses: { '204': { description: 'ended' } },
        },
      },
      '/v1/openapi.json': {
        get: {
          summary: 'This document',
          'x-scope': 'read',
          responses: {
            '200': jsonResponse('OpenAPI 3.1', { type: 'object' }),
            ...AUTH_ERRORS,
          },
        },
      },
    },
  };
}
