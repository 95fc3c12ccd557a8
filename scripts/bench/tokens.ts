/**
 * 4. Tokens: a fleet of worker processes starts at once and every process needs the access token in the same
 * instant. Two apps in the same fleet: one whose cached token expired out of Redis (nothing cached), one whose
 * cached token WeChat has expired behind the cache's back (every first call answers 42001). The mock counts
 * the token endpoint calls of each.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Secret } from '../../src/config.js';
import { TokenProvider } from '../../src/wechat/token.js';
import { BENCH_SECRET, type Bench, enqueueScenes, settled, startWorkers, workerEnv } from './services.js';

export interface TokensPlan {
  processes: number;
  concurrency: number;
  /** Codes per app. */
  codes: number;
}

export interface TokensResult extends TokensPlan {
  /** Token endpoint calls for the app with nothing cached. */
  emptyCache: number;
  /** Token endpoint calls for the app whose cached token WeChat had expired, and the 42001s it answered. */
  rejectedToken: number;
  rejected42001: number;
}

export async function tokenStampede(
  b: Bench,
  plan: TokensPlan,
  log: (line: string) => void,
): Promise<TokensResult> {
  const empty = 'wxbench-token-empty';
  const rejected = 'wxbench-token-expired';
  const prefix = 'bench-tokens';
  await b.mock.admin.configure({
    apps: { [empty]: BENCH_SECRET, [rejected]: BENCH_SECRET },
    rateLimit: null,
  });
  // Cache a token as a worker would, then have WeChat expire it: the cache still believes it for 2 hours.
  const provider = new TokenProvider({
    redis: b.redis,
    prefix,
    apps: new Map([[rejected, new Secret(BENCH_SECRET)]]),
    mode: 'stable',
    baseUrl: b.mock.url,
  });
  await provider.get(rejected);
  await provider.close();
  await b.mock.admin.expireTokens(rejected);
  const before = {
    empty: (await b.mock.admin.stats(empty)).tokenCalls,
    rejected: (await b.mock.admin.stats(rejected)).tokenCalls,
  };

  log(
    `${plan.processes} workers × ${plan.concurrency} start at once, ${plan.codes} codes for each of 2 apps`,
  );
  const storage = await mkdtemp(path.join(b.tmp, 'tokens-'));
  const fleet = await startWorkers(
    plan.processes,
    workerEnv(b, { prefix, apps: [empty, rejected], rate: '1000000/1s', storage }),
    plan.concurrency,
  );
  try {
    await Promise.all([
      enqueueScenes(b, prefix, empty, 'empty', plan.codes),
      enqueueScenes(b, prefix, rejected, 'rejected', plan.codes),
    ]);
    await Promise.all([settled(b, prefix, 'empty', 120_000), settled(b, prefix, 'rejected', 120_000)]);
  } finally {
    await fleet.stop();
    await rm(storage, { recursive: true, force: true });
  }
  const after = { empty: await b.mock.admin.stats(empty), rejected: await b.mock.admin.stats(rejected) };
  return {
    ...plan,
    emptyCache: after.empty.tokenCalls - before.empty,
    rejectedToken: after.rejected.tokenCalls - before.rejected,
    rejected42001: after.rejected.errors['42001'] ?? 0,
  };
}
