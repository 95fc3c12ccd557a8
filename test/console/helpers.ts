/** The console's test stack: the harness Redis under a prefix of its own, s3rver, the mock WeChat API, tokens. */
import { Writable } from 'node:stream';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'vitest';
import { loadConfig, Secret } from '../../src/config.js';
import type { ApiToken } from '../../src/console/auth.js';
import type { MockServer } from '../../src/mock/server.js';
import { wxacodeEnv } from '../../test-support/env.js';
import type { TestS3 } from '../../test-support/s3.js';

export const APPID = 'wxconsole0000001';
export const SECRET = 'console-app-secret-0123456789abcdef';
export const READ_TOKEN = 'read-token-5f0c2b7e9a41d3';
export const ADMIN_TOKEN = 'admin-token-8d21e6c4b0f97a';

export const TOKENS: ApiToken[] = [
  { name: 'dash', scope: 'read', token: new Secret(READ_TOKEN) },
  { name: 'admin-bot', scope: 'admin', token: new Secret(ADMIN_TOKEN) },
];

export function consoleEnv(o: {
  redisUrl: string;
  prefix: string;
  mock: MockServer;
  s3: TestS3;
  rate?: string;
}) {
  return {
    ...wxacodeEnv({
      redisUrl: o.redisUrl,
      prefix: o.prefix,
      apps: { [APPID]: SECRET },
      wechatUrl: o.mock.url,
      rate: o.rate ?? '100/1s',
      storage: `s3://${o.s3.bucket}/console`,
    }),
    ...o.s3.env,
  };
}

export function consoleConfig(env: Record<string, string>) {
  return loadConfig(env, {}, process.cwd());
}

/** Log lines collected in memory, to prove no secret reaches them. */
export function logSink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

type Doc = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>
  >;
};

/**
 * Checks answers against the server's own OpenAPI document: the status must be documented for the route, and a
 * JSON body must match the schema documented for that status.
 */
export class OpenApiChecker {
  readonly #ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  checked = 0;

  constructor(readonly doc: Doc) {
    this.#ajv.addSchema({ ...doc, $id: 'doc' });
  }

  check(
    method: string,
    route: string,
    status: number,
    body: unknown,
    contentType = 'application/json',
  ): void {
    const op = this.doc.paths[route]?.[method.toLowerCase()];
    expect(op, `${method} ${route} is in the document`).toBeDefined();
    const response = op!.responses[String(status)];
    expect(response, `${method} ${route} documents status ${status}`).toBeDefined();
    const media = contentType.split(';')[0]!.trim();
    const content = response!.content?.[media];
    if (!content) {
      expect(
        response!.content === undefined || media !== 'application/json',
        `${route} ${status} ${media}`,
      ).toBe(true);
      return;
    }
    if (media !== 'application/json') return;
    const pointer = `doc#/paths/${route.replaceAll('~', '~0').replaceAll('/', '~1')}/${method.toLowerCase()}/responses/${status}/content/application~1json/schema`;
    const validate = this.#ajv.getSchema(pointer) ?? this.#ajv.compile({ $ref: pointer });
    const ok = validate(body);
    expect(
      ok,
      `${method} ${route} ${status}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(body)}`,
    ).toBe(true);
    this.checked++;
  }
}
