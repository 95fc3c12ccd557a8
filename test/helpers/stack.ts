/**
 * One test file's local stack: the harness Redis under a key prefix of its own, the mock WeChat API (no rate cap
 * unless configured) and a storage folder, all set up before the file's tests and removed after them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { CampaignStore } from '../../src/campaign/store.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { wxacodeEnv } from '../../test-support/env.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from './redis.js';

export interface LocalStack {
  redis: Redis;
  prefix: string;
  store: CampaignStore;
  mock: MockServer;
  /** The storage folder. */
  dir: string;
  /** A worker's settings as environment variables: the first app, the folder as storage, 100 calls a second. */
  env(): Record<string, string>;
}

/** Call at the top of a test file; the fields are set once its `beforeAll` ran. */
export function useLocalStack(apps: Record<string, string>): LocalStack {
  const [appid, secret] = Object.entries(apps)[0]!;
  const stack = { prefix: testPrefix() } as LocalStack;
  stack.env = () =>
    wxacodeEnv({
      redisUrl: testRedisUrl(),
      prefix: stack.prefix,
      apps: { [appid]: secret },
      wechatUrl: stack.mock.url,
      rate: '100/1s',
      storage: stack.dir,
    });
  beforeAll(async () => {
    stack.redis = connect();
    stack.store = new CampaignStore(stack.redis, stack.prefix);
    stack.mock = await startMockServer({ apps, rateLimit: null });
    stack.dir = await mkdtemp(path.join(tmpdir(), 'wxacode-stack-'));
  });
  afterAll(async () => {
    await deletePrefix(stack.redis, stack.prefix);
    stack.redis.disconnect();
    await stack.mock.close();
    await rm(stack.dir, { recursive: true, force: true });
  });
  return stack;
}
